"""Scenario results, printed and kept for the run's report."""

import json

import pytest


@pytest.fixture
def reliability_results():
    def record(**result):
        print("\nRELIABILITY " + json.dumps(result, default=str))

    return record
