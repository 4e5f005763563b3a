"""History archives: old, closed history moves to Parquet files and comes back unchanged, the
dashboards' figures stay the same throughout, and nothing open or changed is ever removed."""

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.db.models import Sum

from deployments.models import UseCase
from deployments.services.model_versions import model_version_challenge
from reviewapp.archives import services
from reviewapp.archives.models import Archive
from reviewapp.archives.services import (
    TABLES,
    archive_create,
    archive_restore,
    archives_due,
    archives_resume,
    cutoff_for,
)
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.jobs import job_create
from reviewapp.core.models import Job
from reviewapp.core.roles import Role
from reviewapp.monitoring.models import HourlyRollup
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.models import Decision, Item, ItemSeen, Prediction, ReviewTask
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import classifier_bytes, invoice, make_use_case, make_user, register_model

pytestmark = pytest.mark.django_db

OLD = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NEW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
CUTOFF = datetime(2026, 4, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LABELS = ["travel", "office", "other"]


def _review_all(use_case, reviewers, *, at):
    idle, step = 0, 0
    while idle < len(reviewers):
        reviewer = reviewers[step % len(reviewers)]
        task = review_task_claim(use_case=use_case, user=reviewer, now=at)
        step += 1
        if task is None:
            idle += 1
            continue
        idle = 0
        review_task_decide(
            task=task, user=reviewer, label=LABELS[step % 3], now=at + timedelta(minutes=step)
        )


@pytest.fixture
def history(django_capture_on_commit_callbacks):
    """March: items reviewed in March (archivable), items decided only in May (late) and items
    still waiting for a person (open). May: new items. A challenger scores in shadow."""
    reviewers = [make_user(Role.REVIEWER, "alice"), make_user(Role.REVIEWER, "bob")]
    use_case = make_use_case(
        slug="archive-invoices",
        members=reviewers,
        level="partial",
        confidence_threshold=0.7,
        traffic_percent=60,
        audit_rate=0.4,
        double_review_rate=0.4,
    )
    register_model(use_case, classifier_bytes())
    register_model(use_case, classifier_bytes(seed=3), version="v2")
    model_version_challenge(use_case=use_case, version="v2", actor=make_user(Role.MANAGER))
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(30):
            item_ingest(use_case=use_case, **invoice(n), now=OLD + timedelta(minutes=9 * n))
        _review_all(use_case, reviewers, at=OLD + timedelta(hours=7))
        for n in range(100, 106):  # received in March, decided in May
            item_ingest(use_case=use_case, **invoice(n), now=OLD + timedelta(hours=9, minutes=n))
        for n in range(200, 210):
            item_ingest(use_case=use_case, **invoice(n), now=NEW + timedelta(minutes=n))
        _review_all(use_case, reviewers, at=NEW + timedelta(hours=5))
        for n in range(300, 306):  # received in March, still waiting
            item_ingest(use_case=use_case, **invoice(n), now=OLD + timedelta(hours=10, minutes=n))
    # Items that came in a batch point at its job (a UUID key).
    job = job_create(kind=Job.Kind.BATCH_INGEST, total=5, use_case=use_case)
    Item.objects.filter(use_case=use_case, external_id__in=[f"inv-{n}" for n in range(5)]).update(
        job=job
    )
    # The challenger scores in a task that reads the real clock: put its predictions at their
    # items' time, as in production where it scores each item as it arrives.
    for prediction in Prediction.objects.filter(use_case=use_case).select_related("item"):
        prediction.created_at = prediction.item.received_at + timedelta(seconds=1)
        prediction.save(update_fields=["created_at"])
    rollups_fold()
    return use_case


def _snapshot(use_case) -> dict[str, list[dict]]:
    """Every row of every archived table that belongs to the use case's items."""
    items = Item.objects.filter(use_case=use_case).values("pk")
    out = {}
    for table in TABLES:
        rows = table.model._base_manager.filter(**{f"{table.item_path}__in": items})
        out[table.name] = list(rows.order_by("pk").values())
    return out


def _figures(use_case) -> dict[str, float]:
    names = ["items_routed", "decisions", "labelled", "agree", "audits", "predictions"]
    return HourlyRollup.objects.filter(use_case=use_case).aggregate(**{n: Sum(n) for n in names})


def _verify() -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_metrics", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def _expected_archivable(use_case) -> set[str]:
    """The rule, said plainly: decided before the cutoff, nothing open, nothing after it."""
    out = set()
    for item in Item.objects.filter(use_case=use_case):
        tasks = ReviewTask.objects.filter(item=item)
        decisions = Decision.objects.filter(item=item)
        if (
            item.status == Item.Status.DECIDED
            and item.received_at < CUTOFF
            and item.decided_at < CUTOFF
            and not tasks.filter(state__in=["open", "escalated"]).exists()
            and not decisions.filter(created_at__gte=CUTOFF).exists()
            and not tasks.filter(created_at__gte=CUTOFF).exists()
        ):
            out.add(item.external_id)
    return out


def test_archive_and_restore_keep_every_row_and_every_figure(history):
    use_case = history
    before = _snapshot(use_case)
    figures = _figures(use_case)
    code, out = _verify()
    assert code == 0, out
    expected = _expected_archivable(use_case)
    waiting = set(
        Item.objects.filter(use_case=use_case, status=Item.Status.IN_REVIEW).values_list(
            "external_id", flat=True
        )
    )
    late = set(
        Decision.objects.filter(
            use_case=use_case, item__received_at__lt=CUTOFF, created_at__gte=CUTOFF
        ).values_list("item__external_id", flat=True)
    )
    assert expected and waiting and late  # the fixture has each kind

    archive = archive_create(use_case=use_case, cutoff=CUTOFF, now=NOW)

    assert archive.state == Archive.State.ARCHIVED
    assert archive.items == archive.items_removed == len(expected)
    left = set(Item.objects.filter(use_case=use_case).values_list("external_id", flat=True))
    assert left.isdisjoint(expected)
    assert waiting <= left  # an item whose review is open is never archived
    assert late <= left  # received before the cutoff, decided after it: kept
    assert _figures(use_case) == figures  # the rollups keep the aggregates
    code, out = _verify()
    assert code == 0, out
    assert "archive-invoices's history before 2026-04-01" in out
    use_case.refresh_from_db()
    assert use_case.history_archived_before == CUTOFF

    # The files: what the manifest says, byte for byte and row for row.
    storage = storages["archives"]
    manifest = json.loads(storage.open(f"{archive.location}/manifest.json").read())
    assert manifest == archive.manifest
    raw = storage.open(f"{archive.location}/manifest.json").read()
    assert hashlib.sha256(raw).hexdigest() == archive.manifest_sha256
    removed = {
        name: [row for row in rows if row["id"] not in _ids_left(name, use_case)]
        for name, rows in before.items()
    }
    for table in TABLES:
        entry = manifest["tables"][table.name]
        path = Path(storage.path(f"{archive.location}/{entry['file']}"))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert pq.read_table(path).num_rows == entry["rows"] == len(removed[table.name])
    assert manifest["tables"]["decisions"]["rows"] > 0
    assert manifest["tables"]["predictions"]["rows"] > manifest["items"]  # the challenger's too

    inserted = archive_restore(archive=archive)

    assert inserted == {name: len(rows) for name, rows in removed.items()}
    assert _snapshot(use_case) == before  # every column of every row, as it was
    archive.refresh_from_db()
    use_case.refresh_from_db()
    assert archive.state == Archive.State.RESTORED
    assert use_case.history_archived_before is None
    code, out = _verify()
    assert code == 0, out
    assert "archived" not in out
    with pytest.raises(Conflict, match="restored"):
        archive_restore(archive=archive)


def _ids_left(name, use_case) -> set[int]:
    table = next(t for t in TABLES if t.name == name)
    items = Item.objects.filter(use_case=use_case).values("pk")
    return set(
        table.model._base_manager.filter(**{f"{table.item_path}__in": items}).values_list(
            "pk", flat=True
        )
    )


def test_a_file_that_changed_is_refused_and_nothing_is_restored(history):
    archive = archive_create(use_case=history, cutoff=CUTOFF, now=NOW)
    items_left = Item.objects.count()
    path = Path(storages["archives"].path(f"{archive.location}/decisions.parquet"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="decisions.parquet"):
        archive_restore(archive=archive)
    assert Item.objects.count() == items_left
    archive.refresh_from_db()
    assert archive.state == Archive.State.ARCHIVED


def test_an_external_id_sent_again_blocks_the_restore_by_name(history):
    archive = archive_create(use_case=history, cutoff=CUTOFF, now=NOW)
    gone = Item.objects.filter(use_case=history).values_list("external_id", flat=True)
    first = sorted({f"inv-{n}" for n in range(30)} - set(gone))[0]
    number = int(first.removeprefix("inv-"))
    item_ingest(use_case=history, **invoice(number), now=NOW)
    with pytest.raises(Conflict, match=first):
        archive_restore(archive=archive)


def test_an_item_that_changes_while_archived_stays_in_the_database(history, monkeypatch):
    """A row added after the files were written (here: someone saw an archived item) keeps
    that item in the database; the archive counts it as kept."""
    store = services._store
    seen = {}
    someone = make_user()

    def store_then_see(archive, scratch, manifest):
        sha = store(archive, scratch, manifest)
        item_id = pq.read_table(scratch / "items.parquet").column("id").to_pylist()[0]
        seen["item"] = item_id
        ItemSeen.objects.create(item_id=item_id, user=someone, first_seen_at=NOW)
        return sha

    monkeypatch.setattr(services, "_store", store_then_see)
    archive = archive_create(use_case=history, cutoff=CUTOFF, now=NOW)
    assert archive.items_kept == 1 and archive.items_removed == archive.items - 1
    assert Item.objects.filter(pk=seen["item"]).exists()
    monkeypatch.undo()
    inserted = archive_restore(archive=archive)
    assert inserted["items"] == archive.items - 1  # the kept one is left as it is
    assert ItemSeen.objects.filter(item_id=seen["item"], user=someone).exists()


def test_a_run_stopped_while_removing_finishes_on_the_next(history, monkeypatch):
    items = Item.objects.count()

    def stop(archive):
        raise KeyboardInterrupt

    monkeypatch.setattr(services, "_remove", stop)
    with pytest.raises(KeyboardInterrupt):
        archive_create(use_case=history, cutoff=CUTOFF, now=NOW)
    assert Item.objects.count() == items  # nothing removed before the files were stored
    monkeypatch.undo()
    archive = Archive.objects.get()
    assert archive.state == Archive.State.REMOVING
    with pytest.raises(Conflict, match="being written"):
        archive_create(use_case=history, cutoff=CUTOFF, now=NOW)
    (finished,) = archives_resume()
    assert finished.state == Archive.State.ARCHIVED
    assert Item.objects.count() == items - finished.items


def test_a_run_stopped_while_writing_removes_nothing_and_drops_its_files(history, monkeypatch):
    def broken(archive, scratch, manifest):
        raise OSError("disk full")

    items = Item.objects.count()
    monkeypatch.setattr(services, "_store", broken)
    with pytest.raises(OSError):
        archive_create(use_case=history, cutoff=CUTOFF, now=NOW)
    archive = Archive.objects.get()
    assert archive.state == Archive.State.FAILED and "disk full" in archive.error
    assert Item.objects.count() == items
    monkeypatch.undo()
    assert archive_create(use_case=history, cutoff=CUTOFF, now=NOW).items_removed > 0


def test_retention_archives_what_is_older_than_its_months(history):
    history.retention_months = 2
    history.save(update_fields=["retention_months"])
    make_use_case(slug="keeps-everything")  # no retention: never archived
    assert cutoff_for(use_case=history, now=NOW) == CUTOFF  # June less two months: April 1st
    assert cutoff_for(use_case=history, now=datetime(2027, 1, 3, tzinfo=UTC)) == datetime(
        2026, 11, 1, tzinfo=UTC
    )
    (archive,) = archives_due(now=NOW)
    assert archive.use_case == history and archive.cutoff == CUTOFF
    assert archive.created_by_name == "retention"
    assert archives_due(now=NOW) == []  # nothing left that may go


def test_rebuilding_the_rollups_of_archived_history_is_refused(history):
    archive_create(use_case=history, cutoff=CUTOFF, now=NOW)
    rows = HourlyRollup.objects.filter(use_case=history).count()
    with pytest.raises(CommandError, match="restore_archive"):
        call_command("rebuild_rollups", history.slug, stdout=io.StringIO())
    assert HourlyRollup.objects.filter(use_case=history).count() == rows


def test_the_commands_archive_list_and_restore(history):
    out = io.StringIO()
    call_command("archive_history", "--before", "2026-04-01", "--dry-run", stdout=out)
    expected = len(_expected_archivable(history))
    assert f"archive-invoices: {expected} items before 2026-04-01" in out.getvalue()
    assert Archive.objects.count() == 0
    out = io.StringIO()
    call_command("archive_history", "--use-case", history.slug, "--before", "2026-04-01",
                 stdout=out)  # fmt: skip
    archive = Archive.objects.get()
    assert f"{expected} items written, {expected} removed" in out.getvalue()
    out = io.StringIO()
    call_command("archive_history", "--list", stdout=out)
    assert str(archive.pk) in out.getvalue() and "archived" in out.getvalue()
    out = io.StringIO()
    call_command("restore_archive", str(archive.pk), stdout=out)
    assert f"{expected} items" in out.getvalue()
    with pytest.raises(CommandError, match="no archive"):
        call_command("restore_archive", "not-an-id")
    with pytest.raises(CommandError, match="--before"):
        call_command("archive_history", "--before", "last spring")


def test_retention_is_set_through_the_api(api):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(slug="retained", members=[manager])
    client = api(manager)
    url = f"/api/v1/use-cases/{use_case.slug}/"
    response = client.patch(url, {"retention_months": 0}, format="json")
    assert response.status_code == 400 and "retention_months" in response.json()
    response = client.patch(url, {"retention_months": 18}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["retention_months"] == 18
    assert response.json()["history_archived_before"] is None
    assert UseCase.objects.get(pk=use_case.pk).retention_months == 18
    response = client.patch(url, {"retention_months": None}, format="json")
    assert response.json()["retention_months"] is None


def test_embedded_mode_archives_after_a_response_once_a_day(history, settings):
    from reviewapp.archives.tasks import embedded_archive

    settings.ARCHIVE_EMBEDDED_SECONDS = 24 * 3600
    history.retention_months = 2
    history.save(update_fields=["retention_months"])
    embedded_archive.last = None
    assert embedded_archive.run_if_due(clock=lambda: 1000.0)
    assert Archive.objects.filter(use_case=history, state=Archive.State.ARCHIVED).exists()
    assert not embedded_archive.run_if_due(clock=lambda: 1000.0 + 3600)  # not again that day


def test_an_account_that_only_archived_history_names_cannot_be_deleted(history):
    """Archived rows keep what they refer to, as they did in the database: the archive can
    always come back. Restored, the rows themselves keep it."""
    from django.db.models import ProtectedError

    from reviewapp.core.append_only import history_kept_by

    dora = make_user(Role.REVIEWER, "dora")
    item = Item.objects.get(use_case=history, external_id="inv-0")  # archivable (auto, March)
    ItemSeen.objects.create(item=item, user=dora, first_seen_at=OLD + timedelta(hours=1))
    archive = archive_create(use_case=history, cutoff=CUTOFF, now=NOW)
    assert not Item.objects.filter(pk=item.pk).exists()
    assert history_kept_by(dora) == ["archived history"]  # what the admin says
    assert "archives" in history_kept_by(history)  # and of the use case
    with pytest.raises(ProtectedError):
        dora.delete()
    archive_restore(archive=archive)
    assert ItemSeen.objects.filter(item=item, user=dora).exists()
    assert not archive.references.exists()


def test_a_cutoff_is_rounded_down_to_the_hour_so_the_figures_after_it_recount_exactly(history):
    """Rollups are hourly: a cutoff inside an hour would leave that hour's rollup counting
    archived facts that its raw rows no longer hold."""
    reviewed_from = OLD + timedelta(hours=7)  # March's reviews: 16:01 onwards
    archive = archive_create(
        use_case=history, cutoff=reviewed_from + timedelta(minutes=30), now=NOW
    )
    assert archive.cutoff == reviewed_from
    code, out = _verify()
    assert code == 0, out
