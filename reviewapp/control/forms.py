"""The control room's forms: what a manager typed, checked field by field, in the shape the
service takes. Range and consistency rules stay in the services; a form only reads numbers,
dates and files, and an error names the form's field as the page shows it.
"""

from typing import Any

from django import forms

from deployments.policy.guardrails import KINDS, RATE_TEST_KEYS
from reviewapp.core.api import datetime_param
from reviewapp.core.errors import InvalidInput

NUMBER = {"required": "required", "invalid": "must be a number"}
WHOLE = {"invalid": "must be a whole number"}


class ControlForm(forms.Form):
    """The typed values to show again with ``values()``, errors as ``{field: [message]}``."""

    def values(self) -> dict[str, str]:
        return {name: self.data.get(name, "") for name in self.fields}

    def errors_by_field(self) -> dict[str, list[str]]:
        return {name: list(problems) for name, problems in self.errors.items()}


def _number(*, required: bool = True) -> forms.FloatField:
    return forms.FloatField(required=required, error_messages=NUMBER)


def _whole() -> forms.IntegerField:
    return forms.IntegerField(required=False, error_messages=WHOLE)


def _text() -> forms.CharField:
    return forms.CharField(required=False, strip=False)


class PolicyForm(ControlForm):
    """Rates are typed as percentages; ``changes()`` gives them as fractions."""

    PERCENTAGES = ("audit_rate", "double_review_rate")

    level = _text()  # the service names the levels it accepts
    confidence_threshold = _number()
    traffic_percent = _number()
    audit_rate = _number()
    double_review_rate = _number()
    reason = _text()

    def changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        changes: dict[str, Any] = {
            "level": data["level"],
            "confidence_threshold": data["confidence_threshold"],
            "traffic_percent": data["traffic_percent"],
        }
        for name in self.PERCENTAGES:
            changes[name] = data[name] / 100
        return changes


class GuardrailsForm(ControlForm):
    """One ``<kind>-enabled`` checkbox per guardrail kind; the limits of a kind are read only
    when it is enabled (a disabled row's leftovers are not errors). Rates are percentages."""

    fallback_level = _text()
    webhook_url = forms.CharField(required=False)
    reason = _text()

    def __init__(self, data, **kwargs):
        super().__init__(data, **kwargs)
        self.enabled = [kind for kind in KINDS if data.get(f"{kind.name}-enabled")]
        for kind in self.enabled:
            self.fields[f"{kind.name}-max"] = _number()
            self.fields[f"{kind.name}-window"] = _whole()
            self.fields[f"{kind.name}-min_sample"] = _whole()
            for part in RATE_TEST_KEYS if kind.is_rate else ():
                self.fields[f"{kind.name}-{part}"] = _number(required=False)

    def guardrails(self) -> dict[str, Any]:
        """The guardrails JSON the form describes ({} for no limit and no webhook). On an
        invalid form, what could be read: enough to show the rows the manager enabled."""
        data = getattr(self, "cleaned_data", {})
        guardrails: dict[str, Any] = {"fallback_level": data.get("fallback_level") or "assisted"}
        for kind in self.enabled:
            limit: dict[str, Any] = {}
            parts = {"max": 100 if kind.is_rate else 1, "window": None, "min_sample": None}
            parts.update((part, 100) for part in (RATE_TEST_KEYS if kind.is_rate else ()))
            for part, scale in parts.items():
                value = data.get(f"{kind.name}-{part}")
                if value is not None:
                    limit[part] = value if scale is None else round(value / scale, 10)
            guardrails[kind.name] = limit
        if data.get("webhook_url"):
            guardrails["webhook_url"] = data["webhook_url"]
        if len(guardrails) == 1:
            return {}  # no limit, no webhook: no guardrails (the fallback alone means nothing)
        return guardrails


class RampForm(ControlForm):
    steps = forms.CharField(required=False)
    items = _whole()
    hours = _number(required=False)
    reason = _text()

    def clean_steps(self) -> list[float]:
        raw = self.cleaned_data["steps"].replace("%", "").replace("→", ",")
        try:
            return [float(step) for step in raw.split(",")]
        except ValueError:
            raise forms.ValidationError(
                "a list of percentages separated by commas, e.g. 1, 5, 25, 50, 100"
            ) from None

    def advance_after_seconds(self) -> int | None:
        hours = self.cleaned_data["hours"]
        return None if hours is None else round(hours * 3600)


class ModelUploadForm(ControlForm):
    version = forms.CharField(required=False)
    notes = _text()
    # An empty file is the service's to refuse, with its own message.
    file = forms.FileField(
        allow_empty_file=True, error_messages={"required": "choose a .skops file"}
    )
    reference = forms.FileField(required=False, allow_empty_file=True)

    def values(self) -> dict[str, str]:
        return {name: self.data.get(name, "") for name in ("version", "notes")}


class _MomentField(forms.CharField):
    """An ISO 8601 date or date-time, read as the API reads it (naive means UTC)."""

    def clean(self, value):
        try:
            return datetime_param({"value": super().clean(value)}, "value")
        except InvalidInput as bad:
            raise forms.ValidationError(bad.detail["value"]) from None


class BacktestForm(ControlForm):
    model_version = forms.CharField(required=False, strip=False)
    since = _MomentField(required=False)
    until = _MomentField(required=False)
