"""The frames of the kernel websocket: the v1 subprotocol's and the legacy protocol's.

jupyter_server is not a dependency of kernelmon (only of its tests), so its
``serialize_msg_to_ws_v1`` / ``deserialize_msg_from_ws_v1`` and ``deserialize_binary_message``
are written out here: a few lines each, checked against jupyter_server's own by the tests. A
frame that does not fit raises ValueError (it costs only itself).
"""

from __future__ import annotations

import json
import struct
from typing import Any


def pack_v1(channel: str, parts: list[bytes]) -> bytes:
    """A v1 frame: the number of offsets, the offsets (8 bytes little-endian each), then the
    channel name and the message's parts (header, parent header, metadata, content, buffers)."""
    name = channel.encode("utf-8")
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(name))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return b"".join([head, name, *parts])


def unpack_v1(frame: bytes) -> tuple[str, list[bytes]]:
    """The channel and parts of a v1 frame; ValueError if it is not one."""
    if len(frame) < 8:
        raise ValueError("a v1 frame shorter than its header")
    count = int.from_bytes(frame[:8], "little")
    if not 3 <= count <= 1024 or len(frame) < 8 * (count + 1):
        raise ValueError(f"a v1 frame with {count} offsets")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    if offsets[0] != 8 * (count + 1) or offsets != sorted(offsets) or offsets[-1] > len(frame):
        raise ValueError("a v1 frame whose offsets do not fit it")
    offsets[-1] = len(frame)
    channel = frame[offsets[0] : offsets[1]].decode("utf-8", "replace")
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(1, count - 1)]
    return channel, parts


def unpack_legacy_binary(frame: bytes) -> dict[str, Any]:
    """A legacy binary frame (a message with buffers): the number of parts and their offsets
    (4 bytes big-endian each), the message as JSON, then the buffers."""
    if len(frame) < 8:
        raise ValueError("a binary frame shorter than its header")
    (count,) = struct.unpack("!I", frame[:4])
    if not 1 <= count <= 1024 or len(frame) < 4 * (count + 1):
        raise ValueError(f"a binary frame with {count} parts")
    offsets = list(struct.unpack(f"!{count}I", frame[4 : 4 * (count + 1)]))
    ends = [*offsets[1:], len(frame)]
    if offsets != sorted(offsets) or ends[-1] < offsets[-1]:
        raise ValueError("a binary frame whose offsets do not fit it")
    bufs = [frame[start:stop] for start, stop in zip(offsets, ends, strict=True)]
    msg = json.loads(bufs[0])
    if not isinstance(msg, dict):
        raise ValueError("a binary frame whose message is not a JSON object")
    msg["buffers"] = bufs[1:]
    return msg
