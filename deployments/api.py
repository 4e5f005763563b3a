"""REST API for use cases, automation policies and model versions (see ../shared/API.md)."""

import base64
import hashlib

from django.db import transaction
from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments.guardrail_schema import GuardrailsField
from deployments.model_version_presenters import (
    model_version_environment_public,
    model_version_latency_public,
)
from deployments.models import AutomationPolicy, ChangeRequest, ModelVersion, UseCase
from deployments.output_schema import (
    GuardrailsOutputField,
    LabelsField,
    RequestedChangesField,
    TrainingMetricsField,
)
from deployments.policy import Level
from deployments.selectors import (
    change_requests_list,
    model_version_artifact,
    model_version_get,
    model_versions_list,
    policy_current,
    policy_history,
    use_case_get_for,
    use_cases_visible_to,
)
from deployments.services.change_requests import (
    change_request_approve,
    change_request_reject,
    model_promote_or_request,
    policy_change_or_request,
    policy_restore_or_request,
)
from deployments.services.model_uploads import model_upload_read, reference_upload_read
from deployments.services.model_versions import (
    model_version_challenge,
    model_version_register,
    model_version_rollback,
)
from deployments.services.policies import POLICY_FIELDS
from deployments.services.use_cases import use_case_create, use_case_update
from reviewapp.core.api import (
    ANALYSTS,
    EVERYONE,
    MANAGERS,
    MODEL_OWNERS,
    FileAnswerNegotiation,
    NumberField,
    RolesAllowed,
    SlugTextField,
    TextField,
    TrueFalseField,
    WholeNumberField,
    attachment_header,
    body_fields_check,
    response_header,
)
from reviewapp.core.errors import NotFound, raise_for_serializer


class FiniteFloatField(NumberField):
    default_error_messages = {"finite": "must be a finite number"}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if value != value or value in (float("inf"), float("-inf")):
            self.fail("finite")
        return value


def _display_text(max_length: int, help_text: str) -> TextField:
    """A feature's optional text for people; null or blank shows nothing."""
    return TextField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=max_length,
        help_text=help_text,
    )


class FeatureSerializer(serializers.Serializer):
    name = TextField(max_length=100)
    type = serializers.ChoiceField(choices=["number", "integer", "boolean", "string", "category"])
    required = TrueFalseField(required=False, default=True)
    min = NumberField(required=False, allow_null=True)
    max = NumberField(required=False, allow_null=True)
    categories = serializers.ListField(
        child=TextField(allow_blank=True), required=False, allow_null=True
    )
    pii = TrueFalseField(required=False, default=False)
    identifier = TrueFalseField(
        required=False,
        help_text="An identifier (claim number, customer id): never judged for drift.",
    )
    label = _display_text(80, "Display name.")
    description = _display_text(300, "What the feature means; shown as a tooltip.")
    unit = _display_text(20, "Shown after numbers.")
    group = _display_text(60, "Features of one group are shown together.")


class FeatureSchemaField(serializers.JSONField):
    """Checked by ``feature_schema_clean`` (one error per entry); declared for the schema."""


class FeatureSchemaFieldSchema(OpenApiSerializerFieldExtension):
    """A list of features, at least one."""

    target_class = FeatureSchemaField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(FeatureSerializer(many=True), direction)
        return {**schema, "minItems": 1}


class ErrorCostSerializer(serializers.Serializer):
    true = TextField(help_text="The right label.")
    predicted = TextField(help_text="The label the model gave instead.")
    cost = FiniteFloatField(min_value=0)


class UseCaseOutput(serializers.ModelSerializer):
    level = serializers.SerializerMethodField()
    labels = LabelsField()
    features = FeatureSchemaField(read_only=True)
    error_costs = ErrorCostSerializer(many=True)

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
            "four_eyes",
            "suggestion_preselected",
            "gold_rate",
            "error_cost",
            "error_costs",
            "review_minutes",
            "hourly_cost",
            "capacity_reviewers",
            "capacity_hours_per_day",
            "queue_order",
            "turnaround_minutes",
            "retention_months",
            "history_archived_before",
            "level",
            "created_at",
        ]

    def get_level(self, use_case) -> str:
        policy = getattr(use_case, "current_policy", None) or policy_current(use_case=use_case)
        return policy.level


class UseCaseInput(serializers.Serializer):
    slug = SlugTextField(max_length=64)
    name = TextField(max_length=200)
    description = TextField(required=False, allow_blank=True, default="")
    task_type = serializers.ChoiceField(choices=UseCase.TaskType.choices)
    labels = LabelsField(required=False)
    tolerance = FiniteFloatField(required=False, allow_null=True, min_value=0)
    value_min = FiniteFloatField(required=False, allow_null=True)
    value_max = FiniteFloatField(required=False, allow_null=True)
    features = FeatureSchemaField()
    prediction_source = serializers.ChoiceField(
        choices=UseCase.PredictionSource.choices,
        required=False,
        default=UseCase.PredictionSource.REGISTRY,
    )
    item_view = serializers.ChoiceField(
        choices=UseCase.ItemView.choices, required=False, default=UseCase.ItemView.TABLE
    )
    latency_budget_ms = WholeNumberField(required=False, allow_null=True, min_value=1)


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
        name = TextField(max_length=200, required=False)
        description = TextField(required=False, allow_blank=True)
        labels = LabelsField(required=False)
        tolerance = FiniteFloatField(required=False, allow_null=True, min_value=0)
        value_min = FiniteFloatField(required=False, allow_null=True)
        value_max = FiniteFloatField(required=False, allow_null=True)
        features = FeatureSchemaField(required=False)
        item_view = serializers.ChoiceField(choices=UseCase.ItemView.choices, required=False)
        prediction_source = serializers.ChoiceField(
            choices=UseCase.PredictionSource.choices,
            required=False,
            help_text="Fixed once the use case has received items.",
        )
        latency_budget_ms = WholeNumberField(required=False, allow_null=True, min_value=1)
        four_eyes = TrueFalseField(
            required=False,
            help_text="Raising the level to partial or full, or promoting a champion, then "
            "waits for a second manager's approval.",
        )
        suggestion_preselected = TrueFalseField(
            required=False,
            help_text="Assisted tasks open with the model's answer already picked (off: the "
            "reviewer picks, then sees whether it matched).",
        )
        gold_rate = FiniteFloatField(
            required=False,
            min_value=0,
            max_value=0.5,
            help_text="Share of a reviewer's claims in the app's queue that re-serve, blind, "
            "an item two reviewers agreed on, to score the reviewer (0: never).",
        )
        error_cost = FiniteFloatField(
            required=False,
            allow_null=True,
            min_value=0,
            help_text="Cost of one wrong automated decision (classification) or of one unit "
            "of absolute error (regression), in your own currency.",
        )
        error_costs = ErrorCostSerializer(
            many=True,
            required=False,
            help_text="Classification: costs of particular mistakes (true label, predicted "
            "label) that override error_cost.",
        )
        review_minutes = FiniteFloatField(
            required=False,
            allow_null=True,
            min_value=0,
            help_text="Minutes a person spends per item; null: measured from recorded times.",
        )
        hourly_cost = FiniteFloatField(
            required=False, allow_null=True, min_value=0, help_text="Cost of a reviewer hour."
        )
        capacity_reviewers = WholeNumberField(
            required=False,
            allow_null=True,
            min_value=1,
            help_text="Reviewers on this use case; with capacity_hours_per_day (both or "
            "neither; null: measured from recent daily decisions).",
        )
        capacity_hours_per_day = FiniteFloatField(
            required=False, allow_null=True, min_value=0, max_value=24
        )
        queue_order = serializers.ChoiceField(
            choices=UseCase.QueueOrder.choices,
            required=False,
            help_text="Which waiting task a reviewer gets next: fifo (oldest), priority (then "
            "oldest), due (earliest due_at first, items without one last), uncertain (least "
            "confident model output first: the most useful labels for retraining).",
        )
        turnaround_minutes = WholeNumberField(
            required=False,
            allow_null=True,
            min_value=1,
            help_text="An item sent without due_at is due this long after it was received "
            "(null: no default).",
        )
        retention_months = WholeNumberField(
            required=False,
            allow_null=True,
            min_value=1,
            max_value=1200,
            help_text="Items older than this many whole months, with their predictions, tasks "
            "and decisions, are moved to a Parquet archive and removed from the database; the "
            "dashboards keep their figures. Null: history is kept for ever.",
        )

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
    guardrails = GuardrailsOutputField()
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


class ReasonInput(serializers.Serializer):
    reason = TextField(max_length=2000, help_text="Why; kept in the history")


class OptionalReasonInput(serializers.Serializer):
    reason = TextField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="Why (optional)"
    )


def reason_read(request, input_class: type[serializers.Serializer] = ReasonInput) -> str:
    """The body's ``reason``; a missing or blank one is refused naming ``reason`` when the
    input class requires it."""
    serializer = input_class(data=request.data if isinstance(request.data, dict) else {})
    raise_for_serializer(serializer)
    return serializer.validated_data["reason"].strip()


class ChangeRequestOutput(serializers.ModelSerializer):
    changes = RequestedChangesField()
    requested_by = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    decided_by = serializers.SerializerMethodField()
    decided_at = serializers.SerializerMethodField()
    decision_reason = serializers.SerializerMethodField()

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "kind",
            "changes",
            "reason",
            "requested_by",
            "requested_at",
            "base_policy_version",
            "base_champion",
            "state",
            "decided_by",
            "decided_at",
            "decision_reason",
        ]

    def _decision(self, request):
        return getattr(request, "decision", None)

    def get_requested_by(self, request) -> str:
        return request.requested_by.get_username()

    def get_state(self, request) -> str:
        decision = self._decision(request)
        if decision is None:
            return "pending"
        return "approved" if decision.approved else "rejected"

    def get_decided_by(self, request) -> str | None:
        decision = self._decision(request)
        return decision.decided_by.get_username() if decision else None

    def get_decided_at(self, request) -> str | None:
        decision = self._decision(request)
        return decision.decided_at.isoformat() if decision else None

    def get_decision_reason(self, request) -> str | None:
        decision = self._decision(request)
        return decision.reason if decision else None


class HeldOutput(serializers.Serializer):
    change_request = ChangeRequestOutput()


def _held(change_request: ChangeRequest) -> Response:
    return Response(
        {"change_request": ChangeRequestOutput(change_request).data},
        status=status.HTTP_202_ACCEPTED,
    )


class ChangeRequestListApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE}

    @extend_schema(
        responses=ChangeRequestOutput(many=True),
        summary="Four-eyes change requests, newest first",
    )
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        requests = change_requests_list(use_case=use_case)
        return Response(ChangeRequestOutput(requests, many=True).data)


class _ChangeRequestDecisionApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"POST": MANAGERS}
    service = None

    def post(self, request, slug, request_id):
        use_case = use_case_get_for(user=request.user, slug=slug)
        reason = reason_read(request)
        decided = type(self).service(
            use_case=use_case, request_id=request_id, actor=request.user, reason=reason
        )
        fresh = change_requests_list(use_case=use_case).get(pk=decided.pk)
        return Response(ChangeRequestOutput(fresh).data)


class ChangeRequestApproveApi(_ChangeRequestDecisionApi):
    service = staticmethod(change_request_approve)

    @extend_schema(
        request=ReasonInput,
        responses={
            200: ChangeRequestOutput,
            403: OpenApiResponse(description="The requester cannot approve their own change"),
            409: OpenApiResponse(description="Already decided, or the policy/champion moved"),
        },
        summary="Approve: the change is applied as a direct change would be",
    )
    def post(self, request, slug, request_id):
        return super().post(request, slug, request_id)


class ChangeRequestRejectApi(_ChangeRequestDecisionApi):
    service = staticmethod(change_request_reject)

    @extend_schema(
        request=ReasonInput,
        responses={200: ChangeRequestOutput, 409: OpenApiResponse(description="Already decided")},
        summary="Reject: nothing changes",
    )
    def post(self, request, slug, request_id):
        return super().post(request, slug, request_id)


class PolicyInput(serializers.Serializer):
    level = serializers.ChoiceField(choices=[level.value for level in Level])
    confidence_threshold = FiniteFloatField(min_value=0, max_value=1)
    traffic_percent = FiniteFloatField(min_value=0, max_value=100)
    audit_rate = FiniteFloatField(min_value=0, max_value=1)
    double_review_rate = FiniteFloatField(min_value=0, max_value=1)
    guardrails = GuardrailsField(required=False)
    reason = TextField(max_length=2000)


class PatchedPolicyInput(PolicyInput):
    """A PATCH names only the fields that change; its reason is still required (validated
    whole, not as DRF's partial PATCH)."""

    patch_whole = True

    level = serializers.ChoiceField(choices=[level.value for level in Level], required=False)
    confidence_threshold = FiniteFloatField(min_value=0, max_value=1, required=False)
    traffic_percent = FiniteFloatField(min_value=0, max_value=100, required=False)
    audit_rate = FiniteFloatField(min_value=0, max_value=1, required=False)
    double_review_rate = FiniteFloatField(min_value=0, max_value=1, required=False)
    reason = TextField(max_length=2000, help_text="Why; kept in the history")


class PolicyApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE, "PUT": MANAGERS, "PATCH": MANAGERS}

    @extend_schema(responses=PolicyOutput, summary="The current automation policy")
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(PolicyOutput(policy_current(use_case=use_case)).data)

    def _change(self, request, slug, *, input_class: type[PolicyInput]):
        use_case = use_case_get_for(user=request.user, slug=slug)
        body_fields_check(request.data, set(input_class().fields))
        serializer = input_class(data=request.data)
        raise_for_serializer(serializer)
        changes = {k: v for k, v in serializer.validated_data.items() if k in POLICY_FIELDS}
        result = policy_change_or_request(
            use_case=use_case,
            actor=request.user,
            changes=changes,
            reason=serializer.validated_data.get("reason", ""),
        )
        if isinstance(result, ChangeRequest):
            return _held(result)
        return Response(PolicyOutput(result).data)

    @extend_schema(
        request=PolicyInput,
        responses={200: PolicyOutput, 202: HeldOutput},
        summary="Replace the policy (202: held for a second manager under four-eyes)",
    )
    def put(self, request, slug):
        return self._change(request, slug, input_class=PolicyInput)

    @extend_schema(
        request=PatchedPolicyInput,
        responses={200: PolicyOutput, 202: HeldOutput},
        summary="Change the policy (202: held for a second manager under four-eyes)",
    )
    def patch(self, request, slug):
        return self._change(request, slug, input_class=PatchedPolicyInput)


class PolicyHistoryApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE}

    @extend_schema(responses=PolicyOutput(many=True), summary="Every policy version, newest first")
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(PolicyOutput(policy_history(use_case=use_case), many=True).data)


class PolicyRestoreApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"POST": MANAGERS}

    @extend_schema(
        request=ReasonInput,
        responses={201: PolicyOutput, 202: HeldOutput},
        summary="Make an earlier policy version current again, as a new version (202: held "
        "for a second manager under four-eyes)",
    )
    def post(self, request, slug, version):
        use_case = use_case_get_for(user=request.user, slug=slug)
        reason = reason_read(request)
        result = policy_restore_or_request(
            use_case=use_case, version=version, actor=request.user, reason=reason
        )
        if isinstance(result, ChangeRequest):
            return _held(result)
        return Response(PolicyOutput(result).data, status=status.HTTP_201_CREATED)


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
    metrics = TrainingMetricsField()
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
        version = TextField(max_length=64)
        file = serializers.FileField()
        reference = serializers.FileField(
            required=False,
            help_text="Optional CSV or Parquet sample of the training features, used as the "
            "reference for drift. Without it, the use case's recent items are the reference.",
        )
        notes = TextField(required=False, allow_blank=True, default="")
        environment = TextField(
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


class ModelPromoteApi(_ModelActionApi):
    @extend_schema(
        request=ReasonInput,
        responses={200: ModelVersionOutput, 202: HeldOutput},
        summary="Make this version the champion (a reason is required; 202: held for a second "
        "manager under four-eyes)",
    )
    def post(self, request, slug, version):
        use_case = use_case_get_for(user=request.user, slug=slug)
        result = model_promote_or_request(
            use_case=use_case, version=version, actor=request.user, reason=reason_read(request)
        )
        if isinstance(result, ChangeRequest):
            return _held(result)
        return Response(_model_version_output(result, use_case=use_case))


class ModelChallengeApi(_ModelActionApi):
    @extend_schema(
        request=OptionalReasonInput,
        responses=ModelVersionOutput,
        summary="Run this version as a challenger (shadow scoring)",
    )
    def post(self, request, slug, version):
        use_case = use_case_get_for(user=request.user, slug=slug)
        model_version = model_version_challenge(
            use_case=use_case,
            version=version,
            actor=request.user,
            reason=reason_read(request, OptionalReasonInput),
        )
        return Response(_model_version_output(model_version, use_case=use_case))


class ModelRollbackApi(_ModelActionApi):
    @extend_schema(
        request=ReasonInput,
        responses=ModelVersionOutput,
        summary="Make the previous champion champion again (a reason is required)",
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        with transaction.atomic():
            model_version = model_version_rollback(
                use_case=use_case, actor=request.user, reason=reason_read(request)
            )
        return Response(_model_version_output(model_version, use_case=use_case))


class ModelArtifactApi(FileAnswerNegotiation, APIView):
    """The version's ``.skops`` file as it was uploaded, so a score can be reproduced."""

    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": MODEL_OWNERS}

    @extend_schema(
        parameters=[
            response_header("X-Content-SHA256", "The file's SHA-256, in hex."),
            response_header("Repr-Digest", "The same digest per RFC 9530: `sha-256=:<base64>:`."),
            attachment_header("<use case>-<version>.skops"),
        ],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The .skops bytes. `X-Content-SHA256` carries their SHA-256 in hex "
                "and `Repr-Digest` (RFC 9530) the same in base64.",
            )
        },
        summary="Download a model version's artifact (.skops)",
        description="Load it with `skops.io.load(path, trusted=skops.io.get_untrusted_types("
        "file=path))` after checking that list: the app itself accepted only scikit-learn, "
        "NumPy and SciPy types when the file was uploaded.",
    )
    def get(self, request, slug, version):
        use_case = use_case_get_for(user=request.user, slug=slug)
        model_version = model_version_get(use_case=use_case, version=version)
        data = model_version_artifact(model_version)
        if data is None:
            raise NotFound(
                {"version": [f"{version!r} has no artifact: its predictions are made elsewhere."]}
            )
        digest = hashlib.sha256(data).digest()
        response = HttpResponse(data, content_type="application/octet-stream")
        response["Content-Length"] = str(len(data))
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=f"{use_case.slug}-{model_version.version}.skops"
        )
        response["X-Content-SHA256"] = digest.hex()
        response["Repr-Digest"] = f"sha-256=:{base64.b64encode(digest).decode()}:"
        return response
