import math

import pytest

from deployments.policy import ModelOutput, NullOutput, assess_output

LABELS = ["travel", "office"]


@pytest.mark.parametrize(
    ("kwargs", "reason_part"),
    [
        ({"label": "party", "confidence": 0.9}, "not one of"),
        ({"label": None, "confidence": 0.9}, "no label"),
        ({"label": "travel", "confidence": math.nan}, "finite"),
        ({"label": "travel", "confidence": 1.2}, "outside [0, 1]"),
        ({"label": "travel", "confidence": -0.1}, "outside [0, 1]"),
        ({"label": "travel", "confidence": math.inf}, "finite"),
    ],
)
def test_unusable_classification_outputs_are_null(kwargs, reason_part):
    verdict = assess_output(labels=LABELS, **kwargs)
    assert isinstance(verdict, NullOutput)
    assert reason_part in verdict.reason


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [(math.nan, "finite"), (math.inf, "finite"), (None, "no value"), (-5, "below"), (500, "above")],
)
def test_unusable_regression_outputs_are_null(value, reason_part):
    verdict = assess_output(value=value, labels=None, value_min=0, value_max=100)
    assert isinstance(verdict, NullOutput)
    assert reason_part in verdict.reason


def test_usable_outputs_pass_through():
    assert assess_output(label="office", confidence=0.7, labels=LABELS) == ModelOutput(
        label="office", confidence=0.7
    )
    assert assess_output(value=3, labels=None) == ModelOutput(value=3.0)
