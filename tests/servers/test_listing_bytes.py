"""A listing read from its bytes (``model.read_kernels``, ``model.read_sessions``): split
into its entries where json.dumps wrote ``}, {``, only the entries whose bytes are new are
parsed, and whatever the strings inside hold, the result is the one ``json.loads`` of the
whole answer gives."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from kernelmon.core.servers.model import (
    Memo,
    NotJSON,
    entry_texts,
    parse_kernels,
    parse_sessions,
    read_kernels,
    read_sessions,
)

KID = "0b7e2f2c-5f8e-4c1e-9f1e-2f2c5f8e4c1e"


def kernel(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"k-{n}",
        "name": "python3",
        "last_activity": f"2026-11-29T08:00:{n % 60:02d}.000000Z",
        "execution_state": "idle",
        "connections": n % 2,
        **extra,
    }


def session(n: int, path: str) -> dict[str, Any]:
    return {
        "id": f"s-{n}",
        "path": path,
        "name": path.rsplit("/", 1)[-1] or "x",
        "type": "notebook",
        "kernel": kernel(n),
        "notebook": {"path": path, "name": "x"},
    }


HOSTILE = [
    "plain/analysis.ipynb",
    "}, {",
    'a"}, {"id": "k-evil", "name": "x"}, {"b',
    '"}, {"id": "s-evil", "kernel": {"id": "k-evil"}, "path": "',
    "back\\slash}, {\\",
    'escaped \\"}, {\\" quote',
    "[{}, {}]",
    "}]",
    "[{",
    "ünïcödé}, {ß",
    "\u2028}, {\x00",
]


def test_json_dumps_output_splits_into_its_entries() -> None:
    entries = [kernel(n) for n in range(5)]
    texts = entry_texts(json.dumps(entries).encode())
    assert texts is not None
    assert [json.loads(b"{" + t + b"}") for t in texts] == entries
    assert entry_texts(b"[]") == []
    assert entry_texts(b"[{}]") == [b""]
    for not_split in (b'{"kernels": []}', b"[1, 2]", b' [{"a": 1}]', b"", b"[{]"):
        assert entry_texts(not_split) is None


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_strings_read_as_the_whole_answer_does(path: str) -> None:
    """A ``}, {`` inside a string (or nested objects in arrays) splits the answer in the
    wrong places: a piece then ends inside that string or value and does not parse, and
    the whole answer is parsed instead; the result never differs from json.loads."""
    sessions = [session(0, "first.ipynb"), session(1, path), session(2, path + "/last")]
    payload = json.dumps(sessions).encode()
    memo = Memo()
    assert read_sessions(payload, memo) == parse_sessions(json.loads(payload))
    # cut inside the strings: the whole answer was parsed (entries kept by id, not bytes)
    assert bool(memo.texts) is ("}, {" not in path)
    assert bool(memo.entries) is ("}, {" in path)
    # a second answer with one entry changed: still the same as parsing it all
    sessions[0]["path"] = path + "-2"
    payload = json.dumps(sessions).encode()
    assert read_sessions(payload, memo) == parse_sessions(json.loads(payload))
    nested = [kernel(0, extra=[{"a": path}, {"b": [{}, {}]}]), kernel(1, reason=path)]
    payload = json.dumps(nested).encode()
    assert read_kernels(payload, Memo()) == parse_kernels(json.loads(payload))


def test_random_hostile_listings_always_read_as_json_loads() -> None:
    """Paths made of the characters that matter to the split (braces, brackets, quotes,
    backslashes, commas, spaces), listing after listing with one memo."""
    rng = random.Random(13)
    alphabet = ['"', "\\", "{", "}", "[", "]", ",", " ", ":", "a", "é", "\n"]
    memo = Memo()
    sessions = [session(n, f"nb-{n}.ipynb") for n in range(8)]
    for _ in range(400):
        for _ in range(rng.choice([1, 1, 1, 2])):  # mostly one entry changed, as polls see
            n = rng.randrange(len(sessions))
            path = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
            sessions[n] = session(n, path)
        if rng.random() < 0.1:  # a kernel came or went
            if rng.random() < 0.5 and len(sessions) > 1:
                sessions.pop(rng.randrange(len(sessions)))
            else:
                sessions.insert(rng.randrange(len(sessions) + 1), session(99, "new.ipynb"))
        payload = json.dumps(sessions).encode()
        assert read_sessions(payload, memo) == parse_sessions(json.loads(payload))


@pytest.mark.parametrize("where", [0, 3, 6])
@pytest.mark.parametrize(
    "change",
    [
        {"connections": 10},  # longer, and the old entry's bytes begin the new ones
        {"connections": 0, "execution_state": "starting"},
        {"reason": 'a "}, {" b'},
        {"execution_state": "busy"},  # the same length
    ],
)
def test_one_entry_changed_where_it_stood(where: int, change: dict[str, Any]) -> None:
    kernels = [kernel(n) for n in range(7)]
    memo = Memo()
    first = read_kernels(json.dumps(kernels).encode(), memo)
    kernels[where] = {**kernels[where], **change}
    payload = json.dumps(kernels).encode()
    second = read_kernels(payload, memo)
    assert second == parse_kernels(json.loads(payload))
    if "}, {" not in json.dumps(change):  # (else the whole answer is parsed, as json.loads)
        assert [a is b for a, b in zip(first.items, second.items, strict=True)] == [
            n != where for n in range(7)
        ]
    kernels[where] = kernel(where)  # and back
    payload = json.dumps(kernels).encode()
    assert read_kernels(payload, memo) == first


def test_only_new_entries_are_read() -> None:
    kernels = [kernel(n) for n in range(4)]
    memo = Memo()
    first = read_kernels(json.dumps(kernels).encode(), memo)
    kernels[2]["execution_state"] = "busy"
    second = read_kernels(json.dumps(kernels).encode(), memo)
    assert [k.execution_state for k in second.items] == ["idle", "idle", "busy", "idle"]
    for n in (0, 1, 3):
        assert second.items[n] is first.items[n]  # the same bytes: not read again
    assert second.items[2] is not first.items[2]
    # True is not 1 (parse_kernel tells them apart): other bytes, read again
    kernels[1]["connections"] = True
    third = read_kernels(json.dumps(kernels).encode(), memo)
    assert third.items[1].connections is None
    assert third.items[0] is first.items[0]
    # a kernel gone, one new: the others found by their bytes, not read again
    kernels = [kernels[0], kernels[2], kernel(9), kernels[3]]
    fourth = read_kernels(json.dumps(kernels).encode(), memo)
    assert [k.id for k in fourth.items] == ["k-0", "k-2", "k-9", "k-3"]
    assert fourth.items[0] is first.items[0]
    assert fourth.items[1] is second.items[2]
    assert fourth.items[3] is first.items[3]
    assert fourth == parse_kernels(kernels)


def test_bad_entries_and_bad_answers_read_as_before() -> None:
    entries: list[Any] = [kernel(0), {"name": "no id"}, kernel(2, connections="x")]
    payload = json.dumps(entries).encode()
    assert read_kernels(payload, Memo()) == parse_kernels(json.loads(payload))
    assert len(read_kernels(payload, Memo()).skipped) == 1
    for garbage in (b"[{'id': 1,", b"[{" + b"}" * 3, b"\xff[{}]", b'[{"a": "\xff"}]'):
        with pytest.raises(NotJSON):
            read_kernels(garbage, Memo())
    with pytest.raises(ValueError, match="not a list"):
        read_kernels(b'{"kernels": []}', Memo())
    with pytest.raises(ValueError, match="not a list"):
        read_kernels(None, Memo())
    sessions = [session(0, "a.ipynb"), {"id": "s-1", "kernel": {"id": "../etc"}}]
    payload = json.dumps(sessions).encode()
    assert read_sessions(payload, Memo()) == parse_sessions(json.loads(payload))
    assert "entry 1 of the sessions" in read_sessions(payload, Memo()).skipped[0]


def test_a_polls_kernels_and_paths_follow_the_listings() -> None:
    """The poll's kernels by id and notebook paths, updated from the last listing's where
    entries changed in place: always what reading the whole listing gives."""
    from kernelmon.core.servers.model import session_paths
    from kernelmon.core.servers.watch import _by_id, _paths

    memo, sessions_memo = Memo(), Memo()
    kernels = [kernel(n) for n in range(4)]
    sessions = [session(n, f"nb-{n}.ipynb") for n in range(4)]
    last_k = read_kernels(json.dumps(kernels).encode(), memo)
    last_s = read_sessions(json.dumps(sessions).encode(), sessions_memo)
    by_id, paths = _by_id(last_k, None, None), _paths(last_s, None, None)
    changes = [
        lambda: kernels[1].update(execution_state="busy"),  # activity: the paths stay
        lambda: sessions[2].update(path="moved.ipynb"),  # a notebook renamed
        lambda: kernels.__setitem__(3, kernel(7)),  # another kernel in its place
        lambda: sessions.__setitem__(0, session(7, "other.ipynb")),
        lambda: kernels.append(kernel(8)),
    ]
    for change in changes:
        change()
        for entry in sessions:
            entry["kernel"] = next(
                (k for k in kernels if k["id"] == entry["kernel"]["id"]), entry["kernel"]
            )
        now_k = read_kernels(json.dumps(kernels).encode(), memo)
        now_s = read_sessions(json.dumps(sessions).encode(), sessions_memo)
        by_id, paths = _by_id(now_k, last_k, by_id), _paths(now_s, last_s, paths)
        assert by_id == {k.id: k for k in now_k.items}
        assert list(by_id) == [k.id for k in now_k.items]
        assert paths == session_paths(now_s.items)
        last_k, last_s = now_k, now_s
