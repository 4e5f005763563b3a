"""What the API accepts as JSON, for every entry point at once.

Whatever a caller sends must be storable and scorable: PostgreSQL refuses NUL in text (and in
``jsonb``), UTF-8 cannot encode an unpaired surrogate, and a model reads numbers as doubles. A
body that breaks one of these rules is refused here, with a 400 naming where it is, before any
view or service sees it: ``{"items": {"3": {"external_id": ["must not contain NUL ..."]}}}``.
The size and nesting depth of a body are checked before it is parsed, so no body makes the
parser recurse without bound.

The same rules are named (``text_problem``, ``number_problem``) for services that take values
from elsewhere than a request body.
"""

import codecs
import json
import re
import sys
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser

from reviewapp.core.errors import InvalidInput, excerpt

# One character that PostgreSQL refuses in text and jsonb, or that UTF-8 cannot encode. A
# valid surrogate pair in JSON (``\ud83d\ude00``) is decoded to one code point, so any code
# point left in the surrogate range is unpaired.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A body without these tokens holds no unstorable text and no integer a double cannot hold,
# so the walk over the parsed value is skipped (the common case, and the cheap one for 10,000
# item batches). A match may be a false alarm (inside a string); the walk then decides.
# The pattern says what ``_suspect`` looks for; run as is, it reads a 10 MB batch body position
# by position (some 160 ms), so ``_suspect`` asks the same in two cheaper steps (30 ms):
# escapes only in a body that has one at all, and 16 digits in a row as a plain substring of
# the bytes with every digit turned into a 0.
_SUSPECT_TOKENS = re.compile(r"\\u0000|\\u[dD][89a-fA-F]|[0-9]{16}")
_SUSPECT_ESCAPES = re.compile(r"\\u0000|\\u[dD][89a-fA-F]")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN_DIGITS = b"0" * 16
_LARGEST_DOUBLE = sys.float_info.max
_EXACT_INTEGERS = 2**53  # every integer up to it is a double exactly


def text_problem(value: str) -> str | None:
    """Why this text cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain NUL characters (\\u0000)"
    return "must not contain unpaired surrogates (\\ud800-\\udfff)"


def texts_storable(texts: Iterable[str]) -> bool:
    """Whether every text can be stored (``text_problem`` is None for each), in one scan."""
    return _UNSTORABLE.search("".join(texts)) is None


def number_problem(value: int | float) -> str | None:
    """Why this number cannot be read as a double, or None when it can. Floats always can (NaN
    and infinity are each field's to refuse or to count as a model's null output); an integer
    can when it is within the double's range (about ±1.8e308) and the double is that very
    integer: 2**53 + 1 would reach the model as 2**53, another number than the one sent."""
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) <= _EXACT_INTEGERS:
        return None
    if abs(value) > _LARGEST_DOUBLE:
        return "must be a number a double can hold (within ±1.8e308)"
    if int(float(value)) != value:
        return "must be a number a double holds exactly (this integer would be rounded)"
    return None


def _suspect(text: str) -> bool:
    """Whether ``_SUSPECT_TOKENS`` occurs in ``text``. UTF-8 writes no ASCII byte inside a
    character of several bytes, so 16 ASCII digits in a row are as many digit bytes."""
    if "\\u" in text and _SUSPECT_ESCAPES.search(text):
        return True
    return _SIXTEEN_DIGITS in text.encode("utf-8", "surrogatepass").translate(_DIGITS_AS_ZERO)


def body_problems(value: Any) -> Any:
    """Every unstorable value in a parsed body, as the API's error shape (None when clean):
    nested objects and lists are named by key and position, as the fields are."""
    if isinstance(value, str):
        problem = text_problem(value)
        return [problem] if problem else None
    if isinstance(value, int | float):
        problem = number_problem(value)
        return [problem] if problem else None
    if isinstance(value, dict):
        errors: dict[str, Any] = {}
        for key, item in value.items():
            problem = text_problem(key)
            if problem:
                errors[excerpt(key)] = [f"field name {problem}"]
                continue
            nested = body_problems(item)
            if nested:
                errors[key] = nested
        return errors or None
    if isinstance(value, list):
        errors = {}
        for index, item in enumerate(value):
            nested = body_problems(item)
            if nested:
                errors[str(index)] = nested
        return errors or None
    return None


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def _nests_too_deep(data: bytes, limit: int) -> bool:
    """Whether the body's arrays and objects nest deeper than ``limit``, read on the raw bytes
    (brackets inside strings do not count), without recursion."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # too few brackets to nest past the limit
    # Strings first, so the brackets left are the structure's; then each round removes the
    # innermost pairs: what is left after ``limit`` rounds nests deeper.
    structure = _brackets_outside_strings(data)
    for _ in range(limit):
        if not structure:
            return False
        structure = structure.replace(b"[]", b"").replace(b"{}", b"")
    if b"[]" in structure or b"{}" in structure:
        return True
    # What is left never pairs up: malformed JSON, which the parser names as such. But each
    # opening bracket left is inside every one left before it (none of them closed), so the
    # parser would nest that deep before it finds the body malformed.
    return structure.count(b"[") + structure.count(b"{") > limit


def _brackets_outside_strings(data: bytes) -> bytes:
    """The body's brackets but those inside strings.

    Without a backslash every quote opens or closes a string, so once all but the quotes and
    brackets are gone, two quotes side by side are an empty string or the end of one string and
    the start of the next: dropping them changes nothing, and what is left (the strings that
    hold brackets) alternates outside, inside, outside. That takes some 20 ms on a 10 MB
    batch, against 190 ms for the pattern, which still reads bodies with escapes or a string
    left open.
    """
    kept = data.translate(None, delete=_NOT_STRUCTURE)
    if b"\\" in kept or kept.count(b'"') % 2:
        return _STRINGS.sub(b"", data).translate(None, delete=_NOT_BRACKETS)
    return b"".join(kept.replace(b'""', b"").split(b'"')[::2])


_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')


class JSONBodyParser(BaseParser):
    """The API's JSON parser: the body's size (``API_MAX_BODY_BYTES``, 413) and nesting depth
    (``API_MAX_JSON_DEPTH``, 400) are checked before it is parsed, and text and numbers no
    database or model could take are refused with a 400 naming their field.

    NaN and ±Infinity are parsed (as DRF's non-strict JSON does), so each field can name them
    or, in a caller's prediction, count them as the model's null output.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge({"non_field_errors": [f"the body is over {limit} bytes"]})
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise BodyTooLarge({"non_field_errors": [f"the body is over {limit} bytes"]})
        depth_limit = settings.API_MAX_JSON_DEPTH
        if _nests_too_deep(data, depth_limit):
            raise ParseError(
                {"non_field_errors": [f"arrays and objects nest at most {depth_limit} deep"]}
            )
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(data, encoding)
            parsed = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {excerpt(exc)}") from None
        if _suspect(text):
            problems = body_problems(parsed)
            if problems:
                raise InvalidInput(
                    problems if isinstance(problems, dict) else {"non_field_errors": problems}
                )
        return parsed
