"""Derived answers (mcp/answers.py): kept per source object and tag, gone with the source; shared
results are frozen."""

from __future__ import annotations

import gc

import pytest
from agent_runner import protocol as p
from mcp.types import TextContent
from mcp_api.mcp.answers import DerivedAnswers, SharedCallToolResult
from mcp_api.runners.hot_reads import SharedReadFileResult
from pydantic import ValidationError


class Source:
    pass


def test_one_value_per_source_for_the_tag_it_was_derived_for() -> None:
    answers = DerivedAnswers()
    a, b = Source(), Source()
    answers.put(a, "x", 1)
    answers.put(b, "x", 3)
    assert (answers.get(a, "x"), answers.get(b, "x")) == (1, 3)
    assert answers.get(a, "y") is None and answers.get(Source(), "x") is None
    answers.put(a, "y", 2)  # the last one stored replaces the first: a source holds one value
    assert (answers.get(a, "y"), answers.get(a, "x")) == (2, None)
    for n in range(1000):  # however many tags a client tries
        answers.put(a, f"spelling {n}", n)
    assert len(answers) == 2 and answers.get(a, "spelling 999") == 999


def test_an_entry_dies_with_its_source_and_a_reused_id_finds_nothing() -> None:
    answers = DerivedAnswers()
    source = Source()
    answers.put(source, "x", "derived from the first object")
    first_id = id(source)
    del source
    gc.collect()
    assert len(answers) == 0
    # CPython hands freed memory back out: look for a new object at the same address.
    for _ in range(10_000):
        other = Source()
        if id(other) == first_id:
            assert answers.get(other, "x") is None
            break
    answers.put(other, "x", "mine")
    assert answers.get(other, "x") == "mine"


def test_shared_results_cannot_be_changed() -> None:
    read = SharedReadFileResult(
        path="a",
        size=1,
        mime_type="text/plain",
        encoding="utf-8",
        content="x",
        is_binary=False,
        truncated=False,
    )
    with pytest.raises(ValidationError):
        read.content = "changed"
    assert isinstance(read, p.ReadFileResult)
    answer = SharedCallToolResult(content=[TextContent(type="text", text="x")], structured_content={"a": 1})
    with pytest.raises(ValidationError):
        answer.is_error = True
    assert answer.content[0].text == "x"
