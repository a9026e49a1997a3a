"""Micro-benchmark: kernelmon's CPU per IOPub message on its per-message path.

    python benchmarks/iopub_micro.py [--messages N] [--reps R] [--frontends F] [--away]
                                     [--mode path,socket,paced] [--batch B] [--rate R]
                                     [--loop asyncio|qasync] [--against DIR]

A flood of ``print(i, flush=True)`` messages, signed with jupyter_client's ``Session``
exactly as ipykernel signs them (topic ``stream.stdout``, the execute_request's header as
parent, ``{}`` metadata, ``msg_id`` ``<session>_<pid>_<counter>``), between the busy and idle
statuses of its request, goes through what kernelmon does with each message of one kernel:
the shared IOPub feed (its gap counting), the activity watcher (signature check, header,
execution state) and each frontend's session (decoding and its handler, which reads what the
app benchmark's frontends read; with ``--away`` the frontend has left and the messages go to
its offline buffer instead).

Modes:
  path    the feed's batch handler is called with batches of ``--batch`` messages (default
          ``wire.BATCH``), each a list of distinct frame objects, as received (no socket:
          the least noisy figure)
  socket  the messages are published on a real PUB socket (IPC) and read by the feed's
          ``SocketDrain`` from its SUB socket at once: receives included
  paced   the same, published at ``--rate`` messages a second by another process and read
          as they come (the loop's wake-ups included); the loop thread's CPU alone
          (``--loop qasync``: the app's loop)

Each figure (but ``paced``'s) is the process's CPU time (all threads) per message; the best
of ``--reps`` repetitions is the one to compare (the machine may be shared: the best is the least
disturbed). ``--against DIR`` measures another version of kernelmon beside this one (its
package folder, e.g. ``git archive main kernelmon | tar -x -C DIR``, then ``DIR/kernelmon``),
the two alternating repetition by repetition, and prints their ratio: a change is measured
against the same load. No kernel is started: the "kernel" is a PUB socket of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import importlib  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import types  # noqa: E402

import zmq  # noqa: E402
from jupyter_client.session import Session  # noqa: E402

from kernelmon.core.protocol import wire  # noqa: E402

KEY = b"5f1d2c3b-iopub-micro-benchmark-key"


def load(package: str) -> types.SimpleNamespace:
    """The modules of kernelmon's per-message path, from ``package`` (``kernelmon``, or
    the name a copy of another version was loaded under: see ``load_copy``)."""

    def mod(name: str) -> Any:
        return importlib.import_module(f"{package}.core.{name}")

    return types.SimpleNamespace(
        name=package,
        iopub=mod("protocol.iopub"),
        ActivityWatcher=mod("protocol.activity").ActivityWatcher,
        MessageBuffer=mod("protocol.buffering").MessageBuffer,
        SessionChannels=mod("protocol.channels").SessionChannels,
        KernelRecord=mod("records").KernelRecord,
    )


def load_copy(folder: str) -> types.SimpleNamespace:
    """Another version of kernelmon (a copy of its ``kernelmon`` package folder, e.g. from
    ``git archive``), imported beside this one under another name."""
    path = os.path.join(os.path.abspath(folder), "__init__.py")
    spec = importlib.util.spec_from_file_location(
        "kernelmon_against", path, submodule_search_locations=[os.path.dirname(path)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"--against: no package at {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernelmon_against"] = module
    spec.loader.exec_module(module)
    return load("kernelmon_against")


def connection_info(folder: str) -> dict[str, Any]:
    """An IPC kernel address in ``folder`` (nothing listens but our own PUB socket)."""
    return {
        "transport": "ipc",
        "ip": os.path.join(folder, "kernel"),
        "shell_port": 1,
        "iopub_port": 2,
        "stdin_port": 3,
        "control_port": 4,
        "hb_port": 5,
        "key": KEY.decode(),
        "signature_scheme": "hmac-sha256",
    }


def flood_frames(n: int) -> list[list[bytes]]:
    """``n`` IOPub messages of one execute_request, serialized as ipykernel sends them: its
    busy status, the execute_input, ``n - 3`` stream messages (one line each), its idle."""
    kernel = Session(key=KEY, username="kernel")
    client = Session(key=KEY, username="frontend")
    request = client.msg("execute_request", {"code": f"for i in range({n}): print(i)"})
    parent = request["header"]
    out: list[list[bytes]] = []

    def add(topic: bytes, msg_type: str, content: dict[str, Any]) -> None:
        msg = kernel.msg(msg_type, content, parent=parent)
        out.append([topic, *kernel.serialize(msg)])

    add(b"kernel.status", "status", {"execution_state": "busy"})
    add(b"kernel.execute_input", "execute_input", {"code": "...", "execution_count": 1})
    for i in range(n - 3):
        add(b"stream.stdout", "stream", {"name": "stdout", "text": f"{i}\n"})
    add(b"kernel.status", "status", {"execution_state": "idle"})
    return out


def fresh(frames: list[list[bytes]]) -> list[list[bytes]]:
    """The same messages as distinct frame objects (received frames are new objects each)."""
    return [[bytes(bytearray(f)) for f in msg] for msg in frames]


class Consumer:
    """A watcher and ``frontends`` frontend sessions on one kernel's IOPub."""

    def __init__(
        self, km: types.SimpleNamespace, info: dict[str, Any], frontends: int, away: bool
    ) -> None:
        self.record = km.KernelRecord(id="micro", name="python3")
        self.changes = 0
        self.watcher = km.ActivityWatcher(self.record, info, "probe-session", self._changed)
        self.received = 0
        self.lines = 0
        self.sessions: list[Any] = []
        for i in range(frontends):
            channels = km.SessionChannels(info, f"micro-{i}-{uuid.uuid4().hex[:6]}", lambda: None)
            if away:
                channels.buffer = km.MessageBuffer(10_000_000, 1 << 40)
            else:
                channels.handler = self._on_message
            self.sessions.append(channels)

    def _changed(self, *_: Any) -> None:
        self.changes += 1

    def _on_message(self, channel: str, msg: dict[str, Any]) -> None:
        # what the app benchmark's frontends read of each message
        self.received += 1
        kind = msg["header"]["msg_type"]
        msg["parent_header"].get("msg_id")
        if channel == "iopub" and kind == "stream":
            self.lines += msg["content"].get("text", "").count("\n")
        elif kind == "status":
            msg["content"].get("execution_state")

    @property
    def feed(self) -> Any:
        return self.watcher._feed.feed

    def close(self) -> None:
        for channels in self.sessions:
            channels.close()
        self.watcher.close()


def run_path(msgs: list[list[bytes]], consumer: Consumer, size: int) -> float:
    """CPU seconds for handing ``msgs`` (distinct frame objects) to the feed in batches of
    ``size``."""
    on_batch = consumer.feed._on_batch
    batches = [msgs[i : i + size] for i in range(0, len(msgs), size)]
    gc.collect()
    c0 = time.process_time()
    for batch in batches:
        on_batch(batch)
    return time.process_time() - c0


async def run_socket(pub: zmq.Socket[bytes], msgs: list[list[bytes]], consumer: Consumer) -> float:
    """CPU seconds for reading ``msgs`` from the SUB socket (published first, gathered by
    libzmq's IO thread before the clock starts) and handling them."""
    watcher_count = consumer.record.messages
    want = watcher_count + len(msgs)
    for frames in msgs:
        pub.send_multipart(frames)
    # The loop must not read meanwhile: libzmq's IO thread moves them into the SUB
    # socket's queue while this thread sleeps.
    time.sleep(0.3)  # noqa: ASYNC251 (on purpose: the loop must not run)
    gc.collect()
    c0 = time.process_time()
    consumer.feed._drain.read_now()
    deadline = time.monotonic() + 30
    while consumer.record.messages + consumer.record.bad_messages < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {consumer.record.messages - watcher_count} arrived")
        await asyncio.sleep(0)
    return time.process_time() - c0


class Variant:
    """One version of kernelmon, its consumer and the "kernel" PUB socket it reads."""

    def __init__(self, km: types.SimpleNamespace, folder: str, args: argparse.Namespace):
        self.km = km
        self.info = connection_info(folder)
        url = wire.channel_url(self.info, "iopub")
        # The kernel's other channels, bound: a frontend's sockets with nothing to connect
        # to would retry every 10 ms, each retry a wake-up of the loop (not a kernel's case).
        self.routers = []
        for channel in ("shell", "control", "stdin"):
            router = zmq.Context.instance().socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            router.bind(wire.channel_url(self.info, channel))
            self.routers.append(router)
        self.pub = self.publisher = None
        if args.mode == ["paced"]:
            self.publisher = Publisher(url)
        else:
            self.pub = zmq.Context.instance().socket(zmq.PUB)
            self.pub.setsockopt(zmq.LINGER, 0)
            self.pub.setsockopt(zmq.SNDHWM, 0)
            self.pub.bind(url)
        self.consumer = Consumer(km, self.info, args.frontends, args.away)
        self.results: dict[str, list[float]] = {mode: [] for mode in args.mode}

    async def live(self, first: list[bytes]) -> None:
        """Until the subscription reached our PUB socket."""
        while not self.consumer.feed.live:
            if self.publisher is not None:
                await self.publisher.ask("ping")
            else:
                self.pub.send_multipart(first)
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.consumer.close()
        for router in self.routers:
            router.close(0)
        if self.pub is not None:
            self.pub.close(0)
        if self.publisher is not None:
            self.publisher.close()


def publisher_main(url: str) -> int:
    """The paced mode's "kernel", a process of its own: binds a PUB socket at ``url``; each
    line ``N RATE`` on stdin publishes a flood of N messages at RATE a second (``ping``:
    one message), then writes a line back."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(url)
    for line in sys.stdin:
        words = line.split()
        if words == ["ping"]:
            pub.send_multipart(flood_frames(3)[0])
        elif len(words) == 2:
            msgs, rate = flood_frames(int(words[0])), float(words[1])
            t0 = time.perf_counter()
            for i, frames in enumerate(msgs):
                pub.send_multipart(frames)
                if i % 10 == 9:
                    late = t0 + (i + 1) / rate - time.perf_counter()
                    if late > 0:
                        time.sleep(late)
        print("ok", flush=True)
    return 0


class Publisher:
    """A ``publisher_main`` process."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--publisher", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ask(self, line: str) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def run_paced(publisher: Publisher, n: int, consumer: Consumer, rate: float) -> float:
    """The loop thread's CPU seconds while ``n`` messages are published at ``rate`` a second
    (by another process) and read as they come, as a kernel's prints are: the cost of the
    loop's wake-ups is in it."""
    want = consumer.record.messages + n
    gc.collect()
    c0 = time.thread_time()
    done = asyncio.ensure_future(publisher.ask(f"{n} {rate}"))
    deadline = time.monotonic() + 60 + n / rate
    while consumer.record.messages + consumer.record.bad_messages < want:
        if time.monotonic() > deadline:
            raise RuntimeError("the paced messages did not all arrive")
        await asyncio.sleep(0.05)
    cpu = time.thread_time() - c0
    await done
    return cpu


async def measure(args: argparse.Namespace) -> list[Variant]:
    template = flood_frames(args.messages)
    kms = [load("kernelmon")]
    if args.against:
        kms.append(load_copy(args.against))
    variants: list[Variant] = []
    with tempfile.TemporaryDirectory(prefix="km-iopub-micro-") as folder:
        try:
            for i, km in enumerate(kms):
                os.mkdir(os.path.join(folder, str(i)))
                variants.append(Variant(km, os.path.join(folder, str(i)), args))
            for v in variants:
                await v.live(template[0])
            await asyncio.sleep(0.1)
            for rep in range(args.reps):
                # alternate the versions, in turn first (the machine's load changes)
                turn = variants[rep % len(variants) :] + variants[: rep % len(variants)]
                for v in turn:
                    for mode in args.mode:
                        msgs = fresh(template)
                        if mode == "path":
                            cpu = run_path(msgs, v.consumer, args.batch)
                        elif mode == "paced":
                            assert v.publisher is not None
                            cpu = await run_paced(v.publisher, len(msgs), v.consumer, args.rate)
                        else:
                            assert v.pub is not None
                            cpu = await run_socket(v.pub, msgs, v.consumer)
                        v.results[mode].append(cpu / len(msgs) * 1e6)
            expected_lines = args.reps * len(args.mode) * (args.messages - 3)
            for v in variants:
                if not args.away and v.consumer.lines < expected_lines * args.frontends:
                    raise RuntimeError(
                        f"the frontends got {v.consumer.lines} of {expected_lines} lines"
                    )
        finally:
            for v in variants:
                v.close()
    return variants


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--publisher"]:
        return publisher_main(argv[1])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=8000, help="messages per repetition")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--frontends", type=int, default=1, help="frontend sessions (default 1)")
    ap.add_argument("--away", action="store_true", help="the frontends left: buffering")
    ap.add_argument(
        "--batch",
        type=int,
        default=wire.BATCH,
        help=f"messages per batch in the path mode (default {wire.BATCH}; {wire.CHUNK}: a "
        "socket's turn while several are behind)",
    )
    ap.add_argument("--mode", default="path,socket", help="path, socket, both, or paced")
    ap.add_argument(
        "--rate", type=float, default=5000.0, help="paced: messages a second (default 5000)"
    )
    ap.add_argument(
        "--loop", choices=("asyncio", "qasync"), default="asyncio", help="the event loop"
    )
    ap.add_argument(
        "--against",
        metavar="DIR",
        help="also measure the kernelmon package copied in DIR (another version), "
        "alternating with this one",
    )
    args = ap.parse_args(argv)
    args.mode = [m for m in args.mode.split(",") if m]
    if not (set(args.mode) <= {"path", "socket"} or args.mode == ["paced"]) or not args.mode:
        ap.error("--mode: path, socket, both, or paced")
    if args.messages > wire.RECEIVE_HWM - 100 and "socket" in args.mode:
        ap.error(f"--messages: at most {wire.RECEIVE_HWM - 100} (the receive high-water mark)")
    if args.loop == "qasync":
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtWidgets import QApplication

        import qasync  # isort: skip

        app = QApplication.instance() or QApplication([sys.argv[0]])
        with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
            variants = runner.run(measure(args))
    else:
        variants = asyncio.run(measure(args))
    who = f"watcher + {args.frontends} frontend(s){' away (buffer)' if args.away else ''}"
    print(
        f"{args.messages} messages x {args.reps} reps; {who}; {args.loop}; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for mode in args.mode:
        for v in variants:
            values = v.results[mode]
            shown = " ".join(f"{x:.1f}" for x in values)
            print(
                f"  {mode:6s} {v.km.name:17s} CPU per message [µs]: best {min(values):.2f}"
                f"  (all: {shown})"
            )
        if len(variants) == 2:
            this, other = (v.results[mode] for v in variants)
            ratios = [a / b for a, b in zip(this, other, strict=True)]
            print(
                f"  {mode:6s} this / against: best {min(this) / min(other):.3f}, median of "
                f"the repetitions' ratios {statistics.median(ratios):.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
