"""How review tasks look to their readers (API and pages alike)."""

from types import SimpleNamespace
from typing import Any

from django.urls import reverse
from django.utils import timezone

from deployments.models import UseCase
from reviewapp.core.item_display import item_display, value_display
from reviewapp.reviews.models import ReviewTask


def features_visible(features: dict, *, use_case: UseCase, show_pii: bool) -> tuple[dict, list]:
    """The item's features with PII values blanked for readers without the right."""
    if show_pii or not use_case.pii_features:
        return dict(features), []
    masked = sorted(name for name in use_case.pii_features if name in features)
    return {k: (None if k in use_case.pii_features else v) for k, v in features.items()}, masked


def suggestion_public(task: ReviewTask, *, use_case: UseCase) -> dict[str, Any] | None:
    """The model's suggestion, only on tasks that may show it (never on blind ones)."""
    if not task.show_suggestion:
        return None
    prediction = task.item.prediction
    if prediction is None or prediction.error:
        return None
    if use_case.is_classification:
        return {
            "label": prediction.label,
            "confidence": prediction.confidence,
            "probabilities": prediction.probabilities or {},
        }
    return {"value": prediction.value, "confidence": prediction.confidence}


def task_public(task: ReviewTask, *, use_case: UseCase, show_pii: bool) -> dict[str, Any]:
    features, masked = features_visible(task.item.features, use_case=use_case, show_pii=show_pii)
    return {
        "task": str(task.pk),
        "external_id": task.item.external_id,
        "reason": task.reason,
        "features": features,
        "pii_masked": masked,
        "suggestion": suggestion_public(task, use_case=use_case),
        "lease_token": str(task.lease_token),
        "lease_expires_at": task.lease_expires_at,
    }


# --- the reviewer's workspace -------------------------------------------------------------

LABEL_KEYS = "1234567890"
PROBABILITIES_SHOWN = 5


def label_shortcuts(labels: list[str]) -> dict[str, str]:
    """The key that picks each label: the digit itself when every label is a distinct single
    digit (reading "7" on a digit, the reviewer presses 7), else 1-9 then 0 by position; labels
    past the tenth have no key (they are picked with the mouse, Tab or the arrow keys)."""
    if len(set(labels)) == len(labels) and all(len(x) == 1 and x.isdigit() for x in labels):
        return {label: label for label in labels}
    return {label: LABEL_KEYS[i] for i, label in enumerate(labels[: len(LABEL_KEYS)])}


number_display = value_display  # one way to write a number on every page


def item_features_display(features: dict, *, use_case: UseCase, masked=()) -> dict:
    """The item as ``{% item_features %}`` draws it on the queue, manager and datasets pages."""
    return item_display(
        features,
        schema=use_case.features,
        image=use_case.item_view == UseCase.ItemView.IMAGE_GRID,
        masked=frozenset(masked),
    )


def _suggestion_view(suggestion: dict | None, *, use_case: UseCase) -> dict | None:
    if suggestion is None:
        return None
    confidence = suggestion.get("confidence")
    view = {
        "answer": suggestion["label"]
        if use_case.is_classification
        else number_display(suggestion["value"]),
        "confidence": confidence,
        "percent": None if confidence is None else round(confidence * 100),
        "probabilities": [],
    }
    probabilities = sorted(
        (suggestion.get("probabilities") or {}).items(), key=lambda pair: pair[1], reverse=True
    )
    view["probabilities"] = [
        {"label": label, "share": p, "percent": round(p * 100, 1)}
        for label, p in probabilities[:PROBABILITIES_SHOWN]
    ]
    view["more_labels"] = max(0, len(probabilities) - PROBABILITIES_SHOWN)
    return view


def task_view(
    task: ReviewTask, *, use_case: UseCase, show_pii: bool, note: dict | None = None, now=None
) -> dict[str, Any]:
    """Everything the queue page shows for one task, and nothing more.

    The suggestion comes only from ``suggestion_public`` (None on blind tasks), so a blind
    task's page carries no trace of the model's answer: not in the text, not in attributes.
    The task's reason is left out too (an audit would say the model decided it alone).
    """
    now = now or timezone.now()
    features, masked = features_visible(task.item.features, use_case=use_case, show_pii=show_pii)
    public = suggestion_public(task, use_case=use_case)
    suggestion = _suggestion_view(public, use_case=use_case)
    view: dict[str, Any] = {
        "id": task.pk,
        "external_id": task.item.external_id,
        "display": item_features_display(features, use_case=use_case, masked=masked),
        "pii_masked": masked,
        "suggestion": suggestion,
        "lease_token": str(task.lease_token),
        # One key per claim: a second submit of the same form replays instead of deciding
        # twice, and a reload keeps the key.
        "idempotency_key": f"ui:{task.pk}:{task.lease_token}",
        "lease_seconds": max(0, int((task.lease_expires_at - now).total_seconds()))
        if task.lease_expires_at
        else 0,
        "note": note,
        "urls": {
            action: reverse(f"reviews:{action}", args=[use_case.slug, task.pk])
            for action in ("decide", "skip", "escalate")
        },
        "comment": "",
        "choices": None,
        "value": None,
        "keys_are_labels": False,
    }
    if use_case.is_classification:
        keys = label_shortcuts(list(use_case.labels))
        view["keys_are_labels"] = all(keys.get(label) == label for label in use_case.labels)
        suggested = suggestion["answer"] if suggestion else None
        preselected = use_case.suggestion_preselected
        view["choices"] = [
            {
                "label": label,
                "key": keys.get(label, ""),
                "suggested": label == suggested,
                # Pre-picked only where the use case asks for it (Enter then accepts the
                # suggestion); otherwise the reviewer picks. Nothing is on a blind task.
                "checked": preselected and label == suggested,
            }
            for label in use_case.labels
        ]
    else:
        view["value"] = {
            "prefill": public["value"] if public and use_case.suggestion_preselected else None,
            "min": use_case.value_min,
            "max": use_case.value_max,
        }
    return view


def gold_shown_id(check_id) -> str:
    """The id the queue page shows a gold item under (apart from task ids)."""
    return f"g{check_id}"


def gold_view(check, *, use_case: UseCase, show_pii: bool, now=None) -> dict[str, Any]:
    """A gold item, shown exactly as a blind task is (nothing tells the reviewer it is one);
    only its form posts elsewhere."""
    shown = SimpleNamespace(
        pk=check.pk,
        item=check.item,
        show_suggestion=False,
        lease_token=check.lease_token,
        lease_expires_at=check.lease_expires_at,
    )
    view = task_view(shown, use_case=use_case, show_pii=show_pii, now=now)
    view["id"] = gold_shown_id(check.pk)
    view["idempotency_key"] = f"ui:{view['id']}:{check.lease_token}"
    view["urls"] = {
        action: reverse(f"reviews:gold-{action}", args=[use_case.slug, check.pk])
        for action in ("decide", "skip", "escalate")
    }
    return view
