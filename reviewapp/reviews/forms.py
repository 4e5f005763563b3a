"""Parsing what the review pages post. The services check the meaning (is this label one of
the use case's labels?); these forms check the shape, so bad input names its field."""

from django import forms

MAX_TEXT = 5000


class HeldTaskForm(forms.Form):
    lease_token = forms.UUIDField(required=False)


class DecisionForm(HeldTaskForm):
    label = forms.CharField(required=False, max_length=200)
    value = forms.FloatField(required=False)
    comment = forms.CharField(required=False, max_length=MAX_TEXT, strip=True)
    time_spent_ms = forms.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    idempotency_key = forms.CharField(required=False, max_length=200)


class EscalationForm(HeldTaskForm):
    comment = forms.CharField(required=False, max_length=MAX_TEXT, strip=True)


class ResolveForm(forms.Form):
    note = forms.CharField(required=False, max_length=MAX_TEXT, strip=True)
    label = forms.CharField(required=False, max_length=200)
    value = forms.FloatField(required=False)


def form_errors(form: forms.Form) -> dict[str, list[str]]:
    return {field: [str(e) for e in errors] for field, errors in form.errors.items()}
