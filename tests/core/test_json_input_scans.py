"""The JSON parser's fast scans of a raw body say what the patterns they replace say.

``_suspect`` (is a walk over the parsed body needed?) and ``_brackets_outside_strings`` (the
structure the depth check reads) take shortcuts for the common body, with no escapes and every
string closed; for any text at all they must answer as ``_SUSPECT_TOKENS`` and ``_STRINGS``.
"""

import json

import hypothesis
from hypothesis import strategies as st

from reviewapp.core.json_input import (
    _NOT_BRACKETS,
    _STRINGS,
    _SUSPECT_TOKENS,
    _brackets_outside_strings,
    _suspect,
)
from tests.passes import examples

# Few characters, so that the tokens and the edge cases (quotes side by side, escapes, long
# runs of digits, brackets inside strings) turn up often.
ALPHABET = list('[]{}"\\u0dD89aF:, 1x') + ["é", "\ud83d"]
texts = st.text(alphabet=ALPHABET, max_size=200) | st.builds(
    lambda value: json.dumps(value),
    st.recursive(
        st.none() | st.integers() | st.text(alphabet=ALPHABET, max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(alphabet=ALPHABET, max_size=5), inner, max_size=4)
        ),
        max_leaves=20,
    ),
)


@hypothesis.settings(max_examples=examples(500), deadline=None)
@hypothesis.given(texts)
def test_suspect_answers_as_the_pattern(text):
    assert _suspect(text) == bool(_SUSPECT_TOKENS.search(text))


@hypothesis.settings(max_examples=examples(500), deadline=None)
@hypothesis.given(texts)
def test_brackets_outside_strings_are_those_the_pattern_leaves(text):
    data = text.encode("utf-8", "surrogatepass")
    expected = _STRINGS.sub(b"", data).translate(None, delete=_NOT_BRACKETS)
    assert _brackets_outside_strings(data) == expected


def test_the_common_cases():
    assert not _suspect('{"a": [1, 2.5, "x"]}')
    assert _suspect('{"a": 12345678901234567}')
    assert _suspect('{"a": "\\u0000"}')
    assert not _suspect('{"a": "\\u00e9", "b": 123456789012345}')
    assert _brackets_outside_strings(b'{"a": ["[{", ""], "b": "}"}') == b"{[]}"
    assert _brackets_outside_strings(b'{"a\\"[": [1]}') == b"{[]}"
    assert _brackets_outside_strings(b'{"a": "[') == b"{["  # as the pattern: left open
