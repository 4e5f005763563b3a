"""REST API for a job's state and progress (imports, exports, backtests, retraining)."""

import uuid

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewapp.core.api import EVERYONE, RolesAllowed
from reviewapp.core.errors import NotFound
from reviewapp.core.models import Job
from reviewapp.core.roles import Role, has_role


def job_get_for(*, job_id, user) -> Job | None:
    """The job if it belongs to a use case the user may see: admins see every use case, everyone
    else the use cases they are members of (the rule of ``use_cases_visible_to``, written as a
    lookup because core imports no app)."""
    if not user.is_authenticated:
        return None
    jobs = Job.objects.filter(pk=job_id, use_case__isnull=False)
    if not has_role(user, Role.ADMIN):
        jobs = jobs.filter(use_case__memberships__user=user)
    return jobs.select_related("use_case").first()


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "description": "What the job produced, by kind; empty until it is done. export: "
        "export, rows, sha256, size. retrain: training_run, model_version, export, "
        "challenger, champion (their held-out metrics). backtest: the backtest's result "
        "(GET …/backtests/{job}/ declares its keys). batch_ingest: empty; the items say "
        "how each was scored.",
    }
)
class JobResultField(serializers.JSONField):
    """A job's result as stored. Each kind has its own keys."""


class JobOutput(serializers.ModelSerializer):
    use_case = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    result = JobResultField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "use_case",
            "state",
            "done",
            "total",
            "result",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class JobDetailApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE}

    @extend_schema(responses=JobOutput, summary="A job's state and progress")
    def get(self, request, job_id):
        try:
            job_id = uuid.UUID(str(job_id))
        except ValueError:
            raise NotFound({"detail": "No such job."}) from None
        job = job_get_for(job_id=job_id, user=request.user)
        if job is None:
            raise NotFound({"detail": "No such job."})
        return Response(JobOutput(job).data)
