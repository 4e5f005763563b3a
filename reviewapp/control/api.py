"""REST API of the control room: graduation readiness and its slices (see readiness.py), and
backtests (see backtests.py)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments.selectors import backtest_get, backtests_list, use_case_get_for
from reviewapp.control.backtest_schema import BacktestResultField
from reviewapp.control.backtests import backtest_start
from reviewapp.control.readiness import MAX_SLICES, Readiness, Slices, readiness_get, slices_get
from reviewapp.core.api import (
    ANALYSTS,
    MODEL_OWNERS,
    EstimateOutput,
    MomentField,
    RolesAllowed,
    TextField,
    body_fields_check,
    window_params,
)
from reviewapp.core.errors import raise_for_serializer
from reviewapp.core.models import Job


class DifferenceOutput(serializers.Serializer):
    value = serializers.FloatField(help_text="model minus human")
    low = serializers.FloatField()
    high = serializers.FloatField()
    method = serializers.CharField(help_text="newcombe (accuracy) or welch (mean error)")


class QualityOutput(serializers.Serializer):
    model = EstimateOutput(help_text="accuracy against the final human decisions, or the MAE")
    human = EstimateOutput(
        help_text="agreement between the two reviewers of double-reviewed items, or their "
        "mean absolute gap"
    )
    model_mse = EstimateOutput(allow_null=True, help_text="regression only")
    human_mse = EstimateOutput(allow_null=True, help_text="regression only")
    verdict = serializers.ChoiceField(
        choices=["at_human_level", "below_human_level", "not_yet_known", "no_baseline", "no_data"]
    )
    difference = DifferenceOutput(allow_null=True)
    margin = serializers.FloatField(
        help_text="how much worse than humans still counts as human level (accuracy points, "
        "or error units)"
    )
    more_needed = serializers.IntegerField(
        allow_null=True,
        help_text="more reviewed items that would settle a not-yet-known verdict (at the "
        "current double-review share); null when settled or when no number would do",
    )
    better = serializers.BooleanField(help_text="significantly better than humans")


class ReadinessOutput(serializers.Serializer):
    use_case = serializers.CharField(source="use_case.slug")
    model_version = serializers.CharField(source="model_version.version", allow_null=True)
    level = serializers.CharField()
    applies = serializers.BooleanField(
        help_text="the level is shadow or assisted, where every item gets a human label; at "
        "higher levels the figures cover only the items humans still see"
    )
    metric = serializers.ChoiceField(choices=["accuracy", "mae"])
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField(allow_null=True)
    overall = serializers.SerializerMethodField()

    def get_overall(self, readiness: Readiness) -> QualityOutput:
        return readiness.overall.as_dict()


class SliceOutput(serializers.Serializer):
    value = serializers.CharField(help_text='the feature\'s value; "(missing)" when absent')
    quality = serializers.SerializerMethodField()
    p_value = serializers.FloatField(
        source="test.p_value",
        allow_null=True,
        help_text="one-sided: the slice's error is above the rest's",
    )
    flagged = serializers.BooleanField(
        source="test.flagged",
        help_text="significantly worse than the rest (p below 0.05 / number of slices)",
    )

    def get_quality(self, item) -> QualityOutput:
        return item.quality.as_dict()


class SlicesOutput(serializers.Serializer):
    feature = serializers.CharField()
    readiness = ReadinessOutput()
    slices = SliceOutput(many=True)


_WINDOW = [
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="items received on or after"),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="items received before"),
    OpenApiParameter(
        "model_version", str, description="the version to judge; the champion by default"
    ),
]


class ReadinessApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        parameters=_WINDOW,
        responses=ReadinessOutput,
        summary="Is the model at human level yet?",
        description="The model's accuracy against the final human decisions (MAE and MSE for "
        "regression) beside the human level measured by double review, both with 95% "
        "intervals, a verdict (at human level when the interval of the difference lies above "
        "-margin, below when it lies under 0) and, while unknown, how many more reviewed "
        "items would settle it.",
    )
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        since, until = window_params(request.query_params)
        readiness = readiness_get(
            use_case=use_case,
            model_version=request.query_params.get("model_version"),
            since=since,
            until=until,
        )
        return Response(ReadinessOutput(readiness).data)


class SlicesApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "feature",
                {"type": "string", "minLength": 1},
                required=True,
                allow_blank=False,
                description="a categorical input feature (category, string or boolean; not "
                f"personal data) with at most {MAX_SLICES} values",
            ),
            *_WINDOW,
        ],
        responses=SlicesOutput,
        summary="Readiness per value of an input feature",
        description="The readiness figures for each value of `feature`; a slice is flagged when "
        "its error is significantly above the rest's (one-sided test, Bonferroni-corrected "
        "across the slices). An unknown, numeric or personal feature, or one with more than "
        f"{MAX_SLICES} values, is a 400 naming `feature`.",
    )
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        since, until = window_params(request.query_params)
        slices: Slices = slices_get(
            use_case=use_case,
            feature=request.query_params.get("feature"),
            model_version=request.query_params.get("model_version"),
            since=since,
            until=until,
        )
        return Response(SlicesOutput(slices).data)


# --- backtests --------------------------------------------------------------------------------


class BacktestInput(serializers.Serializer):
    model_version = TextField(max_length=64)
    since = MomentField(
        required=False, allow_null=True, help_text="ISO 8601 date or date-time (inclusive)"
    )
    until = MomentField(
        required=False, allow_null=True, help_text="ISO 8601 date or date-time (exclusive)"
    )


class BacktestOutput(serializers.ModelSerializer):
    job = serializers.UUIDField(source="id")
    result = BacktestResultField()
    model_version = serializers.SerializerMethodField()
    since = serializers.SerializerMethodField()
    until = serializers.SerializerMethodField()
    created_by = serializers.StringRelatedField(allow_null=True)

    class Meta:
        model = Job
        fields = [
            "job",
            "state",
            "done",
            "total",
            "model_version",
            "since",
            "until",
            "result",
            "error",
            "created_by",
            "created_at",
            "finished_at",
        ]

    def get_model_version(self, job) -> str:
        return job.params.get("model_version")

    def get_since(self, job) -> str | None:
        return job.params.get("since")

    def get_until(self, job) -> str | None:
        return job.params.get("until")


class BacktestListApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS, "POST": MODEL_OWNERS}

    @extend_schema(
        request=BacktestInput,
        responses={
            202: OpenApiResponse(
                inline_serializer("BacktestStarted", {"job": serializers.UUIDField()}),
                description="The job to follow at /api/v1/jobs/{id}/",
            )
        },
        summary="Backtest a model version over a window of human-labelled history",
        description="When done, the job's result holds the trade-off curve (for each of 100 "
        "thresholds the automation rate and the error rate against human labels) and the "
        "replay of the window's items through the current policy.",
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        body_fields_check(request.data, set(BacktestInput().fields))
        serializer = BacktestInput(data=request.data)
        raise_for_serializer(serializer)
        data = serializer.validated_data
        since, until = window_params(data)
        job = backtest_start(
            use_case=use_case,
            actor=request.user,
            model_version=data["model_version"],
            since=since,
            until=until,
        )
        return Response({"job": str(job.pk)}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=BacktestOutput(many=True), summary="Recent backtests, newest first")
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(BacktestOutput(backtests_list(use_case=use_case), many=True).data)


class BacktestDetailApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(responses=BacktestOutput, summary="A backtest's progress and result")
    def get(self, request, slug, job_id):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(BacktestOutput(backtest_get(use_case=use_case, job_id=job_id)).data)
