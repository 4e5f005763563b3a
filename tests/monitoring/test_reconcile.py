"""verify_metrics: the dashboards' figures recounted from the raw rows, on real traffic."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from deployments.services.model_versions import model_version_challenge
from reviewapp.monitoring.aggregation import HOURLY_COUNTERS
from reviewapp.monitoring.models import HourlyRollup
from reviewapp.monitoring.reconcile import FIGURES
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    classifier_bytes,
    invoice,
    make_use_case,
    register_model,
    regressor_bytes,
)

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def verify(*args) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_metrics", *args, stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def review(use_case, reviewers, answer, *, at, limit=100):
    """The reviewers take turns until none of them is offered anything (one may have nothing
    left, e.g. only the double reviews of items they answered, while the other still has)."""
    idle = 0
    for step in range(limit):
        reviewer = reviewers[step % len(reviewers)]
        task = review_task_claim(use_case=use_case, user=reviewer, now=at)
        if task is None:
            idle += 1
            if idle == len(reviewers):
                return
            continue
        idle = 0
        review_task_decide(
            task=task, user=reviewer, now=at + timedelta(minutes=step), **answer(step)
        )


@pytest.fixture
def traffic(people, django_capture_on_commit_callbacks):
    """Two use cases with every kind of fact: automated and reviewed items, audits, double
    reviews, overrides, a challenger in shadow, a regression model's errors."""
    reviewers = [people["alice"], people["bob"]]
    invoices = make_use_case(
        # A fixed slug: the audit and double-review buckets hash it, so a counter-made one
        # would change with the order tests run in, and with it which facts exist.
        slug="reconcile-invoices",
        members=reviewers,
        level="partial",
        confidence_threshold=0.7,
        traffic_percent=60,
        audit_rate=0.4,
        double_review_rate=0.4,
    )
    register_model(invoices, classifier_bytes())
    register_model(invoices, classifier_bytes(seed=3), version="v2")
    model_version_challenge(use_case=invoices, version="v2", actor=people["manager"])
    amounts = make_use_case(slug="reconcile-amounts", task_type="regression",
                            members=reviewers, level="shadow",
                            double_review_rate=0.5)  # fmt: skip
    register_model(amounts, regressor_bytes())
    with django_capture_on_commit_callbacks(execute=True):
        _send_and_review(invoices, amounts, reviewers)
    rollups_fold()
    return invoices, amounts


def _send_and_review(invoices, amounts, reviewers):
    for n in range(24):
        at = T0 + timedelta(minutes=9 * n)
        item_ingest(use_case=invoices, **invoice(n, kind="abc"[n % 3]), now=at)
        item_ingest(
            use_case=amounts, external_id=f"a-{n}", features={"x": n / 20, "y": 1.0}, now=at
        )
    labels = ["travel", "office", "other"]
    review(invoices, reviewers, lambda s: {"label": labels[s % 3]}, at=T0 + timedelta(hours=7))
    review(amounts, reviewers, lambda s: {"value": float(s % 7)}, at=T0 + timedelta(hours=7))


def test_every_rollup_counter_is_recounted():
    assert {figure.name for figure in FIGURES} == set(HOURLY_COUNTERS)


def test_seeded_traffic_reconciles(traffic):
    invoices, amounts = traffic
    assert HourlyRollup.objects.filter(use_case=invoices, audits__gt=0).exists()
    assert HourlyRollup.objects.filter(use_case=invoices, double_reviewed__gt=0).exists()
    assert HourlyRollup.objects.filter(use_case=invoices, shadow=True, labelled__gt=0).exists()
    assert HourlyRollup.objects.filter(use_case=amounts, abs_error_sum__gt=0).exists()
    code, out = verify()
    assert code == 0, out
    assert "All figures match" in out
    # A window and one use case: still consistent (the window is read as whole hours).
    code, out = verify("--use-case", invoices.slug, "--since", "2026-03-02T10:30", "--until",
                       "2026-03-02T13:00")  # fmt: skip
    assert code == 0, out


def test_a_tampered_rollup_is_reported_with_both_values(traffic):
    invoices, _ = traffic
    row = HourlyRollup.objects.filter(use_case=invoices, shadow=False, decisions__gt=0).first()
    HourlyRollup.objects.filter(pk=row.pk).update(decisions=F("decisions") + 2)
    total = sum(HourlyRollup.objects.filter(use_case=invoices).values_list("decisions", flat=True))
    code, out = verify()
    assert code == 1
    line = next(line for line in out.splitlines() if " decisions " in f" {line} ")
    assert invoices.slug in line
    assert str(total) in line.split() and str(total - 2) in line.split()


def test_a_lost_fold_is_reported(traffic):
    _, amounts = traffic
    HourlyRollup.objects.filter(use_case=amounts).order_by("hour").first().delete()
    code, out = verify("--use-case", amounts.slug)
    assert code == 1 and "items_routed" in out


def test_bad_arguments_are_named():
    with pytest.raises(CommandError, match="--since"):
        call_command("verify_metrics", "--since", "last week")
    with pytest.raises(CommandError, match="No use case"):
        call_command("verify_metrics", "--use-case", "nope")
