"""Signing and checking message frames (HMAC), and reading a message's header frame.

Each IOPub message is read once from kernelmon's one SUB socket per kernel and handed, as the
very same frame objects, to the activity watcher and to every frontend; the signature check
and the header parse are done once per message (memos keyed by the frames' identity, bounded
in count and in bytes), not once per reader.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

#: Messages verified lately, by the identity of their signature frame: (signature, key,
#: scheme, header, parent, metadata, content). See ``Signer.verify``.
_verified: dict[int, tuple[bytes, bytes, str, bytes, bytes, bytes, bytes]] = {}
#: Headers parsed lately, by the identity of their frame (see ``parse_header``).
_headers: dict[int, tuple[bytes, dict[str, Any]]] = {}
#: At most this many entries in each memo; a full memo is emptied at once (a batch is at
#: most ``BATCH`` messages, so few checks are made twice; dropping the oldest entry one by
#: one, ``del memo[next(iter(memo))]``, costs a scan over the dict's deleted slots each time).
_MEMO = 4096
#: At most this many bytes of frames kept alive by the memo of verified messages: it holds
#: the frames it vouches for, and large outputs (images, tables) must not stay alive in it
#: by the thousand after the watcher and the frontends are done with them.
MEMO_BYTES = 4 * 1024 * 1024
_verified_bytes = 0
_decode_json = json.JSONDecoder().decode


class Signer:
    """Signs and verifies message frames with the connection's key (HMAC)."""

    __slots__ = ("_auth", "_key", "_scheme")

    def __init__(self, key: bytes, scheme: str = "hmac-sha256") -> None:
        if not key:
            raise ValueError("kernelmon never talks to kernels without a signing key")
        algorithm = scheme.split("-", 1)[1] if "-" in scheme else "sha256"
        auth = hmac.new(key, digestmod=algorithm)
        # hmac.HMAC wraps OpenSSL's HMAC object (``_hmac``) in Python methods: copying and
        # feeding that object directly halves the cost of a signature (this runs for every
        # message). Where it is absent (a digest OpenSSL lacks), the wrapper does the same.
        self._auth: Any = getattr(auth, "_hmac", None) or auth
        self._key = bytes(key)
        self._scheme = scheme

    def sign(self, parts: Sequence[bytes]) -> bytes:
        h = self._auth.copy()
        for p in parts:
            h.update(p)
        digest: str = h.hexdigest()
        return digest.encode("ascii")

    def verify(self, signature: bytes, parts: Sequence[bytes]) -> bool:
        """Whether ``signature`` is the HMAC of ``parts`` (header, parent, metadata, content).

        Each IOPub message is verified by the activity watcher and again by every frontend
        (each with a signer of its own), on the very same frame objects: a message whose
        frames (the same objects, not equal ones) were verified with the same key lately is
        not hashed again (this runs for every message of a flood)."""
        seen = _verified.get(id(signature))
        if (
            seen is not None
            and seen[0] is signature
            and len(parts) == 4
            and seen[3] is parts[0]
            and seen[4] is parts[1]
            and seen[5] is parts[2]
            and seen[6] is parts[3]
            and seen[1] == self._key
            and seen[2] == self._scheme
        ):
            return True
        if not hmac.compare_digest(signature, self.sign(parts)):
            return False
        if len(parts) == 4:
            _remember(signature, self._key, self._scheme, parts)
        return True


def _remember(signature: bytes, key: bytes, scheme: str, parts: Sequence[bytes]) -> None:
    """Note a verified message in the memo, within its count and byte bounds."""
    global _verified_bytes
    size = len(parts[0]) + len(parts[1]) + len(parts[2]) + len(parts[3])
    if size > MEMO_BYTES:
        return
    if len(_verified) >= _MEMO or _verified_bytes + size > MEMO_BYTES:
        _verified.clear()
        _verified_bytes = 0
    _verified_bytes += size
    _verified[id(signature)] = (
        signature,
        key,
        scheme,
        parts[0],
        parts[1],
        parts[2],
        parts[3],
    )


def forget() -> None:
    """Empty both memos: the readers of a batch are done with it (``iopub.Feed``)."""
    global _verified_bytes
    _verified.clear()
    _headers.clear()
    _verified_bytes = 0


def parse_header(raw: bytes) -> Any:
    """The JSON value of a message's header frame (raises ``ValueError`` or
    ``RecursionError`` if it is not JSON). A header object parsed lately from the same frame
    object is not parsed again: the watcher and each frontend read the same frames. The
    object returned is shared: read it, or copy it before handing it out."""
    seen = _headers.get(id(raw))
    if seen is not None and seen[0] is raw:
        return seen[1]
    header = _decode_json(raw.decode())
    if isinstance(header, dict) and len(raw) <= 65536:  # a header is a few hundred bytes
        if len(_headers) >= _MEMO:
            _headers.clear()
        _headers[id(raw)] = (raw, header)
    return header
