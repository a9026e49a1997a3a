"""Watching a kernel's IOPub: last activity, execution state, message counts.

One SUB socket per kernel, read in batches (see ``wire.SocketDrain``). For each message the
watcher verifies the signature and parses the header; the parent header and the content only
where the rules below need them. A message any of whose parsed fields is malformed is dropped
and counted (``bad_messages``); the rest of its batch is handled as usual.

Activity, as jupyter_server defines it: a message moves ``last_activity`` unless both its own
type and its parent request's type are in the ``untracked`` list (by default jupyter_server's
``untracked_message_types`` plus ``usage_request``/``usage_reply``), except while the kernel
is busy, when everything counts. Messages whose parent is one of kernelmon's own probes
(recognised by the probe session's id in the parent header) change nothing, so a monitor
never keeps an idle kernel alive.

Execution state: a kernel is busy while a shell request that it reported ``busy`` for has not
reported ``idle``. Statuses are matched to their request by the parent's ``msg_id`` and
subshell (each subshell runs its requests one after the other, so a new ``busy`` in a subshell
means its earlier request finished even if that request's ``idle`` was lost). Statuses whose
parent is a control-type request (``CONTROL_REQUESTS``: kernel_info, usage, debug, ...;
ipykernel answers them on its control thread, in the middle of a running cell) never change
the state, except that they end a ``starting`` (nothing runs in a kernel that just started).
A ``starting`` status after other messages means the kernel process was restarted: what was
running is forgotten.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

import zmq

from ..records import ExecutionState, KernelRecord, utcnow
from ..settings import UNTRACKED_MESSAGE_TYPES
from . import iopub
from .wire import DELIM, Signer, channel_url, parse_header

#: How many finished requests are remembered (their late status messages are ignored).
FINISHED_MEMORY = 256
#: At most this many requests (one per subshell) are tracked as running; beyond, the oldest
#: is forgotten (a kernel has a handful of subshells; this only bounds a hostile one).
OPEN_MEMORY = 64

#: Requests whose busy/idle statuses never change the execution state: they are answered on
#: the control channel (or are housekeeping a frontend sends on connecting), not code running.
CONTROL_REQUESTS = frozenset(
    {
        "kernel_info_request",
        "comm_info_request",
        "shutdown_request",
        "interrupt_request",
        "debug_request",
        "usage_request",
        "create_subshell_request",
        "delete_subshell_request",
        "list_subshell_request",
    }
)

logger = logging.getLogger(__name__)

_STARTING = "starting"
_BUSY = "busy"
_IDLE = "idle"
#: The states a kernel's ``status`` message may report (``restarting`` and ``dead`` are
#: jupyter_server's own words; a kernel saying them is taken like ``starting``/ignored).
_STATES = frozenset({"starting", "idle", "busy", "restarting", "dead"})
_WELCOME = "iopub_welcome"
_STATUS = "status"
_BOOTING = frozenset({"starting", "restarting"})

#: What a status says: (parent msg_id or "", parent msg_type, parent subshell or "", state).
_Status = tuple[str, str | None, str, str | None]


#: Reads the current ``untracked_message_types`` (the settings may change while watching).
Untracked = Callable[[], Collection[str]]


class Malformed(ValueError):
    """A field the watcher reads is missing or of the wrong type."""


def _str_field(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None or isinstance(value, str):
        return value
    raise Malformed(f"{name} is {type(value).__name__}, not a string")


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise Malformed(f"{what} is {type(value).__name__}, not an object")
    return value


def parse_parent(raw: bytes) -> tuple[str, str | None, str | None]:
    """(msg_id or "", msg_type, subshell_id) of a message's parent header; ``Malformed``,
    ``ValueError`` (bad JSON) or ``RecursionError`` (absurdly nested) if it is not one."""
    parent = _json_object(raw, "parent header")
    return (
        _str_field(parent, "msg_id") or "",
        _str_field(parent, "msg_type"),
        _str_field(parent, "subshell_id"),
    )


def parse_state(raw: bytes) -> str:
    """The ``execution_state`` of a ``status`` message's content."""
    state = _json_object(raw, "status content").get("execution_state")
    if not isinstance(state, str) or state not in _STATES:
        raise Malformed(f"execution_state {state!r} is not a kernel state")
    return state


class ActivityWatcher:
    """Keeps a ``KernelRecord``'s activity facts up to date from the kernel's IOPub."""

    def __init__(
        self,
        record: KernelRecord,
        connection_info: dict[str, Any],
        probe_session: str,
        on_change: Callable[[KernelRecord, set[str], datetime | None], None],
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        untracked: Untracked | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``clock``: what "now" is for ``last_activity`` (the map's clock, which the
        culler compares it with)."""
        self.record = record
        self._clock = clock
        self._on_change = on_change
        self._untracked = untracked or (lambda: UNTRACKED_MESSAGE_TYPES)
        #: ``time.monotonic()`` of the last message, and of the last shell status message.
        self.last_message_at = time.monotonic()
        self.last_status_at = self.last_message_at
        #: msg_ids of requests known to be finished (their reply was seen): a status message
        #: about one of them that arrives late (a backlog under load) is out of date.
        self.finished: dict[str, None] = {}
        #: The shell requests running: subshell id ("" for the main shell) -> (msg_id,
        #: ``time.monotonic()`` of its busy), oldest first.
        self.open_requests: dict[str, tuple[str, float]] = {}
        #: Whether a message of the kernel (not of kernelmon's probe, not a subscription
        #: notice) was seen yet: a ``starting`` after one means the process restarted.
        self._seen_any = False
        self._probe_marker = probe_session.encode("ascii")
        key = connection_info.get("key", b"")
        if isinstance(key, str):
            key = key.encode("utf-8")
        self._signer = Signer(key, connection_info.get("signature_scheme", "hmac-sha256"))
        # The kernel's IOPub socket is shared with kernelmon's frontends (see ``iopub``).
        self._feed = iopub.subscribe(channel_url(connection_info, "iopub"), self._on_batch, context)

    def close(self) -> None:
        self._feed.close()

    @property
    def running(self) -> bool:
        """Whether a shell request the kernel reported busy for has not reported idle."""
        return bool(self.open_requests)

    def request_finished(self, msg_id: str) -> None:
        """The reply to ``msg_id`` was seen: it no longer runs, and later status messages
        about it are stale. The caller decides what the kernel's state is now."""
        self.finished[msg_id] = None
        if len(self.finished) > FINISHED_MEMORY:
            del self.finished[next(iter(self.finished))]
        for subshell, (running, _at) in list(self.open_requests.items()):
            if running == msg_id:
                del self.open_requests[subshell]

    def settle(self, sent_at: float) -> bool:
        """The main shell answered a request sent at ``sent_at`` (``time.monotonic()``): the
        request it was running when that was sent has finished, even if its ``idle`` was
        lost or is still far behind in IOPub. Shows the kernel idle if nothing else runs (a
        busy seen since opened a request of its own); returns whether the state changed."""
        main = self.open_requests.get("")
        if main is not None and main[1] < sent_at:
            del self.open_requests[""]
        record = self.record
        if record.execution_state != ExecutionState.BUSY or self.open_requests:
            return False
        record.execution_state = ExecutionState.IDLE
        self._on_change(record, {"execution_state"}, None)
        return True

    # -- reading ----------------------------------------------------------------------------

    def _parse(
        self, parts: Sequence[bytes], busy: bool, untracked: Collection[str]
    ) -> tuple[bool, bool, _Status | None]:
        """What the rules need of one verified message: (kernelmon's own or a subscription
        notice, activity, the status or None); raises on a malformed field."""
        header = parse_header(parts[1])
        if not isinstance(header, dict):
            raise Malformed(f"header is {type(header).__name__}, not an object")
        msg_type = header.get("msg_type")
        if not isinstance(msg_type, str):
            raise Malformed("msg_type is missing or not a string")
        own = self._probe_marker in parts[2] or msg_type == _WELCOME
        is_status = msg_type == _STATUS
        if not is_status and (own or busy or msg_type not in untracked):
            # Counted as it is: no need to read its parent.
            return own, not own, None
        parent_id, parent_type, subshell = parse_parent(parts[2])
        state = parse_state(parts[4]) if is_status else None
        activity = not own and (busy or msg_type not in untracked or parent_type not in untracked)
        return own, activity, (parent_id, parent_type, subshell or "", state)

    def _on_batch(self, batch: list[list[bytes]]) -> None:
        record = self.record
        verify = self._signer.verify
        parse = self._parse
        untracked = self._untracked()
        state = record.execution_state
        # Looked up once: an enum member costs a class attribute lookup each time (this loop
        # runs for every message).
        busy_state = ExecutionState.BUSY
        seen_any = self._seen_any
        shell_status = False
        activity = False
        bad = 0
        count = 0
        for frames in batch:
            # wire.split_frames, written out
            try:
                start = frames.index(DELIM) + 1
            except ValueError:
                bad += 1
                continue
            parts = frames[start:]
            if len(parts) < 5 or not verify(parts[0], parts[1:5]):
                bad += 1
                continue
            try:
                own, active, status = parse(parts, state == busy_state, untracked)
            except (ValueError, TypeError, RecursionError) as e:
                # ValueError: bad JSON (UnicodeDecodeError, too long a number, Malformed)
                bad += 1
                logger.debug("Dropped a malformed message from %s: %s", record.id, e)
                continue
            count += 1
            if active:
                activity = True
            if own:
                # kernelmon's own traffic, or a subscription notice (which may come before
                # the kernel's "starting"): says nothing about the kernel's process
                continue
            seen_before, seen_any = seen_any, True
            if status is None:
                continue
            parent_id, parent_type, subshell, new_state = status
            if parent_id and parent_id in self.finished:
                continue
            if new_state in _BOOTING:
                if seen_before:
                    # A kernel says "starting" once, when its process starts: after other
                    # messages, the process was restarted and what it ran is gone.
                    self.open_requests.clear()
                    state = ExecutionState.STARTING
                elif state in _BOOTING:
                    state = ExecutionState.STARTING
                # else: arriving after kernelmon confirmed the kernel (IOPub lags under
                # load), it is stale.
                continue
            if new_state not in (_BUSY, _IDLE):
                continue  # "dead": kernelmon learns that from the process, not from IOPub
            if parent_type in CONTROL_REQUESTS:
                if state == ExecutionState.STARTING:
                    state = ExecutionState.BUSY if self.open_requests else ExecutionState.IDLE
                continue
            shell_status = True
            if new_state == _BUSY:
                self.open_requests.pop(subshell, None)
                self.open_requests[subshell] = (parent_id, time.monotonic())
                if len(self.open_requests) > OPEN_MEMORY:
                    del self.open_requests[next(iter(self.open_requests))]
            elif self.open_requests.get(subshell, ("",))[0] == parent_id or not parent_id:
                self.open_requests.pop(subshell, None)
            state = ExecutionState.BUSY if self.open_requests else ExecutionState.IDLE
        self._seen_any = seen_any
        fields: set[str] = set()
        if count or bad:
            self.last_message_at = time.monotonic()
            if shell_status:
                self.last_status_at = self.last_message_at
        if count:
            record.messages += count
            fields.add("messages")
        if bad:
            record.bad_messages += bad
            fields.add("bad_messages")
            logger.debug("Dropped %d malformed or badly signed message(s) from %s", bad, record.id)
        now: datetime | None = None
        if activity:
            now = self._clock()
            record.last_activity = now
            fields.add("last_activity")
            if record.last_activity_note is not None:
                record.last_activity_note = None
                fields.add("last_activity_note")
        if state != record.execution_state and record.execution_state != ExecutionState.DEAD:
            record.execution_state = state
            if record.reason and state in (ExecutionState.IDLE, ExecutionState.BUSY):
                record.reason = None  # it speaks again: whatever was wrong is over
                fields.add("reason")
            fields.add("execution_state")
        if fields:
            self._on_change(record, fields, now)
