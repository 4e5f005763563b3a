"""One item reads the same on every page: groups, labels, units, alignment, images."""

from reviewapp.core.item_display import item_display

SCHEMA = [
    {"name": "age", "type": "integer", "label": "Age", "unit": "years", "group": "Patient"},
    {
        "name": "s1",
        "type": "number",
        "label": "Total serum cholesterol (tc)",
        "description": "mg/dL in serum",
        "unit": "mg/dL",
        "group": "Blood serum",
    },
    {"name": "note", "type": "string"},
    {"name": "bmi", "type": "number", "group": "Patient"},
]


def _rows(display):
    return {row["name"]: row for group in display["groups"] for row in group["rows"]}


def test_features_are_grouped_in_schema_order_with_ungrouped_ones_together():
    display = item_display({"age": 50, "s1": 180.5, "note": "ok", "bmi": 27.1}, schema=SCHEMA)
    assert [(g["title"], [r["name"] for r in g["rows"]]) for g in display["groups"]] == [
        ("Patient", ["age", "bmi"]),
        ("Blood serum", ["s1"]),
        ("", ["note"]),
    ]


def test_labels_units_and_descriptions_are_shown_and_the_raw_name_beside_a_label():
    rows = _rows(item_display({"age": 50, "s1": 180.5, "note": "ok", "bmi": 27.1}, schema=SCHEMA))
    assert rows["s1"]["label"] == "Total serum cholesterol (tc)"
    assert rows["s1"]["show_name"] is True
    assert rows["s1"]["description"] == "mg/dL in serum"
    assert (rows["s1"]["display"], rows["s1"]["unit"]) == ("180.5", "mg/dL")
    assert (rows["bmi"]["label"], rows["bmi"]["show_name"]) == ("bmi", False)


def test_numbers_align_right_and_text_left_with_long_text_folded():
    long_text = "word " * 60
    rows = _rows(item_display({"age": 50, "note": long_text, "s1": None}, schema=SCHEMA))
    assert rows["age"]["align"] == "num"
    assert rows["s1"]["align"] == "num" and rows["s1"]["missing"]
    assert rows["note"]["align"] == "text" and rows["note"]["long"]
    short = _rows(item_display({"note": "fine"}, schema=SCHEMA))["note"]
    assert short["align"] == "text" and not short["long"] and short["unit"] == ""


def test_hidden_features_show_no_value():
    rows = _rows(item_display({"age": 50}, schema=SCHEMA, masked={"age"}))
    assert rows["age"]["hidden"] and rows["age"]["display"] == ""


def test_a_square_grid_of_numbers_is_an_image_not_numbers():
    schema = [{"name": f"p{i}", "type": "integer", "min": 0, "max": 16} for i in range(64)]
    features = {f"p{i}": i % 17 for i in range(64)}
    display = item_display(features, schema=schema, image=True)
    assert display["image"]["side"] == 8
    assert len(display["image"]["cells"]) == 64
    assert item_display(features, schema=schema, image=False)["image"] is None
    assert item_display(features, schema=schema[:63], image=True)["image"] is None
    assert item_display(features, schema=schema, image=True, masked={"p1"})["image"] is None


def test_the_page_shows_label_raw_name_tooltip_unit_and_folds_long_text():
    from django.template.loader import render_to_string

    display = item_display({"s1": 180.5, "note": "word " * 60}, schema=SCHEMA)
    html = render_to_string("core/_item_features.html", {"display": display})
    assert '<dt title="mg/dL in serum">Total serum cholesterol (tc)' in html
    assert '<code class="feat-name">s1</code>' in html
    assert '180.5 <span class="feat-unit">mg/dL</span>' in html
    assert '<details class="feat-long">' in html
    assert 'class="feat feat-text"' in html and 'class="feat feat-num"' in html
