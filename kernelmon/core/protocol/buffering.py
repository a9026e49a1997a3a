"""A bounded buffer of messages for a frontend that went away.

Messages are kept as the raw frames they arrived in (no parsing while buffering), packed
into one bytes object each (a small header with the channel and the frame lengths, then the
frames), so a buffered message costs little more than its size on the wire. The buffer is
capped by number and by bytes; when a cap is reached the oldest are dropped first and the
number dropped is kept so the user can be told.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator, Sequence

#: A buffered message as handed back: (channel name, raw frames after the identities).
RawMessage = tuple[str, tuple[bytes, ...]]

CHANNELS = ("shell", "control", "stdin", "iopub")
_HEAD = struct.Struct("<BI")  # channel index, number of frames (a message may have hundreds)
_LEN = struct.Struct("<I")
# What the deque slot and the bytes object's own header cost per message (CPython 64-bit),
# counted against the byte cap so that a flood of tiny messages cannot exceed it.
_OVERHEAD = 8 + 33


def pack(channel: str, frames: Sequence[bytes]) -> bytes:
    lengths = b"".join(_LEN.pack(len(f)) for f in frames)
    return _HEAD.pack(CHANNELS.index(channel), len(frames)) + lengths + b"".join(frames)


def unpack(blob: bytes) -> RawMessage:
    channel, n = _HEAD.unpack_from(blob)
    offset = _HEAD.size + n * _LEN.size
    frames = []
    for i in range(n):
        (length,) = _LEN.unpack_from(blob, _HEAD.size + i * _LEN.size)
        frames.append(blob[offset : offset + length])
        offset += length
    return CHANNELS[channel], tuple(frames)


class MessageBuffer:
    """FIFO of raw messages with count and byte caps; oldest dropped first."""

    __slots__ = ("_items", "dropped", "max_bytes", "max_messages", "nbytes")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[bytes] = deque()
        self.nbytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(self, channel: str, frames: Sequence[bytes]) -> None:
        """Keep a message, or count it as dropped (over a cap, or not storable: a frame of
        4 GiB or more, an unknown channel); never raises."""
        if self.max_messages <= 0 or sum(map(len, frames)) > self.max_bytes:
            self.dropped += 1
            return
        try:
            blob = pack(channel, frames)
        except (struct.error, ValueError, TypeError):
            self.dropped += 1
            return
        size = len(blob) + _OVERHEAD
        if size > self.max_bytes:
            self.dropped += 1
            return
        self._items.append(blob)
        self.nbytes += size
        self._trim()

    def _trim(self) -> None:
        items = self._items
        while items and (len(items) > self.max_messages or self.nbytes > self.max_bytes):
            self.nbytes -= len(items.popleft()) + _OVERHEAD
            self.dropped += 1

    def set_caps(self, max_messages: int, max_bytes: int) -> None:
        """Change the caps, dropping the oldest messages that no longer fit."""
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._trim()

    def drain(self) -> Iterator[RawMessage]:
        """Yield and remove every message, oldest first."""
        items = self._items
        while items:
            blob = items.popleft()
            self.nbytes -= len(blob) + _OVERHEAD
            yield unpack(blob)

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0
