"""A Jupyter Server's or Enterprise Gateway's answers, read into kernelmon's kernel model.

Pure functions: no I/O. Every parser reads what the server sent defensively: one entry that
is not a usable kernel (or session, or kernel spec) is skipped and named in ``skipped``, and
never costs the others their place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import compress, count, repeat
from operator import is_, is_not, ne
from typing import Any, Generic, TypeVar

from kernelmon.core.records import ExecutionState, isoformat, parse_isoformat

T = TypeVar("T")

#: How a server may spell a kernel's state, and what kernelmon shows for it
#: (jupyter_server adds "autorestarting" while its restarter brings a dead kernel back).
_STATES: dict[str, ExecutionState] = {
    "starting": ExecutionState.STARTING,
    "idle": ExecutionState.IDLE,
    "busy": ExecutionState.BUSY,
    "restarting": ExecutionState.RESTARTING,
    "autorestarting": ExecutionState.RESTARTING,
    "dead": ExecutionState.DEAD,
}
#: Longest id, name or path kept from a server (longer ones are not a kernel's).
_MAX_TEXT = 4096
#: What a kernel id from a server must look like before kernelmon uses it: it goes into URL
#: paths (``api/kernels/<id>``, the websocket's ``.../channels``) sent with the token, so
#: ``../`` or ``/`` would send the token elsewhere on the same host. jupyter_server's and the
#: gateway's ids are UUIDs.
KERNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def plain_kernel_id(value: object) -> bool:
    """Whether ``value`` is a kernel id kernelmon may put in a URL (``KERNEL_ID``)."""
    return isinstance(value, str) and KERNEL_ID.fullmatch(value) is not None


def _kernel_id(entry: dict[str, Any], whose: str = "its") -> str:
    kid = _text(entry, "id", required=True)
    assert kid is not None
    if not plain_kernel_id(kid):
        raise ValueError(
            f"{whose} id {short_repr(kid)} is not a plain kernel id (letters, digits, '.', '_', "
            "'-'), so kernelmon does not use it"
        )
    return kid


@dataclass(frozen=True, slots=True)
class RemoteKernel:
    """One entry of ``GET /api/kernels`` (also the answer to a start or a restart)."""

    id: str
    name: str
    #: the server's own word (``execution_state`` field), as sent
    execution_state: str
    last_activity: datetime | None
    #: websockets open on the kernel at the server (None: the server did not say)
    connections: int | None
    #: why the kernel is dead, when the server says so
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteSession:
    """One entry of ``GET /api/sessions``: which notebook or console a kernel serves."""

    id: str
    path: str | None
    name: str | None
    type: str | None
    kernel_id: str


@dataclass(frozen=True, slots=True)
class RemoteKernelSpec:
    """One kernel spec a server can start (``GET /api/kernelspecs``)."""

    name: str
    display_name: str
    language: str | None


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """What a listing gave: the usable entries, and a sentence for each skipped one."""

    items: tuple[T, ...]
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KernelSpecs:
    default: str | None
    specs: Listing[RemoteKernelSpec]


def _text(entry: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise ValueError(f"its {key!r} is not a usable text ({short_repr(value)})")
    return value


def short_repr(value: object) -> str:
    """``repr(value)``, cut to 60 characters (for sentences about bad input)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_time(value: object) -> datetime | None:
    """A server's ISO 8601 time (``2026-11-29T08:17:04.277399Z``) as an aware datetime;
    None when missing or unreadable (a bad time never drops its kernel)."""
    return parse_isoformat(value, assume_utc=True)


def parse_kernel(entry: object) -> RemoteKernel:
    """One kernel model; ValueError (saying what is wrong) when it has no usable id."""
    if not isinstance(entry, dict):
        raise ValueError(f"it is not a kernel model ({short_repr(entry)})")
    kid = _kernel_id(entry)
    connections = entry.get("connections")
    reason = entry.get("reason")
    state = entry.get("execution_state")
    return RemoteKernel(
        id=kid,
        name=_text(entry, "name") or "",
        execution_state=state if isinstance(state, str) and len(state) <= 64 else "unknown",
        last_activity=parse_time(entry.get("last_activity")),
        connections=(
            connections
            if isinstance(connections, int) and not isinstance(connections, bool)
            else None
        ),
        reason=reason[:_MAX_TEXT] if isinstance(reason, str) and reason else None,
    )


class Memo:
    """The entries of the last listing read, each with what it was read into: an entry sent
    again exactly as it was is not read again (a poll of a server where one kernel of a
    hundred changed reads one). Hand-written for speed: reading every entry again was about
    40% of the loop time of a poll cycle of 10 servers x 100 kernels (benchmarks/).

    An answer read from its bytes (``read_kernels``) keeps its entries' bytes (``texts``)
    and what each was read into (``items``), in the answer's order: an entry whose bytes
    are those of the same place last time is not even parsed (servers list in a steady
    order); an answer parsed whole keeps them by id (``entries``), each compared with the
    entry last sent under that id."""

    __slots__ = ("entries", "items", "texts")

    def __init__(self) -> None:
        #: id -> (the entry as sent, what it was read into)
        self.entries: dict[str, tuple[dict[str, Any], Any]] = {}
        #: the last answer's entries as bytes (``entry_texts``), and what each was read into
        self.texts: list[bytes] = []
        self.items: list[Any] = []


class NotJSON(ValueError):
    """An answer that does not parse as JSON."""


def loads(raw: bytes) -> object:
    """``json.loads``; ``NotJSON`` when ``raw`` does not parse."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise NotJSON from None


#: Where ``json.dumps`` (jupyter_server's and the gateway's answers) separates the objects
#: of a list, with its default separators.
_BETWEEN = b"}, {"


def entry_texts(raw: bytes) -> list[bytes] | None:
    """The entries of a JSON list of objects as ``json.dumps`` writes it (``[{...}, {...}]``),
    each without its outer braces, cut wherever ``}, {`` occurs; None when ``raw`` is not
    written that way. A cut inside a string or a nested value gives pieces that do not
    parse: see ``_listing_texts``."""
    if raw == b"[]":
        return []
    if len(raw) < 4 or not (raw.startswith(b"[{") and raw.endswith(b"}]")):
        return None
    return raw[2:-2].split(_BETWEEN)  # "[{A}, {B}]": "A", "B"


def _listing(payload: object, parse: Any, what: str, memo: Memo | None = None) -> Listing[Any]:
    if not isinstance(payload, list):
        raise ValueError(f"the list of {what} is not a list ({short_repr(payload)})")
    items: list[Any] = []
    skipped: list[str] = []
    last = memo.entries if memo is not None else {}
    now: dict[str, tuple[dict[str, Any], Any]] = {}
    for index, entry in enumerate(payload):
        key = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(key, str):
            kept = last.get(key)
            # the same entry again: equal, its connections of the same type (Python's
            # ``True == 1 == 1.0``; parse_kernel tells those apart)
            if (
                kept is not None
                and entry == kept[0]
                and type(entry.get("connections")) is type(kept[0].get("connections"))
            ):
                items.append(kept[1])
                now[key] = kept
                continue
        try:
            item = parse(entry)
        except ValueError as error:
            skipped.append(f"entry {index} of the {what} was skipped: {error}")
            continue
        items.append(item)
        if isinstance(key, str) and memo is not None:
            now[key] = (entry, item)
    if memo is not None:
        memo.entries = now  # only this listing's entries: nothing gone is kept
        memo.texts, memo.items = [], []
    return Listing(tuple(items), tuple(skipped))


def changed_at(new: Sequence[object], old: Sequence[object]) -> list[int] | None:
    """Where ``new`` differs from ``old`` (``!=``), or None when their lengths differ.
    (Compared in C, as the map's lists of a hundred kernels are, at every poll.)"""
    if len(new) != len(old):
        return None
    return list(compress(count(), map(ne, new, old)))


def replaced_at(new: Sequence[object], old: Sequence[object]) -> list[int] | None:
    """Where ``new`` holds another object than ``old`` (``is not``), or None when their
    lengths differ."""
    if len(new) != len(old):
        return None
    return list(compress(count(), map(is_not, new, old)))


def _listing_texts(texts: list[bytes], parse: Any, what: str, memo: Memo) -> Listing[Any] | None:
    """A listing from its entries' bytes (``entry_texts``): an entry seen in the last
    listing is not parsed again, a new one is parsed alone; None when a new one does not
    parse as an object (the cut was in the wrong place: parse the whole answer instead).

    Sound: each piece given back with its braces, ``{...}``, parsed whole as one JSON object;
    the answer is ``[`` + those pieces joined by ``, `` + ``]``, which is then a JSON list
    whose entries are exactly those objects, and JSON's grammar reads a text one way only,
    so ``json.loads`` of the whole answer gives the same entries. A piece cut inside a string
    or a nested value ends inside it and fails to parse. A piece kept from the last listing
    parsed then: the same bytes parse the same."""
    new = changed_at(texts, memo.texts)  # compared in place first: no hashing of them all
    got = list(memo.items)
    if new is None or len(new) > 1:  # moved, came or went: found by their bytes
        got = list(map(dict(zip(memo.texts, memo.items, strict=True)).get, texts))
        new = list(compress(count(), map(is_, got, repeat(None))))  # (items are never None)
    skipped: list[str] = []
    for index in new:
        try:
            entry = json.loads(b"{" + texts[index] + b"}")
        except (ValueError, RecursionError):
            return None
        try:
            got[index] = parse(entry)
        except ValueError as error:
            skipped.append(f"entry {index} of the {what} was skipped: {error}")
            got[index] = _SKIPPED
    if skipped:
        kept = [(text, item) for text, item in zip(texts, got, strict=True) if item is not _SKIPPED]
        texts, got = [text for text, _ in kept], [item for _, item in kept]
    memo.texts, memo.items = texts, got  # this listing's only: nothing gone is kept
    memo.entries = {}
    return Listing(tuple(got), tuple(skipped))


_SKIPPED = object()


def _read(raw: bytes | None, parse: Any, what: str, memo: Memo) -> Listing[Any]:
    if raw is not None:
        texts = entry_texts(raw)
        if texts is not None:
            listing = _listing_texts(texts, parse, what, memo)
            if listing is not None:
                return listing
    return _listing(None if raw is None else loads(raw), parse, what, memo)


def parse_kernels(payload: object, memo: Memo | None = None) -> Listing[RemoteKernel]:
    """``GET /api/kernels``; ValueError when the answer is not a list at all. With a
    ``memo`` (one per server), entries as they were in the last listing are not read again."""
    return _listing(payload, parse_kernel, "kernels", memo)


def read_kernels(raw: bytes | None, memo: Memo) -> Listing[RemoteKernel]:
    """``GET /api/kernels`` from the answer's bytes (None: no body), reading only the
    entries that are not as they were in the last listing (``memo``, one per server);
    ``NotJSON`` when the answer does not parse, ValueError when it is not a list."""
    return _read(raw, parse_kernel, "kernels", memo)


def parse_session(entry: object) -> RemoteSession:
    if not isinstance(entry, dict):
        raise ValueError(f"it is not a session model ({short_repr(entry)})")
    kernel = entry.get("kernel")
    if not isinstance(kernel, dict):
        raise ValueError(f"it names no kernel ({short_repr(kernel)})")
    kid = _kernel_id(kernel, "its kernel's")
    sid = _text(entry, "id", required=True)
    assert sid is not None
    path = entry.get("path")
    if path is None and isinstance(entry.get("notebook"), dict):
        path = entry["notebook"].get("path")  # the notebook server's older model
    return RemoteSession(
        id=sid,
        path=path if isinstance(path, str) and path and len(path) <= _MAX_TEXT else None,
        name=_text(entry, "name") if isinstance(entry.get("name"), str) else None,
        type=_text(entry, "type") if isinstance(entry.get("type"), str) else None,
        kernel_id=kid,
    )


def parse_sessions(payload: object, memo: Memo | None = None) -> Listing[RemoteSession]:
    """``GET /api/sessions``; ValueError when the answer is not a list at all (``memo``: as
    for ``parse_kernels``)."""
    return _listing(payload, parse_session, "sessions", memo)


def read_sessions(raw: bytes | None, memo: Memo) -> Listing[RemoteSession]:
    """``GET /api/sessions`` from the answer's bytes (as ``read_kernels``)."""
    return _read(raw, parse_session, "sessions", memo)


def _parse_spec(item: tuple[object, object]) -> RemoteKernelSpec:
    name, entry = item
    if not isinstance(name, str) or not name or not isinstance(entry, dict):
        raise ValueError(f"kernel spec {short_repr(name)} is not a kernel spec model")
    spec = entry.get("spec")
    if not isinstance(spec, dict):
        raise ValueError(f"kernel spec {name!r} has no 'spec'")
    display = spec.get("display_name")
    language = spec.get("language")
    return RemoteKernelSpec(
        name=name,
        display_name=display if isinstance(display, str) and display else name,
        language=language if isinstance(language, str) and language else None,
    )


def parse_kernelspecs(payload: object) -> KernelSpecs:
    """``GET /api/kernelspecs``: ``{"default": name, "kernelspecs": {name: {...}}}``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("kernelspecs"), dict):
        raise ValueError(f"the kernel specs are not a kernel spec listing ({short_repr(payload)})")
    default = payload.get("default")
    specs = _listing(list(payload["kernelspecs"].items()), _parse_spec, "kernel specs")
    return KernelSpecs(default if isinstance(default, str) and default else None, specs)


def session_paths(sessions: Iterable[RemoteSession]) -> dict[str, str]:
    """Kernel id -> the path of the notebook (else console, else file) it serves.

    A kernel can serve several sessions (a notebook and a console opened on it): the
    notebook names it best.
    """
    best: dict[str, tuple[int, str]] = {}
    for session in sessions:
        if session.path is None:
            continue
        rank = 0 if session.type == "notebook" else 1 if session.type == "console" else 2
        current = best.get(session.kernel_id)
        if current is None or rank < current[0]:
            best[session.kernel_id] = (rank, session.path)
    return {kid: path for kid, (_, path) in best.items()}


def execution_state(state: str) -> ExecutionState:
    """The server's word for a kernel's state as kernelmon shows it (unknown words:
    ``unknown``, never a guess)."""
    return _STATES.get(state, ExecutionState.UNKNOWN)


def kernel_state(kernel: RemoteKernel) -> dict[str, Any]:
    """The record's fields a server's model of a kernel says (its state, connections, why
    it is dead, and its last activity when the server gave one)."""
    values: dict[str, Any] = {
        "execution_state": execution_state(kernel.execution_state),
        "connections": kernel.connections or 0,
        "reason": kernel.reason,
    }
    if kernel.last_activity is not None:
        values["last_activity"] = kernel.last_activity
    return values


def kernel_fields(
    kernel: RemoteKernel, *, server_id: str, server_url: str, notebook_path: str | None
) -> dict[str, Any]:
    """The fields of kernelmon's kernel model that a server's kernel fills in from the
    server's own answers (JSON-safe; process facts such as PID, CPU and memory come from
    elsewhere)."""
    return {
        "id": kernel.id,
        "name": kernel.name,
        "execution_state": str(execution_state(kernel.execution_state)),
        "last_activity": isoformat(kernel.last_activity),
        "connections": kernel.connections,
        "reason": kernel.reason,
        "server_id": server_id,
        "server_url": server_url,
        "notebook_path": notebook_path,
    }
