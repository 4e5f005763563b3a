"""Hooks for the apps that read the facts: the facts layer announces what it wrote and never
needs to know who listens (monitoring keeps rollups, the guardrail watch re-checks a use case).

The three record signals (``items_routed``, ``decision_recorded``, ``predictions_recorded``) are
sent synchronously, inside the writing transaction, with ``send`` (not ``send_robust``). That is
what makes them safe for bookkeeping that must match the facts exactly: a receiver writes in the
writer's transaction, so a rolled-back write records nothing, and a receiver that fails rolls
the write back with it, so a committed fact is never lost to its rollups.

``use_case_facts_changed`` is sent once the write has committed (after the writer's own
``transaction.atomic`` block), exactly where the guardrail watch used to be called; its receiver
must be cheap and defer any real work to after the caller's commit.
"""

from django.dispatch import Signal

# Items were routed: ``use_case_id``, ``item_ids``. Sent inside the routing transaction.
items_routed = Signal()
# A human decided: ``decision``, ``prediction_ids`` (the item's predictions this transaction
# sees). Sent inside the decision transaction, holding the item's row lock.
decision_recorded = Signal()
# Challenger predictions were stored: ``use_case_id``, ``pairs`` of (prediction id, the item's
# first human decision id or None). Sent inside the scoring transaction, holding the row locks.
predictions_recorded = Signal()
# New facts (items, decisions, predictions) of a use case committed: ``use_case_id``.
use_case_facts_changed = Signal()
