"""app.nesting: how deep a JSON body nests, read from its raw bytes before anything parses it."""

from __future__ import annotations

import json

import pytest

from app.nesting import MAX_DEPTH, too_deep


def arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def mixed(depth: int) -> bytes:
    """Objects and arrays taking turns: `{"a":[{"a":[…]}]}`."""
    opens = b"".join(b'{"a":' if i % 2 == 0 else b"[" for i in range(depth))
    closes = b"".join(b"}" if i % 2 == 0 else b"]" for i in reversed(range(depth)))
    return opens + b"1" + closes


@pytest.mark.parametrize("shape", [arrays, objects, mixed])
def test_depth_up_to_the_limit_passes_and_one_more_is_too_deep(shape):
    assert not too_deep(shape(MAX_DEPTH))
    assert too_deep(shape(MAX_DEPTH + 1))
    assert too_deep(shape(100_000))
    assert not too_deep(shape(5), limit=5) and too_deep(shape(6), limit=5)


def test_depth_is_the_deepest_branch_not_the_bracket_count():
    wide = json.dumps([[[i, {"k": [i]}]] for i in range(5_000)]).encode()
    assert not too_deep(wide)
    assert too_deep(json.dumps([[1]] * 50 + [json.loads(arrays(MAX_DEPTH))]).encode())


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000,
        "{" * 10_000,
        '"[' * 10_000,  # quotes inside the string are escaped, so they never end it
        "\\[" * 10_000,  # a backslash, then a bracket
        "\\" * 3 + "[" * 10_000,
        "é[\n{\u2028" * 3_000,
    ],
)
def test_brackets_inside_strings_do_not_count(text):
    for body in ({"content": text}, {text: [text]}, [{"a": text}] * 3):
        raw = json.dumps(body).encode()
        assert not too_deep(raw)
        assert not too_deep(json.dumps(body, ensure_ascii=False).encode())
    # ...while the same brackets outside a string do.
    assert too_deep(json.dumps({"content": text}).encode() + arrays(MAX_DEPTH + 1))


def test_escaped_backslashes_still_end_their_string():
    body = [["x\\", "[" * 500, "\\\\"], json.loads(arrays(10))]
    assert not too_deep(json.dumps(body).encode())
    deep = {"a\\": json.loads(arrays(MAX_DEPTH))}  # the string ends at `\\"`: the arrays count
    assert too_deep(json.dumps(deep).encode())


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 200,
        b"]" * 200 + b"[" * 200,
        b"[" * 150 + b"]" * 149,
        b"[" * 150 + b"]" * 151,
        b"{" * 130 + b"]" * 130 + b"][",
        b'["' + b"[" * 300 + b"]",  # a string that never ends
    ],
)
def test_brackets_that_do_not_pair_are_refused(raw):
    assert too_deep(raw)


def test_small_bodies_cost_two_counts_and_pass():
    """At most `limit` opening brackets cannot nest deeper; whatever else is wrong is the parser's."""
    assert not too_deep(b"")
    assert not too_deep(b"]]]]")
    assert not too_deep(b"[" * MAX_DEPTH)
    assert not too_deep(b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}')


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_utf16_and_utf32_bodies_are_measured_too(encoding):
    """json.loads reads UTF-16 and UTF-32 bodies: their quotes are not single bytes."""
    tricky = json.dumps([['\\"', "[" * 300]]) + "," + arrays(MAX_DEPTH + 1).decode()
    assert too_deep(f"[{tricky}]".encode(encoding))
    fine = json.dumps([['\\"', "[" * 300]])
    assert not too_deep(fine.encode(encoding))
    odd = b"\xff\xfe" + b"[\x00" * 200 + b"\x00"  # not UTF-16 (odd length): the parser refuses it
    assert not too_deep(odd)
    with pytest.raises(UnicodeDecodeError):
        json.loads(odd)
