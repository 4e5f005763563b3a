"""REST API for use cases, automation policies and model versions (see ../shared/API.md)."""

from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments.model_version_presenters import (
    model_version_environment_public,
    model_version_latency_public,
)
from deployments.models import AutomationPolicy, ModelVersion, UseCase
from deployments.policy import Level
from deployments.selectors import (
    model_versions_list,
    policy_current,
    policy_history,
    use_case_get_for,
    use_cases_visible_to,
)
from deployments.services.model_uploads import model_upload_read, reference_upload_read
from deployments.services.model_versions import (
    model_version_challenge,
    model_version_promote,
    model_version_register,
    model_version_rollback,
)
from deployments.services.policies import POLICY_FIELDS, policy_change
from deployments.services.use_cases import use_case_create, use_case_update
from reviewapp.core.api import (
    ANALYSTS,
    EVERYONE,
    MANAGERS,
    MODEL_OWNERS,
    RolesAllowed,
    body_fields_check,
)
from reviewapp.core.errors import InvalidInput, raise_for_serializer


class FiniteFloatField(serializers.FloatField):
    default_error_messages = {"finite": "must be a finite number"}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if value != value or value in (float("inf"), float("-inf")):
            self.fail("finite")
        return value


class FeatureSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=["number", "integer", "boolean", "string", "category"])
    required = serializers.BooleanField(required=False, default=True)
    min = serializers.FloatField(required=False)
    max = serializers.FloatField(required=False)
    categories = serializers.ListField(child=serializers.CharField(), required=False)
    pii = serializers.BooleanField(required=False, default=False)


class UseCaseOutput(serializers.ModelSerializer):
    level = serializers.SerializerMethodField()
    features = FeatureSerializer(many=True)

    class Meta:
        model = UseCase
        fields = [
            "slug",
            "name",
            "description",
            "task_type",
            "labels",
            "tolerance",
            "value_min",
            "value_max",
            "features",
            "prediction_source",
            "item_view",
            "latency_budget_ms",
            "level",
            "created_at",
        ]

    def get_level(self, use_case) -> str:
        policy = getattr(use_case, "current_policy", None) or policy_current(use_case=use_case)
        return policy.level


class UseCaseInput(serializers.Serializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task_type = serializers.ChoiceField(choices=UseCase.TaskType.choices)
    labels = serializers.JSONField(required=False)
    tolerance = FiniteFloatField(required=False, allow_null=True, min_value=0)
    value_min = FiniteFloatField(required=False, allow_null=True)
    value_max = FiniteFloatField(required=False, allow_null=True)
    features = serializers.JSONField()
    prediction_source = serializers.ChoiceField(
        choices=UseCase.PredictionSource.choices,
        required=False,
        default=UseCase.PredictionSource.REGISTRY,
    )
    item_view = serializers.ChoiceField(
        choices=UseCase.ItemView.choices, required=False, default=UseCase.ItemView.TABLE
    )
    latency_budget_ms = serializers.IntegerField(required=False, allow_null=True, min_value=1)


def _use_cases_with_policy(queryset):
    """Attach each use case's current policy in one query (no N+1 on the list)."""
    use_cases = list(queryset)
    latest: dict[int, AutomationPolicy] = {}
    for policy in AutomationPolicy.objects.filter(use_case__in=use_cases).order_by(
        "use_case_id", "version"
    ):
        latest[policy.use_case_id] = policy
    for use_case in use_cases:
        use_case.current_policy = latest.get(use_case.pk)
    return use_cases


class UseCaseListApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE, "POST": MANAGERS}

    @extend_schema(responses=UseCaseOutput(many=True), summary="Use cases you work on")
    def get(self, request):
        use_cases = _use_cases_with_policy(use_cases_visible_to(request.user).order_by("slug"))
        return Response(UseCaseOutput(use_cases, many=True).data)

    @extend_schema(request=UseCaseInput, responses={201: UseCaseOutput}, summary="Create")
    def post(self, request):
        body_fields_check(request.data, set(UseCaseInput().fields))
        serializer = UseCaseInput(data=request.data)
        raise_for_serializer(serializer)
        use_case = use_case_create(actor=request.user, **serializer.validated_data)
        return Response(UseCaseOutput(use_case).data, status=status.HTTP_201_CREATED)


class UseCaseDetailApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE, "PATCH": MANAGERS}

    class PatchInput(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)
        labels = serializers.JSONField(required=False)
        tolerance = FiniteFloatField(required=False, allow_null=True, min_value=0)
        value_min = FiniteFloatField(required=False, allow_null=True)
        value_max = FiniteFloatField(required=False, allow_null=True)
        features = serializers.JSONField(required=False)
        item_view = serializers.ChoiceField(choices=UseCase.ItemView.choices, required=False)
        prediction_source = serializers.ChoiceField(
            choices=UseCase.PredictionSource.choices,
            required=False,
            help_text="Fixed once the use case has received items.",
        )
        latency_budget_ms = serializers.IntegerField(required=False, allow_null=True, min_value=1)

    @extend_schema(responses=UseCaseOutput)
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(UseCaseOutput(use_case).data)

    @extend_schema(request=PatchInput, responses=UseCaseOutput)
    def patch(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        body_fields_check(request.data, set(self.PatchInput().fields))
        serializer = self.PatchInput(data=request.data, partial=True)
        raise_for_serializer(serializer)
        use_case = use_case_update(use_case=use_case, changes=dict(serializer.validated_data))
        return Response(UseCaseOutput(use_case).data)


class PolicyOutput(serializers.ModelSerializer):
    changed_by = serializers.SerializerMethodField()
    restored_from = serializers.SerializerMethodField()

    class Meta:
        model = AutomationPolicy
        fields = [
            "version",
            "level",
            "confidence_threshold",
            "traffic_percent",
            "audit_rate",
            "double_review_rate",
            "guardrails",
            "changed_by",
            "changed_at",
            "reason",
            "restored_from",
        ]

    def get_changed_by(self, policy) -> str:
        return policy.author

    def get_restored_from(self, policy) -> int | None:
        return policy.restored_from.version if policy.restored_from_id else None


class PolicyInput(serializers.Serializer):
    level = serializers.ChoiceField(choices=[level.value for level in Level])
    confidence_threshold = FiniteFloatField(min_value=0, max_value=1)
    traffic_percent = FiniteFloatField(min_value=0, max_value=100)
    audit_rate = FiniteFloatField(min_value=0, max_value=1)
    double_review_rate = FiniteFloatField(min_value=0, max_value=1)
    guardrails = serializers.DictField(required=False)
    reason = serializers.CharField(max_length=2000)


class PolicyApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE, "PUT": MANAGERS, "PATCH": MANAGERS}

    @extend_schema(responses=PolicyOutput, summary="The current automation policy")
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(PolicyOutput(policy_current(use_case=use_case)).data)

    def _change(self, request, slug, *, partial: bool):
        use_case = use_case_get_for(user=request.user, slug=slug)
        body_fields_check(request.data, set(PolicyInput().fields))
        serializer = PolicyInput(data=request.data, partial=partial)
        raise_for_serializer(serializer)
        changes = {k: v for k, v in serializer.validated_data.items() if k in POLICY_FIELDS}
        policy = policy_change(
            use_case=use_case,
            actor=request.user,
            changes=changes,
            reason=serializer.validated_data.get("reason", ""),
        )
        return Response(PolicyOutput(policy).data)

    @extend_schema(request=PolicyInput, responses=PolicyOutput, summary="Replace the policy")
    def put(self, request, slug):
        return self._change(request, slug, partial=False)

    @extend_schema(request=PolicyInput, responses=PolicyOutput, summary="Change the policy")
    def patch(self, request, slug):
        if not isinstance(request.data, dict) or not request.data.get("reason"):
            raise InvalidInput({"reason": ["a reason is required for every policy change"]})
        return self._change(request, slug, partial=True)


class PolicyHistoryApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE}

    @extend_schema(responses=PolicyOutput(many=True), summary="Every policy version, newest first")
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(PolicyOutput(policy_history(use_case=use_case), many=True).data)


class LibraryVersionOutput(serializers.Serializer):
    library = serializers.CharField()
    saved = serializers.CharField(allow_null=True)
    saved_source = serializers.ChoiceField(choices=["file", "declared"], allow_null=True)
    serving = serializers.CharField(allow_null=True)
    matches = serializers.BooleanField(allow_null=True)
    used_by_file = serializers.BooleanField(help_text="The file holds objects of this library.")


class EnvironmentOutput(serializers.Serializer):
    recorded = serializers.BooleanField(help_text="False for external versions and old uploads.")
    served_outside = serializers.BooleanField()
    saved_with = serializers.DictField(child=serializers.CharField(allow_null=True))
    serving = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        help_text="The versions of the process answering this request.",
    )
    checked_with = serializers.DictField(
        child=serializers.CharField(allow_null=True), help_text="Serving versions at upload."
    )
    skops_protocol = serializers.IntegerField(allow_null=True)
    libraries = LibraryVersionOutput(many=True)
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="What the libraries warned about loading or scoring this model here "
        "(a scikit-learn version mismatch above all).",
    )


class LatencyOutput(serializers.Serializer):
    measured = serializers.BooleanField()
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    max_ms = serializers.FloatField(allow_null=True)
    calls = serializers.IntegerField(allow_null=True)
    stopped_early = serializers.BooleanField(allow_null=True)
    measured_at = serializers.DateTimeField(allow_null=True)
    budget_ms = serializers.IntegerField(allow_null=True, help_text="The use case's budget now.")
    over_budget = serializers.BooleanField(
        allow_null=True, help_text="p99 above the budget (null without a budget)."
    )


class ModelVersionOutput(serializers.ModelSerializer):
    """Give ``budget_ms`` (the use case's latency budget) in the serializer's context."""

    created_by = serializers.StringRelatedField(allow_null=True)
    environment = serializers.SerializerMethodField()
    latency = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            "role",
            "source",
            "estimator",
            "artifact_sha256",
            "artifact_size",
            "environment",
            "latency",
            "metrics",
            "notes",
            "created_by",
            "created_at",
        ]

    @extend_schema_field(EnvironmentOutput)
    def get_environment(self, model_version) -> dict:
        return model_version_environment_public(model_version)

    @extend_schema_field(LatencyOutput)
    def get_latency(self, model_version) -> dict:
        return model_version_latency_public(model_version, budget_ms=self.context["budget_ms"])


def _model_version_output(model_version: ModelVersion, *, use_case: UseCase) -> dict:
    return ModelVersionOutput(model_version, context={"budget_ms": use_case.latency_budget_ms}).data


class ModelVersionListApi(APIView):
    permission_classes = [RolesAllowed]
    parser_classes = [MultiPartParser]
    allowed_roles = {"GET": ANALYSTS, "POST": MODEL_OWNERS}

    class UploadInput(serializers.Serializer):
        version = serializers.CharField(max_length=64)
        file = serializers.FileField()
        reference = serializers.FileField(
            required=False,
            help_text="Optional CSV or Parquet sample of the training features, used as the "
            "reference for drift. Without it, the use case's recent items are the reference.",
        )
        notes = serializers.CharField(required=False, allow_blank=True, default="")
        environment = serializers.CharField(
            required=False,
            allow_blank=True,
            help_text="Optional JSON object of the library versions the model was saved with, "
            'e.g. {"numpy": "1.26.4", "scipy": "1.13.0", "python": "3.11.9"}. The file '
            "itself records scikit-learn and skops.",
        )

    @extend_schema(responses=ModelVersionOutput(many=True))
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(
            ModelVersionOutput(
                model_versions_list(use_case=use_case),
                many=True,
                context={"budget_ms": use_case.latency_budget_ms},
            ).data
        )

    @extend_schema(
        request={"multipart/form-data": UploadInput},
        responses={201: ModelVersionOutput, 400: OpenApiResponse(description="Refused model")},
        summary="Upload a .skops model version",
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        serializer = self.UploadInput(data=request.data)
        raise_for_serializer(serializer)
        data = serializer.validated_data
        model_version = model_version_register(
            use_case=use_case,
            version=data["version"],
            data=model_upload_read(upload=data["file"]),
            actor=request.user,
            reference=reference_upload_read(upload=data.get("reference")),
            notes=data["notes"],
            environment=data.get("environment"),
        )
        return Response(
            _model_version_output(model_version, use_case=use_case),
            status=status.HTTP_201_CREATED,
        )


class _ModelActionApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"POST": MODEL_OWNERS}

    class ActionInput(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, default="")

    def _reason(self, request) -> str:
        serializer = self.ActionInput(data=request.data if isinstance(request.data, dict) else {})
        raise_for_serializer(serializer)
        return serializer.validated_data["reason"]


class ModelPromoteApi(_ModelActionApi):
    @extend_schema(
        request=_ModelActionApi.ActionInput,
        responses=ModelVersionOutput,
        summary="Make this version the champion",
    )
    def post(self, request, slug, version):
        use_case = use_case_get_for(user=request.user, slug=slug)
        model_version = model_version_promote(
            use_case=use_case, version=version, actor=request.user, reason=self._reason(request)
        )
        return Response(_model_version_output(model_version, use_case=use_case))


class ModelChallengeApi(_ModelActionApi):
    @extend_schema(
        request=_ModelActionApi.ActionInput,
        responses=ModelVersionOutput,
        summary="Run this version as a challenger (shadow scoring)",
    )
    def post(self, request, slug, version):
        use_case = use_case_get_for(user=request.user, slug=slug)
        model_version = model_version_challenge(
            use_case=use_case, version=version, actor=request.user, reason=self._reason(request)
        )
        return Response(_model_version_output(model_version, use_case=use_case))


class ModelRollbackApi(_ModelActionApi):
    @extend_schema(
        request=_ModelActionApi.ActionInput,
        responses=ModelVersionOutput,
        summary="Make the previous champion champion again",
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        with transaction.atomic():
            model_version = model_version_rollback(
                use_case=use_case, actor=request.user, reason=self._reason(request)
            )
        return Response(_model_version_output(model_version, use_case=use_case))
