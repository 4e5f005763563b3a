"""A web process and a Celery worker start without the heavy libraries.

scikit-learn, SciPy, pandas, pyarrow and skops together hold some 200 MB resident in every
process that imports them; a web process or worker that never scores, exports or retrains must
not pay that. Each check runs in a fresh interpreter, since this test process has imported them
all long before. Scoring imports them on first use (the last test), which is the trade-off.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("sklearn", "scipy", "pandas", "pyarrow", "skops")

REPORT = f"""
import json, sys
print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))
"""


def _loaded_after(code: str) -> list[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "reviewapp.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code + REPORT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_web_process_starts_without_the_heavy_libraries():
    loaded = _loaded_after(
        "import django; django.setup()\n"
        "import reviewapp.urls\n"
        "from reviewapp.wsgi import application\n"
        "from django.urls import get_resolver; get_resolver().url_patterns\n"
    )
    assert loaded == []


def test_a_worker_imports_every_task_without_the_heavy_libraries():
    loaded = _loaded_after(
        "from reviewapp.celery import app\n"
        "app.loader.import_default_modules()\n"  # django.setup() and every app's tasks
        "app.finalize(auto=True)\n"
        "assert 'reviews.score_items' in app.tasks and 'datasets.retrain' in app.tasks\n"
    )
    assert loaded == []


def test_scoring_imports_them_on_first_use(tmp_path):
    from tests.factories import constant_classifier_bytes

    model = tmp_path / "model.skops"
    model.write_bytes(constant_classifier_bytes("office", 0.8))
    loaded = _loaded_after(
        "import django; django.setup()\n"
        "import reviewapp.urls\n"
        "from deployments.ml.loading import model_load\n"
        "from deployments.ml.scoring import score_rows\n"
        f"data = open({str(model)!r}, 'rb').read()\n"
        "loaded = model_load(data=data, max_bytes=10**8, max_uncompressed_bytes=10**9,"
        " timeout_seconds=60)\n"
        "features = [{'name': 'amount', 'type': 'number'}, {'name': 'kind', 'type': 'string'},"
        " {'name': 'vendor', 'type': 'string'}]\n"
        "[out] = score_rows(loaded.estimator, [{'amount': 1.0, 'kind': 'a'}], features,"
        " task_type='classification')\n"
        "assert out.label == 'office', out\n"
    )
    assert {"sklearn", "scipy", "pandas", "skops"} <= set(loaded)


def _worker_started_for(kind: str) -> str:
    """A worker's main process at ``worker_init`` as ``celery worker -Q <kind's queue>``."""
    return (
        "from types import SimpleNamespace\n"
        "from django.conf import settings\n"
        "from reviewapp.celery import _scoring_libraries_before_fork, app\n"
        "app.loader.import_default_modules()\n"
        f"app.amqp.queues.select([settings.TASK_QUEUES[{kind!r}]])\n"
        "_scoring_libraries_before_fork(sender=SimpleNamespace(app=app))\n"
    )


def test_a_worker_of_a_scoring_queue_imports_them_before_its_pool_forks():
    assert {"sklearn", "scipy", "pandas", "skops"} <= set(
        _loaded_after(_worker_started_for("batch"))
    )
    assert _loaded_after(_worker_started_for("monitoring")) == []
