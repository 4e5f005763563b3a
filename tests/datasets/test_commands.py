"""manage.py export_disagreements and manage.py retrain: the same services, in process,
with a progress bar."""

import hashlib
import io

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.reviews.models import Disagreement
from tests.datasets.conftest import PII_MARK, build_world

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_exporting_from_the_command_line(world, tmp_path):
    target = tmp_path / "shadow.parquet"
    out, err = run(
        "export_disagreements",
        world.use_case.slug,
        "--format=parquet",
        "--kind=shadow",
        "--pii=hash",
        f"--user={world.analyst.username}",
        f"--output={target}",
    )
    export = Export.objects.get()
    assert export.created_by == world.analyst and export.filters == {"kind": "shadow"}
    assert export.sha256 in out and str(target) in out
    assert hashlib.sha256(target.read_bytes()).hexdigest() == export.sha256
    frame = pd.read_parquet(target)
    assert len(frame) == Disagreement.objects.filter(kind="shadow").count()
    assert "vendor_hmac" in frame.columns
    assert "Exporting [" in err and "100%" in err  # the progress bar (one line per step here)


def test_the_command_refuses_what_the_pages_refuse(world):
    with pytest.raises(CommandError, match="--pii"):
        run("export_disagreements", world.use_case.slug, "--pii=include")
    with pytest.raises(CommandError, match="--confidence-min"):
        run("export_disagreements", world.use_case.slug, "--confidence-min=7")
    with pytest.raises(CommandError, match="No use case"):
        run("export_disagreements", "nope")
    with pytest.raises(CommandError, match="No user"):
        run("export_disagreements", world.use_case.slug, "--user=ghost")
    assert not Export.objects.exists()
    out, _ = run(
        "export_disagreements",
        world.use_case.slug,
        "--pii=include",
        f"--user={world.pii_analyst.username}",
        "--format=jsonl",
    )
    export = Export.objects.get()
    assert export.sha256 in out
    with open(export_path(export), "rb") as handle:
        assert PII_MARK.encode() in handle.read()


def export_path(export) -> str:
    from reviewapp.datasets.services.exports import export_storage

    return export_storage().path(export.file_name)


def test_retraining_from_the_command_line(settings):
    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world(items_per_phase=10)
    out, err = run("retrain", world.use_case.slug, "--holdout=0.3", "--name=cli-1")
    run_ = TrainingRun.objects.get()
    assert run_.state == "done" and run_.model_version.version == "cli-1"
    assert "Registered cli-1 as a challenger" in out and "accuracy" in out
    assert run_.export.sha256 in out
    assert "Retraining [" in err and "100%" in err
    with pytest.raises(CommandError, match="holdout_fraction"):
        run("retrain", world.use_case.slug, "--holdout=0.9")
