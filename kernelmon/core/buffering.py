"""A bounded buffer of messages for a frontend that went away.

Messages are kept as the raw frames they arrived in (no parsing while buffering), counted
and capped by number and by bytes; when a cap is reached the oldest are dropped first and
the number dropped is kept so the user can be told.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

#: A buffered message: (channel name, raw frames after the identities).
RawMessage = tuple[str, tuple[bytes, ...]]

# Rough per-message bookkeeping cost (tuple, bytes headers) counted against the byte cap, so
# that a flood of tiny messages cannot grow memory far beyond ``max_bytes``.
_OVERHEAD = 64


class MessageBuffer:
    """FIFO of raw messages with count and byte caps; oldest dropped first."""

    __slots__ = ("_items", "dropped", "max_bytes", "max_messages", "nbytes")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, RawMessage]] = deque()
        self.nbytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(self, channel: str, frames: Sequence[bytes]) -> None:
        size = _OVERHEAD + sum(len(f) for f in frames)
        if self.max_messages <= 0 or size > self.max_bytes:
            self.dropped += 1
            return
        self._items.append((size, (channel, tuple(frames))))
        self.nbytes += size
        while len(self._items) > self.max_messages or self.nbytes > self.max_bytes:
            old_size, _ = self._items.popleft()
            self.nbytes -= old_size
            self.dropped += 1

    def set_caps(self, max_messages: int, max_bytes: int) -> None:
        """Change the caps, dropping the oldest messages that no longer fit."""
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        while self._items and (len(self._items) > max_messages or self.nbytes > max_bytes):
            old_size, _ = self._items.popleft()
            self.nbytes -= old_size
            self.dropped += 1

    def drain(self) -> Iterator[RawMessage]:
        """Yield and remove every message, oldest first."""
        while self._items:
            size, item = self._items.popleft()
            self.nbytes -= size
            yield item

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0
