"""The keys of a policy's ``guardrails`` object, declared for the API schema.

``deployments.policy.guardrails.guardrails_parse`` checks the object (naming every bad field,
with the use case's own rules); these serializers give a client its keys and their types, from
the same constants, so the schema and the check cannot drift apart.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deployments.policy.guardrails import (
    CONFIDENCE_RANGE,
    DEFAULT_FALLBACK,
    FALLBACK_LEVELS,
    KIND_BY_NAME,
    MAX_ALPHA,
    MAX_URL_LENGTH,
    MAX_WINDOW,
)


class _Limit(serializers.Serializer):
    window = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_WINDOW,
        help_text="How many of the latest observations the limit is judged on.",
    )
    min_sample = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_WINDOW,
        help_text="The fewest observations it is judged on (at most the window).",
    )


class RateGuardrail(_Limit):
    """A rate limit, judged by a sequential test and the window's Wilson interval."""

    max = serializers.FloatField(
        min_value=0, max_value=KIND_BY_NAME["override_rate"].max_limit, help_text="The limit."
    )
    margin = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=1,
        help_text="The rise over max to catch fast (above 0; max + margin under 1).",
    )
    alpha = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_ALPHA,
        help_text="False alarms per check at a rate at the limit (above 0).",
    )
    confidence = serializers.FloatField(
        required=False,
        min_value=CONFIDENCE_RANGE[0],
        max_value=CONFIDENCE_RANGE[1],
        help_text="Of the interval a hold needs.",
    )


class DriftGuardrail(_Limit):
    """The worst feature's PSI, a plain threshold."""

    max = serializers.FloatField(
        min_value=0, max_value=KIND_BY_NAME["drift_psi"].max_limit, help_text="The limit."
    )


def _limit(kind: str) -> serializers.Serializer:
    shape = RateGuardrail if KIND_BY_NAME[kind].is_rate else DriftGuardrail
    return shape(required=False, allow_null=True, help_text=f"{KIND_BY_NAME[kind].label}.")


@extend_schema_field({"type": "string", "maxLength": MAX_URL_LENGTH, "pattern": "^https?://"})
class _WebhookUrl(serializers.CharField):
    """An http(s) URL, or empty; checked by ``guardrails_parse``, declared for the schema."""


class Guardrails(serializers.Serializer):
    """Every key is optional; a limit left out (or null) is not watched."""

    fallback_level = serializers.ChoiceField(
        choices=[level.value for level in FALLBACK_LEVELS],
        required=False,
        help_text=f"The level a breach steps down to ({DEFAULT_FALLBACK.value} by default).",
    )
    override_rate = _limit("override_rate")
    null_output_rate = _limit("null_output_rate")
    drift_psi = _limit("drift_psi")
    audit_error_rate = _limit("audit_error_rate")
    webhook_url = _WebhookUrl(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=MAX_URL_LENGTH,
        help_text="http(s) URL told of each breach, under the webhooks' safe-target rules.",
    )


@extend_schema_field(Guardrails)
class GuardrailsField(serializers.DictField):
    """Checked by ``guardrails_parse`` (every bad field named); declared with its keys."""
