"""One measurement in a fresh process: ``python worker.py SPEC_JSON RESULT_PATH``.

SPEC is ``{"contender": ..., "loop": "asyncio"|"qasync", "workload": ..., "params": {...}}``.
The result (a flat dict of figures) is written to RESULT_PATH as JSON. Every kernel the worker
starts is shut down before it exits, on errors and on SIGINT/SIGTERM too; whatever survives
that is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import random
import signal
import statistics
import struct
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from contenders import CONTENDERS, Contender
from kernels import ShellClient

#: Kernel-side helpers (``PATH`` is replaced by the counter file's path).
#: ``__bench_add`` keeps the number of IOPub messages the kernel sent in an 8-byte file that
#: the worker reads at quiet moments (no request needed, so "lost" is exact whatever else
#: talks to the kernel). ``__bench_burst`` is the saturating burst: on the kernel's IOPub
#: thread it publishes the correctly signed ``stream`` messages ``__bench_prepare`` made, as
#: fast as zmq takes them (the kernel's PUB socket drops what the subscriber cannot take),
#: then waits 0.5 s so that the final ``idle`` status is not dropped too.
KERNEL_SETUP = r"""
def __bench_count(path):
    import mmap, struct, threading
    k = get_ipython().kernel
    s = k.session
    f = open(path, "r+b")
    mm = mmap.mmap(f.fileno(), 8)
    total = [0]
    lock = threading.Lock()
    send = s.send
    iopub = (k.iopub_socket, k.iopub_thread)
    def add(n):
        with lock:
            total[0] += n
            mm[0:8] = struct.pack("<q", total[0])
    def counting_send(stream, *args, **kwargs):
        if stream in iopub:
            add(1)
        return send(stream, *args, **kwargs)
    s.send = counting_send
    return add
__bench_add = __bench_count(PATH)

def __bench_prepare(n):
    # Sign n distinct stream messages now, so that the burst itself only sends.
    global __bench_msgs
    import hashlib, hmac, uuid
    k = get_ipython().kernel
    s = k.session
    parent = s.pack(k.get_parent("shell")["header"])
    meta = b"{}"
    auth = hmac.new(s.key, digestmod=hashlib.sha256)
    head = ('{"msg_id": "%s-%%d", "msg_type": "stream", "username": "bench", '
            '"session": "%s", "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"}'
            % (uuid.uuid4().hex, s.session))
    msgs = []
    for i in range(n):
        h = (head % i).encode()
        c = b'{"name": "stdout", "text": "%d\\n"}' % i
        m = auth.copy()
        m.update(h); m.update(parent); m.update(meta); m.update(c)
        msgs.append([b"stream.stdout", b"<IDS|MSG>", m.hexdigest().encode(), h, parent, meta, c])
    __bench_msgs = msgs

def __bench_burst():
    import threading, time
    global __bench_msgs
    k = get_ipython().kernel
    sock = k.iopub_thread.socket
    msgs, __bench_msgs = __bench_msgs, []
    done = threading.Event()
    def run():
        send = sock.send_multipart
        for m in msgs:
            send(m)
        __bench_add(len(msgs))
        done.set()
    k.iopub_thread.schedule(run)
    done.wait()
    time.sleep(0.5)

def __bench_paced(n, rate):
    # n stream messages, each signed just before it is sent (the kernel's memory stays
    # flat), from the IOPub thread at about `rate` a second (in blocks of 1000).
    import hashlib, hmac, threading, time, uuid
    k = get_ipython().kernel
    s = k.session
    sock = k.iopub_thread.socket
    parent = s.pack(k.get_parent("shell")["header"])
    meta = b"{}"
    auth = hmac.new(s.key, digestmod=hashlib.sha256)
    head = ('{"msg_id": "%s-%%d", "msg_type": "stream", "username": "bench", '
            '"session": "%s", "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"}'
            % (uuid.uuid4().hex, s.session))
    done = threading.Event()
    def run():
        send = sock.send_multipart
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            stop = min(n, start + 1000)
            for i in range(start, stop):
                h = (head % i).encode()
                c = b'{"name": "stdout", "text": "%d\\n"}' % i
                m = auth.copy()
                m.update(h); m.update(parent); m.update(meta); m.update(c)
                send([b"stream.stdout", b"<IDS|MSG>", m.hexdigest().encode(), h, parent, meta, c])
            __bench_add(stop - start)
            ahead = stop / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
        done.set()
    k.iopub_thread.schedule(run)
    done.wait()
    time.sleep(0.5)
"""


class KernelCounter:
    """The worker's side of ``__bench_add``: how many IOPub messages the kernel sent."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, f"count-{uuid.uuid4()}.bin")
        with open(self.path, "wb") as f:
            f.write(bytes(8))

    def setup_code(self) -> str:
        return KERNEL_SETUP.replace("PATH", repr(self.path))

    def read(self) -> int:
        with open(self.path, "rb") as f:
            return int(struct.unpack("<q", f.read(8))[0])

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def wait_quiet(c: Contender, kid: str, quiet: float = 0.3, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last, since = c.count(kid), loop.time()
    while loop.time() < end:
        await asyncio.sleep(0.02)
        n = c.count(kid)
        if n != last:
            last, since = n, loop.time()
        elif loop.time() - since >= quiet:
            return


async def measure_flood(
    c: Contender,
    kid: str,
    shell: ShellClient,
    counter: KernelCounter,
    code: str,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Run ``code`` from the benchmark's own session while only the watcher reads IOPub.

    Samples (time, messages seen, process CPU) every 10 ms. The window ends at the last
    change before a pause of >= 0.25 s (the burst's end) or at the last change; CPU per
    message is this process's CPU (all threads) over the window / messages in it.
    """
    await wait_quiet(c, kid)
    sent0 = counter.read()
    base = c.count(kid)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    msg_id = shell.execute_request(code)
    changes: list[tuple[float, int, float]] = []
    last = base
    quiet_since = time.perf_counter()
    reply_at: float | None = None
    while True:
        # One wake-up every 10 ms both samples the watcher and looks for the reply.
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        n = c.count(kid)
        if n != last:
            changes.append((now, n, time.process_time()))
            last, quiet_since = n, now
        if reply_at is None:
            shell.poll()
            if msg_id in shell.replies:
                reply_at = now
        # The final idle status follows the reply: wait for quiet after the reply.
        elif now - max(quiet_since, reply_at) >= 0.3:
            break
        if now - t0 > timeout:
            raise TimeoutError(f"the flood did not end within {timeout:g} s")
    reply = shell.replies.pop(msg_id)
    await wait_quiet(c, kid)
    received = c.count(kid) - base
    sent = counter.read() - sent0
    end_t, end_n, end_cpu = changes[-1] if changes else (t0, base, cpu0)
    for (ta, na, ca), (tb, _nb, _cb) in itertools.pairwise(changes):
        if tb - ta >= 0.25 and na - base > received // 2:
            end_t, end_n, end_cpu = ta, na, ca
            break
    first_t = changes[0][0] if changes else t0
    in_window = end_n - base
    return {
        "received": received,
        "sent": sent,
        "window_s": end_t - first_t,
        "msgs_per_s": in_window / max(end_t - first_t, 1e-9),
        "cpu_us_per_msg": (end_cpu - cpu0) / max(in_window, 1) * 1e6,
        "final_state": c.state(kid),
        "reply_status": reply["content"].get("status"),
    }


# -- workloads -------------------------------------------------------------------------------


async def lifecycle(c: Contender, p: dict[str, Any]) -> dict[str, Any]:
    """Cold start (first in this process), restart, shutdown, then a warm start + shutdown."""
    r: dict[str, Any] = {}
    t = time.perf_counter()
    kid = await c.start()
    r["start_cold_s"] = time.perf_counter() - t
    for k, v in c.start_extra.items():
        r[k.replace("start_", "start_cold_")] = v
    await asyncio.sleep(0.3)
    t = time.perf_counter()
    await c.restart(kid)
    r["restart_s"] = time.perf_counter() - t
    await asyncio.sleep(0.3)
    t = time.perf_counter()
    await c.shutdown(kid)
    r["shutdown_s"] = time.perf_counter() - t
    t = time.perf_counter()
    kid = await c.start()
    r["start_s"] = time.perf_counter() - t
    r.update(c.start_extra)
    await asyncio.sleep(0.3)
    t = time.perf_counter()
    await c.shutdown(kid)
    r["shutdown2_s"] = time.perf_counter() - t
    return r


@contextlib.asynccontextmanager
async def counted_kernel(c: Contender) -> Any:
    """A kernel of ``c`` with a shell client of the benchmark's own and a sent-message
    counter set up inside it; everything is shut down and removed afterwards."""
    kid = await c.start()
    shell = ShellClient(c.info(kid))
    counter = KernelCounter(c.runtime)
    try:
        await shell.kernel_info()
        await shell.execute(counter.setup_code())
        await asyncio.sleep(0.3)
        yield kid, shell, counter
    finally:
        shell.close()
        counter.remove()
        await c.shutdown(kid)


async def state_latency(c: Contender, kid: str, shell: ShellClient, code: str) -> float:
    """Seconds from the end of ``code`` in the kernel (its clock: ``time.time()`` at the
    end, read back afterwards) until the manager shows the kernel idle (looked at every
    millisecond)."""
    msg_id = shell.execute_request(f"import time as __t\n{code}\n__bench_end = __t.time()")
    seen_busy = False
    idle_at: float | None = None
    deadline = time.perf_counter() + 60
    while idle_at is None:
        await asyncio.sleep(0.001)
        state = c.state(kid)
        if state == "busy":
            seen_busy = True
        elif state == "idle" and (seen_busy or msg_id in shell.replies):
            idle_at = time.time()
        shell.poll()
        if time.perf_counter() > deadline:
            raise TimeoutError("the kernel was never shown idle")
    await shell.reply(msg_id, 60)
    reply = await shell.execute("", user_expressions={"t": "__bench_end"})
    end = float(reply["content"]["user_expressions"]["t"]["data"]["text/plain"])
    await wait_quiet(c, kid)
    return idle_at - end


async def flood(c: Contender, p: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {}
    async with counted_kernel(c) as (kid, shell, counter):
        n = int(p["n_print"])
        code = f"for i in range({n}): print(i, flush=True)"
        res = await measure_flood(c, kid, shell, counter, code)
        r.update({f"print_{k}": v for k, v in res.items()})
        # Latency of state changes: after a short quiet job, and at the end of a print
        # flood (the idle status comes after the last line; every line is read before it).
        quiet = [await state_latency(c, kid, shell, "__t.sleep(0.02)") for _ in range(5)]
        r["state_latency_ms"] = statistics.median(quiet) * 1000
        r["state_latency_max_ms"] = max(quiet) * 1000
        flood_code = f"for i in range({n // 4}): print(i, flush=True)"
        r["state_latency_flood_ms"] = await state_latency(c, kid, shell, flood_code) * 1000
        await shell.execute(f"__bench_prepare({int(p['n_burst'])})")
        res = await measure_flood(c, kid, shell, counter, "__bench_burst()")
        r.update({f"burst_{k}": v for k, v in res.items()})
        for pre in ("print_", "burst_"):
            r[pre + "lost"] = r[pre + "sent"] - r[pre + "received"]
            r[pre + "idle_after"] = r[pre + "final_state"] == "idle"
    return r


async def buffering(c: Contender, p: dict[str, Any]) -> dict[str, Any]:
    """RSS growth while a frontend that left has its messages buffered during a flood."""
    r: dict[str, Any] = {}
    async with counted_kernel(c) as (kid, shell, counter):
        await c.connect_and_leave(kid, "bench-frontend")  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        r["rss_before_mb"] = rss_mb()
        n = int(p["n_print"])
        code = f"for i in range({n}): print(i, flush=True)"
        res = await measure_flood(c, kid, shell, counter, code)
        await asyncio.sleep(0.3)
        r["rss_after_mb"] = rss_mb()
        r["rss_growth_mb"] = r["rss_after_mb"] - r["rss_before_mb"]
        r["buffered_msgs"] = c.buffered(kid)  # type: ignore[attr-defined]
        r["sent_msgs"] = res["sent"]
        r["cpu_us_per_msg"] = res["cpu_us_per_msg"]
    return r


async def bigflood(c: Contender, p: dict[str, Any]) -> dict[str, Any]:
    """Memory while a kernel publishes ``n_messages`` IOPub messages (paced at ``rate`` a
    second) and a frontend that left has its session's messages buffered. RSS is sampled
    every 50 ms; the peak and what is left after the flood are compared with the RSS
    before (after a garbage collection)."""
    r: dict[str, Any] = {}
    n, rate = int(p["n_messages"]), float(p["rate"])
    async with counted_kernel(c) as (kid, shell, counter):
        await c.connect_and_leave(kid, "bench-frontend")  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        gc.collect()
        rss0 = peak = rss_mb()
        sent0 = counter.read()
        through0 = c.buffer_received(kid)  # type: ignore[attr-defined]
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        msg_id = shell.execute_request(f"__bench_paced({n}, {rate!r})")
        deadline = t0 + n / rate * 3 + 60
        while msg_id not in shell.replies:
            await asyncio.sleep(0.05)
            peak = max(peak, rss_mb())
            shell.poll()
            if time.perf_counter() > deadline:
                raise TimeoutError("the paced flood did not end in time")
        await wait_quiet(c, kid, timeout=60)
        r["duration_s"] = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        peak = max(peak, rss_mb())
        shell.replies.pop(msg_id)
        r["sent_msgs"] = counter.read() - sent0
        r["received_msgs"] = c.buffer_received(kid) - through0  # type: ignore[attr-defined]
        r["buffered_msgs"] = c.buffered(kid)  # type: ignore[attr-defined]
        r["cpu_us_per_msg"] = cpu / max(1, r["received_msgs"]) * 1e6
        r["rss_before_mb"] = rss0
        r["rss_peak_growth_mb"] = peak - rss0
        r["rss_after_growth_mb"] = rss_mb() - rss0
        caps = c.buffer_caps()  # type: ignore[attr-defined]
        if caps is not None:
            r["cap_messages"], r["cap_mb"] = caps[0], caps[1] / 2**20
            r["over_cap_mb"] = r["rss_peak_growth_mb"] - r["cap_mb"]
    return r


async def many(c: Contender, p: dict[str, Any]) -> dict[str, Any]:
    """4 and 8 concurrent starts; RSS with 8 kernels; cull of 8 idle kernels."""
    r: dict[str, Any] = {"rss_0_kernels_mb": rss_mb()}
    for n in p["concurrent"]:
        t = time.perf_counter()
        kids = await asyncio.gather(*(c.start() for _ in range(n)))
        r[f"start_{n}_concurrent_s"] = time.perf_counter() - t
        await asyncio.sleep(0.5)
        r[f"rss_{n}_kernels_mb"] = rss_mb()
        if n != p["concurrent"][-1] or not (p.get("cull") and c.culls):
            t = time.perf_counter()
            await asyncio.gather(*(c.shutdown(k) for k in kids))
            r[f"shutdown_{n}_concurrent_s"] = time.perf_counter() - t
            continue
        # Cull: touch every kernel (execute "pass" from a frontend session) so that all
        # went idle just now, wait a random part of the interval (kernels go idle at any
        # moment of the culler's cycle), turn culling on, and time from the last idle
        # until the first and the last kernel are gone.
        timeout, interval = float(p["cull_timeout"]), float(p["cull_interval"])
        shells = [ShellClient(c.info(k)) for k in kids]
        try:
            await asyncio.gather(*(s.execute("pass") for s in shells))
        finally:
            for s in shells:
                s.close()
        await asyncio.sleep(random.Random(p.get("seed", 0)).uniform(0, interval))
        await c.enable_culling(timeout, interval)
        idle_at = 0.0
        first_gone = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            alive = c.ids()
            for k in alive:
                try:
                    idle_at = max(idle_at, c.last_activity(k))
                except Exception:
                    pass
            if first_gone is None and len(alive) < n:
                first_gone = time.time()
            if not alive:
                break
            await asyncio.sleep(0.01)
        r["cull_idle_s"] = time.time() - idle_at
        r["cull_spread_s"] = time.time() - (first_gone or time.time())
        r["cull_left"] = len(c.ids())
    return r


WORKLOADS: dict[str, Callable[[Contender, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "lifecycle": lifecycle,
    "flood": flood,
    "buffering": buffering,
    "bigflood": bigflood,
    "many": many,
}


async def run(spec: dict[str, Any], root: str) -> dict[str, Any]:
    runtime = os.environ["JUPYTER_RUNTIME_DIR"]
    c = CONTENDERS[spec["contender"]](root, runtime, spec.get("transport"))
    try:
        return await WORKLOADS[spec["workload"]](c, spec.get("params", {}))
    finally:
        try:
            await asyncio.wait_for(c.close(), 30)
        except BaseException as e:  # the kill below still runs
            print(f"closing {spec['contender']} failed: {e!r}", file=sys.stderr)


def kill_leftovers() -> None:
    """Kill whatever child process (kernel) survived the shutdown."""
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass


def main() -> None:
    spec = json.loads(sys.argv[1])
    out = sys.argv[2]
    root = os.path.abspath(os.path.join(os.environ["JUPYTER_RUNTIME_DIR"], "..", "root"))

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    result: dict[str, Any]
    try:
        if spec.get("loop") == "qasync":
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
            import qasync
            from PySide6.QtWidgets import QApplication

            app = QApplication.instance() or QApplication([])
            with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
                result = runner.run(run(spec, root))
        else:
            with asyncio.Runner() as runner:
                result = runner.run(run(spec, root))
        result = {"ok": True, **result}
    except BaseException as e:
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        import traceback

        traceback.print_exc()
    finally:
        kill_leftovers()
    with open(out, "w") as f:
        json.dump(result, f)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
