"""The one way pages show a figure with its evidence."""

from django.template import Context, Template

from deployments.statistics.evidence import Stratum, empty, mean_interval, stratified, wilson


def render(source: str, **context) -> str:
    return Template("{% load evidence %}" + source).render(Context(context))


def test_a_rate_reads_with_its_interval_count_and_method():
    html = render("{{ e|pct_interval }}", e=wilson(348, 454))
    assert '76.7% <span class="interval">(72.5–80.3%, n=454)</span>' in html
    assert 'title="95% Wilson score interval, n = 454 items"' in html


def test_the_api_form_renders_the_same_as_the_estimate():
    estimate = wilson(348, 454)
    assert render("{{ e|pct_interval }}", e=estimate) == render(
        "{{ e|pct_interval }}", e=estimate.as_dict()
    )


def test_few_items_say_so_instead_of_a_percentage():
    html = render("{{ e|pct_interval }}", e=wilson(3, 12))
    assert "too few items (n=12)" in html
    assert "25.0%" not in html


def test_nothing_and_an_unlabelled_stratum_are_told_apart():
    assert "—" in render("{{ e|pct_interval }}", e=empty("wilson"))
    assert "—" in render("{{ e|pct_interval }}", e=None)
    unknown = stratified([Stratum(100, 0, 0), Stratum(50, 50, 40)])
    assert "not estimable (n=50)" in render("{{ e|pct_interval }}", e=unknown)


def test_errors_and_counts_use_their_own_units():
    mse = render("{{ e|num_interval }}", e=mean_interval(40, 80.0, 400.0))
    assert "2 <span" in mse and "n=40" in mse and "Student-t" in mse
    wrong = stratified([Stratum(1200, 60, 3)]).scaled(1200)
    html = render("{{ e|count_interval }}", e=wrong)
    assert html.startswith('<span class="evidence"') and "60 <span" in html and "n=60" in html
    assert "stratified" in html
