"""The signature check and the header parse that the activity watcher and the frontends
share (they read the very same frames): shared only for the same frame objects and key,
never for equal-looking or tampered ones, and each frontend still gets a header of its own."""

from __future__ import annotations

from kernelmon.core.protocol import checks, iopub, wire
from kernelmon.core.protocol.channels import StreamDecoder
from tests.waiting import wait_until


def fresh(raw: bytes) -> bytes:
    """An equal bytes object that is not the same object (as every received frame is)."""
    return bytes(bytearray(raw))


def message(signer: wire.Signer, content: bytes = b'{"text": "x"}') -> list[bytes]:
    parts = [
        fresh(b'{"msg_id": "a_1_7", "msg_type": "stream"}'),
        fresh(b'{"msg_id": "p", "msg_type": "execute_request"}'),
        fresh(b"{}"),
        fresh(content),
    ]
    return [fresh(b"topic"), wire.DELIM, signer.sign(parts), *parts]


def checked_once(signer: wire.Signer) -> list[bytes]:
    """A message's frames after the delimiter, once ``signer`` has checked them."""
    parts = wire.split_frames(message(signer))
    assert parts is not None
    assert signer.verify(parts[0], parts[1:5])
    return list(parts)


def test_a_tampered_frame_is_checked_again_after_its_signature_passed_once():
    frontend = wire.Signer(b"secret")
    parts = checked_once(wire.Signer(b"secret"))  # by the watcher
    assert frontend.verify(parts[0], parts[1:5])  # the same frames: shared
    # The same signature object over other content (a forged message reusing it).
    forged = [*parts[1:4], fresh(b'{"text": "rm -rf"}')]
    assert not frontend.verify(parts[0], forged)
    # Equal frames that are other objects are checked (and pass on their own merit).
    copies = [fresh(p) for p in parts[1:5]]
    assert frontend.verify(fresh(parts[0]), copies)


def test_a_signature_passed_with_one_key_is_not_taken_for_another_key():
    theirs = wire.Signer(b"other key")
    parts = checked_once(wire.Signer(b"secret"))
    assert not theirs.verify(parts[0], parts[1:5])
    assert not wire.Signer(b"secret", "hmac-sha512").verify(parts[0], parts[1:5])


def test_each_frontend_gets_a_header_of_its_own_from_a_shared_parse():
    signer = wire.Signer(b"secret")
    frames = message(signer)
    parts = wire.split_frames(frames)
    assert parts is not None
    shared = wire.parse_header(parts[1])  # the watcher reads first
    assert wire.parse_header(parts[1]) is shared
    one, two = StreamDecoder(signer)(frames), StreamDecoder(signer)(frames)
    assert one is not None
    assert two is not None
    one["header"]["msg_type"] = "changed by a handler"
    assert two["header"]["msg_type"] == "stream"
    assert shared["msg_type"] == "stream"
    assert wire.parse_header(parts[1])["msg_type"] == "stream"


def test_a_header_that_is_not_an_object_is_not_kept_and_still_refused():
    signer = wire.Signer(b"secret")
    parts = [fresh(b"[1, 2]"), fresh(b"{}"), fresh(b"{}"), fresh(b"{}")]
    frames = [wire.DELIM, signer.sign(parts), *parts]
    assert wire.parse_header(parts[0]) == [1, 2]
    assert StreamDecoder(signer)(frames) is None
    assert wire.decode_message(signer, frames) is None


def test_the_memo_of_checked_messages_keeps_no_more_than_its_byte_bound_alive():
    """The memo holds the frames it vouches for: large outputs (images, dataframes) must not
    stay alive in it by the thousand after the watcher and the frontends are done with them."""
    signer = wire.Signer(b"secret")
    big = b'{"text": "' + b"x" * (1024 * 1024) + b'"}'
    for _ in range(40):  # 40 MiB of content, each checked once
        parts = wire.split_frames(message(signer, big))
        assert parts is not None
        assert signer.verify(parts[0], parts[1:5])
    kept = sum(len(frame) for entry in checks._verified.values() for frame in entry[3:])
    assert kept <= checks.MEMO_BYTES


def test_signatures_are_jupyter_clients_for_each_scheme():
    """The signer feeds OpenSSL's HMAC object directly where hmac.HMAC wraps one: its
    signatures are still jupyter_client's, for every scheme a connection file may name."""
    from jupyter_client.session import Session

    parts = [b'{"msg_id": "a_1_2", "msg_type": "stream"}', b"{}", b"{}", b'{"text": "x"}']
    for scheme in ("hmac-sha256", "hmac-sha512", "hmac-sha1", "hmac-md5"):
        theirs = Session(key=b"secret", signature_scheme=scheme).sign(parts)
        signer = wire.Signer(b"secret", scheme)
        assert signer.sign(parts) == theirs
        assert signer.verify(fresh(theirs), [fresh(p) for p in parts])
        assert not signer.verify(fresh(theirs), [*parts[:3], fresh(b'{"text": "y"}')])


def test_a_batch_s_checks_are_forgotten_once_every_subscriber_had_it(aio, watched):
    """The memos serve the readers of one batch (the watcher, each frontend, in turn):
    after the feed handed a batch to all of them they keep none of its frames alive
    (they kept up to 4,096 messages, about 9 MB in a print flood, after everyone was done)."""
    w = watched()
    signer = wire.Signer(b"secret")
    checked: list[int] = []

    def read(batch: list[list[bytes]]) -> None:  # as the watcher and a frontend read
        for frames in batch:
            parts = wire.split_frames(frames)
            assert parts is not None
            assert signer.verify(parts[0], parts[1:5])
            wire.parse_header(parts[1])
            checked.append(1)

    async def flood() -> None:
        sub = iopub.subscribe(w.pub.url, read)
        try:
            for i in range(50):
                w.pub.publish("stream", {"name": "stdout", "text": f"{i}\n"})
            await wait_until(lambda: len(checked) >= 50, what="50 messages checked")
        finally:
            sub.close()

    aio.run(flood())
    assert checks._verified == {}
    assert checks._headers == {}
