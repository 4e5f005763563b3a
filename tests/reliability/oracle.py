"""Invariants checked with plain SQL on the deployment's database (psycopg, no ORM), so a bug
in the app's own reading code cannot hide a bug in its writing code.

Each check returns a count of violations; a healthy system has zero everywhere.
"""

from collections.abc import Iterable

CHECKS: dict[str, str] = {
    # Every item is predicted at most once per model version.
    "duplicate_predictions": """
        SELECT count(*) FROM (
            SELECT item_id, model_version_id FROM reviews_prediction
            GROUP BY item_id, model_version_id HAVING count(*) > 1) d""",
    # An item routed with the model's help points at a prediction of its own.
    "routed_without_prediction": """
        SELECT count(*) FROM reviews_item i
        WHERE i.status <> 'pending' AND i.route IN ('auto', 'assisted')
          AND NOT EXISTS (SELECT 1 FROM reviews_prediction p
                          WHERE p.id = i.prediction_id AND p.item_id = i.id)""",
    # Routing moves an item out of pending for good: a routed item is never pending again.
    "pending_but_routed": """
        SELECT count(*) FROM reviews_item i
        WHERE i.status = 'pending' AND i.routed_at IS NOT NULL""",
    # At most one review task per item and reason.
    "duplicate_tasks": """
        SELECT count(*) FROM (
            SELECT item_id, reason FROM reviews_reviewtask
            GROUP BY item_id, reason HAVING count(*) > 1) d""",
    # An item in review has an open task; a decided item has its decision.
    "in_review_without_task": """
        SELECT count(*) FROM reviews_item i
        WHERE i.status = 'in_review'
          AND NOT EXISTS (SELECT 1 FROM reviews_reviewtask t WHERE t.item_id = i.id)""",
    "decided_without_decision": """
        SELECT count(*) FROM reviews_item i
        WHERE i.status = 'decided' AND i.decision_source = ''""",
    # A batch job's progress never passes its total, and a done job has no pending item left.
    "job_progress_overflow": "SELECT count(*) FROM core_job WHERE done > total",
    "done_job_with_pending_items": """
        SELECT count(*) FROM reviews_item i JOIN core_job j ON j.id = i.job_id
        WHERE j.state = 'done' AND i.status = 'pending'""",
}


def violations(conn, names: Iterable[str] | None = None) -> dict[str, int]:
    """Run the named checks (all by default) on an open psycopg connection."""
    return {name: conn.execute(CHECKS[name]).fetchone()[0] for name in (names or CHECKS.keys())}


def pending_items(conn, *, older_than_seconds: float = 0, use_case_id: int | None = None) -> int:
    """Items still waiting to be routed (of one use case, when given: scenarios share a
    deployment, and another's leftovers are not this one's to wait for)."""
    sql = (
        "SELECT count(*) FROM reviews_item WHERE status = 'pending' "
        "AND received_at < now() - make_interval(secs => %s)"
    )
    params: list = [older_than_seconds]
    if use_case_id is not None:
        sql += " AND use_case_id = %s"
        params.append(use_case_id)
    return conn.execute(sql, params).fetchone()[0]


def item_count(conn, *, use_case_id: int | None = None) -> int:
    if use_case_id is None:
        return conn.execute("SELECT count(*) FROM reviews_item").fetchone()[0]
    return conn.execute(
        "SELECT count(*) FROM reviews_item WHERE use_case_id = %s", [use_case_id]
    ).fetchone()[0]


def missing_external_ids(conn, *, slug: str, external_ids: Iterable[str]) -> int:
    """How many ids the server acknowledged are not stored (an acknowledged write was lost)."""
    ids = list(external_ids)
    if not ids:
        return 0
    stored = conn.execute(
        "SELECT count(*) FROM reviews_item i JOIN deployments_usecase u ON u.id = i.use_case_id "
        "WHERE u.slug = %s AND i.external_id = ANY(%s)",
        [slug, ids],
    ).fetchone()[0]
    return len(set(ids)) - stored


def predictions_per_item(conn, *, model_version_id: int) -> dict[int, int]:
    """How many of its use case's items have 0, 1, 2... predictions by the model version:
    ``{predictions: items}``; ``{1: n}`` is "every item predicted exactly once"."""
    rows = conn.execute(
        """SELECT n, count(*) FROM (
               SELECT i.id, count(p.id) AS n FROM reviews_item i
               LEFT JOIN reviews_prediction p
                 ON p.item_id = i.id AND p.model_version_id = %s
               WHERE i.use_case_id = (
                   SELECT use_case_id FROM deployments_modelversion WHERE id = %s)
               GROUP BY i.id) c GROUP BY n""",
        [model_version_id, model_version_id],
    ).fetchall()
    return dict(rows)
