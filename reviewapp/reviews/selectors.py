"""Reading items, queues and disagreements."""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from operator import itemgetter
from typing import Any

from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    CharField,
    Count,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast
from django.utils import timezone

from deployments.models import UseCase
from reviewapp.core.errors import NotFound
from reviewapp.reviews.models import Decision, Disagreement, Item, Prediction, ReviewTask


def item_get(*, use_case: UseCase, external_id: str) -> Item:
    item = (
        Item.objects.filter(use_case=use_case, external_id=external_id)
        .select_related("prediction__model_version")
        .first()
    )
    if item is None:
        raise NotFound({"external_id": [f"No item {external_id!r} in {use_case.slug}."]})
    return item


def prediction_public(prediction: Prediction | None, *, use_case: UseCase) -> dict | None:
    """The prediction as callers and reviewers see it; None for a null output."""
    if prediction is None or prediction.error:
        return None
    body: dict[str, Any] = {
        "confidence": prediction.confidence,
        "model_version": prediction.model_version.version,
    }
    if use_case.is_classification:
        body["label"] = prediction.label
    else:
        body["value"] = prediction.value
    return body


def item_public(item: Item, *, use_case: UseCase) -> dict[str, Any]:
    decision = None
    if item.decision_source:
        decision = {"source": item.decision_source}
        if use_case.is_classification:
            decision["label"] = item.decision_label
        else:
            decision["value"] = item.decision_value
    return {
        "external_id": item.external_id,
        "status": item.status,
        "route": item.route or None,
        "decision": decision,
        "prediction": prediction_public(item.prediction, use_case=use_case),
    }


def queue_stats(*, use_case: UseCase, now=None) -> dict[str, Any]:
    now = now or timezone.now()
    row = ReviewTask.objects.filter(use_case=use_case, state=ReviewTask.State.OPEN).aggregate(
        waiting=Count("id"),
        claimed=Count("id", filter=Q(lease_expires_at__gt=now)),
        oldest=Min("created_at"),
    )
    oldest = row["oldest"]
    return {
        "waiting": row["waiting"],
        "in_progress": row["claimed"],
        "oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else None,
    }


DISAGREEMENT_KINDS = [k.value for k in Disagreement.Kind]


@dataclass(frozen=True)
class RowFilters:
    """What a reader narrows disagreements (or human-labelled items) down to.

    Bounds: ``since`` and the ``*_min`` values are inclusive; ``until`` and the value
    ``*_max`` bounds are exclusive (so adjacent bins never share a row); ``confidence_max``
    is inclusive, since a confidence of exactly 1 is common.
    """

    model_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    model_label: str | None = None
    human_label: str | None = None
    confidence_min: float | None = None
    confidence_max: float | None = None
    model_value_min: float | None = None
    model_value_max: float | None = None
    human_value_min: float | None = None
    human_value_max: float | None = None

    def without_answers(self) -> "RowFilters":
        """The same filters without the label pair or value ranges (for the matrix)."""
        return replace(
            self,
            model_label=None,
            human_label=None,
            model_value_min=None,
            model_value_max=None,
            human_value_min=None,
            human_value_max=None,
        )


# Where each filter looks, per scope. Labelled items carry their routing prediction's answer
# and the kind of the disagreement it caused (annotated as ``routing_kind``).
_DISAGREEMENT_PATHS = {
    "model_version": "model_version__version",
    "decided_at": "decided_at",
    "kind": "kind",
    "model_label": "model_label",
    "human_label": "human_label",
    "confidence": "confidence",
    "model_value": "model_value",
    "human_value": "human_value",
}
_LABELLED_PATHS = {
    "model_version": "prediction__model_version__version",
    "decided_at": "decided_at",
    "kind": "routing_kind",
    "model_label": "prediction__label",
    "human_label": "decision_label",
    "confidence": "prediction__confidence",
    "model_value": "prediction__value",
    "human_value": "decision_value",
}


def _filtered(rows: QuerySet, paths: dict[str, str], filters: RowFilters) -> QuerySet:
    exact = {
        "model_version": filters.model_version,
        "kind": filters.kind,
        "model_label": filters.model_label,
        "human_label": filters.human_label,
    }
    for name, value in exact.items():
        if value:
            rows = rows.filter(**{paths[name]: value})
    bounds = [
        ("decided_at", "gte", filters.since),
        ("decided_at", "lt", filters.until),
        ("confidence", "gte", filters.confidence_min),
        ("confidence", "lte", filters.confidence_max),
        ("model_value", "gte", filters.model_value_min),
        ("model_value", "lt", filters.model_value_max),
        ("human_value", "gte", filters.human_value_min),
        ("human_value", "lt", filters.human_value_max),
    ]
    for name, lookup, value in bounds:
        if value is not None:
            rows = rows.filter(**{f"{paths[name]}__{lookup}": value})
    return rows


def disagreements_filtered(
    *,
    use_case: UseCase,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    filters: RowFilters | None = None,
) -> QuerySet[Disagreement]:
    """Disagreements in time order; ``filters`` (all of them) or the common few by name."""
    filters = filters or RowFilters(
        model_version=model_version, since=since, until=until, kind=kind
    )
    rows = _filtered(Disagreement.objects.filter(use_case=use_case), _DISAGREEMENT_PATHS, filters)
    return rows.order_by("decided_at", "id")


def labelled_items_filtered(*, use_case: UseCase, filters: RowFilters) -> QuerySet[Item]:
    """Items a human has answered, in the order they arrived, each with ``routing_kind``: the
    kind of disagreement between the human and the prediction that routed it (None if they
    agree, or no model was consulted)."""
    routing_kind = Disagreement.objects.filter(
        item_id=OuterRef("pk"), prediction_id=OuterRef("prediction_id")
    ).values("kind")[:1]
    rows = Item.objects.filter(use_case=use_case, decision_source=Item.Source.HUMAN).annotate(
        routing_kind=Subquery(routing_kind)
    )
    return _filtered(rows, _LABELLED_PATHS, filters).order_by("id")


EXPORT_META_COLUMNS = frozenset(
    {
        "external_id",
        "model_version",
        "model_label",
        "model_value",
        "confidence",
        "human_label",
        "human_value",
        "kind",
        "reviewer",
        "decided_at",
        "disagreement",
    }
)


def export_feature_columns(*, use_case: UseCase, include_pii: bool) -> dict[str, str]:
    """Feature name -> export column. A feature whose name is also a metadata column (a
    feature called ``kind``, say) is exported as ``feature_<name>`` so neither hides the other."""
    return {
        name: f"feature_{name}" if name in EXPORT_META_COLUMNS else name
        for name in use_case.feature_names
        if include_pii or name not in use_case.pii_features
    }


def disagreement_columns(*, use_case: UseCase, include_pii: bool) -> list[str]:
    return [
        column.name
        for column in _export_columns(use_case=use_case, include_pii=include_pii, labelled=False)
    ]


@dataclass(frozen=True)
class ExportColumn:
    name: str
    kind: str  # string, number, integer, boolean or timestamp
    feature: str = ""  # the feature the column holds, if it holds one
    pii: bool = False


@dataclass(frozen=True)
class ExportTable:
    """The rows of an export as one SQL query: a ``values_list`` of the columns, then the
    keyset fields it is read in order of (which ``export_row_batches`` strips)."""

    columns: tuple[ExportColumn, ...]
    rows: QuerySet
    order: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]


FEATURE_KINDS = {
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
    "category": "string",
}
_CASTS = {"number": FloatField, "integer": BigIntegerField, "boolean": BooleanField}


class IsoTimestamp(Func):
    """A UTC timestamp as ISO 8601 text, formatted by the database (no Python per row)."""

    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra):
        template = (
            "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
        )
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # Django stores SQLite date-times as UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]".
        template = "(replace(%(expressions)s, ' ', 'T') || '+00:00')"
        return self.as_sql(compiler, connection, template=template, **extra)


def _feature_value(spec: dict, base: str):
    """One feature read out of the item's JSON, typed by the database."""
    kind = FEATURE_KINDS[spec["type"]]
    if kind == "string":
        return KeyTextTransform(spec["name"], base)
    return Cast(KeyTransform(spec["name"], base), _CASTS[kind]())


def _export_columns(*, use_case: UseCase, include_pii: bool, labelled: bool) -> list[ExportColumn]:
    by_name = {spec["name"]: spec for spec in use_case.features}
    features = [
        ExportColumn(
            name=column,
            kind=FEATURE_KINDS[by_name[name]["type"]],
            feature=name,
            pii=name in use_case.pii_features,
        )
        for name, column in export_feature_columns(
            use_case=use_case, include_pii=include_pii
        ).items()
    ]
    if use_case.is_classification:
        model_answer, human_answer = "model_label", "human_label"
        answer_kind = "string"
    else:
        model_answer, human_answer = "model_value", "human_value"
        answer_kind = "number"
    columns = [
        ExportColumn("external_id", "string"),
        *features,
        ExportColumn("model_version", "string"),
        ExportColumn(model_answer, answer_kind),
        ExportColumn("confidence", "number"),
        ExportColumn(human_answer, answer_kind),
        ExportColumn("kind", "string"),
        ExportColumn("reviewer", "string"),
        ExportColumn("decided_at", "timestamp"),
    ]
    if labelled:
        columns.append(ExportColumn("disagreement", "boolean"))
    return columns


def _timestamp(path: str, timestamps: str):
    return IsoTimestamp(F(path)) if timestamps == "text" else F(path)


def disagreement_export_table(
    *,
    use_case: UseCase,
    rows: QuerySet[Disagreement],
    include_pii: bool,
    timestamps: str = "text",
) -> ExportTable:
    """One row per disagreement in ``rows``. PII features are left out here, at the source,
    unless ``include_pii``: no later writer can leak them. ``timestamps`` is "text" (ISO 8601,
    for CSV and JSON) or "native" (datetimes, for Parquet)."""
    columns = _export_columns(use_case=use_case, include_pii=include_pii, labelled=False)
    specs = {spec["name"]: spec for spec in use_case.features}
    paths = {
        "external_id": "item__external_id",
        "model_version": "model_version__version",
        "model_label": "model_label",
        "model_value": "model_value",
        "confidence": "confidence",
        "human_label": "human_label",
        "human_value": "human_value",
        "kind": "kind",
        "reviewer": "reviewer__username",
    }
    values = [
        _feature_value(specs[c.feature], "item__features")
        if c.feature
        else _timestamp("decided_at", timestamps)
        if c.name == "decided_at"
        else F(paths[c.name])
        for c in columns
    ]
    return ExportTable(
        columns=tuple(columns),
        rows=rows.order_by("decided_at", "id").values_list(*values, "decided_at", "id"),
        order=("decided_at", "id"),
    )


def labelled_export_table(
    *, use_case: UseCase, rows: QuerySet[Item], include_pii: bool, timestamps: str = "text"
) -> ExportTable:
    """One row per human-answered item: its features, the prediction that routed it, the
    first human answer, and whether the two disagree. Rows from ``labelled_items_filtered``."""
    columns = _export_columns(use_case=use_case, include_pii=include_pii, labelled=True)
    specs = {spec["name"]: spec for spec in use_case.features}
    first_reviewer = (
        Decision.objects.filter(item_id=OuterRef("pk"))
        .order_by("created_at", "id")
        .values("reviewer__username")[:1]
    )
    usable = Q(prediction__error="")
    paths = {
        "external_id": F("external_id"),
        "model_version": F("prediction__model_version__version"),
        # A null output has no answer; what the model said instead stays with the prediction.
        "model_label": Case(When(usable, then=F("prediction__label")), default=None),
        "model_value": F("prediction__value"),
        "confidence": F("prediction__confidence"),
        "human_label": F("decision_label"),
        "human_value": F("decision_value"),
        "kind": F("routing_kind"),
        "reviewer": Subquery(first_reviewer),
        "decided_at": _timestamp("decided_at", timestamps),
        "disagreement": ExpressionWrapper(
            Q(routing_kind__isnull=False), output_field=BooleanField()
        ),
    }
    values = [
        _feature_value(specs[c.feature], "features") if c.feature else paths[c.name]
        for c in columns
    ]
    return ExportTable(
        columns=tuple(columns), rows=rows.order_by("id").values_list(*values, "id"), order=("id",)
    )


def _after(rows: QuerySet, order: tuple[str, ...], last: tuple, *, descending: bool = False):
    """Rows strictly after ``last`` in ``order`` (keyset pagination). The redundant bound on
    the first field lets the database start an index range scan there."""
    beyond, reach = ("lt", "lte") if descending else ("gt", "gte")
    if len(order) == 1:
        return rows.filter(**{f"{order[0]}__{beyond}": last[0]})
    first, second = order
    return rows.filter(**{f"{first}__{reach}": last[0]}).filter(
        Q(**{f"{first}__{beyond}": last[0]}) | Q(**{f"{second}__{beyond}": last[1]})
    )


def export_row_batches(*, table: ExportTable, batch_size: int = 10_000) -> Iterator[list[tuple]]:
    """The table's rows as lists of tuples, one short keyset query per batch.

    Batches rather than one long cursor: no transaction stays open for the length of an export
    (progress written meanwhile is visible, vacuum is not held back, SQLite writers are not
    blocked), and each query is an index range scan from where the last one stopped.
    """
    width = len(table.columns)
    strip = itemgetter(*range(width))
    last = None
    while True:
        rows = table.rows if last is None else _after(table.rows, table.order, last)
        batch = list(rows[:batch_size])
        if not batch:
            return
        yield list(map(strip, batch))
        if len(batch) < batch_size:
            return
        last = batch[-1][width:]


def rows_page(
    *, rows: QuerySet, order: tuple[str, ...], after: tuple | None, size: int
) -> tuple[list, bool]:
    """One page of ``rows``, newest first by ``order``, after the keyset ``after``; and
    whether more rows follow."""
    if after is not None:
        rows = _after(rows, order, after, descending=True)
    page = list(rows.order_by(*(f"-{field}" for field in order))[: size + 1])
    return page[:size], len(page) > size
