"""REST API for what the datasets pages do: exports (start, list, read, download, delete),
retraining (start, list, read), and the explorer's matrix and item history; and the
disagreements streamed straight to the caller."""

from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments.output_schema import TrainingMetricsField
from deployments.selectors import can_view_pii, use_case_get_for
from reviewapp.core.api import (
    ANALYSTS,
    FileAnswerNegotiation,
    MomentOrBlankField,
    NumberField,
    RolesAllowed,
    TextField,
    attachment_header,
    body_fields_check,
    choice_param,
    params_not_empty,
    response_header,
    window_params,
)
from reviewapp.core.errors import InvalidInput, raise_for_serializer
from reviewapp.datasets.export_formats import FORMATS
from reviewapp.datasets.export_tables import (
    DISAGREEMENT_KINDS,
    disagreement_stream,
    disagreements_filtered,
    stream_ended_clearly,
)
from reviewapp.datasets.filters import FILTER_NAMES, filters_clean
from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.datasets.selectors import (
    disagreement_matrix,
    export_download_allowed,
    export_file_open,
    export_get,
    exports_list,
    item_history,
    training_run_get,
    training_runs_list,
)
from reviewapp.datasets.services.exports import export_delete, export_start
from reviewapp.datasets.services.retraining import HOLDOUT_DEFAULT, training_run_start

LIST_LIMIT = 100

FILTER_PARAMETERS = [
    OpenApiParameter("model_version", str),
    OpenApiParameter("kind", str, enum=DISAGREEMENT_KINDS),
    OpenApiParameter("since", OpenApiTypes.DATETIME),
    OpenApiParameter("until", OpenApiTypes.DATETIME),
    OpenApiParameter("model_label", str),
    OpenApiParameter("human_label", str),
    OpenApiParameter("confidence_min", float),
    OpenApiParameter("confidence_max", float),
    OpenApiParameter("model_value_min", float),
    OpenApiParameter("model_value_max", float),
    OpenApiParameter("human_value_min", float),
    OpenApiParameter("human_value_max", float),
]
# The filter parameters that have no empty value (an enum, numbers); the pages' filter forms
# send empty fields, the API's callers leave a parameter out.
FILTER_PARAMETERS_NOT_EMPTY = [
    parameter.name for parameter in FILTER_PARAMETERS if parameter.enum or parameter.type is float
]


class ExportFilters(serializers.Serializer):
    """The row filters an export takes, each optional (null, empty or left out: no filter).
    A body's filters are checked against these types first, then by ``filters_clean``, which
    names every value the use case does not have."""

    model_version = TextField(required=False, allow_null=True, allow_blank=True, max_length=200)
    kind = serializers.ChoiceField(
        choices=DISAGREEMENT_KINDS, required=False, allow_null=True, allow_blank=True
    )
    since = MomentOrBlankField(
        required=False, allow_null=True, allow_blank=True, help_text="Decided on or after."
    )
    until = MomentOrBlankField(
        required=False, allow_null=True, allow_blank=True, help_text="Decided before."
    )
    model_label = TextField(required=False, allow_null=True, allow_blank=True, max_length=200)
    human_label = TextField(required=False, allow_null=True, allow_blank=True, max_length=200)
    confidence_min = NumberField(required=False, allow_null=True, min_value=0, max_value=1)
    confidence_max = NumberField(required=False, allow_null=True, min_value=0, max_value=1)
    model_value_min = NumberField(required=False, allow_null=True)
    model_value_max = NumberField(required=False, allow_null=True)
    human_value_min = NumberField(required=False, allow_null=True)
    human_value_max = NumberField(required=False, allow_null=True)


@extend_schema_field(ExportFilters)
class ExportFiltersField(serializers.DictField):
    """Checked by ``filters_clean``; declared with its keys."""


class _ManifestUseCase(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    task_type = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())


class _ManifestPii(serializers.Serializer):
    mode = serializers.ChoiceField(choices=Export.Pii.choices)
    features = serializers.ListField(child=serializers.CharField())
    algorithm = serializers.CharField(required=False, help_text="Hashed exports only.")
    key_id = serializers.CharField(required=False, help_text="Hashed exports only.")


class _ManifestSpan(serializers.Serializer):
    first = serializers.DateTimeField(allow_null=True)
    last = serializers.DateTimeField(allow_null=True)


class _ManifestColumn(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    feature = serializers.CharField(required=False)
    pii = serializers.CharField(required=False)


class _ManifestModelVersion(serializers.Serializer):
    version = serializers.CharField()
    rows = serializers.IntegerField()
    role = serializers.CharField(allow_null=True)
    source = serializers.CharField(allow_null=True)
    artifact_sha256 = serializers.CharField(allow_null=True)


class _ManifestFile(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class ExportManifest(serializers.Serializer):
    """What the file holds and where it came from; empty until the export is ready."""

    export = serializers.UUIDField(required=False)
    use_case = _ManifestUseCase(required=False)
    scope = serializers.ChoiceField(choices=Export.Scope.choices, required=False)
    format = serializers.CharField(required=False)
    filters = ExportFilters(required=False)
    order = serializers.ListField(child=serializers.CharField(), required=False)
    pii = _ManifestPii(required=False)
    row_count = serializers.IntegerField(required=False)
    rows_without_model = serializers.IntegerField(required=False)
    decided_at = _ManifestSpan(required=False)
    schema = _ManifestColumn(many=True, required=False, help_text="The file's columns.")
    model_versions = _ManifestModelVersion(many=True, required=False)
    created_by = serializers.CharField(required=False)
    created_at = serializers.DateTimeField(required=False)
    finished_at = serializers.DateTimeField(required=False)
    file = _ManifestFile(required=False)


@extend_schema_field(ExportManifest)
class ExportManifestField(serializers.JSONField):
    """An export's manifest as stored; declared with its keys."""


class ProgressOutput(serializers.Serializer):
    state = serializers.CharField()
    done = serializers.IntegerField()
    total = serializers.IntegerField()


def _progress(job) -> dict | None:
    if job is None:
        return None
    return {"state": job.state, "done": job.done, "total": job.total}


class ExportOutput(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="author", read_only=True, help_text="A username, or the command line's name."
    )
    job = serializers.UUIDField(source="job_id", allow_null=True)
    progress = serializers.SerializerMethodField()
    download = serializers.SerializerMethodField()
    filters = ExportFiltersField(read_only=True)
    manifest = ExportManifestField(read_only=True)

    class Meta:
        model = Export
        fields = [
            "id",
            "scope",
            "format",
            "pii",
            "filters",
            "state",
            "row_count",
            "size_bytes",
            "sha256",
            "manifest",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "job",
            "progress",
            "download",
        ]

    def get_progress(self, export) -> ProgressOutput(allow_null=True):
        return _progress(export.job)

    def get_download(self, export) -> str | None:
        if export.state != Export.State.READY:
            return None
        return f"/api/v1/use-cases/{export.use_case.slug}/exports/{export.pk}/download/"


class ExportListApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS, "POST": ANALYSTS}

    class ExportInput(serializers.Serializer):
        format = serializers.ChoiceField(choices=list(FORMATS), default="csv")
        scope = serializers.ChoiceField(
            choices=Export.Scope.choices,
            default=Export.Scope.DISAGREEMENTS,
            help_text="disagreements, or labelled: every human-labelled item with a "
            "disagreement column.",
        )
        pii = serializers.ChoiceField(
            choices=Export.Pii.choices,
            default=Export.Pii.OMIT,
            help_text="omit PII features, hash them (HMAC-SHA256 under a server key, so "
            "exports join on them), or include them (only with the PII right).",
        )
        filters = ExportFiltersField(required=False, default=dict)

    @extend_schema(
        responses=ExportOutput(many=True),
        summary=f"Exports of the use case, newest first (the latest {LIST_LIMIT})",
    )
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(ExportOutput(exports_list(use_case=use_case)[:LIST_LIMIT], many=True).data)

    @extend_schema(
        request=ExportInput,
        responses={202: ExportOutput},
        summary="Start an export (written by a worker; follow its job or poll it)",
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        body_fields_check(request.data, set(self.ExportInput().fields))
        serializer = self.ExportInput(data=request.data)
        raise_for_serializer(serializer)
        data = serializer.validated_data
        unknown = sorted(set(data["filters"]) - set(FILTER_NAMES))
        if unknown:
            raise InvalidInput({"filters": {name: ["unknown filter"] for name in unknown}})
        typed = ExportFilters(data=data["filters"])
        if not typed.is_valid():
            raise InvalidInput({"filters": typed.errors})
        try:
            filters = filters_clean(use_case=use_case, raw=data["filters"])
        except InvalidInput as exc:
            raise InvalidInput({"filters": exc.detail}) from exc
        export = export_start(
            use_case=use_case,
            actor=request.user,
            fmt=data["format"],
            scope=data["scope"],
            pii=data["pii"],
            filters=filters,
        )
        export.refresh_from_db()
        return Response(ExportOutput(export).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS, "DELETE": ANALYSTS}

    @extend_schema(responses=ExportOutput, summary="An export: its state, progress and manifest")
    def get(self, request, slug, export_id):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(ExportOutput(export_get(use_case=use_case, export_id=export_id)).data)

    @extend_schema(
        responses={
            204: None,
            409: OpenApiResponse(description="A training run used it, or it is being written"),
        },
        parameters=[
            OpenApiParameter(
                "reason",
                str,
                description="Why (optional; also accepted as a JSON body field), kept in the log",
            )
        ],
        summary="Delete an export's file and record",
    )
    def delete(self, request, slug, export_id):
        use_case = use_case_get_for(user=request.user, slug=slug)
        body = request.data if isinstance(request.data, dict) else {}
        reason = body.get("reason") or request.query_params.get("reason") or ""
        if not isinstance(reason, str):
            raise InvalidInput({"reason": ["must be a string"]})
        export_delete(
            export=export_get(use_case=use_case, export_id=export_id),
            actor=request.user,
            reason=reason.strip()[:2000],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _file_responses() -> dict:
    """The 200 of a file in any export format, by media type alone (no charset): CSV and JSONL
    are text, Parquet is bytes. Declared so because generated clients read a ``text/*`` body
    as text whatever its schema says (openapi-python-client fails on a binary ``text/csv``):
    CSV, the default and first, arrives as a string; any format's bytes are the raw body."""
    return {
        (200, content_type.split(";")[0]): (
            OpenApiTypes.BINARY if kind == "parquet" else OpenApiTypes.STR
        )
        for kind, (content_type, _) in FORMATS.items()
    }


class ExportDownloadApi(FileAnswerNegotiation, APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        parameters=[
            response_header("X-Content-SHA256", "The file's SHA-256 in hex, as in the manifest."),
            attachment_header("<the export's file name>"),
        ],
        responses={
            **_file_responses(),
            403: OpenApiResponse(description="The file holds PII, which you may not see"),
            404: OpenApiResponse(description="No such export, or not ready"),
        },
        summary="Download an export's file (its SHA-256 is in the manifest)",
    )
    def get(self, request, slug, export_id):
        use_case = use_case_get_for(user=request.user, slug=slug)
        export = export_get(use_case=use_case, export_id=export_id)
        if not export_download_allowed(user=request.user, export=export):
            raise PermissionDenied("This export holds PII, which you may not see.")
        response = FileResponse(
            export_file_open(export=export),
            as_attachment=True,
            filename=export.download_name,
            content_type=FORMATS[export.format][0],
        )
        response["X-Content-SHA256"] = export.sha256
        return response


class ModelVersionRef(serializers.Serializer):
    version = serializers.CharField()
    role = serializers.CharField()


class TrainingRunOutput(serializers.ModelSerializer):
    base_version = serializers.CharField(source="base_model_version.version")
    model_version = serializers.SerializerMethodField()
    export = serializers.UUIDField(source="export_id", allow_null=True)
    created_by = serializers.StringRelatedField(allow_null=True)
    job = serializers.UUIDField(source="job_id", allow_null=True)
    progress = serializers.SerializerMethodField()
    metrics = TrainingMetricsField(read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "state",
            "base_version",
            "holdout_fraction",
            "version",
            "model_version",
            "export",
            "metrics",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "job",
            "progress",
        ]

    def get_model_version(self, run) -> ModelVersionRef(allow_null=True):
        if run.model_version is None:
            return None
        return {"version": run.model_version.version, "role": run.model_version.role}

    def get_progress(self, run) -> ProgressOutput(allow_null=True):
        return _progress(run.job)


class TrainingRunListApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS, "POST": ANALYSTS}

    class RetrainInput(serializers.Serializer):
        base_version = TextField(
            required=False,
            allow_blank=True,
            help_text="The version whose pipeline is fitted afresh; the champion by default.",
        )
        holdout_fraction = NumberField(
            required=False,
            default=HOLDOUT_DEFAULT,
            help_text="The latest share of labelled items, by decision time, held out to "
            "evaluate (0.05 to 0.5).",
        )
        version = TextField(required=False, allow_blank=True, help_text="The new version's name.")

    @extend_schema(responses=TrainingRunOutput(many=True), summary="Retraining runs, newest first")
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        runs = training_runs_list(use_case=use_case)[:LIST_LIMIT]
        return Response(TrainingRunOutput(runs, many=True).data)

    @extend_schema(
        request=RetrainInput,
        responses={202: TrainingRunOutput},
        summary="Retrain on the human labels into a challenger (runs on a worker)",
    )
    def post(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        body_fields_check(request.data, set(self.RetrainInput().fields))
        serializer = self.RetrainInput(data=request.data)
        raise_for_serializer(serializer)
        data = serializer.validated_data
        run = training_run_start(
            use_case=use_case,
            actor=request.user,
            base_version=data.get("base_version") or None,
            holdout_fraction=data["holdout_fraction"],
            version=data.get("version") or None,
        )
        run = training_run_get(use_case=use_case, run_id=run.pk)
        return Response(TrainingRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        responses=TrainingRunOutput,
        summary="A retraining run: progress, then the new version and its held-out metrics",
    )
    def get(self, request, slug, run_id):
        use_case = use_case_get_for(user=request.user, slug=slug)
        return Response(TrainingRunOutput(training_run_get(use_case=use_case, run_id=run_id)).data)


class MatrixOutput(serializers.Serializer):
    binned = serializers.BooleanField(help_text="True for regression: axes are value bins.")
    model_axis = serializers.ListField(child=serializers.CharField())
    human_axis = serializers.ListField(child=serializers.CharField())
    counts = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="counts[i][j]: the model said model_axis[i], the human human_axis[j].",
    )
    filters = serializers.ListField(
        child=serializers.ListField(child=serializers.DictField(allow_null=True)),
        help_text="The filters that select each cell's disagreements (null when empty).",
    )
    total = serializers.IntegerField()


class DisagreementMatrixApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        parameters=FILTER_PARAMETERS,
        responses=MatrixOutput,
        summary="Disagreement counts by model answer × human answer",
    )
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        params_not_empty(request.query_params, FILTER_PARAMETERS_NOT_EMPTY)
        filters = filters_clean(use_case=use_case, raw=request.query_params)
        matrix = disagreement_matrix(use_case=use_case, filters=filters)
        return Response(
            {
                "binned": matrix.binned,
                "model_axis": matrix.model_axis,
                "human_axis": matrix.human_axis,
                "counts": [[c.count if c else 0 for c in line] for line in matrix.cells],
                "filters": [[c.filters if c else None for c in line] for line in matrix.cells],
                "total": matrix.total,
            }
        )


class _HistoryPrediction(serializers.Serializer):
    model_version = serializers.CharField()
    role = serializers.CharField()
    routed = serializers.BooleanField(help_text="The prediction the item was routed on")
    label = serializers.CharField(allow_null=True)
    value = serializers.FloatField(allow_null=True)
    confidence = serializers.FloatField(allow_null=True)
    probabilities = serializers.DictField(child=serializers.FloatField(), allow_null=True)
    error = serializers.CharField(allow_null=True, help_text="Why the output is null")
    created_at = serializers.DateTimeField()


class _HistoryDecision(serializers.Serializer):
    reviewer = serializers.CharField()
    kind = serializers.CharField()
    reason = serializers.CharField(help_text="Why the task was made (assisted, blind, audit...)")
    label = serializers.CharField(allow_null=True)
    value = serializers.FloatField(allow_null=True)
    comment = serializers.CharField(allow_blank=True)
    time_spent_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class _HistoryDisagreement(serializers.Serializer):
    kind = serializers.CharField()
    model_version = serializers.CharField()
    model_label = serializers.CharField(allow_null=True)
    model_value = serializers.FloatField(allow_null=True)
    human_label = serializers.CharField(allow_null=True)
    human_value = serializers.FloatField(allow_null=True)
    decided_at = serializers.DateTimeField()


class ItemHistoryOutput(serializers.Serializer):
    """The response's shape, for the schema (the view builds it from the history)."""

    external_id = serializers.CharField()
    status = serializers.CharField()
    route = serializers.CharField(allow_null=True)
    received_at = serializers.DateTimeField()
    features = serializers.DictField(help_text="The use case's features; PII masked as null")
    pii_masked = serializers.ListField(child=serializers.CharField())
    predictions = _HistoryPrediction(many=True)
    decisions = _HistoryDecision(many=True)
    disagreements = _HistoryDisagreement(many=True)


class ItemHistoryApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        responses=ItemHistoryOutput,
        summary="An item with every prediction, human decision (and comment) and disagreement",
    )
    def get(self, request, slug, external_id):
        use_case = use_case_get_for(user=request.user, slug=slug)
        history = item_history(use_case=use_case, external_id=external_id, user=request.user)
        item = history.item
        return Response(
            {
                "external_id": item.external_id,
                "status": item.status,
                "route": item.route or None,
                "received_at": item.received_at,
                "features": {f["name"]: f["value"] for f in history.features},
                "pii_masked": history.pii_masked,
                "predictions": [
                    {
                        "model_version": p.model_version.version,
                        "role": p.model_version.role,
                        "routed": p.pk == item.prediction_id,
                        "label": p.label or None,
                        "value": p.value,
                        "confidence": p.confidence,
                        "probabilities": p.probabilities,
                        "error": p.error or None,
                        "created_at": p.created_at,
                    }
                    for p in history.predictions
                ],
                "decisions": [
                    {
                        "reviewer": d.reviewer.username,
                        "kind": d.kind,
                        "reason": d.task.reason,
                        "label": d.label or None,
                        "value": d.value,
                        "comment": d.comment,
                        "time_spent_ms": d.time_spent_ms,
                        "created_at": d.created_at,
                    }
                    for d in history.decisions
                ],
                "disagreements": [
                    {
                        "kind": x.kind,
                        "model_version": x.model_version.version,
                        "model_label": x.model_label or None,
                        "model_value": x.model_value,
                        "human_label": x.human_label or None,
                        "human_value": x.human_value,
                        "decided_at": x.decided_at,
                    }
                    for x in history.disagreements
                ],
            }
        )


class DisagreementExportApi(FileAnswerNegotiation, APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS), default="csv"),
            OpenApiParameter("model_version", str),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("kind", str, enum=DISAGREEMENT_KINDS),
            attachment_header("<use case>-disagreements.<csv|jsonl|parquet>"),
        ],
        responses=_file_responses(),
        summary="Stream the disagreements (CSV, JSONL or Parquet)",
    )
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        params = request.query_params
        fmt = choice_param(params, "format", list(FORMATS), default="csv")
        since, until = window_params(params)
        rows = disagreements_filtered(
            use_case=use_case,
            model_version=params.get("model_version") or None,
            since=since,
            until=until,
            kind=choice_param(params, "kind", DISAGREEMENT_KINDS),
        )
        content_type, extension = FORMATS[fmt]
        chunks = disagreement_stream(
            use_case=use_case,
            rows=rows,
            fmt=fmt,
            include_pii=can_view_pii(user=request.user, use_case=use_case),
        )
        response = StreamingHttpResponse(
            stream_ended_clearly(chunks, fmt=fmt), content_type=content_type
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{use_case.slug}-disagreements.{extension}"'
        )
        return response
