"""What scoring reads of a use case on every item (policy, champion, challengers) is kept per
process under the use case's config stamp: one read of the use case row is the check, and a
change made by any process is seen by the next item.

Tests run inside one transaction that never commits; ``django_capture_on_commit_callbacks``
(executed) plays the commit a real request ends with.
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from deployments.models import AutomationPolicy, UseCase, config_stamp_new
from deployments.selectors import scoring_config
from deployments.services.model_versions import model_version_promote
from deployments.services.policies import policy_change
from reviewapp.core.roles import Role
from reviewapp.reviews.services.ingest import item_ingest
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """A use case at ``assisted`` with a model; every write so far committed."""
    manager = make_user(Role.MANAGER)
    with django_capture_on_commit_callbacks(execute=True):
        use_case = make_use_case(members=[manager], level="assisted")
        register_model(use_case, constant_classifier_bytes("office", 0.7))
    return use_case, manager


def fresh(use_case) -> UseCase:
    """The use case as the next request reads it."""
    return UseCase.objects.get(pk=use_case.pk)


def ingest(use_case, n: int):
    return item_ingest(use_case=fresh(use_case), **invoice(n)).item


def test_the_next_request_reads_nothing_but_the_use_case(committed):
    use_case, _ = committed
    first = scoring_config(use_case=fresh(use_case))
    read = (first.policy, first.champion, first.challengers)
    with CaptureQueriesContext(connection) as captured:
        again = scoring_config(use_case=fresh(use_case))
        assert (again.policy, again.champion, again.challengers) == read
    assert len(captured.captured_queries) == 1  # the use case row, with its stamp
    assert read[0].level == "assisted" and read[1].version == "v1" and read[2] == ()


def test_a_policy_change_is_seen_by_the_next_item(committed, django_capture_on_commit_callbacks):
    use_case, manager = committed
    assert ingest(use_case, 1).policy.level == "assisted"
    with django_capture_on_commit_callbacks(execute=True):
        policy_change(
            use_case=fresh(use_case),
            actor=manager,
            changes={"level": "shadow"},
            reason="back to shadow",
        )
    assert ingest(use_case, 2).policy.level == "shadow"


def test_a_promotion_is_seen_by_the_next_item(committed, django_capture_on_commit_callbacks):
    use_case, manager = committed
    assert ingest(use_case, 1).prediction.model_version.version == "v1"
    with django_capture_on_commit_callbacks(execute=True):
        register_model(use_case, classifier_bytes(), version="v2")
        model_version_promote(
            use_case=fresh(use_case), version="v2", actor=manager, reason="better"
        )
    assert ingest(use_case, 2).prediction.model_version.version == "v2"


def test_a_change_committed_by_another_process_is_seen_through_the_stamp(committed):
    """Another process wrote a policy version and a new stamp: nothing in this process was
    told, and the next item still goes by the new policy."""
    use_case, _ = committed
    current = scoring_config(use_case=fresh(use_case)).policy
    newer = AutomationPolicy.objects.create(
        use_case=use_case,
        version=current.version + 1,
        level="shadow",
        confidence_threshold=current.confidence_threshold,
        changed_by_system=True,
        changed_at=current.changed_at,
        reason="another process",
    )
    # Without a new stamp the process goes on with what it kept: the stamp is the contract.
    assert scoring_config(use_case=fresh(use_case)).policy == current
    UseCase.objects.filter(pk=use_case.pk).update(config_stamp=config_stamp_new())
    assert scoring_config(use_case=fresh(use_case)).policy == newer
    assert ingest(use_case, 1).policy == newer


def test_a_change_that_rolls_back_leaves_nothing_behind(committed):
    use_case, manager = committed
    before = fresh(use_case)
    with pytest.raises(RuntimeError), transaction.atomic():
        policy_change(
            use_case=fresh(use_case), actor=manager, changes={"level": "shadow"}, reason="try"
        )
        # Read inside the writing transaction, by a request that read the use case before
        # the change: the new level, for that request only; the process keeps nothing.
        assert scoring_config(use_case=before).policy.level == "shadow"
        raise RuntimeError("the change failed after it was written")
    after = fresh(use_case)
    assert after.config_stamp == before.config_stamp
    assert scoring_config(use_case=after).policy.level == "assisted"
    assert ingest(use_case, 1).policy.level == "assisted"
