"""Shapes of the JSON objects the API stores and returns as they are (a retraining's metrics, a
change request's changes, a policy's guardrails), declared for the schema.

The objects are written by the services; these serializers only describe them, so a generated
client gets typed fields instead of ``Any``. Every key is optional where the object may be
empty (a version uploaded by hand has no metrics; a job's result is empty until it is done).
"""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deployments.guardrail_schema import Guardrails
from deployments.policy import Level


class _Span(serializers.Serializer):
    rows = serializers.IntegerField()
    first_decided_at = serializers.DateTimeField(allow_null=True)
    last_decided_at = serializers.DateTimeField(allow_null=True)


class _Holdout(_Span):
    fraction = serializers.FloatField(help_text="Share of the latest decided items held out.")


class Evaluation(serializers.Serializer):
    """How close a model came to the human answers on the held-out items."""

    rows = serializers.IntegerField()
    accuracy = serializers.FloatField(required=False, help_text="Classification.")
    macro_f1 = serializers.FloatField(required=False, help_text="Classification.")
    mae = serializers.FloatField(required=False, help_text="Regression.")
    rmse = serializers.FloatField(required=False, help_text="Regression.")
    within_tolerance = serializers.FloatField(required=False, help_text="Regression.")


class _ChampionEvaluation(Evaluation):
    version = serializers.CharField(help_text="The champion compared against.")


class _Recipe(serializers.Serializer):
    base_version = serializers.CharField()
    estimator = serializers.CharField(help_text="The estimator's Python class.")


class _Dataset(serializers.Serializer):
    export = serializers.UUIDField()
    file = serializers.CharField()
    sha256 = serializers.CharField()
    rows = serializers.IntegerField()


class TrainingMetrics(serializers.Serializer):
    """What a retraining measured. Empty for a version uploaded by hand."""

    task_type = serializers.CharField(required=False)
    train = _Span(required=False)
    holdout = _Holdout(required=False)
    challenger = Evaluation(required=False, help_text="The retrained model.")
    champion = _ChampionEvaluation(required=False)
    recipe = _Recipe(required=False)
    dataset = _Dataset(required=False, help_text="The export it was trained on.")
    fit_seconds = serializers.FloatField(required=False)
    warnings = serializers.ListField(child=serializers.CharField(), required=False)


@extend_schema_field(TrainingMetrics)
class TrainingMetricsField(serializers.JSONField):
    """A retraining's metrics as stored; declared with their keys."""


def guardrails_public(raw: Any) -> dict:
    """A stored guardrails object in its declared types: whole numbers stored as floats by
    older versions (``"window": 200.0``) come back as integers."""
    if not isinstance(raw, dict):
        return {}
    out: dict = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            value = {
                name: int(number)
                if name in ("window", "min_sample") and isinstance(number, float)
                else number
                for name, number in value.items()
            }
        out[key] = value
    return out


@extend_schema_field(Guardrails)
class GuardrailsOutputField(serializers.JSONField):
    """A policy's stored guardrails, declared with their keys."""

    def to_representation(self, value):
        return guardrails_public(value)


class RequestedChanges(serializers.Serializer):
    """A policy change (the fields that change) or a promotion (``version``)."""

    version = serializers.CharField(required=False, help_text="Promote: the model version.")
    level = serializers.ChoiceField(choices=[level.value for level in Level], required=False)
    confidence_threshold = serializers.FloatField(required=False)
    traffic_percent = serializers.FloatField(required=False)
    audit_rate = serializers.FloatField(required=False)
    double_review_rate = serializers.FloatField(required=False)
    guardrails = Guardrails(required=False)


@extend_schema_field(RequestedChanges)
class RequestedChangesField(serializers.JSONField):
    """A change request's changes as stored; declared with their keys."""

    def to_representation(self, value):
        if isinstance(value, dict) and "guardrails" in value:
            return {**value, "guardrails": guardrails_public(value["guardrails"])}
        return value


@extend_schema_field(serializers.ListField(child=serializers.CharField()))
class LabelsField(serializers.JSONField):
    """A classification's labels, as strings; empty for regression. A body's value must be a
    list of strings; the use case service checks the rest (how many, unique, the task type)."""

    default_error_messages = {"wrong_type": "must be a list of strings"}

    def to_internal_value(self, data):
        if not isinstance(data, list) or not all(isinstance(label, str) for label in data):
            self.fail("wrong_type")
        return data
