"""Every page fits a 390 px phone: nothing wider than the viewport, nothing cut off, wide
tables scroll inside their card. Checked in Chromium on the pages with long, hostile data in
them, the sign-in page and the 404 and 500 pages among them."""

import pytest

from tests.conftest import settled
from tests.security.test_injection_browser import (
    EXPECTED_STATUS,
    error_pages,  # noqa: F401 (a fixture)
    hostile_data,
    pages,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = 390

# What counts as cut off. An element clips its content when its overflow is hidden or clip
# and its content is wider than its box (scrollWidth > clientWidth, 1 px for rounding); one
# whose overflow is auto or scroll is deliberately scrollable (a wide table inside its
# `.table-scroll` wrapper) and so passes, since nothing in it is out of reach. Left out on
# purpose: form fields (a long value scrolls inside its input), boxes of 1 px or less (the
# visually-hidden text for screen readers), elements not rendered, and a single line cut with
# an ellipsis that carries the whole text in its title. A Plotly figure is cut when its drawing
# is wider than the box it sits in.
CLIPPED = """() => {
  const out = [];
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className.trim()
      ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  for (const el of document.querySelectorAll('body *')) {
    if (['INPUT', 'TEXTAREA', 'SELECT', 'OPTION'].includes(el.tagName)) continue;
    if (el.closest('svg')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    const box = el.getBoundingClientRect();
    if (box.width <= 1 || box.height <= 1) continue;
    if (!['hidden', 'clip'].includes(style.overflowX)) continue;
    if (el.scrollWidth <= el.clientWidth + 1) continue;
    if (style.textOverflow === 'ellipsis' && el.title) continue;
    out.push(`${name(el)}: content ${el.scrollWidth}px in ${el.clientWidth}px`);
  }
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const svg = plot.querySelector('.main-svg');
    if (!svg) continue;
    const drawn = svg.getBoundingClientRect().width;
    const room = plot.parentElement.clientWidth;
    if (drawn > room + 1) out.push(`${name(plot)}: figure ${Math.round(drawn)}px in ${room}px`);
  }
  return out;
}"""


def test_no_page_is_wider_than_a_phone_or_cuts_anything_off(signed_in, error_pages):  # noqa: F811
    use_case, manager, reviewer = hostile_data()
    reviewer_page = signed_in(reviewer, width=PHONE)
    manager_page = signed_in(manager, width=PHONE)
    too_wide, clipped = {}, {}
    for path in pages(use_case):
        page = reviewer_page if path.startswith(("/queue/", "/my-work/")) else manager_page
        response = page.goto(page.base_url + path)
        assert response.status == EXPECTED_STATUS.get(path, 200), path
        settled(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE:
            too_wide[path] = width
        cut = page.evaluate(CLIPPED)
        if cut:
            clipped[path] = cut
    assert too_wide == {}
    assert clipped == {}
