"""The desktop app under load: what ``bench.py`` (the core alone) does not measure.

    python benchmarks/app_bench.py [--quick] [--reps N] [--json out.json] [--workloads a,b]
                                   [--profile DIR]

1. launch  Wall time from spawning a fresh interpreter that runs ``kernelmon.app.main``
           (offscreen Qt, empty temporary config/state/log/runtime folders) until the main
           window is shown and the event loop has run a ``QTimer.singleShot(0)`` queued right
           after ``show()``. The hook is a patch of ``MainWindow.show`` made inside the child
           by this script; the child then quits (shutting kernels down) and must exit 0.
2. flood   One process under a qasync loop with the real ``MainWindow`` shown (offscreen):
           4 ipykernel kernels each run ``for i in range(N): print(i, flush=True)``, started
           through ``KernelMap.connect`` + ``execute`` (the connections stay open during the
           flood and are closed afterwards; buffering on, the default). A 10 ms Qt timer
           measures the event loop's lag (lateness of each tick) from the first execute until
           the last ``execute_reply`` (or final ``idle`` status, if later); the table model's
           ``dataChanged`` emissions are counted over the same span. Printed lines the
           frontends never got (IOPub drops them when the reader falls behind) are counted.
3. scale   64 stand-in kernels (``tiny_kernel.py``: the protocol only, a few MB each) started
           at once through ``KernelMap`` with the window shown: time to start all, the
           manager's RSS, the duration of a cull pass over 64 records when nothing is
           cullable (``await cull_kernels()``, and the decision loop alone), the loop's lag
           while the 64 publish a stream message every 0.5 s, and shutting them all down.

Each workload runs in a fresh child process. Every kernel is shut down at the end, also on
errors and Ctrl-C; whatever a child leaves behind is killed by pid. Cells are the median
[min-max] over the repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
#: py-spy, for ``--profile`` (beside this interpreter, else on PATH).
PY_SPY = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")

GOALS = [
    # (workload, metric, op, limit, description)
    ("launch", "launch_s", "<=", 1.5, "window visible after launch [s]"),
    ("flood", "lines_lost", "<=", 0.0, "printed lines the frontends did not get"),
    ("flood", "final_idle_missing", "<=", 0.0, "final idle statuses the frontends did not get"),
    ("flood", "lag_p99_ms", "<=", 16.0, "loop lag p99 during 4 floods [ms]"),
    ("flood", "lag_max_ms", "<=", 50.0, "loop lag max during 4 floods [ms]"),
    ("flood", "lag_p99_vs_probe", "<=", 1.5, "loop lag p99 / the bare probe's p99"),
    ("flood", "refreshes_per_s", ">=", 2.0, "table keeps refreshing during floods [/s]"),
    ("flood", "updates_per_100_msgs", "<", 1.0, "row updates per 100 messages (not per message)"),
    ("flood", "idle_after", ">=", 1.0, "all kernels idle afterwards"),
    ("console", "lag_p99_ms", "<=", 16.0, "loop lag p99, console at 20,000 lines/s [ms]"),
    ("console", "all_shown", ">=", 1.0, "console shows the last line, scrollback bounded"),
    ("scale", "cull_pass_ms", "<", 10.0, "cull pass over all kernels [ms]"),
    ("scale", "lag_p99_ms", "<", 16.0, "loop lag p99, all kernels with output [ms]"),
    ("scale", "lag_max_ms", "<", 100.0, "no stall: worst tick lateness, all kernels [ms]"),
    ("scale", "rss_mb", "<", 200.0, "manager RSS with all kernels running [MB]"),
]

ROWS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "launch": (
        "1. Window visible after launch (fresh interpreter, offscreen)",
        [
            ("launch_s", "spawn -> window shown, loop running", "s"),
            ("interpreter_s", "  spawn -> child's first line of Python", "s"),
            ("imports_s", "  kernelmon app + Qt imported", "s"),
            ("exit_s", "quit (no kernels) -> process exited", "s"),
            ("exit_ok", "exited with status 0, nothing left", "ok"),
        ],
    ),
    "flood": (
        "2. Window open, 4 kernels flooding print() (connections open, buffering on)",
        [
            ("kernels", "kernels", ""),
            ("lines_per_kernel", "lines printed per kernel", ""),
            ("flood_s", "flood duration (first execute -> last reply/idle)", "s"),
            ("messages", "stream messages received (all kernels)", ""),
            ("msgs_per_s", "messages/s (all kernels)", "/s"),
            ("lines_lost", "printed lines the frontends did not get", ""),
            ("lost_counted", "  messages kernelmon counted as lost (and told)", ""),
            ("final_idle_missing", "final idle status not seen by the frontend", ""),
            ("cpu_us_per_msg", "manager CPU per message (all threads)", "µs"),
            ("loop_cpu_us_per_msg", "  of which the loop's thread (Python, Qt)", "µs"),
            ("cpu_share", "manager CPU / wall time (1 = one core)", ""),
            ("kernel_cpu_us_per_msg", "a kernel's CPU per message it printed", "µs"),
            ("demand_vs_kernel", "  manager's CPU per message x kernels / a kernel's", ""),
            ("lag_p50_ms", "loop lag p50 (10 ms timer)", "ms"),
            ("lag_p99_ms", "loop lag p99", "ms"),
            ("lag_max_ms", "loop lag max", "ms"),
            ("probe_p50_ms", "bare probe process's lag p50 (10 ms timer)", "ms"),
            ("probe_p99_ms", "bare probe process's lag p99", "ms"),
            ("probe_max_ms", "bare probe process's lag max", "ms"),
            ("lag_p99_vs_probe", "loop lag p99 / probe's p99", ""),
            ("data_changed", "table dataChanged emissions", ""),
            ("refreshes_per_s", "table refreshes/s (dataChanged)", "/s"),
            ("row_updates", "  of which row updates (bridge)", ""),
            ("updates_per_100_msgs", "  row updates per 100 messages", ""),
            ("idle_after", "all kernels idle 1.5 s after (core and table)", "ok"),
            ("rss_mb", "manager RSS after the flood", "MB"),
        ],
    ),
    "console": (
        "4. A console receiving 20,000 lines/s (window open)",
        [
            ("lines", "lines printed (50 a message, paced)", ""),
            ("lines_per_s", "lines/s that reached the console", "/s"),
            ("flushes_per_s", "text insertions/s (batched, <= 250 lines each)", "/s"),
            ("flush_ms", "  one insertion, mean", "ms"),
            ("flush_max_ms", "  one insertion, worst", "ms"),
            ("shown_lines", "lines kept (scrollback)", ""),
            ("dropped_lines", "older lines dropped (counted above the output)", ""),
            ("all_shown", "last line shown, scrollback within its bound", "ok"),
            ("lag_p50_ms", "loop lag p50 (10 ms timer)", "ms"),
            ("lag_p99_ms", "loop lag p99", "ms"),
            ("lag_max_ms", "loop lag max", "ms"),
            ("probe_p99_ms", "bare probe process's lag p99", "ms"),
            ("rss_mb", "manager RSS afterwards", "MB"),
        ],
    ),
    "scale": (
        "3. Many kernels watched at once (stand-in kernels, window open)",
        [
            ("kernels", "kernels started", ""),
            ("start_all_s", "start all at once -> all answered", "s"),
            ("rss_mb", "manager RSS with all running", "MB"),
            ("cull_pass_ms", "await cull_kernels(), nothing cullable", "ms"),
            ("cull_decide_us", "  decision loop alone (cull_reason for each)", "µs"),
            ("messages", "stream messages during the output phase", ""),
            ("lag_p50_ms", "loop lag p50 (10 ms timer)", "ms"),
            ("lag_p99_ms", "loop lag p99", "ms"),
            ("lag_max_ms", "loop lag max", "ms"),
            ("probe_p99_ms", "bare probe process's lag p99", "ms"),
            ("probe_max_ms", "bare probe process's lag max", "ms"),
            ("refreshes_per_s", "table refreshes/s (dataChanged)", "/s"),
            ("shutdown_all_s", "shut all down -> all gone", "s"),
            ("left_running", "kernel processes left afterwards", ""),
        ],
    ),
}


def params(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "reps": 1,
            "launch": {},
            "flood": {"kernels": 2, "lines": 2000},
            "scale": {"kernels": 8, "output_s": 1.5},
            "console": {"lines_per_s": 20000, "seconds": 1.0, "scrollback": 2000},
        }
    return {
        "reps": 3,
        "launch": {},
        "flood": {"kernels": 4, "lines": 30000},
        "scale": {"kernels": 256, "output_s": 5.0},
        "console": {"lines_per_s": 20000, "seconds": 5.0, "scrollback": 10000},
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


# -- child side: workloads in one process ----------------------------------------------------


def child_main(workload: str, p: dict[str, Any], out: str) -> int:
    """Run one workload under a qasync loop with the real window; write its result."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    import qasync  # isort: skip

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0]])
    app.setQuitOnLastWindowClosed(False)
    result: dict[str, Any] = {"ok": False}

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(*_: Any) -> None:
            loop.call_soon_threadsafe(task.cancel)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        fn = {"flood": flood_workload, "scale": scale_workload, "console": console_workload}[
            workload
        ]
        result.update(await fn(p))
        result["ok"] = True

    try:
        with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as r:
            r.run(runner())
    except BaseException as e:
        result["error"] = f"{type(e).__name__}: {e}"
    with open(out, "w") as f:
        json.dump(result, f)
    return 0 if result["ok"] else 1


class LagMeter:
    """A 10 ms precise Qt timer; each tick's lateness is the loop's lag."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval = interval_ms / 1000
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.timer.setInterval(interval_ms)
        self.ticks: list[tuple[float, float]] = []
        self.last = 0.0

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.ticks.append((now, max(0.0, now - self.last - self.interval)))
        self.last = now

    def stats(self, t0: float, t1: float) -> dict[str, float]:
        lags = [lag * 1000 for t, lag in self.ticks if t0 <= t <= t1]
        return {
            "lag_p50_ms": percentile(lags, 50),
            "lag_p99_ms": percentile(lags, 99),
            "lag_max_ms": max(lags) if lags else float("nan"),
            "ticks": len(lags),
        }


#: A bare probe: a 10 ms timer in a separate plain Python process, measured the same way
#: as the window's (each tick's lateness), so that machine starvation and kernelmon's own
#: stalls can be told apart. It writes its ticks (perf_counter, lateness) when told to stop.
PROBE = r"""
import json, os, sys, time
out, interval = sys.argv[1], 0.01
ticks = []
last = time.perf_counter()
while not os.path.exists(out + ".stop"):
    time.sleep(interval)
    now = time.perf_counter()
    ticks.append((now, max(0.0, now - last - interval)))
    last = now
with open(out, "w") as f:
    json.dump(ticks, f)
"""


class ProbeProcess:
    """``PROBE`` running beside the workload."""

    def __init__(self) -> None:
        fd, self.out = tempfile.mkstemp(prefix="app-bench-probe-", suffix=".json")
        os.close(fd)
        os.unlink(self.out)
        # A session of its own, as the kernels have (and any application launched apart):
        # under Linux's autogroup scheduling it then competes with kernelmon as a process of
        # the desktop does, instead of sharing kernelmon's own share of the CPU.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, self.out], start_new_session=True
        )
        self.ticks: list[tuple[float, float]] = []

    def stop(self) -> None:
        with open(self.out + ".stop", "w"):
            pass
        try:
            self.proc.wait(timeout=30)
            with open(self.out) as f:
                self.ticks = [(float(t), float(lag)) for t, lag in json.load(f)]
        except (subprocess.TimeoutExpired, OSError, ValueError):
            self.proc.kill()
        finally:
            for path in (self.out, self.out + ".stop"):
                if os.path.exists(path):
                    os.unlink(path)

    def stats(self, t0: float, t1: float) -> dict[str, float]:
        lags = [lag * 1000 for t, lag in self.ticks if t0 <= t <= t1]
        return {
            "probe_p50_ms": percentile(lags, 50),
            "probe_p99_ms": percentile(lags, 99),
            "probe_max_ms": max(lags) if lags else float("nan"),
        }


class ChangeCounter:
    """Times of the table model's dataChanged emissions (row updates told apart)."""

    def __init__(self, model: Any, columns: int) -> None:
        self.all: list[float] = []
        self.rows: list[float] = []
        self.columns = columns
        model.dataChanged.connect(self._on)

    def _on(self, top_left: Any, bottom_right: Any, *_: Any) -> None:
        now = time.perf_counter()
        self.all.append(now)
        if top_left.row() == bottom_right.row():  # one kernel's row (whole or some columns)
            self.rows.append(now)

    def between(self, t0: float, t1: float) -> tuple[int, int]:
        return (
            sum(1 for t in self.all if t0 <= t <= t1),
            sum(1 for t in self.rows if t0 <= t <= t1),
        )


def phase(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def open_window(kmap: Any) -> Any:
    from kernelmon.ui.main_window import MainWindow

    tmp = os.environ["APP_BENCH_TMP"]
    window = MainWindow(
        kmap,
        use_tray=False,
        settings_path=os.path.join(tmp, "settings.json"),
        window_state_path=os.path.join(tmp, "window.ini"),
    )
    window.show()
    return window


def close_window(window: Any) -> None:
    window.bridge.close()
    window.hide()
    window.deleteLater()


def kernel_cpu(proc: psutil.Process) -> float:
    """CPU time [s] of a kernel process (all its threads), 0 once it is gone."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def shutdown_everything(kmap: Any) -> list[int]:
    """Shut every kernel down; return the pids of any still running afterwards."""
    pids = [int(m["pid"]) for m in kmap.list_kernels() if m.get("pid")]
    try:
        await asyncio.wait_for(kmap.close(shutdown_kernels=True), 60)
    except BaseException:
        pass
    left = [pid for pid in pids if psutil.pid_exists(pid)]
    for pid in left:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


async def flood_workload(p: dict[str, Any]) -> dict[str, Any]:
    from kernelmon.core import KernelMap, Settings
    from kernelmon.ui.kernel_table import Column

    n, lines = p["kernels"], p["lines"]
    kmap = KernelMap(Settings(root_dir=os.environ["APP_BENCH_ROOT"]))
    window = open_window(kmap)
    conns: list[Any] = []
    try:
        kids = list(await asyncio.gather(*(kmap.start_kernel() for _ in range(n))))
        counter = ChangeCounter(window.table_model, len(Column))
        meter = LagMeter()
        received = [0] * n
        lines_seen = [0] * n
        idle_at: list[float | None] = [None] * n
        loop = asyncio.get_running_loop()
        # The flood ends at the execute_reply (shell: never dropped); the final idle status
        # on IOPub (a PUB socket: may be dropped under load) is recorded when it arrives.
        done: list[asyncio.Future[float]] = [loop.create_future() for _ in range(n)]
        msg_ids: list[str | None] = [None] * n

        def handler(i: int) -> Any:
            def on_message(channel: str, msg: dict[str, Any]) -> None:
                kind = msg["header"]["msg_type"]
                parent = msg["parent_header"].get("msg_id")
                if channel == "iopub" and kind == "stream":
                    received[i] += 1
                    lines_seen[i] += msg["content"].get("text", "").count("\n")
                elif (
                    channel == "iopub"
                    and kind == "status"
                    and msg["content"].get("execution_state") == "idle"
                    and parent == msg_ids[i]
                ):
                    idle_at[i] = time.perf_counter()
                elif kind == "execute_reply" and parent == msg_ids[i] and not done[i].done():
                    done[i].set_result(time.perf_counter())

            return on_message

        phase("started")
        for i, kid in enumerate(kids):
            conns.append(await kmap.connect(kid, f"app-bench-{i}", handler(i)))
        phase("connected")
        await asyncio.sleep(0.3)
        probe = ProbeProcess()
        await asyncio.sleep(0.2)  # the probe's interpreter has started
        meter.start()
        code = f"for i in range({lines}): print(i, flush=True)"
        kernel_procs = [psutil.Process(int(kmap.kernel_model(k)["pid"])) for k in kids]
        kernel_cpu0 = sum(kernel_cpu(p) for p in kernel_procs)
        cpu0 = time.process_time()
        loop_cpu0 = time.thread_time()
        t0 = time.perf_counter()
        for i, conn in enumerate(conns):
            msg_ids[i] = conn.execute(code)
        phase("executing")
        replies = await asyncio.wait_for(asyncio.gather(*done), 600)
        phase("flood done")
        cpu_at_replies = time.process_time()
        loop_cpu = time.thread_time() - loop_cpu0
        kernel_cpu_used = sum(kernel_cpu(p) for p in kernel_procs) - kernel_cpu0
        for _ in range(200):  # up to 2 s for the final idle statuses
            if all(t is not None for t in idle_at):
                break
            await asyncio.sleep(0.01)
        t1 = max(r if t is None else max(r, t) for r, t in zip(replies, idle_at, strict=True))
        await asyncio.sleep(1.5)
        meter.stop()
        probe.stop()
        dc, rows = counter.between(t0, t1)
        core = [kmap.kernel_model(k)["execution_state"] for k in kids]
        table = [(window.table_model.kernel_model(k) or {}).get("execution_state") for k in kids]
        span = t1 - t0
        msgs = sum(received)
        res = {
            "kernels": n,
            "lines_per_kernel": lines,
            "flood_s": span,
            "messages": msgs,
            "msgs_per_s": msgs / span,
            "lines_lost": n * lines - sum(lines_seen),
            "final_idle_missing": sum(1 for t in idle_at if t is None),
            "data_changed": dc,
            "refreshes_per_s": dc / span,
            "row_updates": rows,
            "updates_per_100_msgs": 100 * rows / max(1, msgs),
            "idle_after": 1.0 if all(s == "idle" for s in core + table) else 0.0,
            "states_core": core,
            "states_table": table,
            "rss_mb": rss_mb(),
            "lost_counted": sum(conn.lost for conn in conns),
            "cpu_us_per_msg": (cpu_at_replies - cpu0) / max(1, msgs) * 1e6,
            # the rest: libzmq's IO thread (reading the sockets), Qt's and kernelmon's others
            "loop_cpu_us_per_msg": loop_cpu / max(1, msgs) * 1e6,
            "cpu_share": (cpu_at_replies - cpu0) / max(1e-9, replies_at(replies) - t0),
            "kernel_cpu_us_per_msg": kernel_cpu_used / max(1, n * lines) * 1e6,
            **meter.stats(t0, t1),
            **probe.stats(t0, t1),
        }
        res["lag_p99_vs_probe"] = res["lag_p99_ms"] / max(res["probe_p99_ms"], 0.1)
        # Each kernel is a process group of its own and gets about the CPU kernelmon gets:
        # kernelmon keeps up with all of them only while this stays well below 1.
        res["demand_vs_kernel"] = (
            res["cpu_us_per_msg"] * n / max(res["kernel_cpu_us_per_msg"], 1e-9)
        )
        for conn in conns:
            await conn.close()
        conns.clear()
        return res
    finally:
        for conn in conns:
            try:
                await conn.close()
            except Exception:
                pass
        await shutdown_everything(kmap)
        close_window(window)


async def console_workload(p: dict[str, Any]) -> dict[str, Any]:
    """A console window on a kernel that prints ``lines_per_s`` lines a second (50 a
    message) for ``seconds``: the loop's lag, how often the console inserts text and how
    long that takes, and whether every line arrived within the bounded scrollback."""
    from kernelmon.core import KernelMap, Settings
    from kernelmon.ui.console import ConsoleWindow

    rate, seconds, scrollback = p["lines_per_s"], p["seconds"], p["scrollback"]
    total = int(rate * seconds)
    per_msg = 50
    durations: list[float] = []
    seen: dict[str, float] = {}
    insert, on_message = ConsoleWindow._insert, ConsoleWindow.on_message

    def timed_insert(self: Any, text: str) -> None:  # this child only: time each insertion
        t = time.perf_counter()
        insert(self, text)
        if text:
            durations.append(time.perf_counter() - t)

    def watched(self: Any, channel: str, msg: dict[str, Any]) -> None:
        on_message(self, channel, msg)
        content = msg.get("content", {})
        if msg["header"]["msg_type"] == "stream" and content.get("text", "").endswith(
            f"\n{total - 1}\n"
        ):
            seen["last"] = time.perf_counter()

    ConsoleWindow._insert = timed_insert  # type: ignore[method-assign]
    ConsoleWindow.on_message = watched  # type: ignore[method-assign]
    settings = Settings(root_dir=os.environ["APP_BENCH_ROOT"], console_scrollback_lines=scrollback)
    kmap = KernelMap(settings)
    window = open_window(kmap)
    try:
        kid = await kmap.start_kernel()
        console = window.consoles.open(kid)
        for _ in range(3000):
            if console.connection is not None:
                break
            await asyncio.sleep(0.01)
        code = (
            "import time\n"
            f"t0, n, k = time.perf_counter(), 0, {per_msg}\n"
            f"while n < {total}:\n"
            "    print(''.join(f'{i}\\n' for i in range(n, n + k)), end='', flush=True)\n"
            "    n += k\n"
            f"    ahead = n / {rate} - (time.perf_counter() - t0)\n"
            "    if ahead > 0:\n"
            "        time.sleep(ahead)\n"
        )
        meter = LagMeter()
        probe = ProbeProcess()
        await asyncio.sleep(0.2)
        meter.start()
        flushes0 = console.flushes
        t0 = time.perf_counter()
        console.execute(code)
        for _ in range(int((seconds * 10 + 60) * 100)):
            if "last" in seen:
                break
            await asyncio.sleep(0.01)
        t1 = seen.get("last", time.perf_counter())
        await asyncio.sleep(0.1)
        meter.stop()
        probe.stop()
        flushes = console.flushes - flushes0
        lines = console.text().splitlines()
        res = {
            "lines": total,
            "duration_s": t1 - t0,
            "lines_per_s": total / (t1 - t0),
            "flushes_per_s": flushes / (t1 - t0),
            "flush_ms": statistics.mean(durations) * 1000 if durations else float("nan"),
            "flush_max_ms": max(durations) * 1000 if durations else float("nan"),
            "shown_lines": console.lines(),
            "dropped_lines": console.dropped,
            "all_shown": 1.0
            if "last" in seen and lines[-1] == str(total - 1) and console.lines() <= scrollback
            else 0.0,
            "rss_mb": rss_mb(),
            **meter.stats(t0, t1),
            **probe.stats(t0, t1),
        }
        console.close()
        return res
    finally:
        await shutdown_everything(kmap)
        close_window(window)


def replies_at(replies: list[float]) -> float:
    return max(replies)


def set_flag(path: str, on: bool) -> None:
    """Create or remove the file that makes the stand-in kernels publish output."""
    if on:
        with open(path, "w"):
            pass
    elif os.path.exists(path):
        os.unlink(path)


async def scale_workload(p: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    from kernelmon.core import KernelMap, Settings
    from kernelmon.core.culler import cull_reason
    from kernelmon.core.records import utcnow
    from kernelmon.ui.kernel_table import Column

    n, output_s = p["kernels"], p["output_s"]
    flag = os.environ["APP_BENCH_EMIT_FLAG"]
    settings = Settings(root_dir=os.environ["APP_BENCH_ROOT"], kernel_info_timeout=180.0)
    kmap = KernelMap(settings)
    window = open_window(kmap)
    res: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        started = await asyncio.gather(
            *(kmap.start_kernel("app-bench-tiny") for _ in range(n)), return_exceptions=True
        )
        res["start_all_s"] = time.perf_counter() - t0
        kids = [k for k in started if isinstance(k, str)]
        errors = [repr(e) for e in started if not isinstance(e, str)]
        res["kernels"] = len(kids)
        if errors:
            res["start_errors"] = errors[:3]
        await asyncio.sleep(1.0)
        res["rss_mb"] = rss_mb()

        # Cull pass over every record with nothing cullable (timeout an hour, interval long).
        cull = dataclasses.replace(settings, cull_idle_timeout=3600.0, cull_interval=3600.0)
        kmap.apply_settings(cull)
        passes = []
        for _ in range(30):
            t = time.perf_counter()
            culled = await kmap.cull_kernels()
            passes.append(time.perf_counter() - t)
            assert not culled, culled
        res["cull_pass_ms"] = statistics.median(passes) * 1000
        res["cull_pass_max_ms"] = max(passes) * 1000
        decide = []
        for _ in range(200):
            now = utcnow()
            t = time.perf_counter()
            for kid in kmap:
                cull_reason(kmap.record(kid), cull, now)
            decide.append(time.perf_counter() - t)
        res["cull_decide_us"] = statistics.median(decide) * 1e6

        # The 64 publish a stream message every 0.5 s while the flag file exists.
        counter = ChangeCounter(window.table_model, len(Column))
        seen = [0]
        # Messages the core saw: counted from last_activity changes is indirect; count the
        # bridge's change signals instead (one per coalesced change per kernel).
        window.bridge.kernel_changed.connect(lambda *_: seen.__setitem__(0, seen[0] + 1))
        meter = LagMeter()
        probe = ProbeProcess()
        meter.start()
        await asyncio.sleep(0.5)
        set_flag(flag, True)
        t1 = time.perf_counter()
        await asyncio.sleep(output_s)
        t2 = time.perf_counter()
        set_flag(flag, False)
        meter.stop()
        probe.stop()
        dc, _rows = counter.between(t1, t2)
        res.update(meter.stats(t1, t2))
        res.update(probe.stats(t1, t2))
        res["refreshes_per_s"] = dc / (t2 - t1)
        res["messages"] = round(len(kids) * output_s / 0.5)
        res["bridge_changes"] = seen[0]

        pids = [int(m["pid"]) for m in kmap.list_kernels() if m.get("pid")]
        t3 = time.perf_counter()
        await asyncio.wait_for(kmap.shutdown_all(), 120)
        for _ in range(1000):  # at most 10 s more for the processes to be gone
            if not any(psutil.pid_exists(pid) for pid in pids):
                break
            await asyncio.sleep(0.01)
        res["shutdown_all_s"] = time.perf_counter() - t3
        res["left_running"] = sum(1 for pid in pids if psutil.pid_exists(pid))
        return res
    finally:
        set_flag(flag, False)
        await shutdown_everything(kmap)
        close_window(window)


# -- parent side ----------------------------------------------------------------------------


LAUNCH_CHILD = r"""
import sys, time
print("T_START", repr(time.time()), flush=True)
from PySide6.QtCore import QTimer
import kernelmon.app as kapp
from kernelmon.ui import main_window as mw
print("T_IMPORTED", repr(time.time()), flush=True)
_show = mw.MainWindow.show
def show(self):
    _show(self)
    def shown():
        print("T_SHOWN", repr(time.time()), flush=True)
        self.quit_without_asking(True)
    QTimer.singleShot(0, shown)
mw.MainWindow.show = show
code = kapp.main(["--root-dir", sys.argv[1]])
print("T_EXIT", repr(time.time()), flush=True)
sys.exit(code)
"""


class Runner:
    def __init__(self, tmp: str, verbose: bool, profile: str | None = None) -> None:
        self.tmp = tmp
        self.verbose = verbose
        #: A folder for a py-spy profile of each workload's process (None: not profiled).
        self.profile = profile
        self.profiles = 0
        self.current: subprocess.Popen[bytes] | None = None
        self.family: dict[int, psutil.Process] = {}
        root = os.path.join(tmp, "root")
        jpath = os.path.join(tmp, "jupyter_path")
        self.env = dict(
            os.environ,
            JUPYTER_PLATFORM_DIRS="1",
            JUPYTER_RUNTIME_DIR=os.path.join(tmp, "runtime"),
            JUPYTER_DATA_DIR=os.path.join(tmp, "data"),
            JUPYTER_CONFIG_DIR=os.path.join(tmp, "jconfig"),
            JUPYTER_PATH=jpath,
            PYDEVD_DISABLE_FILE_VALIDATION="1",
            QT_QPA_PLATFORM="offscreen",
            PYTHONWARNINGS="ignore",
            KERNELMON_STATE_DIR=os.path.join(tmp, "state"),
            KERNELMON_CONFIG_DIR=os.path.join(tmp, "config"),
            KERNELMON_LOG_DIR=os.path.join(tmp, "log"),
            APP_BENCH_TMP=tmp,
            APP_BENCH_ROOT=root,
            APP_BENCH_EMIT_FLAG=os.path.join(tmp, "emit.flag"),
        )
        os.makedirs(self.env["JUPYTER_RUNTIME_DIR"], mode=0o700)
        os.makedirs(root)
        spec_dir = os.path.join(jpath, "kernels", "app-bench-tiny")
        os.makedirs(spec_dir)
        with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump(
                {
                    "argv": [
                        sys.executable,
                        os.path.join(HERE, "tiny_kernel.py"),
                        "-f",
                        "{connection_file}",
                        "--emit-flag",
                        self.env["APP_BENCH_EMIT_FLAG"],
                        "--emit-interval",
                        "0.5",
                    ],
                    "display_name": "tiny stand-in (app_bench)",
                    "language": "text",
                },
                f,
            )

    def _watch(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Wait for ``proc``, remembering every process it starts (to kill leftovers)."""
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    self.family.setdefault(child.pid, child)
            except psutil.Error:
                pass
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            time.sleep(0.2)

    def kill_leftovers(self) -> int:
        n = 0
        for pid, proc in list(self.family.items()):
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    n += 1
            except psutil.Error:
                pass
            del self.family[pid]
        return n

    def stop(self) -> None:
        proc = self.current
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run(
        self, cmd: list[str], timeout: float, log: str, *, timeout_raises: bool = False
    ) -> tuple[int, int]:
        """Run ``cmd`` (its output to ``log``) until it exits, or stop it after ``timeout``
        (and raise ``TimeoutExpired`` if ``timeout_raises``); its exit status and how many
        processes it left behind (killed)."""
        with open(log, "wb") as f:
            self.current = subprocess.Popen(cmd, env=self.env, stdout=f, stderr=subprocess.STDOUT)
            try:
                self._watch(self.current, timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                if timeout_raises:
                    raise
            except BaseException:
                self.stop()
                raise
            finally:
                rc = self.current.wait()
                self.current = None
                left = self.kill_leftovers()
        return rc, left

    def launch(self) -> dict[str, Any]:
        out = os.path.join(self.tmp, "launch.out")
        t0 = time.time()
        cmd = [sys.executable, "-c", LAUNCH_CHILD, self.env["APP_BENCH_ROOT"]]
        rc, left = self.run(cmd, 60, out, timeout_raises=True)
        marks: dict[str, float] = {}
        with open(out, errors="replace") as f:
            text = f.read()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith("T_"):
                marks[parts[0]] = float(parts[1])
        if "T_SHOWN" not in marks:
            return {"ok": False, "error": f"no window (exit {rc}): {text[-500:]}"}
        return {
            "ok": True,
            "launch_s": marks["T_SHOWN"] - t0,
            "interpreter_s": marks["T_START"] - t0,
            "imports_s": marks["T_IMPORTED"] - marks["T_START"],
            "exit_s": marks.get("T_EXIT", float("nan")) - marks["T_SHOWN"],
            "exit_ok": 1.0 if rc == 0 and left == 0 else 0.0,
        }

    def workload(self, name: str, p: dict[str, Any]) -> dict[str, Any]:
        out = os.path.join(self.tmp, f"{name}.json")
        if os.path.exists(out):
            os.unlink(out)
        log = os.path.join(self.tmp, f"{name}.log")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name, json.dumps(p), out]
        if self.profile is not None:
            # py-spy samples the workload's process (every Python thread, not the kernels it
            # starts); raw format: one line per stack with its sample count
            self.profiles += 1
            trace = os.path.join(self.profile, f"{name}-{self.profiles}.txt")
            spy = [PY_SPY, "record", "--rate", "250", "--threads", "--format", "raw", "-o", trace]
            cmd = [*spy, "--", *cmd]
        rc, left = self.run(cmd, 900, log)
        if left:
            print(f"  ! killed {left} process(es) left behind", file=sys.stderr)
        try:
            with open(out) as f:
                result: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            result = {"ok": False, "error": f"the child wrote no result (exit {rc})"}
        if not result.get("ok"):
            with open(log, errors="replace") as f:
                tail = "".join(f.readlines()[-15:])
            print(f"  ! {name} failed: {result.get('error')}\n{tail}", file=sys.stderr)
        elif self.verbose:
            print(f"  {name}: {result}", file=sys.stderr)
        return result


def version(*dists: str) -> str:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "-"


def meta() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "system": platform.system(),
        "python": platform.python_version(),
        "versions": {
            "kernelmon": version("kernelmon"),
            "jupyter_client": version("jupyter_client"),
            "ipykernel": version("ipykernel"),
            "pyzmq": version("pyzmq"),
            "PySide6": version("PySide6", "PySide6_Essentials"),
            "qasync": version("qasync"),
        },
        "load_before": os.getloadavg()[0],
    }


def summarise(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, reps in samples.items():
        ok = [r for r in reps if r.get("ok")]
        summary[name] = {}
        for metric, _desc, _unit in ROWS[name][1]:
            vals = [r[metric] for r in ok if isinstance(r.get(metric), int | float)]
            vals = [v for v in vals if v == v]  # no NaN
            if vals:
                summary[name][metric] = {
                    "median": statistics.median(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "n": len(vals),
                }
    return summary


def goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for workload, metric, op, limit, desc in GOALS:
        cell = summary.get(workload, {}).get(metric)
        value = cell["median"] if cell else None
        met = None
        if value is not None:
            met = {"<=": value <= limit, "<": value < limit, ">=": value >= limit}[op]
        out.append(
            {
                "workload": workload,
                "metric": metric,
                "goal": f"{op} {limit:g}",
                "description": desc,
                "value": value,
                "met": met,
            }
        )
    return out


def fmt(v: float, unit: str) -> str:
    if unit == "ok":
        return f"{v:.0%}" if v != 1 else "yes"
    if unit in ("", "/s") and abs(v) >= 100:
        return f"{v:,.0f}"
    if unit == "s":
        return f"{v:.3f}"
    if unit == "" and v == int(v):
        return f"{v:,.0f}"
    if abs(v) < 10:
        return f"{v:.2f}"
    return f"{v:.1f}"


def table(data: dict[str, Any]) -> str:
    m = data["meta"]
    vs = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        f"{m['date']}; {m['machine']}, {m['cores']} cores, {m['system']}; "
        f"Python {m['python']}; {vs}",
        f"reps {data['config']['reps']}{' (quick)' if data['config']['quick'] else ''}; "
        f"load average (1 min) {m['load_before']:.1f} before, {m.get('load_after', 0):.1f} after",
    ]
    for name, (title, rows) in ROWS.items():
        if name not in data["summary"]:
            continue
        lines += ["", title]
        cells = []
        for metric, desc, unit in rows:
            c = data["summary"][name].get(metric)
            label = f"{desc} [{unit}]" if unit and unit != "ok" else desc
            if c is None:
                cells.append((label, "-"))
            elif unit == "ok":
                cells.append((label, f"{c['min'] * c['n']:.0f}/{c['n']}" if c["n"] else "-"))
            else:
                lo, hi = fmt(c["min"], unit), fmt(c["max"], unit)
                cells.append((label, f"{fmt(c['median'], unit)} [{lo}-{hi}]"))
        w = max(len(a) for a, _ in cells)
        v = max(len(b) for _, b in cells)
        lines.append(f"{'figure':<{w}}  {'median [min-max]':>{v}}")
        lines.append(f"{'-' * w}  {'-' * v}")
        lines += [f"{a:<{w}}  {b:>{v}}" for a, b in cells]
    lines += ["", "Goals (medians)"]
    for g in data["goals"]:
        verdict = {True: "met    ", False: "MISSED ", None: "no data"}[g["met"]]
        val = "-" if g["value"] is None else f"{g['value']:.3g}"
        lines.append(f"  {verdict} {g['description']}: {val} (goal {g['goal']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1], json.loads(argv[2]), argv[3])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny workloads, 1 repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--flood-kernels", type=int, help="flooding kernels (default 4)")
    parser.add_argument("--flood-lines", type=int, help="lines per flooding kernel")
    parser.add_argument("--scale-kernels", type=int, help="stand-in kernels (default 256)")
    parser.add_argument(
        "--workloads",
        default="launch,flood,console,scale",
        help="comma-separated subset of launch,flood,console,scale (default: all)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record a py-spy profile of each workload's process into DIR (py-spy installed)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.profile:
        if PY_SPY is None:
            parser.error("--profile needs py-spy (pip install py-spy)")
        os.makedirs(args.profile, exist_ok=True)
    p = params(args.quick)
    reps = args.reps or p["reps"]
    if args.flood_kernels:
        p["flood"]["kernels"] = args.flood_kernels
    if args.flood_lines:
        p["flood"]["lines"] = args.flood_lines
    if args.scale_kernels:
        p["scale"]["kernels"] = args.scale_kernels
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(workloads) - set(ROWS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    config = {"quick": args.quick, "reps": reps, "params": p, "workloads": workloads}
    data: dict[str, Any] = {"meta": meta(), "config": config}
    samples: dict[str, list[dict[str, Any]]] = {w: [] for w in ROWS if w in workloads}
    tmp = tempfile.mkdtemp(prefix="kernelmon-app-bench-")
    runner = Runner(tmp, args.verbose, os.path.abspath(args.profile) if args.profile else None)

    def on_sigterm(*_: Any) -> None:
        raise KeyboardInterrupt  # clean up as on Ctrl-C

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        launches = reps + 2 if "launch" in samples else 0  # cheap: a few more
        for i in range(launches):
            print(f"launch {i + 1}/{launches}", file=sys.stderr, flush=True)
            samples["launch"].append(runner.launch())
        for i in range(reps):
            for name in ("flood", "console", "scale"):
                if name not in samples:
                    continue
                print(f"{name} {i + 1}/{reps}", file=sys.stderr, flush=True)
                samples[name].append(runner.workload(name, p[name]))
    except KeyboardInterrupt:
        print("interrupted: every kernel was shut down", file=sys.stderr)
        return 130
    finally:
        runner.stop()
        runner.kill_leftovers()
        shutil.rmtree(tmp, ignore_errors=True)
    data["meta"]["load_after"] = os.getloadavg()[0]
    data["samples"] = samples
    data["summary"] = summarise(samples)
    data["goals"] = [g for g in goals(data["summary"]) if g["workload"] in samples]
    print(table(data))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    failed = [n for n, reps_ in samples.items() for r in reps_ if not r.get("ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
