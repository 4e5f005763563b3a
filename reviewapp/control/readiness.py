"""Graduation readiness: is the model at human level yet, overall and per slice of the inputs?

The model's answers are scored against the items' final human decisions; the human level is
how often two reviewers of the same double-reviewed item agree (for regression, how far apart
their values are). Both come straight from the raw rows in a few grouped queries, because a
slice is a value of an input feature, which the hourly rollups do not keep. The statistics and
the verdict are pure (``deployments.statistics.evidence``).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, F, FloatField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Abs

from deployments.models import ModelVersion, UseCase
from deployments.policy import TaskReason
from deployments.selectors import champion_get, model_version_get, policy_current
from deployments.statistics import evidence as ev
from reviewapp.core.errors import InvalidInput
from reviewapp.reviews.models import Decision, Item, Prediction

# Feature types whose values name groups; numbers would need binning, which is another question.
CATEGORICAL_TYPES = ("category", "string", "boolean")
MAX_SLICES = 50
MISSING = "(missing)"


@dataclass(frozen=True)
class Quality:
    """The model against human labels and the humans against each other, for one set of items.

    Classification: ``model`` is accuracy, ``human`` the double reviewers' agreement.
    Regression: ``model`` is the MAE, ``human`` the mean gap between double reviewers, and
    ``model_mse``/``human_mse`` the same squared."""

    model: ev.Estimate
    human: ev.Estimate
    comparison: ev.Comparison
    model_mse: ev.Estimate | None = None
    human_mse: ev.Estimate | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.as_dict(),
            "human": self.human.as_dict(),
            "model_mse": self.model_mse.as_dict() if self.model_mse else None,
            "human_mse": self.human_mse.as_dict() if self.human_mse else None,
            **self.comparison.as_dict(),
        }


@dataclass(frozen=True)
class Readiness:
    use_case: UseCase
    model_version: ModelVersion | None
    metric: str  # "accuracy" or "mae"
    level: str
    applies: bool  # shadow or assisted: every item has a human label to compare with
    overall: Quality
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Slice:
    value: str
    quality: Quality
    test: ev.SliceTest


@dataclass(frozen=True)
class Slices:
    readiness: Readiness
    feature: str
    slices: list[Slice] = field(default_factory=list)

    @property
    def flagged(self) -> list[Slice]:
        return [s for s in self.slices if s.test.flagged]


def _model_rows(use_case: UseCase, version: ModelVersion, since, until) -> QuerySet:
    rows = Prediction.objects.filter(
        use_case=use_case,
        model_version=version,
        error="",
        item__decision_source=Item.Source.HUMAN,
    )
    if use_case.is_classification:
        rows = rows.exclude(label="")
    else:
        rows = rows.filter(value__isnull=False, item__decision_value__isnull=False)
    if since is not None:
        rows = rows.filter(item__received_at__gte=since)
    if until is not None:
        rows = rows.filter(item__received_at__lt=until)
    return rows


def _double_rows(use_case: UseCase, since, until) -> QuerySet:
    """Second opinions: each double-review decision with the item's first answer beside it."""
    first = Decision.objects.filter(item=OuterRef("item")).exclude(pk=OuterRef("pk")).order_by("id")
    rows = Decision.objects.filter(
        use_case=use_case, task__reason=TaskReason.DOUBLE_REVIEW
    ).annotate(
        other_label=Subquery(first.values("label")[:1]),
        other_value=Subquery(first.values("value")[:1]),
        other_id=Subquery(first.values("id")[:1]),
    )
    rows = rows.filter(other_id__isnull=False)
    if since is not None:
        rows = rows.filter(item__received_at__gte=since)
    if until is not None:
        rows = rows.filter(item__received_at__lt=until)
    return rows


def _model_aggregates(use_case: UseCase) -> dict[str, Any]:
    if use_case.is_classification:
        return {"n": Count("id"), "right": Count("id", filter=Q(label=F("item__decision_label")))}
    error = Abs(F("value") - F("item__decision_value"))
    return {
        "n": Count("id"),
        "abs": Sum(error, output_field=FloatField()),
        "sq": Sum(error * error, output_field=FloatField()),
        "quad": Sum(error * error * error * error, output_field=FloatField()),
    }


def _double_aggregates(use_case: UseCase) -> dict[str, Any]:
    if use_case.is_classification:
        return {"n": Count("id"), "right": Count("id", filter=Q(label=F("other_label")))}
    gap = Abs(F("value") - F("other_value"))
    return {
        "n": Count("id"),
        "abs": Sum(gap, output_field=FloatField()),
        "sq": Sum(gap * gap, output_field=FloatField()),
        "quad": Sum(gap * gap * gap * gap, output_field=FloatField()),
    }


def _quality(use_case: UseCase, model: dict, human: dict) -> Quality:
    model_n, human_n = model.get("n") or 0, human.get("n") or 0
    if use_case.is_classification:
        right, agree = model.get("right") or 0, human.get("right") or 0
        return Quality(
            model=ev.wilson(right, model_n),
            human=ev.wilson(agree, human_n),
            comparison=ev.proportion_vs_baseline(
                model_right=right, model_n=model_n, human_agree=agree, human_n=human_n
            ),
        )
    sums = {
        side: [row.get(k) or 0.0 for k in ("abs", "sq", "quad")]
        for side, row in (("model", model), ("human", human))
    }
    (m_abs, m_sq, m_quad), (h_abs, h_sq, h_quad) = sums["model"], sums["human"]
    return Quality(
        model=ev.mean_interval(model_n, m_abs, m_sq),
        human=ev.mean_interval(human_n, h_abs, h_sq),
        model_mse=ev.mean_interval(model_n, m_sq, m_quad),
        human_mse=ev.mean_interval(human_n, h_sq, h_quad),
        comparison=ev.mean_vs_baseline(
            model=ev.MeanSums(model_n, m_abs, m_sq), human=ev.MeanSums(human_n, h_abs, h_sq)
        ),
    )


def _version(use_case: UseCase, version: str | None) -> ModelVersion | None:
    if not version:
        return champion_get(use_case=use_case)
    return model_version_get(use_case=use_case, version=version, field="model_version")


def readiness_get(
    *,
    use_case: UseCase,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Readiness:
    """The verdict for ``model_version`` (the champion by default) over items received in
    [since, until)."""
    version = _version(use_case, model_version)
    if version is None:
        model: dict = {}
    else:
        model = _model_rows(use_case, version, since, until).aggregate(
            **_model_aggregates(use_case)
        )
    human = _double_rows(use_case, since, until).aggregate(**_double_aggregates(use_case))
    level = policy_current(use_case=use_case).level
    return Readiness(
        use_case=use_case,
        model_version=version,
        metric="accuracy" if use_case.is_classification else "mae",
        level=level,
        applies=level in ("shadow", "assisted"),
        overall=_quality(use_case, model, human),
        since=since,
        until=until,
    )


def slice_features(use_case: UseCase) -> list[str]:
    """The input features a use case can be sliced by."""
    return [
        f["name"] for f in use_case.features if f["type"] in CATEGORICAL_TYPES and not f.get("pii")
    ]


def _slice_feature_check(use_case: UseCase, feature: str | None) -> str:
    if not feature:
        raise InvalidInput({"feature": ["required: the name of a categorical input feature"]})
    spec = next((f for f in use_case.features if f["name"] == feature), None)
    if spec is None:
        raise InvalidInput({"feature": [f"{use_case.slug} has no input feature {feature!r}"]})
    if spec.get("pii"):
        raise InvalidInput({"feature": [f"{feature!r} holds personal data; it is not sliced"]})
    if spec["type"] not in CATEGORICAL_TYPES:
        raise InvalidInput(
            {
                "feature": [
                    f"{feature!r} is a {spec['type']} feature; slices need a categorical one "
                    f"({', '.join(slice_features(use_case)) or 'this use case has none'})"
                ]
            }
        )
    return feature


def _grouped(
    rows: QuerySet, path: str, feature: str, aggregates: dict, *, boolean: bool
) -> dict[str, dict]:
    """``aggregates`` per value of the feature, at most MAX_SLICES + 1 values read."""
    grouped = (
        rows.annotate(slice_value=KeyTextTransform(feature, path))
        .values("slice_value")
        .annotate(**aggregates)
        .order_by("slice_value")[: MAX_SLICES + 1]
    )
    return {_slice_key(row["slice_value"], boolean): row for row in grouped}


def _slice_key(value, boolean: bool) -> str:
    if value is None or value == "":
        return MISSING
    if boolean:
        # SQLite extracts a JSON boolean as 1/0, PostgreSQL as true/false: name them one way.
        return {"1": "true", "0": "false"}.get(str(value), str(value).lower())
    return str(value)


def slices_get(
    *,
    use_case: UseCase,
    feature: str | None,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Slices:
    """The readiness figures per value of ``feature``, each slice tested against the rest
    (Bonferroni over the slices). Refuses a feature with more than MAX_SLICES values."""
    feature = _slice_feature_check(use_case, feature)
    boolean = any(f["name"] == feature and f["type"] == "boolean" for f in use_case.features)
    readiness = readiness_get(
        use_case=use_case, model_version=model_version, since=since, until=until
    )
    version = readiness.model_version
    model = (
        _grouped(
            _model_rows(use_case, version, since, until),
            "item__features",
            feature,
            _model_aggregates(use_case),
            boolean=boolean,
        )
        if version is not None
        else {}
    )
    human = _grouped(
        _double_rows(use_case, since, until),
        "item__features",
        feature,
        _double_aggregates(use_case),
        boolean=boolean,
    )
    values = sorted(set(model) | set(human))
    if len(model) > MAX_SLICES or len(human) > MAX_SLICES or len(values) > MAX_SLICES:
        raise InvalidInput(
            {
                "feature": [
                    f"{feature!r} has more than {MAX_SLICES} distinct values; "
                    "slices are for features with few categories"
                ]
            }
        )
    regression = not use_case.is_classification
    counts = []
    for value in values:
        row = model.get(value, {})
        n = row.get("n") or 0
        if regression:
            counts.append(
                ev.SliceCounts(
                    value, errors=row.get("abs") or 0.0, n=n, sq_errors=row.get("sq") or 0.0
                )
            )
        else:
            counts.append(ev.SliceCounts(value, errors=n - (row.get("right") or 0), n=n))
    tests = ev.slices_flag(counts, regression=regression)
    return Slices(
        readiness=readiness,
        feature=feature,
        slices=[
            Slice(
                value=value,
                quality=_quality(use_case, model.get(value, {}), human.get(value, {})),
                test=tests[value],
            )
            for value in values
        ],
    )
