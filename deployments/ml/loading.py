"""Loading uploaded models safely: skops with an explicit allowlist, never pickle.

An upload is a zip archive (the skops format). Before skops reads it we check the archive
itself: its size, its entry names (no ``../`` or absolute paths), and its uncompressed size (no
zip bombs). skops then lists every type it would have to construct that is not on its own
default trust list; we accept those only from scikit-learn, NumPy and SciPy. Anything else, a
pickle or joblib file included, is refused with a message that says why.
"""

import hashlib
import io
import json
import threading
import warnings
import zipfile
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import skops.io as sio

from deployments.ml.environment import LoadWarning, saved_versions_read, warnings_recorded

TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.")
MAX_UNCOMPRESSED_BYTES = 512 * 1024 * 1024
MAX_COMPRESSION_RATIO = 200
MAX_ENTRIES = 100_000


class ModelRejected(Exception):
    """The file is not a model this app will load; the message says why."""


@dataclass(frozen=True)
class LoadedModel:
    estimator: Any
    sha256: str
    size: int
    estimator_name: str
    schema: dict
    # Library versions the file records (skops, its protocol, scikit-learn).
    saved_versions: dict
    # What the libraries warned about while loading (a scikit-learn version mismatch above all).
    warnings: tuple[LoadWarning, ...] = ()


def _check_archive(data: bytes, *, max_bytes: int) -> zipfile.ZipFile:
    if len(data) > max_bytes:
        raise ModelRejected(f"the file is {len(data)} bytes; the limit is {max_bytes}")
    if data[:2] == b"\x80\x04" or data[:1] == b"\x80":
        raise ModelRejected("this is a pickle file; only .skops files are accepted")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelRejected("not a .skops file (a skops file is a zip archive)")
    archive = zipfile.ZipFile(io.BytesIO(data))
    entries = archive.infolist()
    if len(entries) > MAX_ENTRIES:
        raise ModelRejected(f"the archive holds {len(entries)} entries; the limit is {MAX_ENTRIES}")
    total = 0
    for entry in entries:
        name = entry.filename
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
            raise ModelRejected(f"the archive holds an unsafe path: {name!r}")
        total += entry.file_size
        if entry.compress_size and entry.file_size / entry.compress_size > MAX_COMPRESSION_RATIO:
            raise ModelRejected(f"entry {name!r} is compressed suspiciously well (a zip bomb?)")
    if total > MAX_UNCOMPRESSED_BYTES:
        raise ModelRejected(
            f"the archive expands to {total} bytes; the limit is {MAX_UNCOMPRESSED_BYTES}"
        )
    if "schema.json" not in archive.namelist():
        raise ModelRejected("not a .skops file: schema.json is missing")
    return archive


def _refuse_untrusted(data: bytes) -> list[str]:
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises many kinds on a malformed archive
        raise ModelRejected(f"not a readable .skops file: {exc}") from exc
    refused = [name for name in untrusted if not name.startswith(TRUSTED_MODULE_PREFIXES)]
    if refused:
        raise ModelRejected(
            "the file refers to types outside scikit-learn, NumPy and SciPy, which are "
            f"never loaded: {', '.join(sorted(refused))}"
        )
    return untrusted


def model_load(*, data: bytes, max_bytes: int, record_warnings: bool = False) -> LoadedModel:
    """Load a skops artifact, or raise ModelRejected naming the reason.

    With ``record_warnings`` (an upload's check) the warnings raised while loading are kept on
    the result. The warnings filter is process-wide, so live loads leave it alone.
    """
    archive = _check_archive(data, max_bytes=max_bytes)
    try:
        schema = json.loads(archive.read("schema.json"))
    except ValueError as exc:
        raise ModelRejected("not a .skops file: schema.json is not JSON") from exc
    if not isinstance(schema, dict):
        raise ModelRejected("not a .skops file: schema.json is not an object")
    trusted = _refuse_untrusted(data)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) if record_warnings else nullcontext() as seen:
            if record_warnings:
                warnings.simplefilter("always")
            estimator = sio.loads(data, trusted=trusted)
        caught = list(seen or [])
    except Exception as exc:
        raise ModelRejected(
            f"the model could not be loaded in this environment: {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(estimator, "predict"):
        raise ModelRejected("the object in the file has no predict method")
    return LoadedModel(
        estimator=estimator,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        estimator_name=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        schema={k: v for k, v in schema.items() if k != "content"},
        saved_versions=saved_versions_read(schema),
        warnings=tuple(warnings_recorded(caught)),
    )


class ModelCache:
    """Loaded estimators kept per process, keyed by version id and artifact hash."""

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._items: OrderedDict[tuple[int, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, str]) -> Any | None:
        with self._lock:
            estimator = self._items.get(key)
            if estimator is not None:
                self._items.move_to_end(key)
            return estimator

    def put(self, key: tuple[int, str], estimator: Any) -> None:
        with self._lock:
            self._items[key] = estimator
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


model_cache = ModelCache()
