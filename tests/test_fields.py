"""Shared input types: ids within their column's range, text the database can store."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from service.fields import MAX_BIG_ID, MAX_ID, BigId, Id, Line, check_json_text


class Sample(BaseModel):
    id: Id
    big: BigId | None = None
    name: Line | None = None


@pytest.mark.parametrize("value", [0, -1, MAX_ID + 1, 2**63, 2**70])
def test_ids_outside_the_integer_column_are_refused(value: int) -> None:
    with pytest.raises(ValidationError, match="id"):
        Sample(id=value)


def test_id_bounds_are_inclusive_and_big_ids_reach_64_bits() -> None:
    assert Sample(id=1).id == 1 and Sample(id=MAX_ID).id == MAX_ID
    assert Sample(id=1, big=MAX_BIG_ID).big == MAX_BIG_ID
    with pytest.raises(ValidationError):
        Sample(id=1, big=MAX_BIG_ID + 1)


@pytest.mark.parametrize(
    "text", ["A\x00B", "tab\there", "new\nline", "cr\r=1+1", "\x1b[31m", "\x85"]
)
def test_single_line_text_refuses_control_characters_naming_them(text: str) -> None:
    with pytest.raises(ValidationError, match=r"name\n.*control characters.*U\+00"):
        Sample(id=1, name=text)


def test_single_line_text_refuses_lone_surrogates_and_keeps_everything_else() -> None:
    with pytest.raises(ValidationError, match="surrogates"):
        Sample(id=1, name="\ud800")
    for text in ("Unit 7 · Polres Balikpapan", "Jl. Jend. Sudirman", "💡 {{ x }} <b>", "e\u0301"):
        assert Sample(id=1, name=text).name == text


def test_json_text_refuses_nul_and_surrogates_at_any_depth_naming_where() -> None:
    assert check_json_text({"a": ["x\ty", {"b": "line\nbreak"}], "n": 1}) is not None
    with pytest.raises(ValueError, match=r"attributes\.a\[1\]\.b: must not contain NUL"):
        check_json_text({"a": ["x", {"b": "\x00"}]})
    with pytest.raises(ValueError, match="key"):
        check_json_text({"bad\ud800key": 1})


def test_json_text_handles_deep_nesting_without_recursion() -> None:
    deep: object = "\x00"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="NUL"):
        check_json_text(deep)
