"""The metrics response's shape, for the OpenAPI schema and the clients generated from it.

``selectors.metrics_summary`` builds the body; these serializers only describe it (the fuzzing
test checks every real answer against them). Figures a use case's task type does not have are
left out of the body, so they are optional here: classification has ``accuracy``, regression
``mse``/``mae``/``bias``/``within_tolerance``.
"""

from rest_framework import serializers

from reviewapp.core.api import EstimateOutput

Float = serializers.FloatField
Int = serializers.IntegerField


def _rate(help_text: str = "") -> serializers.FloatField:
    return Float(allow_null=True, help_text=help_text or "null when there is nothing to divide by")


class LabelledEstimateOutput(EstimateOutput):
    label = serializers.CharField(help_text="What the estimate is, in words")


class _Window(serializers.Serializer):
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField(allow_null=True)


class _Routes(serializers.Serializer):
    auto = Int()
    assisted = Int()
    blind = Int()
    human = Int()


class _DecisionsByKind(serializers.Serializer):
    accepted = Int()
    overridden = Int()
    blind = Int()


class _HumanBaseline(serializers.Serializer):
    double_reviewed = Int()
    agreement = _rate()
    mse = Float(allow_null=True, required=False, help_text="Regression only")
    mae = Float(allow_null=True, required=False, help_text="Regression only")


class _Latency(serializers.Serializer):
    p50 = Float(allow_null=True)
    p95 = Float(allow_null=True)
    p99 = Float(allow_null=True)
    mean = Float(allow_null=True)


class _ReviewTime(serializers.Serializer):
    p50 = Float(allow_null=True)
    p90 = Float(allow_null=True)
    mean = Float(allow_null=True)


class _Quantiles(serializers.Serializer):
    p05 = Float(allow_null=True)
    p25 = Float(allow_null=True)
    p50 = Float(allow_null=True)
    p75 = Float(allow_null=True)
    p95 = Float(allow_null=True)


class _Reference(serializers.Serializer):
    mean = Float(allow_null=True)
    std = Float(allow_null=True)
    min = Float(allow_null=True)
    max = Float(allow_null=True)


class FeatureHealthOutput(serializers.Serializer):
    feature = serializers.CharField()
    type = serializers.CharField()
    rows = Int()
    missing_rate = _rate()
    psi = Float(allow_null=True, help_text="Population stability index against the reference")
    mean = Float(required=False, allow_null=True, help_text="Numeric features")
    std = Float(required=False, allow_null=True, help_text="Numeric features")
    min = Float(required=False, allow_null=True, help_text="Numeric features")
    max = Float(required=False, allow_null=True, help_text="Numeric features")
    checked = Int(required=False, help_text="Rows compared with the reference")
    out_of_range = Int(required=False, help_text="Numeric: outside the reference's range")
    out_of_range_rate = Float(required=False, allow_null=True)
    quantiles = _Quantiles(required=False)
    reference = _Reference(required=False)
    unseen = Int(required=False, help_text="Categorical: values the reference never had")
    unseen_rate = Float(required=False, allow_null=True)
    drift_excluded = serializers.CharField(
        required=False, help_text="Why drift is not judged (identifier, PII, free text)"
    )


class _Evidence(serializers.Serializer):
    automation_rate = EstimateOutput()
    override_rate = EstimateOutput()
    null_output_rate = EstimateOutput()
    audit_error_rate = EstimateOutput()
    human_agreement = EstimateOutput()
    accuracy = EstimateOutput(required=False, help_text="Classification")
    accuracy_blind = EstimateOutput(required=False, help_text="Classification")
    mae = EstimateOutput(required=False, help_text="Regression")
    mse = EstimateOutput(required=False, help_text="Regression")
    within_tolerance = EstimateOutput(required=False, help_text="Regression")


class _Estimates(serializers.Serializer):
    model_accuracy = LabelledEstimateOutput()
    reviewed_agreement = LabelledEstimateOutput()
    automated_error_rate = LabelledEstimateOutput()
    wrong_automated_decisions = LabelledEstimateOutput()


class MetricsOutput(serializers.Serializer):
    use_case = serializers.CharField()
    model_version = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField(allow_null=True)
    window = _Window(help_text="The whole hours the figures cover")
    items = Int()
    pending = Int(help_text="Received and not yet scored")
    in_review = Int()
    routes = _Routes()
    automation_rate = _rate()
    decisions = Int()
    decisions_by_kind = _DecisionsByKind()
    override_rate = _rate()
    accuracy = Float(required=False, allow_null=True, help_text="Classification")
    accuracy_blind = Float(required=False, allow_null=True, help_text="Classification")
    mse = Float(required=False, allow_null=True, help_text="Regression")
    mae = Float(required=False, allow_null=True, help_text="Regression")
    bias = Float(required=False, allow_null=True, help_text="Regression")
    within_tolerance = Float(required=False, allow_null=True, help_text="Regression")
    labelled = Int()
    labelled_blind = Int(required=False, help_text="Classification")
    human_baseline = _HumanBaseline()
    audits = Int()
    audit_error_rate = _rate()
    predictions = Int()
    null_outputs = Int()
    null_output_rate = _rate()
    latency_budget_exceeded = Int()
    guardrail_breaches = Int()
    latency_ms = _Latency()
    review_time_ms = _ReviewTime()
    features = FeatureHealthOutput(many=True)
    evidence = _Evidence()
    estimates = _Estimates()
