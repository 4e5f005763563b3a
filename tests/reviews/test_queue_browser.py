"""The review queue in Chromium: keyboard only, blind tasks, two reviewers at once, access."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from deployments.models import UseCaseMembership
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_create
from reviewapp.core.roles import Role
from reviewapp.demo import datasets
from reviewapp.reviews.models import Decision, Disagreement, ReviewTask
from reviewapp.reviews.services.escalations import escalation_raise
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim
from tests.conftest import screenshot
from tests.factories import (
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    send_items,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SETTLED = "#queue[aria-busy=false]"


def shown_task(page) -> str | None:
    page.wait_for_selector(SETTLED)
    return page.locator("#task").get_attribute("data-task")


def keys_then_next(page, *keys) -> None:
    """Press the keys and wait until the next item is swapped in and wired up."""
    before = shown_task(page)
    for key in keys:
        page.keyboard.press(key)
    page.wait_for_function(
        """before => {
            const task = document.querySelector('#task');
            return task && task.dataset.task !== before &&
                document.querySelector('#queue').getAttribute('aria-busy') === 'false';
        }""",
        arg=before,
    )


def invoices(members, *, level, n, start=0, preselected=True, **policy):
    """Invoices classified by a constant model; the suggestion pre-picked unless told not to
    (Enter then accepts it)."""
    use_case = make_use_case(members=members, level=level, slug="invoices", **policy)
    use_case.suggestion_preselected = preselected
    use_case.save(update_fields=["suggestion_preselected"])
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    send_items(use_case, range(start, start + n))
    return use_case


def test_ten_items_decided_by_keyboard_alone(browser, live_server):
    rosa = make_user(Role.REVIEWER, "rosa")
    use_case = invoices([rosa], level="shadow", n=4)
    policy_change(
        use_case=use_case, actor=make_user(Role.MANAGER), changes={"level": "assisted"}, reason="t"
    )
    send_items(use_case, range(4, 10))

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/accounts/login/?next=/queue/invoices/")
    page.keyboard.type("rosa")  # the username field has focus
    page.keyboard.press("Tab")
    page.keyboard.type("test-pass-123")
    page.keyboard.press("Enter")
    page.wait_for_url("**/queue/invoices/")

    # Four blind items (shadow), then six with the suggestion (assisted); 1 travel, 2 office,
    # 3 other. Enter alone accepts the pre-picked suggestion.
    plan = [
        ("inv-0", ("1", "Enter"), "travel", "blind"),
        ("inv-1", ("2", "Enter"), "office", "blind"),
        ("inv-2", ("3", "Enter"), "other", "blind"),
        ("inv-3", ("2", "Enter"), "office", "blind"),
        ("inv-4", ("Enter",), "office", "accepted"),
        ("inv-5", ("1", "Enter"), "travel", "overridden"),
        ("inv-6", ("Enter",), "office", "accepted"),
        ("inv-7", ("3", "Enter"), "other", "overridden"),
        ("inv-8", ("Enter",), "office", "accepted"),
        ("inv-9", ("c",), "office", "accepted"),  # with a comment, sent with Ctrl+Enter
    ]
    sent_times = []
    page.on(
        "request",
        lambda r: (
            r.method == "POST"
            and "/decide/" in r.url
            and sent_times.append(re.search(r"time_spent_ms=(\d+)", r.post_data or ""))
        ),
    )
    for external_id, keys, _, kind in plan:
        shown_task(page)
        assert page.locator("#task-title").inner_text() == f"Item {external_id}"
        blind = kind == "blind"
        assert page.locator("#task .suggestion").count() == (0 if blind else 1)
        if external_id == "inv-0":
            screenshot(page, "queue-blind")
        if external_id == "inv-4":
            screenshot(page, "queue-assisted")
        if keys == ("c",):
            page.keyboard.press("c")
            page.keyboard.type("clearly stationery")
            keys_then_next(page, "Control+Enter")
        else:
            keys_then_next(page, *keys)
        assert page.locator("#task .notice").is_visible()
    expect(page.locator("#task-title")).to_have_text("Nothing is waiting for you here")

    decisions = {d.item.external_id: d for d in Decision.objects.select_related("item")}
    assert len(decisions) == 10
    for external_id, _, label, kind in plan:
        assert (decisions[external_id].label, decisions[external_id].kind) == (label, kind)
        assert decisions[external_id].reviewer == rosa
    assert decisions["inv-9"].comment == "clearly stationery"
    assert len(sent_times) == 10 and all(sent_times)  # the browser measured every item
    disagreements = {
        d.item.external_id: d.kind for d in Disagreement.objects.select_related("item")
    }
    assert disagreements == {
        "inv-0": "shadow",
        "inv-2": "shadow",
        "inv-5": "override",
        "inv-7": "override",
    }


def test_without_a_pre_picked_suggestion_enter_cannot_accept_it_unseen(signed_in):
    rosa = make_user(Role.REVIEWER, "rosa")
    invoices([rosa], level="assisted", n=2, preselected=False)
    page = signed_in(rosa)
    page.goto(page.base_url + "/queue/invoices/")
    first = shown_task(page)
    assert page.locator("#task .suggestion").count() == 1  # shown, but not picked
    assert page.locator("#task input:checked").count() == 0
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)  # nothing is sent: an answer is required
    assert shown_task(page) == first and not Decision.objects.exists()
    screenshot(page, "queue-assisted-not-picked")
    keys_then_next(page, "2", "Enter")  # the reviewer picks office, which the model said too
    assert "you accepted the suggestion" in page.locator("#task .notice").inner_text()
    keys_then_next(page, "1", "Enter")
    kinds = list(Decision.objects.order_by("id").values_list("label", "kind"))
    assert kinds == [("office", "accepted"), ("travel", "overridden")]


def test_a_blind_task_never_shows_the_suggestion_in_the_dom(signed_in):
    rosa = make_user(Role.REVIEWER, "rosa")
    invoices([rosa], level="shadow", n=2)
    page = signed_in(rosa)
    page.goto(page.base_url + "/queue/invoices/")
    for _ in range(2):
        shown_task(page)
        dom = page.evaluate("document.documentElement.outerHTML")
        assert "confident" not in dom and "Model suggestion" not in dom
        assert "probabilit" not in dom.lower() and "suggested" not in dom
        assert page.locator("#task input:checked").count() == 0
        assert page.locator("script[type='application/json']").count() == 0
        # In the item and the form, the model's label is mentioned exactly as often as any
        # other label.
        item = page.locator("#task .task-grid").evaluate("e => e.outerHTML")
        assert item.count("office") == item.count("travel") == 2
        keys_then_next(page, "1", "Enter")


def test_two_reviewers_never_see_the_same_task(signed_in):
    alice, bob = make_user(Role.REVIEWER, "alice"), make_user(Role.REVIEWER, "bob")
    invoices([alice, bob], level="assisted", n=6)
    pages = {alice: signed_in(alice), bob: signed_in(bob)}
    seen = {alice: [], bob: []}
    for page in pages.values():
        page.goto(page.base_url + "/queue/invoices/")
    for _ in range(3):
        for user, page in pages.items():
            seen[user].append(shown_task(page))
        for user, page in pages.items():
            assert seen[user][-1] not in seen[alice if user is bob else bob]
            keys_then_next(page, "Enter")
    assert not set(seen[alice]) & set(seen[bob])
    assert Decision.objects.count() == 6
    for user in (alice, bob):
        assert set(Decision.objects.filter(reviewer=user).values_list("task_id", flat=True)) == {
            int(t) for t in seen[user]
        }


def test_a_lost_lease_says_so_and_a_repeated_submit_says_already_decided(signed_in):
    rosa, bob = make_user(Role.REVIEWER, "rosa"), make_user(Role.REVIEWER, "bob")
    use_case = invoices([rosa, bob], level="assisted", n=3)
    page = signed_in(rosa)
    page.goto(page.base_url + "/queue/invoices/")
    first = shown_task(page)
    ReviewTask.objects.filter(pk=first).update(lease_expires_at=timezone.now())
    assert review_task_claim(use_case=use_case, user=bob).pk == int(first)
    keys_then_next(page, "Enter")
    assert "Your hold on that item ran out" in page.locator("#task .notice").inner_text()
    assert not Decision.objects.filter(reviewer=rosa).exists()

    # Send the same decision twice, as a retry after a dropped connection would.
    form = page.evaluate("Object.fromEntries(new FormData(document.getElementById('decide-form')))")
    url = page.locator("#decide-form").get_attribute("action")
    keys_then_next(page, "Enter")
    page.evaluate(
        "([url, values]) => htmx.ajax('POST', url, {values, target: '#task', swap: 'outerHTML'})",
        [url, form],
    )
    page.wait_for_selector("#task .notice:has-text('Already decided')")
    assert Decision.objects.filter(reviewer=rosa).count() == 1


def test_skip_and_escalate_from_the_keyboard(signed_in):
    rosa = make_user(Role.REVIEWER, "rosa")
    invoices([rosa], level="assisted", n=3)
    page = signed_in(rosa)
    page.goto(page.base_url + "/queue/invoices/")
    shown_task(page)
    keys_then_next(page, "s")
    assert "Skipped" in page.locator("#task .notice").inner_text()
    page.keyboard.press("e")
    assert page.evaluate("document.activeElement.id") == "comment"
    assert "Say why you escalate" in page.locator("#mode-hint").inner_text()
    page.keyboard.type("Is a taxi travel?")
    keys_then_next(page, "Control+Enter")
    assert "Escalated to the managers" in page.locator("#task .notice").inner_text()
    page.keyboard.press("?")
    assert page.locator("#shortcuts").evaluate("d => d.open")


def test_a_reviewer_cannot_open_a_manager_page(signed_in):
    page = signed_in(make_user(Role.REVIEWER))
    response = page.goto(page.base_url + "/escalations/")
    assert response.status == 403
    assert page.get_by_role("heading", name="You may not open this page").is_visible()
    assert page.get_by_role("link", name="Escalations").count() == 0


def test_screens_at_desktop_and_phone_width(browser, live_server, signed_in):
    """Screenshots for a person to look at: sign-in, home, digits as pixels, My work,
    escalations, and the queue on a 390 px phone."""
    for width, name in ((1280, "login"), (390, "login-phone")):
        context = browser.new_context(viewport={"width": width, "height": 800})
        login = context.new_page()
        login.goto(live_server.url + "/accounts/login/")
        screenshot(login, name)
        context.close()

    rosa = make_user(Role.REVIEWER, "rosa")
    manager = make_user(Role.MANAGER, "maria")
    use_case = invoices([rosa], pii_members=[manager], level="assisted", n=4)
    digits = datasets.digits()
    board = use_case_create(
        actor=manager,
        slug="digits",
        name=digits.name,
        description=digits.description,
        task_type="classification",
        labels=digits.labels,
        features=digits.features,
        item_view="image_grid",
    )
    UseCaseMembership.objects.create(use_case=board, user=rosa)
    for n in range(3):
        row = {k: int(v) for k, v in digits.frame.iloc[n].items()}
        item_ingest(use_case=board, external_id=f"digit-{n}", features=row)
    escalation_raise(
        task=review_task_claim(use_case=use_case, user=rosa),
        user=rosa,
        comment="Is a taxi receipt travel or other?",
    )

    desk = signed_in(rosa)
    desk.goto(desk.base_url + "/")
    desk.get_by_role("heading", name="Your queues").wait_for()
    screenshot(desk, "home")
    desk.goto(desk.base_url + "/queue/digits/")
    shown_task(desk)
    assert desk.locator("svg[role=img] rect").count() == 64
    screenshot(desk, "queue-digits")
    keys_then_next(desk, "0", "Enter")
    desk.goto(desk.base_url + "/my-work/")
    screenshot(desk, "my-work")

    phone = signed_in(rosa, width=390, height=844)
    phone.goto(phone.base_url + "/queue/invoices/")
    shown_task(phone)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    screenshot(phone, "queue-phone")
    phone.goto(phone.base_url + "/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "home-phone")

    boss = signed_in(manager)
    boss.goto(boss.base_url + "/escalations/")
    boss.get_by_text("Is a taxi receipt travel or other?").wait_for()
    screenshot(boss, "escalations")


STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def test_the_queue_works_under_a_strict_content_security_policy(signed_in):
    """No inline script, handler, style or eval anywhere in the queue: with a policy that
    forbids them all, a keyboard decision still swaps the next item in and nothing is
    reported as blocked."""
    rosa = make_user(Role.REVIEWER, "rosa")
    invoices([rosa], level="assisted", n=2)
    page = signed_in(rosa)

    def with_policy(route):
        response = route.fetch()
        headers = {**response.headers, "content-security-policy": STRICT_CSP}
        route.fulfill(response=response, headers=headers)

    page.route("**/*", with_policy)
    page.add_init_script(
        "window.__blocked = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__blocked.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.goto(page.base_url + "/queue/invoices/")
    keys_then_next(page, "1", "Enter")
    assert "Saved travel" in page.locator("#task .notice").inner_text()
    page.keyboard.press("?")
    assert page.evaluate("window.__blocked") == []


def test_gold_items_come_blind_among_the_tasks_and_score_the_reviewer(signed_in):
    from deployments.services.use_cases import use_case_update
    from reviewapp.reviews.models import GoldCheck
    from reviewapp.reviews.services.review import review_task_decide

    ann, bob, cleo = (make_user(Role.REVIEWER, name) for name in ("ann", "bob", "cleo"))
    use_case = invoices([ann, bob, cleo], level="assisted", n=20, double_review_rate=1.0)
    for reviewer in (ann, bob):  # two reviewers agree on every item: 20 settled answers
        while (task := review_task_claim(use_case=use_case, user=reviewer)) is not None:
            review_task_decide(task=task, user=reviewer, label="office")
    policy_change(
        use_case=use_case,
        actor=make_user(Role.MANAGER),
        changes={"double_review_rate": 0.0},
        reason="t",
    )
    send_items(use_case, range(20, 40))  # cleo's own work, all assisted: blind means gold
    use_case_update(use_case=use_case, changes={"gold_rate": 0.5})

    page = signed_in(cleo)
    page.goto(page.base_url + "/queue/invoices/")
    shown = 0
    for _ in range(20):
        shown_task(page)
        if page.locator("#task .suggestion").count() == 0:  # blind: a gold item here
            shown += 1
            if shown == 1:
                screenshot(page, "queue-gold")
            keys_then_next(page, "1", "Enter")  # travel, where the settled answer is office
        else:
            keys_then_next(page, "Enter")
    # (The page after the last answer may already hold the next gold item, unanswered.)
    checks = list(GoldCheck.objects.filter(reviewer=cleo, answered_at__isnull=False))
    assert len(checks) == shown and 1 <= shown <= 19  # half of 20 claims, give or take chance
    assert all(c.answered_at and c.label == "travel" and c.correct is False for c in checks)
