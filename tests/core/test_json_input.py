"""Hostile JSON bodies: what the database or the model cannot take is a 400 naming the field
(or a 413 for a body too large), never a 500, and nothing is stored."""

import json

import pytest

from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item
from tests.factories import constant_classifier_bytes, invoice, make_use_case, make_user
from tests.factories import register_model as register

pytestmark = pytest.mark.django_db

NUL = "inv-\u0000-1"
SURROGATE = "inv-\ud800-1"
HUGE = 10**400


@pytest.fixture
def setup(api):
    caller = make_user(Role.INTEGRATION)
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(members=[caller, manager], level="assisted", actor=manager)
    register(use_case, constant_classifier_bytes("office", 0.7))
    return caller, manager, use_case


def _post(client, url, body, method="post"):
    """Send ``body`` as JSON text the way any client could: escapes for NUL and surrogates,
    integers written out in full."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=True)
    return getattr(client, method)(url, data=text, content_type="application/json")


def _items(use_case):
    return f"/api/v1/use-cases/{use_case.slug}/items/"


def _batch(use_case):
    return f"/api/v1/use-cases/{use_case.slug}/items/batch/"


@pytest.mark.parametrize(("text", "problem"), [(NUL, "NUL"), (SURROGATE, "surrogate")])
def test_unstorable_external_id_is_named_on_items(api, setup, text, problem):
    caller, _, use_case = setup
    response = _post(api(caller), _items(use_case), {**invoice(1), "external_id": text})
    assert response.status_code == 400
    assert problem in response.json()["external_id"][0]
    assert not Item.objects.exists()


@pytest.mark.parametrize(("text", "problem"), [(NUL, "NUL"), (SURROGATE, "surrogate")])
def test_unstorable_external_id_is_named_in_a_batch(api, setup, text, problem):
    caller, _, use_case = setup
    rows = [invoice(0), {**invoice(1), "external_id": text}]
    response = _post(api(caller), _batch(use_case), {"items": rows})
    assert response.status_code == 400
    assert problem in response.json()["items"]["1"]["external_id"][0]
    assert not Item.objects.exists()


def test_unstorable_feature_text_and_field_names_are_named(api, setup):
    caller, _, use_case = setup
    body = invoice(1)
    body["features"]["kind"] = "a\u0000"
    body["features"]["\ud83d"] = 1
    response = _post(api(caller), _items(use_case), body)
    assert response.status_code == 400
    errors = response.json()["features"]
    assert "NUL" in errors["kind"][0]
    # The bad name is shown escaped: a lone surrogate cannot be written in a UTF-8 answer.
    assert "surrogate" in errors["\\ud83d"][0]
    assert not Item.objects.exists()


def test_a_valid_surrogate_pair_is_text_like_any_other(api, setup):
    caller, _, use_case = setup
    response = _post(api(caller), _items(use_case), {**invoice(1), "external_id": "inv-😀"})
    assert response.status_code == 201
    assert Item.objects.get().external_id == "inv-😀"


def test_an_integer_beyond_a_double_is_named_on_items(api, setup):
    caller, _, use_case = setup
    body = invoice(1)
    body["features"]["amount"] = HUGE
    response = _post(api(caller), _items(use_case), body)
    assert response.status_code == 400
    assert "double" in response.json()["features"]["amount"][0]
    assert not Item.objects.exists()


def test_an_integer_beyond_a_double_is_named_in_a_batch(api, setup):
    caller, _, use_case = setup
    rows = [invoice(n) for n in range(3)]
    rows[2]["features"]["amount"] = -HUGE
    response = _post(api(caller), _batch(use_case), {"items": rows})
    assert response.status_code == 400
    assert "double" in response.json()["items"]["2"]["features"]["amount"][0]
    assert not Item.objects.exists()


def test_a_large_integer_a_double_can_hold_is_a_number(api, setup):
    caller, _, use_case = setup
    body = invoice(1)
    body["features"]["amount"] = 2**60  # a double exactly (so is 1e300 written as a float)
    response = _post(api(caller), _items(use_case), body)
    assert response.status_code == 201


def test_an_integer_a_double_would_round_is_named(api, setup):
    """2**53 + 1 would reach the model as 2**53: another number than the one sent."""
    caller, _, use_case = setup
    body = invoice(1)
    body["features"]["amount"] = 2**53 + 1
    response = _post(api(caller), _items(use_case), body)
    assert response.status_code == 400
    assert "exactly" in response.json()["features"]["amount"][0]
    assert not Item.objects.exists()


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deep_nesting_is_refused_before_parsing(api, setup, opening):
    caller, _, use_case = setup
    closing = "]" if opening == "[" else "}"
    text = opening * 100_000 + "1" + closing * 100_000
    response = _post(api(caller), _batch(use_case), text)
    assert response.status_code == 400
    assert "nest" in response.json()["non_field_errors"][0]


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, "[1]," + "[{" * 60_000])
def test_deep_nesting_that_never_closes_is_refused_before_parsing(api, setup, text):
    caller, _, use_case = setup
    response = _post(api(caller), _batch(use_case), text)
    assert response.status_code == 400
    assert "nest" in response.json()["non_field_errors"][0]


def test_malformed_json_that_nests_little_is_named_as_malformed(api, setup):
    caller, _, use_case = setup
    response = _post(api(caller), _batch(use_case), '{"items": [[[1, 2]]' + "]" * 5000)
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_brackets_inside_strings_do_not_count_as_nesting(api, setup):
    caller, _, use_case = setup
    response = _post(api(caller), _items(use_case), {**invoice(1), "external_id": "[" * 150})
    assert response.status_code == 201


def test_a_body_over_the_limit_is_a_413(api, setup, settings):
    caller, _, use_case = setup
    settings.API_MAX_BODY_BYTES = 1000
    rows = [invoice(n) for n in range(50)]
    response = _post(api(caller), _batch(use_case), {"items": rows})
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["non_field_errors"][0]
    assert not Item.objects.exists()


def test_an_unknown_field_name_is_echoed_as_an_excerpt(api, setup, settings):
    caller, _, use_case = setup
    name = "x" * 1_000_000
    response = _post(api(caller), _items(use_case), {**invoice(1), name: 1})
    assert response.status_code == 400
    assert len(response.content) < 2 * settings.API_ERROR_EXCERPT_CHARS + 100
    (key,) = set(response.json()) - {"code"}
    assert key.startswith("xxx") and len(key) == settings.API_ERROR_EXCERPT_CHARS


def test_a_long_value_echoed_by_a_field_is_cut(api, setup, settings):
    _, manager, use_case = setup
    url = f"/api/v1/use-cases/{use_case.slug}/policy/"
    response = _post(api(manager), url, {"level": "z" * 100_000, "reason": "x"}, method="patch")
    assert response.status_code == 400
    assert len(response.json()["level"][0]) <= settings.API_ERROR_EXCERPT_CHARS


def test_many_unknown_fields_are_counted_not_all_listed(api, setup):
    caller, _, use_case = setup
    body = {**invoice(1), **{f"extra{n}": 1 for n in range(5000)}}
    response = _post(api(caller), _items(use_case), body)
    assert response.status_code == 400
    errors = response.json()
    assert len(errors) <= 102 and "more" in errors and errors["code"] == "invalid"


@pytest.mark.parametrize(
    ("path", "method", "body", "field"),
    [
        ("policy/", "patch", {"reason": "a\u0000b"}, "reason"),
        ("policy/", "patch", {"reason": "ok", "audit_rate": HUGE}, "audit_rate"),
        ("", "patch", {"name": "\udfff"}, "name"),
    ],
)
def test_every_json_entry_point_takes_the_same_rules(api, setup, path, method, body, field):
    _, manager, use_case = setup
    url = f"/api/v1/use-cases/{use_case.slug}/{path}"
    before = api(manager).get(url).json()
    response = _post(api(manager), url, body, method=method)
    assert response.status_code == 400
    assert field in response.json()
    assert api(manager).get(url).json() == before


def test_a_decision_comment_with_nul_is_named(api, setup):
    caller, manager, use_case = setup
    _post(api(caller), _items(use_case), invoice(1))
    task = api(manager).post(f"/api/v1/use-cases/{use_case.slug}/review/next/").json()
    url = f"/api/v1/review/tasks/{task['task']}/decision/"
    response = _post(api(manager), url, {"label": "office", "comment": "\u0000"})
    assert response.status_code == 400
    assert "NUL" in response.json()["comment"][0]
    assert Item.objects.get().status == "in_review"


def test_a_batch_still_counts_its_bad_rows_past_the_hundred_it_names(api, setup):
    caller, _, use_case = setup
    rows = [{**invoice(n), "external_id": ""} for n in range(150)]
    response = _post(api(caller), _batch(use_case), {"items": rows})
    assert response.status_code == 400
    errors = response.json()["items"]
    assert len(errors) == 101 and errors["more"] == ["50 more rows have errors"]


def test_nul_in_a_path_or_a_query_parameter_is_named(api, setup):
    caller, manager, use_case = setup
    response = api(caller).get(f"/api/v1/use-cases/{use_case.slug}/items/a%00b/")
    assert response.status_code == 400
    assert "NUL" in response.json()["path"][0]
    url = f"/api/v1/use-cases/{use_case.slug}/disagreements/?model_version=a%00b"
    response = api(manager).get(url)
    assert response.status_code == 400
    assert "NUL" in response.json()["model_version"][0]
