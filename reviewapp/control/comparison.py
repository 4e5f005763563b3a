"""Champion and challengers compared on the same items (read only).

Every registry model that scores in shadow leaves a Prediction per item, so the versions can be
compared on exactly the items they all scored: how often they agree with each other, how often
each agrees with the humans (accuracy, or MSE/MAE and the share within tolerance for
regression), how well each one's confidence is calibrated, and which items they differ on, to
be opened one by one.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deployments.models import ModelVersion, UseCase
from reviewapp.reviews.models import Item, Prediction

CALIBRATION_BINS = 10
SHOW_CHOICES = {
    "any": "differ from each other or from the human",
    "models": "differ from each other",
    "humans": "differ from the human",
}


@dataclass
class VersionStats:
    version: ModelVersion
    scored: int
    null_outputs: int
    labelled: int
    correct: int
    accuracy: float | None = None  # classification: share equal to the human label
    within_tolerance: float | None = None  # regression: share within the use case's tolerance
    mse: float | None = None
    mae: float | None = None
    ece: float | None = None  # expected calibration error over the confidence bins
    calibration: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Difference:
    item_id: int
    external_id: str
    answers: list[dict[str, Any]]  # per version: answer, confidence, error, right
    human: Any
    models_differ: bool
    humans_differ: bool


@dataclass
class Comparison:
    versions: list[ModelVersion]
    items: int = 0  # items every compared version scored
    labelled: int = 0  # ... of which a human decided
    stats: list[VersionStats] = field(default_factory=list)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)  # newest first, all of them


def _same(use_case: UseCase, a, b) -> np.ndarray:
    if use_case.is_classification:
        return np.asarray(a == b, dtype=bool)
    return np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) <= (
        use_case.tolerance or 0.0
    )


def _calibration(confidence: np.ndarray, correct: np.ndarray) -> tuple[list[dict], float | None]:
    keep = ~np.isnan(confidence)
    confidence, correct = confidence[keep], correct[keep]
    if not len(confidence):
        return [], None
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=False), 0, CALIBRATION_BINS - 1)
    bins, ece = [], 0.0
    for b in range(CALIBRATION_BINS):
        chosen = index == b
        count = int(chosen.sum())
        if not count:
            continue
        mean_confidence = float(confidence[chosen].mean())
        hit_rate = float(correct[chosen].mean())
        ece += count / len(confidence) * abs(hit_rate - mean_confidence)
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": count,
                "confidence": mean_confidence,
                "accuracy": hit_rate,
            }
        )
    return bins, ece


def model_comparison(
    *, use_case: UseCase, versions: list[ModelVersion], limit_items: int = 20_000
) -> Comparison:
    """Compare ``versions`` on the most recent ``limit_items`` items that all of them scored."""
    comparison = Comparison(versions=versions)
    if not versions:
        return comparison
    value_field = "label" if use_case.is_classification else "value"
    rows = list(
        Prediction.objects.filter(use_case=use_case, model_version__in=versions)
        .order_by("-item_id")
        .values_list("item_id", "model_version_id", value_field, "confidence", "error")[
            : limit_items * len(versions)
        ]
    )
    if not rows:
        return comparison
    # Imported by the comparison page when it has rows to pivot, not by every web process
    # that imports the control screens' URLs.
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["item", "version", "answer", "confidence", "error"])
    # (item, version) is unique in the database, so a plain pivot never has to aggregate.
    wide = frame.pivot(index="item", columns="version", values=["answer", "confidence", "error"])
    ids = [v.pk for v in versions]
    scored_by_all = wide["error"].reindex(columns=ids).notna().all(axis=1)
    wide = wide[scored_by_all].sort_index(ascending=False)
    if wide.empty:
        return comparison
    item_ids = wide.index.to_numpy()
    humans = {
        pk: (external_id, label if use_case.is_classification else value, source)
        for pk, external_id, label, value, source in Item.objects.filter(
            use_case=use_case, pk__gte=int(item_ids.min()), pk__lte=int(item_ids.max())
        ).values_list("pk", "external_id", "decision_label", "decision_value", "decision_source")
    }
    human = np.asarray(
        [humans[pk][1] if humans[pk][2] == Item.Source.HUMAN else None for pk in item_ids],
        dtype=object,
    )
    labelled = np.asarray([h is not None for h in human])
    answers = {pk: wide["answer"][pk].to_numpy(dtype=object) for pk in ids}
    valid = {pk: (wide["error"][pk] == "").to_numpy() for pk in ids}
    confidence = {pk: wide["confidence"][pk].to_numpy(dtype=float) for pk in ids}
    comparison.items = len(item_ids)
    comparison.labelled = int(labelled.sum())

    right = {}
    for version in versions:
        pk = version.pk
        judged = valid[pk] & labelled
        hit = np.zeros(len(item_ids), dtype=bool)
        if judged.any():
            hit[judged] = _same(use_case, answers[pk][judged], human[judged])
        right[pk] = hit
        stats = VersionStats(
            version=version,
            scored=len(item_ids),
            null_outputs=int((~valid[pk]).sum()),
            labelled=int(judged.sum()),
            correct=int(hit[judged].sum()),
        )
        if judged.any():
            share = float(hit[judged].mean())
            if use_case.is_classification:
                stats.accuracy = share
            else:
                errors = answers[pk][judged].astype(float) - human[judged].astype(float)
                stats.within_tolerance = share
                stats.mse = float(np.mean(errors**2))
                stats.mae = float(np.mean(np.abs(errors)))
            stats.calibration, stats.ece = _calibration(confidence[pk][judged], hit[judged])
        comparison.stats.append(stats)

    same_pairs = []
    for i, a in enumerate(versions):
        for b in versions[i + 1 :]:
            both = valid[a.pk] & valid[b.pk]
            same = np.zeros(len(item_ids), dtype=bool)
            if both.any():
                same[both] = _same(use_case, answers[a.pk][both], answers[b.pk][both])
            # A null output against an answer is a difference too.
            same_pairs.append(same | (~valid[a.pk] & ~valid[b.pk]))
            comparison.agreement.append(
                {
                    "a": a,
                    "b": b,
                    "compared": int(both.sum()),
                    "agreement": float(same[both].mean()) if both.any() else None,
                }
            )
    models_differ = (
        ~np.logical_and.reduce(same_pairs) if same_pairs else np.zeros(len(item_ids), bool)
    )
    humans_differ = np.zeros(len(item_ids), dtype=bool)
    for pk in ids:
        humans_differ |= labelled & ~right[pk]
    for row in np.flatnonzero(models_differ | humans_differ):
        pk = int(item_ids[row])
        comparison.differences.append(
            Difference(
                item_id=pk,
                external_id=humans[pk][0],
                answers=[
                    {
                        "version": v.version,
                        "answer": answers[v.pk][row] if valid[v.pk][row] else None,
                        "confidence": None
                        if np.isnan(confidence[v.pk][row])
                        else float(confidence[v.pk][row]),
                        "null": not valid[v.pk][row],
                        "right": bool(right[v.pk][row]) if labelled[row] else None,
                    }
                    for v in versions
                ],
                human=human[row],
                models_differ=bool(models_differ[row]),
                humans_differ=bool(humans_differ[row]),
            )
        )
    return comparison


def differences_shown(comparison: Comparison, show: str) -> list[Difference]:
    if show == "models":
        return [d for d in comparison.differences if d.models_differ]
    if show == "humans":
        return [d for d in comparison.differences if d.humans_differ]
    return comparison.differences
