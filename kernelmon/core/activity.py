"""Watching a kernel's IOPub: last activity, execution state, message counts.

One SUB socket per kernel, read in batches (see ``wire.SocketDrain``). For each message the
watcher verifies the signature and parses the header; only ``status`` messages have their
content parsed. Messages whose parent is one of kernelmon's own probes (recognised by the
probe session's id in the parent header) change nothing, so a monitor never keeps an idle
kernel alive.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import zmq

from . import iopub
from .records import ExecutionState, KernelRecord, utcnow
from .wire import Signer, channel_url, split_frames

#: How many finished requests are remembered (their late status messages are ignored).
FINISHED_MEMORY = 256

logger = logging.getLogger(__name__)

#: The states a kernel's ``status`` message may report that kernelmon shows as they are.
_STATES = {"starting", "idle", "busy", "restarting", "dead"}
_WELCOME = "iopub_welcome"
_STATUS = "status"
_STARTING = "starting"
_BOOTING = frozenset({"starting", "restarting"})


class ActivityWatcher:
    """Keeps a ``KernelRecord``'s activity facts up to date from the kernel's IOPub."""

    def __init__(
        self,
        record: KernelRecord,
        connection_info: dict[str, Any],
        probe_session: str,
        on_change: Callable[[KernelRecord, set[str], datetime | None], None],
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.record = record
        self._on_change = on_change
        #: ``time.monotonic()`` of the last message, and of the last user status message.
        self.last_message_at = time.monotonic()
        self.last_status_at = self.last_message_at
        #: msg_ids of requests known to be finished (their reply was seen): a status message
        #: about one of them that arrives late (a backlog under load) is out of date.
        self.finished: dict[str, None] = {}
        self._probe_marker = probe_session.encode("ascii")
        key = connection_info.get("key", b"")
        if isinstance(key, str):
            key = key.encode("utf-8")
        self._signer = Signer(key, connection_info.get("signature_scheme", "hmac-sha256"))
        # The kernel's IOPub socket is shared with kernelmon's frontends (see ``iopub``).
        self._feed = iopub.subscribe(channel_url(connection_info, "iopub"), self._on_batch, context)

    def close(self) -> None:
        self._feed.close()

    def request_finished(self, msg_id: str) -> None:
        """The reply to ``msg_id`` was seen: later status messages about it are stale."""
        self.finished[msg_id] = None
        if len(self.finished) > FINISHED_MEMORY:
            del self.finished[next(iter(self.finished))]

    def _on_batch(self, batch: list[list[bytes]]) -> None:
        record = self.record
        signer = self._signer
        marker = self._probe_marker
        state = record.execution_state
        status_seen = False
        activity = False
        bad = 0
        count = 0
        for frames in batch:
            parts = split_frames(frames)
            if parts is None or not signer.verify(parts[0], parts[1:5]):
                bad += 1
                continue
            try:
                header = json.loads(parts[1])
                msg_type = header["msg_type"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                bad += 1
                continue
            count += 1
            if marker in parts[2] or msg_type == _WELCOME:
                # caused by kernelmon's own probe, or by someone subscribing: not activity
                continue
            activity = True
            if msg_type == _STATUS:
                try:
                    new_state = json.loads(parts[4])["execution_state"]
                    parent_id = json.loads(parts[2]).get("msg_id") if self.finished else None
                except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
                    bad += 1
                    continue
                if parent_id is not None and parent_id in self.finished:
                    continue
                if new_state == _STARTING and state not in _BOOTING:
                    # A kernel says "starting" once, when its process starts; arriving after
                    # kernelmon confirmed the kernel (IOPub lags under load) it is stale.
                    continue
                if new_state in _STATES:
                    state = new_state
                    status_seen = True
        fields: set[str] = set()
        if count or bad:
            self.last_message_at = time.monotonic()
            if status_seen:
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
            now = utcnow()
            record.last_activity = now
            fields.add("last_activity")
        if state != record.execution_state and record.execution_state != ExecutionState.DEAD:
            record.execution_state = state
            if record.reason and state in (ExecutionState.IDLE, ExecutionState.BUSY):
                record.reason = None  # it speaks again: whatever was wrong is over
                fields.add("reason")
            fields.add("execution_state")
        if fields:
            self._on_change(record, fields, now)
