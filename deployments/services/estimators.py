"""Model versions' estimators in this process: loading artifacts under the upload limits, the
per-process cache, and the thread pool realtime scoring runs on."""

import logging
import threading
from collections.abc import Callable

from django.conf import settings

from deployments.ml.latency import TimeoutPool
from deployments.ml.loading import (
    LoadedModel,
    ModelRejected,
    model_cache,
    model_load,
    scoring_libraries_import,
)
from deployments.models import ModelVersion

logger = logging.getLogger(__name__)


def _cache_key(model_version: ModelVersion) -> tuple[int, str]:
    return (model_version.pk, model_version.artifact_sha256)


def estimator_cached(model_version: ModelVersion):
    """The loaded estimator if this process has it already, else None."""
    return model_cache.get(_cache_key(model_version))


def estimator_cache_put(*, model_version: ModelVersion, estimator) -> None:
    """Keep an estimator already loaded (by the upload checks) for the version's scoring."""
    model_cache.put(_cache_key(model_version), estimator)


def artifact_bytes(model_version: ModelVersion) -> bytes | None:
    data = ModelVersion.objects.values_list("artifact", flat=True).get(pk=model_version.pk)
    return None if data is None else bytes(data)


def model_load_limited(*, data: bytes, record_warnings: bool = False) -> LoadedModel:
    """Load a skops file within the configured size, decompression and time limits."""
    return model_load(
        data=data,
        max_bytes=settings.MODEL_UPLOAD_MAX_BYTES,
        max_uncompressed_bytes=settings.MODEL_UPLOAD_MAX_UNCOMPRESSED_BYTES,
        timeout_seconds=settings.MODEL_LOAD_TIMEOUT_SECONDS,
        record_warnings=record_warnings,
    )


def estimator_load(*, model_version: ModelVersion, data: bytes | None):
    """Load ``data`` (the version's artifact) into this process's cache. No database access,
    so it may run on a scoring thread. Raises ModelRejected when it cannot be loaded."""
    if data is None:
        raise ModelRejected(f"{model_version.version} has no artifact: it is served elsewhere")
    loaded = model_load_limited(data=data)
    estimator_cache_put(model_version=model_version, estimator=loaded.estimator)
    return loaded.estimator


def estimator_for(model_version: ModelVersion):
    """The loaded estimator of a model version, from this process's cache when possible."""
    estimator = estimator_cached(model_version)
    if estimator is None:
        estimator = estimator_load(model_version=model_version, data=artifact_bytes(model_version))
    return estimator


def champions_warm(*, progress: Callable[[], object] | None = None) -> int:
    """Load every champion with an artifact into this process's cache (and with it the
    scoring libraries, imported on first use); return how many loaded. A champion that no
    longer loads is logged and left for its first item to report. ``progress`` is called after
    each champion (a gunicorn worker tells its master it is alive)."""
    champions = ModelVersion.objects.filter(
        role=ModelVersion.Role.CHAMPION, artifact__isnull=False
    ).only("pk", "version", "artifact_sha256")
    loaded = 0
    for champion in champions:
        if estimator_cached(champion) is not None:
            continue
        try:
            estimator_load(model_version=champion, data=artifact_bytes(champion))
        except ModelRejected as exc:
            logger.warning("champion %s not loaded at start: %s", champion.version, exc)
        else:
            loaded += 1
        if progress is not None:
            progress()
    scoring_libraries_import()  # pandas too, which a load does not import
    return loaded


_realtime_pool: TimeoutPool | None = None
_realtime_pool_lock = threading.Lock()


def realtime_scoring_pool() -> TimeoutPool:
    """The threads that run realtime model calls under a latency budget (one pool a process)."""
    global _realtime_pool
    if _realtime_pool is None:
        with _realtime_pool_lock:
            if _realtime_pool is None:
                _realtime_pool = TimeoutPool(
                    max_workers=settings.REALTIME_SCORING_THREADS, name="realtime-scoring"
                )
    return _realtime_pool
