"""The shape of a backtest's result (``reviewapp.control.backtests._result``), declared for
the API schema. Empty until the backtest is done; keys that only one task type has, or that
older backtests lack, are optional."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deployments.policy import Level
from deployments.policy.routing import Route, TaskReason


def _counts(name: str, keys, help_text: str) -> serializers.Serializer:
    """A serializer of whole numbers, one per key (an enum's values)."""
    fields = {key: serializers.IntegerField() for key in keys}
    return type(name, (serializers.Serializer,), fields)(help_text=help_text)


class _WrongPair(serializers.Serializer):
    true = serializers.CharField(help_text="The human label.")
    predicted = serializers.CharField(help_text="The model's label.")
    errors = serializers.ListField(
        child=serializers.IntegerField(), help_text="Such mistakes automated, per threshold."
    )


class BacktestCurve(serializers.Serializer):
    """Per threshold (same order as ``thresholds``): what the model would have decided."""

    thresholds = serializers.ListField(child=serializers.FloatField())
    automated = serializers.ListField(child=serializers.IntegerField())
    errors = serializers.ListField(child=serializers.IntegerField())
    automation_rate = serializers.ListField(child=serializers.FloatField())
    error_rate = serializers.ListField(
        child=serializers.FloatField(allow_null=True), help_text="Null where none is automated."
    )
    wrong_pairs = _WrongPair(many=True, required=False, help_text="Classification.")
    abs_error = serializers.ListField(
        child=serializers.FloatField(), required=False, help_text="Regression: sum of |error|."
    )
    abs_error_sq = serializers.ListField(
        child=serializers.FloatField(), required=False, help_text="Regression: sum of error²."
    )


class BacktestPolicy(serializers.Serializer):
    version = serializers.IntegerField()
    level = serializers.ChoiceField(choices=[level.value for level in Level])
    confidence_threshold = serializers.FloatField()
    traffic_percent = serializers.FloatField()
    audit_rate = serializers.FloatField()
    double_review_rate = serializers.FloatField()


BacktestMove = type(
    "BacktestMove",
    (serializers.Serializer,),
    {
        "from": serializers.CharField(help_text="The route the item took then ('pending')."),
        "to": serializers.CharField(help_text="The route the policy gives it now."),
        "items": serializers.IntegerField(),
    },
)


class BacktestReplay(serializers.Serializer):
    """The current policy replayed on the same items."""

    routes_now = _counts(
        "BacktestRoutes", [route.value for route in Route], "Items by the route they take now."
    )
    routes_then = serializers.DictField(
        child=serializers.IntegerField(), help_text="Items by the route they took then."
    )
    moves = BacktestMove(many=True)
    automated_wrong = serializers.IntegerField()
    tasks = _counts(
        "BacktestTasks", [reason.value for reason in TaskReason], "Review tasks, by reason."
    )


class BacktestResult(serializers.Serializer):
    model_version = serializers.CharField(required=False)
    since = serializers.DateTimeField(required=False, allow_null=True)
    until = serializers.DateTimeField(required=False, allow_null=True)
    items = serializers.IntegerField(required=False)
    null_outputs = serializers.IntegerField(required=False)
    null_reasons = serializers.DictField(
        child=serializers.IntegerField(), required=False, help_text="The five commonest."
    )
    with_confidence = serializers.IntegerField(required=False)
    judged = serializers.IntegerField(required=False)
    accuracy = serializers.FloatField(required=False, allow_null=True)
    within_tolerance = serializers.FloatField(required=False, allow_null=True)
    mse = serializers.FloatField(required=False, allow_null=True)
    mae = serializers.FloatField(required=False, allow_null=True)
    curve = BacktestCurve(required=False)
    policy = BacktestPolicy(required=False)
    replay = BacktestReplay(required=False)


@extend_schema_field(BacktestResult)
class BacktestResultField(serializers.JSONField):
    """A backtest's result as stored; declared with its keys."""
