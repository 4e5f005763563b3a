"""Loading uploaded models safely: skops with an explicit allowlist, never pickle.

An upload is a zip archive (the skops format). Before skops reads it we check the archive
itself: its size, its entry names (no ``../`` or absolute paths), and its uncompressed size (no
zip bombs). skops then lists every type it would have to construct that is not on its own
default trust list; we accept those only from scikit-learn, NumPy and SciPy. Anything else, a
pickle or joblib file included, is refused with a message that says why.

Loading runs on a daemon thread the caller stops waiting for after a timeout (``model_load``).
A thread rather than a subprocess: a subprocess would have to hand the estimator back, and the
only way to pass a live Python object between processes is pickle, the very thing this module
exists to avoid (loading twice, once to check and once to keep, would double every upload's
wait and still load the bytes in this process). What a thread cannot do, kill a runaway load,
the checks before it bound: the archive's uncompressed size is capped and only types from
scikit-learn, NumPy and SciPy are constructed, so an abandoned load holds bounded memory and
runs no foreign code.

skops (and through it scikit-learn and SciPy, some 150 MB) is imported when the first model is
loaded, not with this module: a web process or a worker that never scores stays small.
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

from deployments.ml.environment import LoadWarning, saved_versions_read, warnings_recorded
from deployments.ml.latency import call_in_own_thread

TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.")
# Corners of the trusted libraries that read or write files, compile or run code: a model has
# no business naming them (a FunctionTransformer calling numpy.load on its input, say).
UNTRUSTED_MODULE_PARTS = frozenset(
    {
        "testing", "_testing", "f2py", "distutils", "ctypeslib", "io", "npyio", "_npyio_impl",
        "_datasource", "externals", "_build_utils", "conftest",
    }
)  # fmt: skip
UNTRUSTED_NAMES = frozenset(
    f"numpy.{name}"
    for name in (
        "load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
        "fromfile", "fromregex", "memmap", "DataSource",
    )
)  # fmt: skip
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


def _check_archive(data: bytes, *, max_bytes: int, max_uncompressed: int) -> zipfile.ZipFile:
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
    if total > max_uncompressed:
        raise ModelRejected(
            f"the archive expands to {total} bytes; the limit is {max_uncompressed}"
        )
    if "schema.json" not in archive.namelist():
        raise ModelRejected("not a .skops file: schema.json is missing")
    return archive


def _skops_io():
    """skops.io, imported on first use (see the module's docstring)."""
    import skops.io

    return skops.io


def scoring_libraries_import() -> None:
    """Import what loading and scoring a model need (skops, scikit-learn, SciPy, pandas) now,
    rather than on the first model: in a process about to fork workers that will score, so they
    share one copy, or to keep the first scored item's wait short."""
    import pandas  # noqa: F401  (scoring builds its rows as a DataFrame)

    _skops_io()


def _refuse_untrusted(data: bytes) -> list[str]:
    sio = _skops_io()
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises many kinds on a malformed archive
        raise ModelRejected(f"not a readable .skops file: {exc}") from exc
    refused = [
        name
        for name in untrusted
        if not name.startswith(TRUSTED_MODULE_PREFIXES)
        or name in UNTRUSTED_NAMES
        or UNTRUSTED_MODULE_PARTS.intersection(name.split("."))
    ]
    if refused:
        raise ModelRejected(
            "the file refers to types or functions outside the trusted parts of scikit-learn, "
            f"NumPy and SciPy, which are never loaded: {', '.join(sorted(refused))}"
        )
    return untrusted


def model_load(
    *,
    data: bytes,
    max_bytes: int,
    max_uncompressed_bytes: int,
    timeout_seconds: float,
    record_warnings: bool = False,
) -> LoadedModel:
    """Load a skops artifact, or raise ModelRejected naming the reason.

    The archive is checked (size, entry names, the sum of its entries' uncompressed sizes) before
    skops reads a byte of it; a load still running after ``timeout_seconds`` is refused. With
    ``record_warnings`` (an upload's check) the warnings raised while loading are kept on the
    result. The warnings filter is process-wide, so live loads leave it alone.
    """
    archive = _check_archive(data, max_bytes=max_bytes, max_uncompressed=max_uncompressed_bytes)
    try:
        schema = json.loads(archive.read("schema.json"))
    except ValueError as exc:
        raise ModelRejected("not a .skops file: schema.json is not JSON") from exc
    if not isinstance(schema, dict):
        raise ModelRejected("not a .skops file: schema.json is not an object")
    trusted = _refuse_untrusted(data)
    sio = _skops_io()

    def load() -> tuple[Any, list[warnings.WarningMessage]]:
        with warnings.catch_warnings(record=True) if record_warnings else nullcontext() as seen:
            if record_warnings:
                warnings.simplefilter("always")
            loaded = sio.loads(data, trusted=trusted)
        return loaded, list(seen or [])

    try:
        outcome = call_in_own_thread(load, timeout=timeout_seconds)
    except Exception as exc:
        raise ModelRejected(
            f"the model could not be loaded in this environment: {type(exc).__name__}: {exc}"
        ) from exc
    if not outcome.done:
        raise ModelRejected(f"loading the model took longer than {timeout_seconds:g} s")
    estimator, caught = outcome.value
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
