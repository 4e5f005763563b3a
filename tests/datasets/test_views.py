"""The datasets pages: the explorer's filters, matrix, pages and items; exports and
retraining started from the pages; who may see what."""

import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.db.models import Count
from django.test import Client

from reviewapp.core.roles import Role
from reviewapp.datasets.export_tables import RowFilters
from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.datasets.selectors import disagreement_page
from reviewapp.reviews.models import Decision, Disagreement, Item, Prediction
from tests.datasets.conftest import PII_MARK, build_world
from tests.factories import make_use_case, make_user

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def explorer_url(world) -> str:
    return f"/datasets/{world.use_case.slug}/"


def test_the_matrix_counts_disagreements_by_label_pair_and_links_to_them(world):
    page = client_for(world.analyst).get(explorer_url(world)).content.decode()
    pairs = (
        Disagreement.objects.filter(use_case=world.use_case)
        .values_list("model_label", "human_label")
        .annotate(n=Count("id"))
    )
    for model_label, human_label, n in pairs:
        link = re.search(
            rf'<a href="([^"]+)"[^>]*aria-label="{n} where the model said {model_label} and '
            rf'the human {human_label}"',
            page,
        )
        assert link, (model_label, human_label, n)
        query = parse_qs(urlparse(link.group(1).replace("&amp;", "&")).query)
        assert query == {"model_label": [model_label], "human_label": [human_label]}


def test_a_cell_filters_the_list_and_a_second_click_clears_it(world):
    client = client_for(world.analyst)
    response = client.get(explorer_url(world), {"model_label": "office", "human_label": "travel"})
    expected = Disagreement.objects.filter(model_label="office", human_label="travel")
    assert response.context["page"].total == expected.count() > 0
    shown = {d.pk for d in response.context["page"].rows}
    assert shown == set(expected.values_list("pk", flat=True))
    selected = [
        cell
        for row in response.context["matrix_rows"]
        for cell in row["cells"]
        if cell["cell"] and cell["cell"].selected
    ]
    assert len(selected) == 1 and selected[0]["query"] == ""  # clicking again clears


def test_htmx_requests_get_only_the_region_they_swap(world):
    client = client_for(world.analyst)
    region = client.get(explorer_url(world), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="explorer")
    body = region.content.decode()
    assert "<html" not in body and 'id="filters"' in body and "ds-heat" in body
    page = disagreement_page(use_case=world.use_case, filters=RowFilters(), after=None, size=5)
    more = client.get(
        explorer_url(world),
        {"after": f"{page.rows[-1].decided_at.isoformat()}~{page.rows[-1].pk}"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="more-rows",
    ).content.decode()
    assert "<form" not in more and "<tr>" in more


def test_keyset_pages_walk_every_disagreement_once_newest_first(world):
    seen, after = [], None
    while True:
        page = disagreement_page(use_case=world.use_case, filters=RowFilters(), after=after, size=4)
        seen.extend(page.rows)
        if not page.next_cursor:
            break
        after = page.next_cursor
    expected = list(
        Disagreement.objects.filter(use_case=world.use_case)
        .order_by("-decided_at", "-id")
        .values_list("pk", flat=True)
    )
    assert [d.pk for d in seen] == expected


# session, user with roles, use case with the PII right (for the export form), then: the page
# of rows, their count, the version choices and the matrix.
EXPLORER_QUERIES = 7


def test_the_explorer_costs_the_same_queries_for_any_number_of_rows(
    world, django_assert_num_queries
):
    client = client_for(world.analyst)
    with django_assert_num_queries(EXPLORER_QUERIES):
        client.get(explorer_url(world), {"kind": "audit"})
    with django_assert_num_queries(EXPLORER_QUERIES):
        client.get(explorer_url(world))
    with django_assert_num_queries(EXPLORER_QUERIES - 1):  # the next page has no matrix
        client.get(
            explorer_url(world),
            {"after": "2999-01-01T00:00:00+00:00~1"},
            HTTP_HX_REQUEST="true",
            HTTP_HX_TARGET="more-rows",
        )


def test_the_other_pages_cost_a_fixed_number_of_queries(world, django_assert_num_queries):
    from reviewapp.datasets.services.exports import export_create

    for fmt in ("csv", "jsonl", "parquet"):
        export_create(use_case=world.use_case, actor=world.analyst, fmt=fmt)
    client = client_for(world.analyst)
    slug = world.use_case.slug
    with django_assert_num_queries(4):  # session, user with roles, use case, exports
        client.get(f"/datasets/{slug}/exports/")
    with django_assert_num_queries(5):  # ... runs, recipe versions
        client.get(f"/datasets/{slug}/retraining/")
    with django_assert_num_queries(7):  # ... three counts, latest run ids (no runs to fetch)
        client.get("/datasets/")


def test_an_item_shows_its_predictions_decisions_and_comments(world, django_assert_num_queries):
    item = Item.objects.get(use_case=world.use_case, external_id="inv-4")
    client = client_for(world.analyst)
    # session, user with roles, use case with the PII right, item, predictions, decisions,
    # disagreements
    with django_assert_num_queries(7):
        response = client.get(f"/datasets/{world.use_case.slug}/items/inv-4")
    body = response.content.decode()
    assert response.status_code == 200
    for prediction in Prediction.objects.filter(item=item).select_related("model_version"):
        assert prediction.model_version.version in body
    for decision in Decision.objects.filter(item=item).select_related("reviewer"):
        assert decision.reviewer.username in body
    assert "looked twice at #4" in body
    assert PII_MARK not in body and "hidden" in body  # no PII right
    with_right = client_for(world.pii_analyst).get(f"/datasets/{world.use_case.slug}/items/inv-4")
    assert f"{PII_MARK} 0004" in with_right.content.decode()
    panel = client.get(
        f"/datasets/{world.use_case.slug}/items/inv-4",
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="item-panel",
    ).content.decode()
    assert "<html" not in panel and "js-close-panel" in panel
    assert client.get(f"/datasets/{world.use_case.slug}/items/nope").status_code == 404


def test_bad_filters_are_named_on_the_page(world):
    response = client_for(world.analyst).get(
        explorer_url(world), {"confidence_min": "2", "kind": "nope", "after": "garbage"}
    )
    assert response.status_code == 400
    body = response.content.decode()
    for name in ("confidence_min", "kind", "after"):
        assert name in body


def test_starting_an_export_from_the_page_keeps_its_filters(
    world, django_capture_on_commit_callbacks
):
    client = client_for(world.analyst)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/datasets/{world.use_case.slug}/exports/",
            {"format": "parquet", "scope": "disagreements", "pii": "hash", "kind": "override"},
        )
    assert response.status_code == 302
    export = Export.objects.get()
    assert (export.format, export.pii, export.filters) == ("parquet", "hash", {"kind": "override"})
    assert export.state == "ready"
    assert export.row_count == Disagreement.objects.filter(kind="override").count()
    listing = client.get(response["Location"]).content.decode()
    assert export.sha256 in listing and "Download PARQUET" in listing
    download = client.get(f"/datasets/{world.use_case.slug}/exports/{export.pk}/download/")
    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    manifest = client.get(f"/datasets/{world.use_case.slug}/exports/{export.pk}/manifest/")
    assert manifest.json()["file"]["sha256"] == export.sha256


def test_a_refused_export_says_why_and_returns_to_the_explorer(world):
    client = client_for(world.analyst)
    response = client.post(
        f"/datasets/{world.use_case.slug}/exports/", {"format": "csv", "pii": "include"}
    )
    assert response.status_code == 302 and response["Location"].startswith(explorer_url(world))
    page = client.get(response["Location"]).content.decode()
    assert "may not see" in page
    assert not Export.objects.exists()


def test_only_readers_with_the_pii_right_download_an_export_that_holds_pii(
    world, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        client_for(world.pii_analyst).post(
            f"/datasets/{world.use_case.slug}/exports/", {"format": "csv", "pii": "include"}
        )
    export = Export.objects.get()
    url = f"/datasets/{world.use_case.slug}/exports/{export.pk}/download/"
    assert client_for(world.analyst).get(url).status_code == 403
    allowed = client_for(world.pii_analyst).get(url)
    assert PII_MARK.encode() in b"".join(allowed.streaming_content)


def test_deleting_an_export_from_the_page(world, django_capture_on_commit_callbacks):
    client = client_for(world.analyst)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/datasets/{world.use_case.slug}/exports/", {"format": "csv"})
    export = Export.objects.get()
    page = client.get(f"/datasets/{world.use_case.slug}/exports/").content.decode()
    rows = f"{export.row_count:,}"
    assert f"The export ({rows} rows, " in page and "is deleted for everyone" in page
    delete = f"/datasets/{world.use_case.slug}/exports/{export.pk}/delete/"
    refused = client.post(delete, follow=True)
    assert "a reason is required" in refused.content.decode() and Export.objects.exists()
    response = client.post(delete, {"reason": "a newer export replaces it"})
    assert response.status_code == 302 and not Export.objects.exists()


def test_the_exports_list_polls_only_while_something_is_being_written(world):
    client = client_for(world.analyst)
    from reviewapp.datasets.services.exports import export_create

    export_create(use_case=world.use_case, actor=world.analyst, fmt="csv")
    busy = client.get(f"/datasets/{world.use_case.slug}/exports/").content.decode()
    assert 'hx-trigger="every 2s"' in busy and "<progress" in busy
    Export.objects.update(state="failed", error="boom")
    calm = client.get(f"/datasets/{world.use_case.slug}/exports/").content.decode()
    assert "every 2s" not in calm and "boom" in calm


def test_retraining_from_the_page(settings, django_capture_on_commit_callbacks):
    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world(items_per_phase=10)
    client = client_for(world.analyst)
    url = f"/datasets/{world.use_case.slug}/retraining/"
    assert "Start retraining" in client.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"base_version": "v2", "holdout_percent": "25"})
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert (run.state, run.base_model_version.version, run.holdout_fraction) == ("done", "v2", 0.25)
    page = client.get(url).content.decode()
    assert run.model_version.version in page and "Macro F1" in page
    refused = client.post(url, {"holdout_percent": "90"}, follow=True).content.decode()
    assert "held out share" in refused and TrainingRun.objects.count() == 1


def test_a_regression_use_case_has_a_value_matrix():
    world_user = make_user(Role.ML_ENGINEER)
    use_case = make_use_case(task_type="regression", members=[world_user])
    response = client_for(world_user).get(f"/datasets/{use_case.slug}/")
    assert response.status_code == 200
    assert "Model value × human value" in response.content.decode()
    assert response.context["matrix"].binned


def test_the_index_lists_the_use_cases_you_work_on(world):
    hidden = make_use_case(slug="not-yours")
    body = client_for(world.analyst).get("/datasets/").content.decode()
    assert world.use_case.name in body and f"/datasets/{world.use_case.slug}/" in body
    assert hidden.slug not in body


@pytest.mark.parametrize(
    "path",
    ["/datasets/{slug}/", "/datasets/{slug}/exports/", "/datasets/{slug}/retraining/"],
)
def test_reviewers_are_refused_and_outsiders_see_nothing(world, path):
    url = path.format(slug=world.use_case.slug)
    assert client_for(world.reviewer).get(url).status_code == 403
    assert client_for(make_user(Role.ML_ENGINEER)).get(url).status_code == 404
    assert Client().get(url).status_code == 302  # to the sign-in page
