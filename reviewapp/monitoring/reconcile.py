"""Reconciliation: every figure the dashboards read, recomputed from the raw rows and compared.

The rollups are built by folding facts one at a time (see ``aggregation``); this module counts
the same things a second, independent way — one grouped SQL aggregate per source table over the
period — so a lost, doubled or tampered fold shows up as a difference.

``FIGURES`` is the declarative list: a rollup field, the raw rows it counts (a ``Source``) and
the aggregate over them. A counter added to the rollups needs one line here;
``tests/monitoring/test_reconcile`` fails until every counter in ``HOURLY_COUNTERS`` has it.
Count maps (histograms, confusion, outputs) are left out: their totals are the counters.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import (
    Count,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Abs
from django.db.models.lookups import LessThanOrEqual

from deployments.ml.latency import LATENCY_BUDGET_EXCEEDED
from deployments.models import ModelVersion, UseCase
from deployments.policy import Route, TaskReason
from reviewapp.monitoring.models import HourlyRollup, RollupEvent
from reviewapp.monitoring.selectors import Window
from reviewapp.reviews.models import Decision, Item, Prediction, ReviewTask

GroupKey = tuple[int | None, bool]  # (model version id, shadow)


def _between(rows: QuerySet, path: str, window: Window) -> QuerySet:
    if window.since is not None:
        rows = rows.filter(**{f"{path}__gte": window.since})
    if window.until is not None:
        rows = rows.filter(**{f"{path}__lt": window.until})
    return rows


def _first_decision(item_path: str) -> QuerySet:
    return Decision.objects.filter(item=OuterRef(item_path)).order_by("id")


def _with_first_answer(rows: QuerySet, item_path: str) -> QuerySet:
    """Annotate the item's first human answer (the one the rollups score models against)."""
    first = _first_decision(item_path)
    return rows.annotate(
        first_id=Subquery(first.values("id")[:1]),
        first_label=Subquery(first.values("label")[:1]),
        first_value=Subquery(first.values("value")[:1]),
        first_shown=Subquery(first.values("task__show_suggestion")[:1]),
        first_reason=Subquery(first.values("task__reason")[:1]),
    ).filter(first_id__isnull=False)


def _routing(prediction_path: str) -> Exists:
    """The prediction routed its item (others are challengers' predictions in shadow)."""
    return Exists(Item.objects.filter(prediction_id=OuterRef(prediction_path)))


@dataclass(frozen=True)
class Source:
    """Raw rows of one use case and period, and where their rollup row's keys come from.

    ``rows(use_case, window)`` filters by the time axis the rollups use for these facts;
    ``version`` is the path of the model version id; ``shadow`` says which rows hold them."""

    name: str
    rows: Callable[[UseCase, Window], QuerySet]
    version: str
    shadow: bool


ITEMS = Source(
    "routed items (by received hour)",
    lambda uc, w: _between(
        Item.objects.filter(use_case=uc).exclude(route=""), "received_at", w
    ).annotate(decided=Exists(Decision.objects.filter(item=OuterRef("pk")))),
    "prediction__model_version_id",
    False,
)
TASKS = Source(
    "review tasks (by their item's routing hour)",
    lambda uc, w: _between(
        ReviewTask.objects.filter(use_case=uc).exclude(item__route=""), "item__routed_at", w
    ),
    "item__prediction__model_version_id",
    False,
)
DECISIONS = Source(
    "decisions (by decision hour)",
    lambda uc, w: _between(Decision.objects.filter(use_case=uc), "created_at", w),
    "item__prediction__model_version_id",
    False,
)
ROUTING_PAIRS = Source(
    "routing predictions against the first human answer (by received hour)",
    lambda uc, w: _with_first_answer(
        _between(
            Item.objects.filter(use_case=uc, prediction__isnull=False, prediction__error=""),
            "received_at",
            w,
        ),
        "pk",
    ),
    "prediction__model_version_id",
    False,
)
SHADOW_PREDICTIONS = Source(
    "challenger predictions in shadow (by received hour)",
    lambda uc, w: _between(
        Prediction.objects.filter(use_case=uc).exclude(_routing("pk")), "item__received_at", w
    ),
    "model_version_id",
    True,
)
SHADOW_PAIRS = Source(
    "challenger predictions against the first human answer (by received hour)",
    lambda uc, w: _with_first_answer(
        _between(
            Prediction.objects.filter(use_case=uc, error="").exclude(_routing("pk")),
            "item__received_at",
            w,
        ),
        "item",
    ),
    "model_version_id",
    True,
)
SECOND_OPINIONS = Source(
    "double reviews: later decisions beside the first (by received hour)",
    lambda uc, w: (
        _with_first_answer(
            _between(Decision.objects.filter(use_case=uc), "item__received_at", w), "item"
        )
        .exclude(id=F("first_id"))
        .filter(Q(task__reason=TaskReason.DOUBLE_REVIEW) | Q(first_reason=TaskReason.DOUBLE_REVIEW))
    ),
    "item__prediction__model_version_id",
    False,
)


def _agrees(use_case: UseCase, label: str, value: str, other_label: str, other_value: str):
    """The rollups' "same answer": equal labels, or values within the use case's tolerance
    (a missing value never counts as a disagreement)."""
    if use_case.is_classification:
        return Q(**{label: F(other_label)})
    return (
        Q(**{f"{value}__isnull": True})
        | Q(**{f"{other_value}__isnull": True})
        | Q(LessThanOrEqual(Abs(F(value) - F(other_value)), use_case.tolerance or 0.0))
    )


def _error(value: str, other: str, *, absolute=False, squared=False, fourth=False):
    diff = F(value) - F(other)
    if fourth:
        return Sum(diff * diff * diff * diff, output_field=FloatField())
    if squared:
        return Sum(diff * diff, output_field=FloatField())
    return Sum(Abs(diff) if absolute else diff, output_field=FloatField())


def _regression(figure):
    """Error sums exist for regression only; a classifier's stay 0 (None: not recounted)."""
    return lambda uc: None if uc.is_classification else figure(uc)


def _audited() -> Q:
    return Q(item__prediction__isnull=False, item__prediction__error="")


@dataclass(frozen=True)
class Figure:
    """A rollup counter and how to recount it from ``source``'s rows."""

    name: str
    source: Source
    aggregate: Callable[[UseCase], Any]  # None when the figure does not apply to the use case


def _routes() -> list[Figure]:
    return [
        Figure(f"route_{r.value}", ITEMS, lambda uc, r=r: Count("id", filter=Q(route=r.value)))
        for r in Route
    ]


def _decision_kinds() -> list[Figure]:
    return [
        Figure(f"decisions_{k}", DECISIONS, lambda uc, k=k: Count("id", filter=Q(kind=k)))
        for k in Decision.Kind.values
    ]


def _predictions(source: Source, path: str) -> list[Figure]:
    """What a prediction adds to its row, wherever ``path`` leads to it."""
    p = f"{path}__" if path else ""
    made = Q(**{f"{p}id__isnull": False}) if path else Q()
    return [
        Figure("predictions", source, lambda uc: Count(f"{p}id")),
        Figure(
            "null_outputs", source, lambda uc: Count("id", filter=made & ~Q(**{f"{p}error": ""}))
        ),
        Figure(
            "budget_timeouts",
            source,
            lambda uc: Count(
                "id", filter=made & Q(**{f"{p}error__startswith": LATENCY_BUDGET_EXCEEDED})
            ),
        ),
        Figure("latency_count", source, lambda uc: Count(f"{p}latency_ms")),
        Figure("latency_sum_ms", source, lambda uc: Sum(f"{p}latency_ms")),
    ]


def _pairs(source: Source, path: str, *, blind_always: bool) -> list[Figure]:
    """A usable prediction (at ``path``) against the item's first human answer."""
    p = f"{path}__" if path else ""
    blind = Q() if blind_always else Q(first_shown=False)

    def agree(uc):
        return _agrees(uc, f"{p}label", f"{p}value", "first_label", "first_value")

    return [
        Figure("labelled", source, lambda uc: Count("id")),
        Figure("agree", source, lambda uc: Count("id", filter=agree(uc))),
        Figure("labelled_blind", source, lambda uc: Count("id", filter=blind)),
        Figure("agree_blind", source, lambda uc: Count("id", filter=blind & agree(uc))),
        Figure("error_sum", source, _regression(lambda uc: _error(f"{p}value", "first_value"))),
        Figure(
            "abs_error_sum",
            source,
            _regression(lambda uc: _error(f"{p}value", "first_value", absolute=True)),
        ),
        Figure(
            "sq_error_sum",
            source,
            _regression(lambda uc: _error(f"{p}value", "first_value", squared=True)),
        ),
        Figure(
            "quad_error_sum",
            source,
            _regression(lambda uc: _error(f"{p}value", "first_value", fourth=True)),
        ),
    ]


def _automated_pairs() -> list[Figure]:
    """The automated items' stratum of the routing pairs: labelled only through audits."""
    automated = Q(route=Route.AUTO)

    def agree(uc):
        return _agrees(uc, "prediction__label", "prediction__value", "first_label", "first_value")

    return [
        Figure("audited", ROUTING_PAIRS, lambda uc: Count("id", filter=automated)),
        Figure(
            "audited_agree", ROUTING_PAIRS, lambda uc: Count("id", filter=automated & agree(uc))
        ),
    ]


FIGURES: list[Figure] = [
    Figure("items_routed", ITEMS, lambda uc: Count("id")),
    *_routes(),
    Figure("reviewed_items", ITEMS, lambda uc: Count("id", filter=~Q(route=Route.AUTO))),
    Figure(
        "reviewed_items_decided",
        ITEMS,
        lambda uc: Count("id", filter=~Q(route=Route.AUTO) & Q(decided=True)),
    ),
    Figure("tasks_created", TASKS, lambda uc: Count("id")),
    *_predictions(ITEMS, "prediction"),
    *_predictions(SHADOW_PREDICTIONS, ""),
    Figure("decisions", DECISIONS, lambda uc: Count("id")),
    *_decision_kinds(),
    Figure("review_time_count", DECISIONS, lambda uc: Count("time_spent_ms")),
    Figure("review_time_sum_ms", DECISIONS, lambda uc: Sum("time_spent_ms")),
    Figure(
        "audits",
        DECISIONS,
        lambda uc: Count("id", filter=Q(task__reason=TaskReason.AUDIT) & _audited()),
    ),
    Figure(
        "audit_errors",
        DECISIONS,
        lambda uc: Count(
            "id",
            filter=Q(task__reason=TaskReason.AUDIT)
            & _audited()
            & ~_agrees(uc, "item__prediction__label", "item__prediction__value", "label", "value"),
        ),
    ),
    *_pairs(ROUTING_PAIRS, "prediction", blind_always=False),
    *_pairs(SHADOW_PAIRS, "", blind_always=True),
    *_automated_pairs(),
    Figure("double_reviewed", SECOND_OPINIONS, lambda uc: Count("id")),
    Figure(
        "double_agree",
        SECOND_OPINIONS,
        lambda uc: Count("id", filter=_agrees(uc, "label", "value", "first_label", "first_value")),
    ),
    Figure(
        "double_abs_error_sum",
        SECOND_OPINIONS,
        _regression(lambda uc: _error("value", "first_value", absolute=True)),
    ),
    Figure(
        "double_sq_error_sum",
        SECOND_OPINIONS,
        _regression(lambda uc: _error("value", "first_value", squared=True)),
    ),
]


@dataclass(frozen=True)
class Mismatch:
    use_case: str
    model_version: str  # "-" for items no model scored
    shadow: bool
    figure: str
    dashboard: float
    recomputed: float


@dataclass(frozen=True)
class Reconciliation:
    window: Window
    use_cases: int
    figures_checked: int
    pending_events: int  # facts recorded but not folded yet: the rollups lag them
    mismatches: list[Mismatch]
    # Use cases whose older history is archived: (slug, the moment their check starts).
    archived: list[tuple[str, datetime]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def _recount(use_case: UseCase, window: Window) -> dict[tuple[GroupKey, str], float]:
    by_source: dict[Source, list[Figure]] = {}
    for figure in FIGURES:
        by_source.setdefault(figure.source, []).append(figure)
    out: dict[tuple[GroupKey, str], float] = {}
    for source, figures in by_source.items():
        aggregates = {
            f"f_{i}": aggregate
            for i, figure in enumerate(figures)
            if (aggregate := figure.aggregate(use_case)) is not None
        }
        grouped = (
            source.rows(use_case, window)
            .order_by()
            .values(version_id=F(source.version))
            .annotate(**aggregates)
        )
        for row in grouped:
            key = (row["version_id"], source.shadow)
            for i, figure in enumerate(figures):
                if f"f_{i}" not in row:
                    continue
                value = float(row[f"f_{i}"] or 0)
                out[(key, figure.name)] = out.get((key, figure.name), 0.0) + value
    return out


def _dashboard(use_case: UseCase, window: Window) -> dict[tuple[GroupKey, str], float]:
    names = sorted({figure.name for figure in FIGURES})
    rows = window.filter(HourlyRollup.objects.filter(use_case=use_case))
    grouped = (
        rows.order_by()
        .values("model_version_id", "shadow")
        .annotate(**{f"f_{name}": Sum(name) for name in names})
    )
    return {
        ((row["model_version_id"], row["shadow"]), name): float(row[f"f_{name}"] or 0)
        for row in grouped
        for name in names
    }


def metrics_reconcile(
    *,
    use_cases: QuerySet | list[UseCase],
    since: datetime | None = None,
    until: datetime | None = None,
) -> Reconciliation:
    """Compare the rollups of [since, until) (rounded out to whole hours, as the dashboards
    read them) with the same figures recounted from the raw rows."""
    window = Window.of(since, until)
    mismatches: list[Mismatch] = []
    checked = 0
    use_cases = list(use_cases)
    versions = dict(
        ModelVersion.objects.filter(use_case__in=use_cases).values_list("id", "version")
    )
    archived: list[tuple[str, datetime]] = []
    for use_case in use_cases:
        checked_window = window
        boundary = use_case.history_archived_before
        if boundary is not None and (window.since is None or window.since < boundary):
            # Before the boundary the raw rows of archived items are gone while the rollups
            # keep them: only what follows it can be recounted.
            archived.append((use_case.slug, boundary))
            if window.until is not None and window.until <= boundary:
                continue
            checked_window = Window.of(boundary, window.until)
        dashboard = _dashboard(use_case, checked_window)
        recount = _recount(use_case, checked_window)
        for key in sorted(set(dashboard) | set(recount), key=lambda k: (str(k[0]), k[1])):
            checked += 1
            shown, counted = dashboard.get(key, 0.0), recount.get(key, 0.0)
            if not _same(shown, counted):
                (version_id, shadow), name = key
                mismatches.append(
                    Mismatch(
                        use_case=use_case.slug,
                        model_version=versions.get(version_id, "-"),
                        shadow=shadow,
                        figure=name,
                        dashboard=shown,
                        recomputed=counted,
                    )
                )
    pending = RollupEvent.objects.filter(use_case_id__in=[u.pk for u in use_cases]).count()
    return Reconciliation(window, len(use_cases), checked, pending, mismatches, archived)
