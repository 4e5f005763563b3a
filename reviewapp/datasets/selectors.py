"""Reading exports, training runs, and disagreements for the explorer."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.files.storage import storages
from django.db.models import (
    Case,
    Count,
    IntegerField,
    Max,
    Min,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)

from deployments.models import ModelVersion, UseCase
from deployments.selectors import can_view_pii
from reviewapp.core.errors import InvalidInput, NotFound
from reviewapp.datasets.export_tables import RowFilters, disagreements_filtered, rows_page
from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.reviews.models import Decision, Disagreement, Item, Prediction
from reviewapp.reviews.presenters import features_visible

PAGE_SIZE = 50
VALUE_BINS = 6


# --- exports and training runs ------------------------------------------------------------------


def exports_list(*, use_case: UseCase) -> QuerySet[Export]:
    return (
        Export.objects.filter(use_case=use_case)
        .select_related("created_by", "job", "use_case")
        .order_by("-created_at")
    )


def _uuid(raw: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise NotFound({"detail": f"No such {what}."}) from None


def export_get(*, use_case: UseCase, export_id: Any) -> Export:
    export = exports_list(use_case=use_case).filter(pk=_uuid(export_id, "export")).first()
    if export is None:
        raise NotFound({"detail": "No such export."})
    return export


def export_download_allowed(*, user, export: Export) -> bool:
    """A file holding raw PII goes only to readers who may see PII; the rest to any reader."""
    return export.pii != Export.Pii.INCLUDE or can_view_pii(user=user, use_case=export.use_case)


def export_file_open(*, export: Export):
    if export.state != Export.State.READY:
        raise NotFound({"detail": f"This export is {export.state}, not ready."})
    return storages["exports"].open(export.file_name, "rb")


def training_runs_list(*, use_case: UseCase) -> QuerySet[TrainingRun]:
    return (
        TrainingRun.objects.filter(use_case=use_case)
        .select_related(
            "created_by", "job", "export", "model_version", "base_model_version", "use_case"
        )
        .order_by("-created_at")
    )


def training_run_get(*, use_case: UseCase, run_id: Any) -> TrainingRun:
    run = training_runs_list(use_case=use_case).filter(pk=_uuid(run_id, "training run")).first()
    if run is None:
        raise NotFound({"detail": "No such training run."})
    return run


def retrain_versions(*, use_case: UseCase) -> list[ModelVersion]:
    """Versions whose pipeline can serve as a recipe (they have a model file), champion first."""
    versions = ModelVersion.objects.filter(use_case=use_case).exclude(artifact_sha256="")
    return sorted(
        versions.defer("artifact"),
        key=lambda mv: (mv.role != ModelVersion.Role.CHAMPION, -mv.pk),
    )


def datasets_overview(*, use_cases: list[UseCase]) -> list[dict[str, Any]]:
    """Per use case: disagreements, human-labelled items, ready exports, the latest run."""
    ids = [uc.pk for uc in use_cases]
    disagreements = dict(
        Disagreement.objects.filter(use_case_id__in=ids)
        .values_list("use_case_id")
        .annotate(n=Count("id"))
    )
    labelled = dict(
        Item.objects.filter(use_case_id__in=ids, decision_source=Item.Source.HUMAN)
        .values_list("use_case_id")
        .annotate(n=Count("id"))
    )
    exports = dict(
        Export.objects.filter(use_case_id__in=ids, state=Export.State.READY)
        .values_list("use_case_id")
        .annotate(n=Count("id"))
    )
    latest = TrainingRun.objects.filter(use_case_id=OuterRef("pk")).order_by("-created_at")
    latest_ids = UseCase.objects.filter(pk__in=ids).annotate(run=Subquery(latest.values("pk")[:1]))
    latest_runs = {
        run.use_case_id: run
        for run in TrainingRun.objects.filter(
            pk__in=[r for r in latest_ids.values_list("run", flat=True) if r]
        )
    }
    return [
        {
            "use_case": uc,
            "disagreements": disagreements.get(uc.pk, 0),
            "labelled": labelled.get(uc.pk, 0),
            "exports": exports.get(uc.pk, 0),
            "latest_run": latest_runs.get(uc.pk),
        }
        for uc in use_cases
    ]


# --- the explorer -------------------------------------------------------------------------------


def cursor_encode(row: Disagreement) -> str:
    return f"{row.decided_at.isoformat()}~{row.pk}"


def cursor_decode(raw: str | None) -> tuple[datetime, int] | None:
    if not raw:
        return None
    try:
        stamp, _, pk = raw.rpartition("~")
        return datetime.fromisoformat(stamp), int(pk)
    except ValueError:
        raise InvalidInput({"after": ["not a page position from this list"]}) from None


@dataclass
class DisagreementPage:
    rows: list[Disagreement]
    next_cursor: str | None
    total: int


def disagreement_page(
    *, use_case: UseCase, filters: RowFilters, after: str | None, size: int = PAGE_SIZE
) -> DisagreementPage:
    """Newest first, one page after the ``after`` cursor: a keyset page, so page 1,000 costs
    what page 1 costs (an index range scan on (use case, decided at))."""
    rows = disagreements_filtered(use_case=use_case, filters=filters)
    page, more = rows_page(
        rows=rows.select_related("item", "model_version", "reviewer").only(
            "id",
            "kind",
            "model_label",
            "model_value",
            "confidence",
            "human_label",
            "human_value",
            "decided_at",
            "item__external_id",
            "model_version__version",
            "reviewer__username",
        ),
        order=("decided_at", "id"),
        after=cursor_decode(after),
        size=size,
    )
    return DisagreementPage(
        rows=page,
        next_cursor=cursor_encode(page[-1]) if more and page else None,
        total=rows.count(),
    )


@dataclass
class MatrixCell:
    count: int
    filters: dict[str, Any]  # what clicking the cell filters by
    selected: bool = False
    level: int = 0  # 1-5, the cell's shade relative to the largest count


HEAT_LEVELS = 5


def _shade(cells: list[list[MatrixCell | None]]) -> None:
    present = [cell for line in cells for cell in line if cell]
    top = max((cell.count for cell in present), default=0)
    for cell in present:
        cell.level = max(1, -(-HEAT_LEVELS * cell.count // top))


@dataclass
class Matrix:
    """Counts of disagreements by (model answer, human answer): labels for classification,
    value bins for regression."""

    model_axis: list[str]
    human_axis: list[str]
    cells: list[list[MatrixCell | None]]
    total: int
    binned: bool = False
    row_totals: list[int] = field(default_factory=list)


def _label_matrix(use_case: UseCase, rows, filters: RowFilters) -> Matrix:
    counts = {
        (m, h): n
        for m, h, n in rows.values_list("model_label", "human_label")
        .annotate(n=Count("id"))
        .order_by()
    }
    seen = {label for pair in counts for label in pair}
    axis = list(use_case.labels) + sorted(seen - set(use_case.labels))
    cells = []
    for model_label in axis:
        line = []
        for human_label in axis:
            n = counts.get((model_label, human_label), 0)
            line.append(
                MatrixCell(
                    count=n,
                    filters={"model_label": model_label, "human_label": human_label},
                    selected=(filters.model_label, filters.human_label)
                    == (model_label, human_label),
                )
                if n
                else None
            )
        cells.append(line)
    _shade(cells)
    return Matrix(
        model_axis=axis,
        human_axis=axis,
        cells=cells,
        total=sum(counts.values()),
        row_totals=[sum(c.count for c in line if c) for line in cells],
    )


def _edges(use_case: UseCase, rows) -> list[float] | None:
    low, high = use_case.value_min, use_case.value_max
    if low is None or high is None:
        span = rows.aggregate(
            a=Min("model_value"), b=Min("human_value"), c=Max("model_value"), d=Max("human_value")
        )
        present = [v for v in span.values() if v is not None]
        if not present:
            return None
        low, high = min(present), max(present)
    if high <= low:
        high = low + 1
    step = (high - low) / VALUE_BINS
    return [low + step * i for i in range(VALUE_BINS + 1)]


def _bin(field_name: str, edges: list[float]):
    inner = edges[1:-1]
    return Case(
        *[When(**{f"{field_name}__lt": edge}, then=Value(i)) for i, edge in enumerate(inner)],
        default=Value(len(inner)),
        output_field=IntegerField(),
    )


def _bin_label(edges: list[float], i: int) -> str:
    def short(x: float) -> str:
        return f"{x:.3g}"

    if i == len(edges) - 2:
        return f"≥ {short(edges[i])}"
    if i == 0:
        return f"< {short(edges[1])}"
    return f"{short(edges[i])} – {short(edges[i + 1])}"


def _value_matrix(use_case: UseCase, rows, filters: RowFilters) -> Matrix:
    edges = _edges(use_case, rows)
    if edges is None:
        return Matrix(model_axis=[], human_axis=[], cells=[], total=0, binned=True)
    counts = {
        (m, h): n
        for m, h, n in rows.annotate(
            model_bin=_bin("model_value", edges), human_bin=_bin("human_value", edges)
        )
        .values_list("model_bin", "human_bin")
        .annotate(n=Count("id"))
        .order_by()
    }
    last = VALUE_BINS - 1

    def bounds(i: int) -> tuple[float | None, float | None]:
        return (None if i == 0 else edges[i]), (None if i == last else edges[i + 1])

    cells = []
    for m in range(VALUE_BINS):
        line = []
        for h in range(VALUE_BINS):
            n = counts.get((m, h), 0)
            m_low, m_high = bounds(m)
            h_low, h_high = bounds(h)
            wanted = {
                "model_value_min": m_low,
                "model_value_max": m_high,
                "human_value_min": h_low,
                "human_value_max": h_high,
            }
            current = {
                "model_value_min": filters.model_value_min,
                "model_value_max": filters.model_value_max,
                "human_value_min": filters.human_value_min,
                "human_value_max": filters.human_value_max,
            }
            line.append(
                MatrixCell(count=n, filters=wanted, selected=wanted == current) if n else None
            )
        cells.append(line)
    _shade(cells)
    labels = [_bin_label(edges, i) for i in range(VALUE_BINS)]
    return Matrix(
        model_axis=labels,
        human_axis=labels,
        cells=cells,
        total=sum(counts.values()),
        binned=True,
        row_totals=[sum(c.count for c in line if c) for line in cells],
    )


def disagreement_matrix(*, use_case: UseCase, filters: RowFilters) -> Matrix:
    """The matrix under every filter but the answers themselves (the cells choose those)."""
    rows = disagreements_filtered(use_case=use_case, filters=filters.without_answers())
    if use_case.is_classification:
        return _label_matrix(use_case, rows, filters)
    return _value_matrix(use_case, rows, filters)


@dataclass
class ItemHistory:
    item: Item
    features: list[dict[str, Any]]
    pii_masked: list[str]
    predictions: list[Prediction]
    decisions: list[Decision]
    disagreements: list[Disagreement]


def item_history(*, use_case: UseCase, external_id: str, user) -> ItemHistory:
    """An item with everything said about it: every model version's prediction, every human
    decision (with its comment), every disagreement. PII features are masked for readers who
    may not see them."""
    item = Item.objects.filter(use_case=use_case, external_id=external_id).first()
    if item is None:
        raise NotFound({"external_id": [f"No item {external_id!r} in {use_case.slug}."]})
    shown, masked = features_visible(
        item.features,
        use_case=use_case,
        show_pii=can_view_pii(user=user, use_case=use_case),
    )
    specs = {spec["name"]: spec for spec in use_case.features}
    features = [
        {
            "name": name,
            "value": shown.get(name),
            "masked": name in masked,
            "type": specs.get(name, {}).get("type", ""),
        }
        for name in use_case.feature_names
    ]
    return ItemHistory(
        item=item,
        features=features,
        pii_masked=masked,
        predictions=list(
            Prediction.objects.filter(item=item)
            .select_related("model_version")
            .defer("model_version__artifact")
            .order_by("created_at", "id")
        ),
        decisions=list(
            Decision.objects.filter(item=item)
            .select_related("reviewer", "task")
            .order_by("created_at", "id")
        ),
        disagreements=list(
            Disagreement.objects.filter(item=item)
            .select_related("model_version")
            .defer("model_version__artifact")
            .order_by("decided_at", "id")
        ),
    )


def explorer_choices(*, use_case: UseCase) -> dict[str, Any]:
    return {
        "model_versions": list(
            ModelVersion.objects.filter(use_case=use_case)
            .order_by("-created_at", "-id")
            .values_list("version", "role")
        ),
        "kinds": Disagreement.Kind.choices,
        "labels": use_case.labels,
    }
