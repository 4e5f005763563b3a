"""REST API for items and the review queue."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments.selectors import can_view_pii, use_case_get_for
from reviewapp.core.api import (
    CALLERS,
    REVIEWERS,
    RolesAllowed,
    body_fields_check,
    idempotency_key_header,
)
from reviewapp.core.errors import InvalidInput
from reviewapp.core.throttles import IngestBatchRateThrottle, IngestRateThrottle
from reviewapp.reviews.models import Decision, Disagreement
from reviewapp.reviews.presenters import task_public
from reviewapp.reviews.selectors import item_get, item_public
from reviewapp.reviews.services.ingest import item_ingest, items_batch_accept
from reviewapp.reviews.services.review import (
    review_task_claim,
    review_task_decide,
    review_task_get_for,
    review_task_skip,
)


class PredictionBody(serializers.Serializer):
    label = serializers.CharField(required=False, help_text="Classification.")
    value = serializers.FloatField(required=False, help_text="Regression.")
    confidence = serializers.FloatField(
        required=False, allow_null=True, help_text="In [0, 1]; optional."
    )
    model_version = serializers.CharField(
        required=False, max_length=64, help_text="Registered on first sight."
    )


class ItemInput(serializers.Serializer):
    external_id = serializers.CharField(max_length=200)
    features = serializers.DictField()
    prediction = PredictionBody(
        required=False,
        help_text="Required by use cases whose prediction_source is external, refused by the "
        "others: the answer of the caller's model and its model_version (400 without one, or "
        "with an unknown key). An unusable answer (no label or value, a label outside the set, "
        "a confidence outside [0, 1]) is a null output: the item goes to a human.",
    )
    priority = serializers.IntegerField(
        required=False,
        min_value=-1000,
        max_value=1000,
        help_text="Higher is reviewed first when the use case's queue order is 'priority'. "
        "Default 0.",
    )
    due_at = serializers.DateTimeField(
        required=False,
        help_text="When the item should be decided by (with its time zone). Default: received "
        "plus the use case's turnaround_minutes, if set. An item still waiting for a person "
        "past it raises queue.sla_breached.",
    )


class DecisionBody(serializers.Serializer):
    label = serializers.CharField(required=False)
    value = serializers.FloatField(required=False)
    source = serializers.ChoiceField(choices=["model", "human"])


class ItemOutput(serializers.Serializer):
    external_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "in_review", "decided"])
    route = serializers.ChoiceField(choices=["auto", "assisted", "blind", "human"], allow_null=True)
    decision = DecisionBody(allow_null=True)
    prediction = PredictionBody(allow_null=True)
    priority = serializers.IntegerField()
    due_at = serializers.DateTimeField(allow_null=True)


class ItemIngestApi(APIView):
    permission_classes = [RolesAllowed]
    throttle_classes = [IngestRateThrottle]
    allowed_roles = {"POST": CALLERS}

    @extend_schema(
        request=ItemInput,
        responses={201: ItemOutput, 200: OpenApiResponse(ItemOutput, "Already received")},
        summary="Send one item (realtime)",
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        data = body_fields_check(request.data, set(ItemInput().fields))
        result = item_ingest(
            use_case=use_case,
            external_id=data.get("external_id"),
            features=data.get("features"),
            prediction=data.get("prediction"),
            priority=data.get("priority"),
            due_at=data.get("due_at"),
        )
        return Response(
            item_public(result.item, use_case=use_case),
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class ItemBatchApi(APIView):
    permission_classes = [RolesAllowed]
    throttle_classes = [IngestBatchRateThrottle]
    allowed_roles = {"POST": CALLERS}

    class BatchInput(serializers.Serializer):
        items = ItemInput(many=True)

    class BatchOutput(serializers.Serializer):
        job = serializers.UUIDField()
        total = serializers.IntegerField()

    @extend_schema(
        request=BatchInput, responses={202: BatchOutput}, summary="Send up to 10,000 items"
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        data = body_fields_check(request.data, {"items"})
        job = items_batch_accept(use_case=use_case, rows=data.get("items"), actor=request.user)
        return Response({"job": str(job.pk), "total": job.total}, status=status.HTTP_202_ACCEPTED)


class ItemDetailApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": CALLERS}

    @extend_schema(responses=ItemOutput, summary="An item's state and decision")
    def get(self, request, slug, external_id):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(
            item_public(item_get(use_case=use_case, external_id=external_id), use_case=use_case)
        )


class SuggestionBody(serializers.Serializer):
    label = serializers.CharField(required=False)
    value = serializers.FloatField(required=False)
    confidence = serializers.FloatField(allow_null=True)
    probabilities = serializers.DictField(child=serializers.FloatField(), required=False)


class TaskOutput(serializers.Serializer):
    task = serializers.CharField()
    external_id = serializers.CharField()
    reason = serializers.ChoiceField(choices=["review", "audit", "double_review"])
    features = serializers.DictField()
    pii_masked = serializers.ListField(child=serializers.CharField())
    suggestion = SuggestionBody(allow_null=True)
    lease_token = serializers.UUIDField()
    lease_expires_at = serializers.DateTimeField()


class ReviewNextApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"POST": REVIEWERS}

    @extend_schema(
        request=None,
        responses={200: TaskOutput, 204: OpenApiResponse(description="Nothing is waiting")},
        summary="Claim the next review task",
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        task = review_task_claim(use_case=use_case, user=request.user)
        if task is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(
            task_public(
                task,
                use_case=use_case,
                show_pii=can_view_pii(user=request.user, use_case=use_case),
            )
        )


class DecisionInput(serializers.Serializer):
    label = serializers.CharField(required=False)
    value = serializers.FloatField(required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    lease_token = serializers.UUIDField(required=False)
    time_spent_ms = serializers.IntegerField(required=False, min_value=0)


class DecisionOutput(serializers.ModelSerializer):
    decision = serializers.IntegerField(source="pk")
    task = serializers.CharField(source="task_id")
    external_id = serializers.CharField(source="item.external_id")
    disagreement = serializers.SerializerMethodField()

    class Meta:
        model = Decision
        fields = [
            "decision",
            "task",
            "external_id",
            "label",
            "value",
            "comment",
            "kind",
            "time_spent_ms",
            "created_at",
            "disagreement",
        ]

    def get_disagreement(self, decision) -> bool:
        known = getattr(decision, "routing_disagreement", None)  # a decision just recorded
        if known is not None:
            return known
        return Disagreement.objects.filter(
            decision=decision, prediction_id=decision.item.prediction_id
        ).exists()


class DecisionApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"POST": REVIEWERS}

    @extend_schema(
        request=DecisionInput,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="Sending the same decision again with the same key returns the "
                "first answer; the same key with a different decision is refused (409). "
                "1 to 200 visible ASCII characters (400 otherwise).",
            )
        ],
        responses={
            201: DecisionOutput,
            409: OpenApiResponse(description="Already decided, or the lease was lost"),
        },
        summary="Decide a claimed task",
    )
    def post(self, request, task_id):
        task = review_task_get_for(task_id=task_id, user=request.user)
        data = body_fields_check(
            request.data, {"label", "value", "comment", "lease_token", "time_spent_ms"}
        )
        spent = data.get("time_spent_ms")
        if spent is not None and (
            not isinstance(spent, int) or isinstance(spent, bool) or spent < 0
        ):
            raise InvalidInput({"time_spent_ms": ["a non-negative whole number of milliseconds"]})
        comment = data.get("comment", "")
        if not isinstance(comment, str):
            raise InvalidInput({"comment": ["must be a string"]})
        result = review_task_decide(
            task=task,
            user=request.user,
            label=data.get("label"),
            value=data.get("value"),
            comment=comment,
            lease_token=data.get("lease_token"),
            time_spent_ms=spent,
            idempotency_key=idempotency_key_header(request),
        )
        return Response(DecisionOutput(result.decision).data, status=status.HTTP_201_CREATED)


class SkipApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"POST": REVIEWERS}

    class SkipInput(serializers.Serializer):
        lease_token = serializers.UUIDField(required=False)

    @extend_schema(request=SkipInput, responses={204: None}, summary="Give a task back")
    def post(self, request, task_id):
        task = review_task_get_for(task_id=task_id, user=request.user)
        data = body_fields_check(request.data, {"lease_token"})
        review_task_skip(task=task, user=request.user, lease_token=data.get("lease_token"))
        return Response(status=status.HTTP_204_NO_CONTENT)
