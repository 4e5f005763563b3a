"""Hostile model uploads: every one refused with 400 naming ``file``, and none of them runs.

Each payload, if it were ever deserialised, would create a marker file; the tests check the
payloads are live (``test_the_payloads_would_run_if_loaded``) and that no upload creates it.
"""

import ast
import io
import json
import os
import pathlib
import pickle
import struct
import threading
import zipfile

import joblib
import numpy as np
import pytest
import skops.io as sio
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from sklearn.preprocessing import FunctionTransformer

from deployments.models import ModelVersion
from reviewapp.core.roles import Role
from tests.factories import classifier_bytes, make_use_case, make_user

pytestmark = pytest.mark.django_db

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOADER = ROOT / "deployments" / "ml" / "loading.py"


class OpensMarkerWhenUnpickled:
    def __init__(self, marker: pathlib.Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class OpensMarkerWhenConstructed:
    """What skops would build if it trusted this type: its state hook writes the marker."""

    def __init__(self, marker: pathlib.Path):
        self.marker = str(marker)

    def __setstate__(self, state):
        open(state["marker"], "w").close()
        self.__dict__.update(state)


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _declaring_uncompressed_size(data: bytes, size: int) -> bytes:
    """The archive with every central-directory entry claiming ``size`` bytes uncompressed: what
    a zip bomb looks like to a reader that trusts the directory (a real one is 10 GB of zeros)."""
    out = bytearray(data)
    start = out.find(b"PK\x01\x02")
    while start != -1:
        struct.pack_into("<I", out, start + 24, size)
        start = out.find(b"PK\x01\x02", start + 4)
    return bytes(out)


def _joblib_bytes(payload) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(payload, buffer)
    return buffer.getvalue()


def _payloads(marker: pathlib.Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file content, part of the refusal message)."""
    skops_model = classifier_bytes()
    return {
        "pickle": (pickle.dumps(OpensMarkerWhenUnpickled(marker)), "pickle"),
        "pickle protocol 0": (pickle.dumps(OpensMarkerWhenUnpickled(marker), 0), "not a .skops"),
        "joblib": (_joblib_bytes(OpensMarkerWhenUnpickled(marker)), "pickle"),
        "untrusted type": (sio.dumps(OpensMarkerWhenConstructed(marker)), "OpensMarkerWhen"),
        "untrusted callable": (sio.dumps(FunctionTransformer(func=os.system)), "system"),
        "file-reading numpy function": (
            sio.dumps(FunctionTransformer(func=np.load)),
            "numpy.load",
        ),
        "zip bomb": (
            _declaring_uncompressed_size(skops_model, 4_000_000_000),
            "zip bomb",
        ),
        "path traversal": (
            _zip({"schema.json": b"{}", "../../x": b"x"}),
            "unsafe path",
        ),
        "absolute path": (_zip({"schema.json": b"{}", "/etc/x": b"x"}), "unsafe path"),
        "zip without schema": (_zip({"model.npy": b"x"}), "schema.json"),
    }


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "payload-ran"


@pytest.fixture
def engineer_and_use_case():
    engineer = make_user(Role.ML_ENGINEER)
    return engineer, make_use_case(members=[engineer])


def _upload(api, user, use_case, data: bytes):
    return api(user).post(
        f"/api/v1/use-cases/{use_case.slug}/models/",
        {"version": "v1", "file": SimpleUploadedFile("model.skops", data)},
        format="multipart",
    )


def test_the_payloads_would_run_if_loaded(marker):
    """Without this, a payload that silently does nothing would make every refusal test pass."""
    for load in (
        # Deliberately unpickled here: this test proves the payload is armed.
        lambda: pickle.loads(pickle.dumps(OpensMarkerWhenUnpickled(marker))),  # noqa: S301
        lambda: joblib.load(io.BytesIO(_joblib_bytes(OpensMarkerWhenUnpickled(marker)))),
        lambda: sio.loads(
            sio.dumps(OpensMarkerWhenConstructed(marker)),
            trusted=[f"{__name__}.OpensMarkerWhenConstructed"],
        ),
    ):
        load()
        assert marker.exists()
        marker.unlink()


@pytest.mark.parametrize(
    "case", list(_payloads(pathlib.Path("/nonexistent")).keys()), ids=lambda c: c
)
def test_hostile_uploads_are_refused_naming_the_file(api, engineer_and_use_case, marker, case):
    engineer, use_case = engineer_and_use_case
    data, message = _payloads(marker)[case]
    response = _upload(api, engineer, use_case, data)
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == ["file", "code"] and message in body["file"][0], body
    assert not marker.exists()
    assert not ModelVersion.objects.exists()


def test_the_upload_page_refuses_a_pickle_too(engineer_and_use_case, marker):
    engineer, use_case = engineer_and_use_case
    client = Client()
    client.force_login(engineer)
    response = client.post(
        f"/control/use-cases/{use_case.slug}/models/",
        {
            "version": "v1",
            "file": SimpleUploadedFile(
                "model.skops", pickle.dumps(OpensMarkerWhenUnpickled(marker))
            ),
        },
    )
    assert response.status_code == 400
    assert "this is a pickle file" in response.content.decode()
    assert not marker.exists() and not ModelVersion.objects.exists()


def test_an_over_large_file_is_refused_before_it_is_read(api, engineer_and_use_case, settings):
    engineer, use_case = engineer_and_use_case
    settings.MODEL_UPLOAD_MAX_BYTES = 1000
    response = _upload(api, engineer, use_case, b"\0" * 5000)
    assert response.status_code == 400
    assert response.json() == {
        "file": ["the file is 5000 bytes; the limit is 1000"],
        "code": "invalid",
    }


def test_the_uncompressed_size_limit_is_checked_on_the_entries(
    api, engineer_and_use_case, settings
):
    engineer, use_case = engineer_and_use_case
    data = classifier_bytes()
    expanded = sum(e.file_size for e in zipfile.ZipFile(io.BytesIO(data)).infolist())
    settings.MODEL_UPLOAD_MAX_UNCOMPRESSED_BYTES = expanded - 1
    response = _upload(api, engineer, use_case, data)
    assert response.status_code == 400
    assert f"expands to {expanded} bytes" in response.json()["file"][0]
    settings.MODEL_UPLOAD_MAX_UNCOMPRESSED_BYTES = expanded
    assert _upload(api, engineer, use_case, data).status_code == 201


def test_a_load_over_the_time_limit_is_refused(api, engineer_and_use_case, settings, monkeypatch):
    engineer, use_case = engineer_and_use_case
    # The load blocks until the test releases it, so the limit is passed on any machine speed.
    released = threading.Event()
    real_loads = sio.loads

    def slow_loads(data, **kwargs):
        released.wait(timeout=10)
        return real_loads(data, **kwargs)

    monkeypatch.setattr(sio, "loads", slow_loads)
    settings.MODEL_LOAD_TIMEOUT_SECONDS = 0.05
    try:
        response = _upload(api, engineer, use_case, classifier_bytes())
    finally:
        released.set()
    assert response.status_code == 400
    assert "loading the model took longer than" in response.json()["file"][0]
    assert not ModelVersion.objects.exists()


def test_a_forged_skops_schema_naming_an_untrusted_type_is_refused(api, engineer_and_use_case):
    engineer, use_case = engineer_and_use_case
    source = zipfile.ZipFile(io.BytesIO(classifier_bytes()))
    schema = json.loads(source.read("schema.json"))
    schema["__module__"], schema["__class__"] = "subprocess", "Popen"
    entries = {n: source.read(n) for n in source.namelist()} | {
        "schema.json": json.dumps(schema).encode()
    }
    response = _upload(api, engineer, use_case, _zip(entries))
    assert response.status_code == 400 and "subprocess.Popen" in response.json()["file"][0]


UNPICKLERS = {"pickle", "joblib", "cloudpickle", "dill", "_pickle"}
UNPICKLING_CALLS = {"load", "loads", "Unpickler"}


def _unpickling_calls(path: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
            found += [
                f"{path}:{node.lineno} from {node.module} import {a.name}"
                for a in node.names
                if a.name in UNPICKLING_CALLS
            ]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in UNPICKLING_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in UNPICKLERS
        ):
            found.append(f"{path}:{node.lineno} {node.func.value.id}.{node.func.attr}")
    return found


def test_nothing_but_the_loader_could_unpickle():
    sources = [
        path
        for folder in ("reviewapp", "deployments")
        for path in (ROOT / folder).rglob("*.py")
        if path != LOADER
    ]
    assert len(sources) > 50
    assert [hit for path in sources for hit in _unpickling_calls(path)] == []


def test_the_scan_sees_an_unpickling_call(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import joblib\nfrom pickle import loads\nmodel = joblib.load('m.pkl')\n")
    assert len(_unpickling_calls(sample)) == 2
