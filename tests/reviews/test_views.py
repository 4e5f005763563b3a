"""The review queue pages through Django's test client: what a reviewer sees and what each
action stores, with htmx (the next item swapped in) and without (POST, then redirect)."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from deployments.models import UseCaseMembership
from deployments.services.use_cases import use_case_create
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Disagreement, Escalation, ReviewTask, TaskSkip
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim
from tests.factories import (
    constant_classifier_bytes,
    logged_in_client,
    make_use_case,
    make_user,
    register_model,
    regressor_bytes,
    send_items,
)

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def rosa():
    return make_user(Role.REVIEWER, "rosa")


def queue_of(members, *, level="assisted", n=3, label="office", confidence=0.7, **policy):
    use_case = make_use_case(members=members, level=level, **policy)
    register_model(use_case, constant_classifier_bytes(label, confidence))
    send_items(use_case, range(n))
    return use_case


def held(use_case, user) -> ReviewTask:
    return ReviewTask.objects.get(use_case=use_case, claimed_by=user, state="open")


def form_of(html: str) -> dict:
    """The hidden fields of the decision form, as the browser would send them."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    fields.pop("csrfmiddlewaretoken", None)
    return fields


def decide(client, use_case, html, *, htmx=True, **answer):
    task = re.search(r'data-task="(\d+)"', html).group(1)
    body = {**form_of(html), **answer}
    return client.post(
        f"/queue/{use_case.slug}/tasks/{task}/decide/", body, **(HTMX if htmx else {})
    )


def test_the_queue_claims_the_oldest_item_and_shows_features_and_the_suggestion(rosa):
    use_case = queue_of([rosa])
    response = logged_in_client(rosa).get(f"/queue/{use_case.slug}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "inv-0" in html and "3 waiting" in html.replace("<strong>", "").replace("</strong>", "")
    assert ">amount<" in html and ">10<" in html  # the features, readable
    assert "Model suggestion" in html and "70% confident" in html
    for label in ("travel", "office", "other"):
        assert f'value="{label}"' in html
    # Shown but not picked: the reviewer picks, then learns whether it matched.
    assert re.search(r'value="office" data-key="2" required', html)
    assert " checked" not in html
    assert held(use_case, rosa).item.external_id == "inv-0"

    # Where the use case asks for it, the suggested label is picked already (Enter accepts).
    use_case.suggestion_preselected = True
    use_case.save(update_fields=["suggestion_preselected"])
    html = logged_in_client(rosa).get(f"/queue/{use_case.slug}/").content.decode()
    assert re.search(r'value="office" data-key="2" checked', html)


def test_the_queue_size_refreshes_on_its_own(rosa):
    use_case = queue_of([rosa], n=4)
    client = logged_in_client(rosa)
    client.get(f"/queue/{use_case.slug}/")
    fragment = client.get(f"/queue/{use_case.slug}/stats/", **HTMX).content.decode()
    assert fragment.startswith('<p id="queue-stats"') and 'hx-trigger="every 30s"' in fragment
    assert "<strong>4</strong> waiting" in fragment


def test_personal_data_is_masked_unless_the_member_may_see_it(rosa):
    use_case = queue_of([rosa])
    html = logged_in_client(rosa).get(f"/queue/{use_case.slug}/").content.decode()
    assert "Vendor 0" not in html
    assert "1 personal field hidden" in html and '<span class="masked">hidden</span>' in html

    allowed = make_user(Role.REVIEWER)
    UseCaseMembership.objects.create(use_case=use_case, user=allowed, can_view_pii=True)
    html = logged_in_client(allowed).get(f"/queue/{use_case.slug}/").content.decode()
    assert "Vendor 1" in html and "personal field" not in html


def _blind_partial(model_label, confidence):
    reviewer = make_user(Role.REVIEWER)
    use_case = queue_of([reviewer], level="shadow", n=1, label=model_label, confidence=confidence)
    html = logged_in_client(reviewer).get(f"/queue/{use_case.slug}/", **HTMX).content.decode()
    task = held(use_case, reviewer)
    # What differs between any two claims: the task id, the lease token and the slug.
    for value in (str(task.lease_token), use_case.slug):
        html = html.replace(value, "X")
    html = html.replace(f'data-task="{task.pk}"', "").replace(f"ui:{task.pk}:", "")
    html = html.replace(f"/tasks/{task.pk}/", "/tasks/N/")
    html = re.sub(r'name="csrfmiddlewaretoken" value="\w+"', "", html)
    return re.sub(r'data-lease-seconds="\d+"', "", html)


def test_a_blind_task_carries_no_trace_of_the_models_answer():
    """Two models that disagree give byte-identical blind pages: nothing in the text, the
    attributes or any data can tell the reviewer what the model said."""
    office = _blind_partial("office", 0.7)
    travel = _blind_partial("travel", 0.95)
    assert office == travel
    assert "Model suggestion" not in office and "confident" not in office
    assert " checked" not in office and "suggested" not in office
    assert "No suggestion for this item" in office


def test_deciding_with_htmx_stores_the_decision_and_swaps_in_the_next_item(rosa):
    use_case = queue_of([rosa])
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    response = decide(client, use_case, html, label="office", time_spent_ms="4200")
    assert response.status_code == 200
    swapped = response.content.decode()
    assert swapped.lstrip().startswith('<section id="task"')  # the partial, not a page
    assert "Saved office: you accepted the suggestion." in swapped and "inv-1" in swapped
    decision = Decision.objects.get(reviewer=rosa)
    assert (decision.item.external_id, decision.kind, decision.time_spent_ms) == (
        "inv-0",
        "accepted",
        4200,
    )
    assert not Disagreement.objects.exists()

    response = decide(client, use_case, swapped, label="travel", comment="it is a train ticket")
    assert "you overrode the suggestion" in response.content.decode()
    override = Decision.objects.get(reviewer=rosa, item__external_id="inv-1")
    assert (override.kind, override.comment) == ("overridden", "it is a train ticket")
    disagreement = Disagreement.objects.get(decision=override)
    assert (disagreement.kind, disagreement.model_label, disagreement.human_label) == (
        "override",
        "office",
        "travel",
    )


def test_without_javascript_a_decision_redirects_back_to_the_queue_with_a_message(rosa):
    use_case = queue_of([rosa])
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    response = decide(client, use_case, html, htmx=False, label="other")
    assert response.status_code == 303 and response["Location"] == f"/queue/{use_case.slug}/"
    page = client.get(response["Location"]).content.decode()
    assert "Saved other: you overrode the suggestion." in page and "inv-1" in page
    decision = Decision.objects.get(reviewer=rosa)
    assert decision.kind == "overridden" and decision.time_spent_ms is not None


def test_a_blind_decision_is_stored_as_blind_and_says_nothing_about_the_model(rosa):
    use_case = queue_of([rosa], level="shadow")
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    swapped = decide(client, use_case, html, label="travel").content.decode()
    assert "Saved travel." in swapped and "overrode" not in swapped
    decision = Decision.objects.get(reviewer=rosa)
    assert decision.kind == "blind"
    assert Disagreement.objects.get(decision=decision).kind == "shadow"


def test_a_double_submit_says_already_decided_and_moves_on(rosa):
    use_case = queue_of([rosa])
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    first = decide(client, use_case, html, label="office").content.decode()
    assert "Saved office" in first
    again = decide(client, use_case, html, label="office").content.decode()
    assert "Already decided" in again and "inv-1" in again
    # A second press that picked another label before the first answer came back.
    other = decide(client, use_case, html, label="travel").content.decode()
    assert "Already decided" in other
    # And the same form sent again without JavaScript.
    plain = decide(client, use_case, html, htmx=False, label="office")
    assert "Already decided" in client.get(plain["Location"]).content.decode()
    assert Decision.objects.filter(reviewer=rosa).count() == 1
    assert Decision.objects.get(reviewer=rosa).label == "office"


def test_a_lost_lease_says_so_and_moves_on(rosa):
    use_case = queue_of([rosa], n=2)
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    task = held(use_case, rosa)
    ReviewTask.objects.filter(pk=task.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    bob = make_user(Role.REVIEWER, "bob")
    UseCaseMembership.objects.create(use_case=use_case, user=bob)
    assert review_task_claim(use_case=use_case, user=bob).pk == task.pk

    response = decide(client, use_case, html, label="office")
    swapped = response.content.decode()
    assert response.status_code == 200
    assert "Your hold on that item ran out" in swapped and "not saved" in swapped
    assert "inv-1" in swapped  # moved on to the next item
    assert not Decision.objects.exists()
    assert held(use_case, bob).pk == task.pk


def test_skip_gives_the_item_back_and_shows_the_next(rosa):
    use_case = queue_of([rosa], n=2)
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    task = held(use_case, rosa)
    response = client.post(
        f"/queue/{use_case.slug}/tasks/{task.pk}/skip/", form_of(html), **HTMX
    ).content.decode()
    assert "Skipped: that item went back to the queue" in response and "inv-1" in response
    assert TaskSkip.objects.filter(task=task, user=rosa).exists()
    bob = make_user(Role.REVIEWER)
    UseCaseMembership.objects.create(use_case=use_case, user=bob)
    assert review_task_claim(use_case=use_case, user=bob).pk == task.pk


def test_skipping_the_last_item_offers_it_again(rosa):
    use_case = queue_of([rosa], n=1)
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    task = held(use_case, rosa)
    response = client.post(f"/queue/{use_case.slug}/tasks/{task.pk}/skip/", form_of(html), **HTMX)
    assert "nothing else is waiting for you: here it is again" in response.content.decode()


def test_escalating_needs_a_reason_then_takes_the_item_out_of_the_queue(rosa):
    use_case = queue_of([rosa], n=3)
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    task = held(use_case, rosa)
    url = f"/queue/{use_case.slug}/tasks/{task.pk}/escalate/"

    refused = client.post(url, {**form_of(html), "comment": "  "}, **HTMX)
    assert refused.status_code == 422
    assert "say why you escalate" in refused.content.decode()
    assert held(use_case, rosa).pk == task.pk and not Escalation.objects.exists()

    response = client.post(url, {**form_of(html), "comment": "Is a taxi travel?"}, **HTMX)
    assert "Escalated to the managers" in response.content.decode()
    assert "inv-1" in response.content.decode()
    escalation = Escalation.objects.get()
    assert (escalation.task_id, escalation.raised_by, escalation.comment) == (
        task.pk,
        rosa,
        "Is a taxi travel?",
    )
    task.refresh_from_db()
    assert task.state == "escalated" and task.claimed_by is None
    bob = make_user(Role.REVIEWER)
    UseCaseMembership.objects.create(use_case=use_case, user=bob)
    # inv-0 is with the managers and rosa holds inv-1: bob gets inv-2.
    assert review_task_claim(use_case=use_case, user=bob).item.external_id == "inv-2"


def test_bad_input_is_refused_naming_the_field_and_keeps_the_item(rosa):
    use_case = queue_of([rosa])
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    response = decide(client, use_case, html, label="nonsense", comment="keep me")
    assert response.status_code == 422
    body = response.content.decode()
    assert "must be one of travel, office, other" in body and 'aria-invalid="true"' in body
    assert "inv-0" in body and ">keep me</textarea>" in body  # same item, comment kept
    bad_time = decide(client, use_case, html, label="office", time_spent_ms="soon")
    assert bad_time.status_code == 422 and "time spent ms" in bad_time.content.decode()
    plain = decide(client, use_case, html, htmx=False, label="")
    assert plain.status_code == 422 and "<html" in plain.content.decode()
    assert not Decision.objects.exists()


def regression_queue(members, level):
    use_case = make_use_case(task_type="regression", members=members, level=level)
    register_model(use_case, regressor_bytes())
    item_ingest(use_case=use_case, external_id="r-1", features={"x": 1.0, "y": 0.5})
    item_ingest(use_case=use_case, external_id="r-2", features={"x": -1.0, "y": 0.0})
    return use_case


def test_regression_takes_a_number_prefilled_only_when_assisted(rosa):
    assisted = regression_queue([rosa], "assisted")
    html = logged_in_client(rosa).get(f"/queue/{assisted.slug}/").content.decode()
    prefill = re.search(r'id="value" name="value"[^>]* value="([^"]*)"', html).group(1)
    assert prefill == ""  # the reviewer types a value unless the use case pre-picks
    assisted.suggestion_preselected = True
    assisted.save(update_fields=["suggestion_preselected"])
    html = logged_in_client(rosa).get(f"/queue/{assisted.slug}/").content.decode()
    prefill = re.search(r'id="value" name="value"[^>]* value="([^"]*)"', html).group(1)
    model_value = held(assisted, rosa).item.prediction.value
    assert float(prefill) == pytest.approx(model_value)

    shadow = regression_queue([rosa], "shadow")
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{shadow.slug}/").content.decode()
    assert re.search(r'id="value" name="value"[^>]* value=""', html)
    assert "Model suggestion" not in html
    bad = decide(client, shadow, html, value="twelve")
    assert bad.status_code == 422 and "Enter a number" in bad.content.decode()
    decide(client, shadow, html, value="2.5")
    decision = Decision.objects.get(reviewer=rosa)
    assert (decision.value, decision.kind) == (2.5, "blind")


def test_an_image_use_case_shows_its_pixels_as_a_grid(rosa):
    manager = make_user(Role.MANAGER)
    use_case = use_case_create(
        actor=manager,
        slug="tiny-digits",
        name="Tiny digits",
        task_type="classification",
        labels=["0", "1"],
        features=[
            {"name": f"p{i}", "type": "integer", "required": True, "min": 0, "max": 16}
            for i in range(4)
        ],
        item_view="image_grid",
    )
    UseCaseMembership.objects.create(use_case=use_case, user=rosa)
    item_ingest(
        use_case=use_case, external_id="d-1", features={"p0": 0, "p1": 16, "p2": 8, "p3": 0}
    )
    html = logged_in_client(rosa).get(f"/queue/{use_case.slug}/").content.decode()
    assert '<svg viewBox="0 0 2 2" role="img"' in html
    fills = re.findall(r'<rect x="(\d)" y="(\d)" width="1" height="1" fill="(#\w+)"', html)
    assert fills == [
        ("0", "0", "#ffffff"),
        ("1", "0", "#000000"),
        ("0", "1", "#808080"),
        ("1", "1", "#ffffff"),
    ]
    assert "2 × 2 pixel image" in html
    # Labels that are single digits are picked by typing the digit itself.
    assert 'value="0" data-key="0"' in html and 'value="1" data-key="1"' in html


def test_an_empty_queue_says_so_and_polls(rosa):
    use_case = queue_of([rosa], n=0)
    html = logged_in_client(rosa).get(f"/queue/{use_case.slug}/").content.decode()
    assert "Nothing is waiting for you here" in html and 'hx-trigger="every 20s"' in html


def test_who_may_open_the_queue(rosa):
    use_case = queue_of([rosa])
    url = f"/queue/{use_case.slug}/"
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    swap = Client().post(
        f"{url}tasks/1/decide/", {}, **HTMX, HTTP_HX_CURRENT_URL=f"http://testserver{url}"
    )
    assert swap.status_code == 200 and swap["HX-Redirect"].startswith("/accounts/login/")
    assert url in swap["HX-Redirect"]
    assert logged_in_client(make_user(Role.REVIEWER)).get(url).status_code == 404  # not a member
    engineer = make_user(Role.ML_ENGINEER)
    UseCaseMembership.objects.create(use_case=use_case, user=engineer)
    assert logged_in_client(engineer).get(url).status_code == 403


def test_a_task_is_only_reachable_through_its_own_use_case(rosa):
    use_case = queue_of([rosa])
    other = queue_of([rosa])
    client = logged_in_client(rosa)
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    task = held(use_case, rosa)
    response = client.post(
        f"/queue/{other.slug}/tasks/{task.pk}/decide/", {**form_of(html), "label": "office"}
    )
    assert response.status_code == 404
    assert not Decision.objects.exists()


def test_reviewers_cannot_open_the_escalation_list(rosa):
    assert logged_in_client(rosa).get("/escalations/").status_code == 403
    assert logged_in_client(make_user(Role.MANAGER)).get("/escalations/").status_code == 200
