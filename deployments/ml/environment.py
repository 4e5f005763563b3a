"""Which library versions a model was saved with, which ones serve it, and what that means.

A skops file records the skops version and protocol it was written with, and every
scikit-learn object in it keeps the scikit-learn version it was fitted with
(``_sklearn_version`` in its state). NumPy, SciPy and Python versions are not in the file; the
uploader may declare them. scikit-learn itself compares its version with the saved one when the
model is loaded and warns (``InconsistentVersionWarning``) on any difference: those warnings,
caught during the upload's load, are what this module turns into plain sentences.
"""

import json
import platform
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import metadata
from typing import Any

# The libraries compared, in display order. Keys are distribution names.
LIBRARIES = ("scikit-learn", "numpy", "scipy", "pandas", "skops", "python")
MODULE_LIBRARIES = {"sklearn": "scikit-learn", "numpy": "numpy", "scipy": "scipy"}
ALIASES = {"sklearn": "scikit-learn", "scikit_learn": "scikit-learn", "py": "python"}
MAX_DECLARED = 30
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$")
MAX_WARNINGS = 20


class EnvironmentInvalid(ValueError):
    """The declared environment is not an object of library names to version strings."""


@dataclass(frozen=True, slots=True)
class LoadWarning:
    """A warning raised while loading or first scoring a model."""

    category: str
    message: str
    estimator: str | None = None
    saved_version: str | None = None
    serving_version: str | None = None


@lru_cache(maxsize=256)
def library_version(name: str) -> str | None:
    """The installed version (looked up once per process: installs do not change under it)."""
    if name == "python":
        return platform.python_version()
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@cache
def serving_versions() -> dict[str, str | None]:
    """This process's versions of the compared libraries (they do not change while it runs)."""
    return {name: library_version(name) for name in LIBRARIES}


def _walk(node: Any) -> Iterable[tuple[str, Any]]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                yield key, value
                stack.append(value)
        elif isinstance(current, list):
            stack.extend(current)


def _json_node_text(node: Any) -> str | None:
    """The string a skops JsonNode holds (``{"content": "\\"1.5.1\\"", "is_json": true}``)."""
    if isinstance(node, str):
        return node
    if not isinstance(node, dict):
        return None
    content = node.get("content")
    if node.get("is_json") and isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return None
    return content if isinstance(content, str) else None


def saved_versions_read(schema: dict[str, Any]) -> dict[str, Any]:
    """Versions recorded in a skops file's schema.json: skops, its protocol, scikit-learn.

    Several scikit-learn versions in one file (objects fitted under different versions) are
    all kept, comma-separated, oldest first by string order.
    """
    found: dict[str, Any] = {}
    if isinstance(schema.get("_skops_version"), str):
        found["skops"] = schema["_skops_version"]
    if isinstance(schema.get("protocol"), int):
        found["skops_protocol"] = schema["protocol"]
    sklearn, modules = set(), set()
    for key, value in _walk(schema):
        if key == "_sklearn_version" and (text := _json_node_text(value)):
            sklearn.add(text)
        elif key == "__module__" and isinstance(value, str):
            modules.add(value.split(".")[0])
    if sklearn:
        found["scikit-learn"] = ", ".join(sorted(sklearn))
    # Which of the compared libraries built objects in the file (a SciPy version matters to a
    # model holding sparse matrices, not to one that holds none).
    found["uses"] = sorted({MODULE_LIBRARIES[root] for root in modules if root in MODULE_LIBRARIES})
    return found


def declared_versions_clean(raw: Any) -> dict[str, str]:
    """The uploader's own record of its environment: ``{"numpy": "1.26.4", "python": ...}``.

    Accepts a JSON object or its text (a multipart form field). Names are lower-cased and the
    usual aliases (``sklearn``) mapped to distribution names.
    """
    if raw in (None, ""):
        return {}
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise EnvironmentInvalid(
                'must be a JSON object such as {"numpy": "1.26.4", "python": "3.11.9"}'
            ) from exc
    if not isinstance(raw, dict):
        raise EnvironmentInvalid("must be a JSON object of library names to version strings")
    if len(raw) > MAX_DECLARED:
        raise EnvironmentInvalid(f"at most {MAX_DECLARED} libraries")
    cleaned = {}
    for name, version in raw.items():
        key = ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
        if not key or len(key) > 100:
            raise EnvironmentInvalid(f"{str(name)[:100]!r} is not a library name")
        if not isinstance(version, str) or not VERSION_PATTERN.match(version.strip()):
            raise EnvironmentInvalid(f"the version of {key} must be a version string")
        cleaned[key] = version.strip()
    return cleaned


def _warning_record(caught: warnings.WarningMessage) -> LoadWarning:
    message = caught.message
    return LoadWarning(
        category=caught.category.__name__,
        message=str(message).split("\n")[0][:500],
        estimator=getattr(message, "estimator_name", None),
        saved_version=getattr(message, "original_sklearn_version", None),
        serving_version=getattr(message, "current_sklearn_version", None),
    )


def warnings_recorded(caught: Iterable[warnings.WarningMessage]) -> list[LoadWarning]:
    return [_warning_record(w) for w in caught]


def warnings_describe(records: Iterable[LoadWarning], *, stage: str) -> list[str]:
    """One sentence per distinct problem. scikit-learn warns once per estimator object; those
    are folded into one sentence per version pair that names the estimators concerned."""
    records = list(records)
    sentences: list[str] = []
    version_pairs: dict[tuple[str, str], set[str]] = {}
    for record in records:
        if record.category == "InconsistentVersionWarning" and record.saved_version:
            pair = (record.saved_version, record.serving_version or "?")
            version_pairs.setdefault(pair, set()).add(record.estimator or "?")
    for (saved, serving), estimators in sorted(version_pairs.items()):
        sentences.append(
            f"Saved with scikit-learn {saved} but served with scikit-learn {serving}: "
            "scikit-learn warns this might lead to breaking code or invalid results "
            f"({', '.join(sorted(estimators))})."
        )
    seen = set()
    for record in records:
        if record.category == "InconsistentVersionWarning" and record.saved_version:
            continue
        text = f"{record.category} {stage}: {record.message}"
        if text not in seen:
            seen.add(text)
            sentences.append(text)
    return sentences[:MAX_WARNINGS]


def environment_record(
    *,
    saved_in_file: dict[str, Any],
    declared: dict[str, str],
    load_warnings: list[str],
    scoring_warnings: list[str],
) -> dict[str, Any]:
    """What is stored on the model version: versions it was saved with (and where each figure
    came from), the serving versions that checked it, and the warnings seen doing so."""
    saved: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    for name in dict.fromkeys([*LIBRARIES, *declared]):
        in_file = saved_in_file.get(name)
        if in_file is not None:
            saved[name], sources[name] = in_file, "file"
            if name in declared and declared[name] != in_file:
                notes.append(
                    f"The upload declares {name} {declared[name]}, but the file was saved with "
                    f"{name} {in_file}; the file's version is recorded."
                )
        elif name in declared:
            saved[name], sources[name] = declared[name], "declared"
        else:
            saved[name] = None
    return {
        "saved_with": saved,
        "saved_with_source": sources,
        "skops_protocol": saved_in_file.get("skops_protocol"),
        "used_by_file": saved_in_file.get("uses", []),
        "checked_with": {
            name: library_version(name) for name in dict.fromkeys([*LIBRARIES, *declared])
        },
        "warnings": [*load_warnings, *scoring_warnings, *notes][:MAX_WARNINGS],
    }
