"""kernelmon's core side by side with jupyter_server's kernel manager, a raw watcher and bare
kernels, on the same workloads in one run.

    python benchmarks/bench.py [--quick] [--reps N] [--json out.json] [--workloads a,b]
                               [--bigflood-messages N] [--bigflood-rate R]

Each measurement runs in a fresh worker process (``worker.py``), so that CPU and memory
figures are the manager's alone and one contender's state never leaks into another's.
Contenders alternate within each repetition (the order rotates from one repetition to the
next). The table shows, for each figure, the median and [min-max] over the repetitions and
the ratios kernelmon/jupyter_server and kernelmon/floor (the raw watcher or the bare kernel).

Contenders:
  kernelmon          KernelMap under a qasync loop (PySide6, offscreen), as in the app
  kernelmon·asyncio  the same under plain asyncio (IOPub workloads only)
  jupyter_server     AsyncMappingKernelManager (plain asyncio; tornado runs on it)
  raw                a minimal IOPub watcher (plain asyncio; raw·qasync under qasync)
  raw·coalesced      the same under qasync, at most one wake-up per 10 ms batch (the floor)
  bare               ipykernel launched by hand, no manager (the floor for start/shutdown)
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
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

#: Contender labels: (contender, loop).
LABELS = {
    "kernelmon": ("kernelmon", "qasync"),
    "kernelmon·asyncio": ("kernelmon", "asyncio"),
    "kernelmon·cull0.2": ("kernelmon", "qasync"),
    "jupyter_server": ("jupyter_server", "asyncio"),
    "raw": ("raw", "asyncio"),
    "raw·qasync": ("raw", "qasync"),
    "raw·coalesced": ("raw_coalesced", "qasync"),
    "bare": ("bare", "asyncio"),
}

#: Per workload: the contenders, the floor column, and the rows (metric, description, unit).
WORKLOADS: dict[str, dict[str, Any]] = {
    "lifecycle": {
        "title": "1. Kernel life cycle (one kernel)",
        "labels": ["kernelmon", "jupyter_server", "bare"],
        "floor": "bare",
        "rows": [
            ("start_s", "start -> kernel_info_reply", "s"),
            ("start_cold_s", "first start in a fresh process", "s"),
            ("start_returned_s", "  start_kernel() returned (not ready yet)", "s"),
            ("restart_s", "restart -> kernel_info_reply", "s"),
            ("shutdown_s", "shutdown (process gone)", "s"),
        ],
    },
    "flood": {
        "title": "2. IOPub flood (manager process CPU: all its threads)",
        "labels": [
            "kernelmon",
            "kernelmon·asyncio",
            "jupyter_server",
            "raw",
            "raw·qasync",
            "raw·coalesced",
        ],
        "floor": "raw·coalesced",
        "rows": [
            ("print_cpu_us_per_msg", "print flood: CPU per message", "µs"),
            ("print_msgs_per_s", "print flood: messages/s", "/s"),
            ("print_lost", "print flood: messages lost", ""),
            ("print_idle_after", "print flood: idle afterwards", "ok"),
            ("state_latency_ms", "job end -> shown idle (quiet job)", "ms"),
            ("state_latency_max_ms", "  worst of 5", "ms"),
            ("state_latency_flood_ms", "print flood end -> shown idle", "ms"),
            ("burst_msgs_per_s", "burst: messages/s (saturated)", "/s"),
            ("burst_cpu_us_per_msg", "burst: CPU per message", "µs"),
            ("burst_lost", "burst: dropped by the kernel's PUB", ""),
            ("burst_idle_after", "burst: idle afterwards", "ok"),
        ],
    },
    "many": {
        "title": "3./4./6. Concurrent starts, cull of 8 idle kernels, memory",
        "labels": ["kernelmon", "kernelmon·cull0.2", "jupyter_server", "bare"],
        "floor": "bare",
        "rows": [
            ("start_4_concurrent_s", "4 concurrent starts", "s"),
            ("shutdown_4_concurrent_s", "4 concurrent shutdowns", "s"),
            ("start_8_concurrent_s", "8 concurrent starts", "s"),
            ("cull_idle_s", "cull all idle (timeout 1 s): idle -> all gone", "s"),
            ("cull_spread_s", "cull: first gone -> all gone", "s"),
            ("rss_0_kernels_mb", "manager RSS, no kernel", "MB"),
            ("rss_8_kernels_mb", "manager RSS, 8 kernels", "MB"),
        ],
    },
    "buffering": {
        "title": "6. Buffering for a frontend that left, during a print flood",
        "labels": ["kernelmon", "jupyter_server"],
        "floor": None,
        "rows": [
            ("buffered_msgs", "messages buffered", ""),
            ("rss_growth_mb", "manager RSS growth", "MB"),
            ("rss_after_mb", "manager RSS after", "MB"),
            ("cpu_us_per_msg", "CPU per message (watcher + buffer)", "µs"),
        ],
    },
    "bigflood": {
        "title": "6b. A big flood while a frontend is away (buffering on): memory",
        "labels": ["kernelmon", "jupyter_server"],
        "floor": None,
        "rows": [
            ("sent_msgs", "messages the kernel sent", ""),
            ("received_msgs", "messages that went into the buffer", ""),
            ("buffered_msgs", "messages buffered at the end", ""),
            ("duration_s", "flood duration", "s"),
            ("cpu_us_per_msg", "CPU per message (watcher + buffer)", "µs"),
            ("rss_before_mb", "manager RSS before", "MB"),
            ("rss_peak_growth_mb", "manager RSS growth, peak", "MB"),
            ("rss_after_growth_mb", "manager RSS growth, after", "MB"),
            ("cap_mb", "buffer byte cap (none: unbounded)", "MB"),
            ("over_cap_mb", "peak growth minus the byte cap", "MB"),
        ],
    },
    "import": {
        "title": "5. Import time in a fresh interpreter",
        "labels": ["kernelmon", "jupyter_server"],
        "floor": None,
        "rows": [("import_s", "import the manager module", "s")],
    },
}
ORDER = ["import", "lifecycle", "flood", "many", "buffering", "bigflood"]
#: Workloads run in the first repetition only (long; their figures hardly vary).
ONCE = {"bigflood"}
IMPORTS = {
    "kernelmon": "kernelmon.core.kernel_map",  # (kernelmon.core loads its names lazily)
    "jupyter_server": "jupyter_server.services.kernels.kernelmanager",
}

#: The project's goals: (workload, metric, numerator, denominator or a number, op, bound).
GOALS = [
    ("flood", "print_cpu_us_per_msg", "kernelmon", "raw·coalesced", "<=", 1.2),
    ("flood", "print_cpu_us_per_msg", "kernelmon", "jupyter_server", "<=", 1 / 3),
    ("flood", "state_latency_ms", "kernelmon", None, "<=", 50.0),
    ("flood", "state_latency_flood_ms", "kernelmon", None, "<=", 50.0),
    ("flood", "print_cpu_us_per_msg", "kernelmon", "raw·qasync", "<=", 1.5),
    ("flood", "print_cpu_us_per_msg", "kernelmon", "raw", "<=", 1.5),
    ("flood", "burst_msgs_per_s", "kernelmon", "jupyter_server", ">=", 3.0),
    ("lifecycle", "start_s", "kernelmon", "bare", "<=", 1.1),
    ("lifecycle", "restart_s", "kernelmon", "jupyter_server", "<=", 0.8),
    ("lifecycle", "shutdown_s", "kernelmon", "jupyter_server", "<=", 0.6),
    ("many", "start_8_concurrent_s", "kernelmon", "jupyter_server", "<=", 1.0),
    ("many", "cull_idle_s", "kernelmon", None, "<=", 1.6),
    ("many", "cull_idle_s", "kernelmon·cull0.2", None, "<=", 1.6),
    ("import", "import_s", "kernelmon", "jupyter_server", "<=", 0.25),
    # RSS bounded by the buffer caps plus a small constant (MB), whatever the flood's size.
    ("bigflood", "over_cap_mb", "kernelmon", None, "<=", 40.0),
]


def params(quick: bool) -> dict[str, dict[str, Any]]:
    if quick:
        return {
            "lifecycle": {},
            "flood": {"n_print": 1000, "n_burst": 20000},
            "many": {"concurrent": [4], "cull": True, "cull_timeout": 1, "cull_interval": 1},
            "buffering": {"n_print": 1000},
            "bigflood": {"n_messages": 20000, "rate": 20000.0},
        }
    return {
        "lifecycle": {},
        "flood": {"n_print": 6000, "n_burst": 150000},
        "many": {"concurrent": [4, 8], "cull": True, "cull_timeout": 1, "cull_interval": 1},
        "buffering": {"n_print": 6000},
        "bigflood": {"n_messages": 1_000_000, "rate": 20000.0},
    }


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


# -- running ---------------------------------------------------------------------------------


class Runner:
    def __init__(self, tmp: str, verbose: bool, transport: str) -> None:
        self.tmp = tmp
        self.transport = transport
        self.verbose = verbose
        self.current: subprocess.Popen[bytes] | None = None
        self.env = dict(
            os.environ,
            JUPYTER_PLATFORM_DIRS="1",
            JUPYTER_RUNTIME_DIR=os.path.join(tmp, "runtime"),
            PYDEVD_DISABLE_FILE_VALIDATION="1",
            QT_QPA_PLATFORM="offscreen",
            PYTHONWARNINGS="ignore",
            KERNELMON_STATE_DIR=os.path.join(tmp, "state"),
            KERNELMON_CONFIG_DIR=os.path.join(tmp, "config"),
            KERNELMON_LOG_DIR=os.path.join(tmp, "log"),
        )
        os.makedirs(self.env["JUPYTER_RUNTIME_DIR"], mode=0o700)
        os.makedirs(os.path.join(tmp, "root"))

    def worker(self, workload: str, label: str, p: dict[str, Any]) -> dict[str, Any]:
        contender, loop = LABELS[label]
        timeout = 300.0
        if workload == "bigflood":
            timeout = max(timeout, p["n_messages"] / p["rate"] * 3 + 180)
        spec = {
            "contender": contender,
            "loop": loop,
            "workload": workload,
            "params": p,
            "transport": transport_for(contender, self.transport),
        }
        out = os.path.join(self.tmp, "result.json")
        if os.path.exists(out):
            os.unlink(out)
        log = os.path.join(self.tmp, "worker.log")
        with open(log, "wb") as f:
            self.current = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "worker.py"), json.dumps(spec), out],
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
            )
            try:
                self.current.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop(signal.SIGINT)
            except BaseException:
                # Ctrl-C reached the worker too: give it time to shut its kernels down.
                self.stop(None)
                raise
            finally:
                self.current = None
        try:
            with open(out) as f:
                result: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            result = {"ok": False, "error": "the worker wrote no result"}
        if not result.get("ok"):
            with open(log, errors="replace") as f:
                tail = "".join(line for line in f.readlines()[-15:] if "WARNING" not in line)
            print(f"  ! {workload}/{label} failed: {result.get('error')}\n{tail}", file=sys.stderr)
        elif self.verbose:
            print(f"  {workload}/{label}: {result}", file=sys.stderr)
        return result

    def stop(self, sig: int | None) -> None:
        """Let the running worker shut its kernels down (after ``sig``, if given: SIGINT
        cancels its main task, whose clean-up shuts the kernels down); if it takes too
        long, kill it and every process it started."""
        proc = self.current
        if proc is None or proc.poll() is not None:
            return
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            family = []
        if sig is not None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for child in family:
            try:
                child.kill()
            except psutil.Error:
                pass

    def import_time(self, label: str) -> dict[str, Any]:
        code = (
            f"import time; t = time.perf_counter(); import {IMPORTS[label]}; "
            "print(time.perf_counter() - t)"
        )
        r = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True
        )
        if r.returncode != 0:
            return {"ok": False, "error": r.stderr.strip().splitlines()[-1:]}
        return {"ok": True, "import_s": float(r.stdout.strip().splitlines()[-1])}


def transport_for(contender: str, mode: str) -> str | None:
    """The transport a contender uses: in "default" mode each manager's own default
    (kernelmon: IPC on POSIX; jupyter_server: TCP) and, for the bare kernel and the raw
    watcher, kernelmon's (they are its floor)."""
    if mode != "default":
        return mode
    if contender in ("raw", "bare"):
        return "ipc" if os.name == "posix" else "tcp"
    return None


def plan(
    workloads: list[str], reps: int, peer: bool, only: set[str] | None = None
) -> list[tuple[int, str, str]]:
    """(rep, workload, label), contenders alternating and rotating from rep to rep
    (``only``: just these labels)."""
    heavy = {"many", "buffering"}
    steps = []
    for rep in range(reps):
        for w in workloads:
            if (w in heavy and rep >= max(1, (reps + 1) // 2)) or (w in ONCE and rep > 0):
                continue
            labels = [lb for lb in WORKLOADS[w]["labels"] if peer or lb != "jupyter_server"]
            labels = [lb for lb in labels if only is None or lb in only]
            k = rep % len(labels)
            for label in labels[k:] + labels[:k]:
                steps.append((rep, w, label))
    return steps


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    peer = have("jupyter_server") and not args.no_peer
    workloads = [w for w in ORDER if w in args.workloads]
    prm = params(args.quick)
    if args.bigflood_messages is not None:
        prm["bigflood"]["n_messages"] = args.bigflood_messages
    if args.bigflood_rate is not None:
        prm["bigflood"]["rate"] = args.bigflood_rate
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {w: {} for w in workloads}
    tmp = tempfile.mkdtemp(prefix="kernelmon-bench-")
    runner = Runner(tmp, args.verbose, args.transport)
    only = set(args.contenders.split(",")) if args.contenders else None
    steps = plan(workloads, args.reps, peer, only)
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    t_start = time.monotonic()
    try:
        for i, (rep, w, label) in enumerate(steps, 1):
            print(f"[{i}/{len(steps)}] rep {rep + 1} {w}: {label}", file=sys.stderr, flush=True)
            if w == "import":
                result = runner.import_time(label)
            else:
                p = dict(prm[w], seed=rep)
                if label == "kernelmon·cull0.2":
                    p.update(concurrent=p["concurrent"][-1:], cull_interval=0.2)
                result = runner.worker(w, label, p)
            samples[w].setdefault(label, []).append(result)
    except KeyboardInterrupt:
        print("interrupted: the running worker shut its kernels down", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = meta(peer)
    info["load_average_before"] = load_before
    return {
        "meta": info,
        "config": {
            "quick": args.quick,
            "transport": args.transport,
            "reps": args.reps,
            "workloads": workloads,
            "params": {w: prm.get(w, {}) for w in workloads},
            "duration_s": round(time.monotonic() - t_start, 1),
        },
        "samples": samples,
    }


def meta(peer: bool) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
        "versions": {
            d: version(d)
            for d in (
                "kernelmon",
                "jupyter_client",
                "jupyter_server",
                "ipykernel",
                "pyzmq",
                "PySide6-Essentials",
                "qasync",
            )
        },
        "jupyter_server_present": peer,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# -- summarising -----------------------------------------------------------------------------


def summarise(data: dict[str, Any]) -> None:
    summary: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for w, by_label in data["samples"].items():
        spec = WORKLOADS[w]
        summary[w] = {}
        ratios[w] = {}
        for metric, _desc, unit in spec["rows"]:
            row: dict[str, Any] = {}
            for label, results in by_label.items():
                vals = [r[metric] for r in results if r.get("ok") and r.get(metric) is not None]
                if metric == "shutdown_s":
                    vals += [
                        r["shutdown2_s"] for r in results if r.get("ok") and "shutdown2_s" in r
                    ]
                if not vals:
                    continue
                if unit == "ok":
                    row[label] = {"ok": sum(bool(v) for v in vals), "n": len(vals)}
                else:
                    row[label] = {
                        "median": statistics.median(vals),
                        "min": min(vals),
                        "max": max(vals),
                        "n": len(vals),
                    }
            summary[w][metric] = row
            if unit == "ok" or "kernelmon" not in row:
                continue
            km = row["kernelmon"]["median"]
            r = {}
            for other in ("jupyter_server", spec["floor"]):
                if other and other in row and row[other]["median"]:
                    r[f"kernelmon/{other}"] = km / row[other]["median"]
            ratios[w][metric] = r
    data["summary"] = summary
    data["ratios"] = ratios
    goals = []
    for w, metric, num, den, op, bound in GOALS:
        row = summary.get(w, {}).get(metric, {})
        if num not in row or (den is not None and den not in row):
            continue
        value = row[num]["median"] / (row[den]["median"] if den else 1.0)
        met = value <= bound if op == "<=" else value >= bound
        name = f"{metric}: {num}" + (f"/{den}" if den else "") + f" {op} {bound:g}"
        goals.append({"goal": name, "value": value, "met": met})
    data["goals"] = goals


def fmt(v: float, unit: str) -> str:
    if unit in ("/s", "") and abs(v) >= 100:
        return f"{v:,.0f}"
    if unit == "MB":
        return f"{v:.1f}"
    if unit in ("µs", "ms"):
        return f"{v:.1f}"
    if unit == "" and float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3f}"


def load_note(m: dict[str, Any]) -> str:
    before, after = m.get("load_average_before"), m.get("load_average")
    if not before or not after:
        return ""
    return f"; load average (1 min) {before[0]:.1f} before, {after[0]:.1f} after"


def table(data: dict[str, Any]) -> str:
    lines = []
    m = data["meta"]
    v = m["versions"]
    lines.append(
        f"{m['date']}; {m['machine']}; Python {m['python']}; jupyter_client "
        f"{v['jupyter_client']}, jupyter_server {v['jupyter_server']}, ipykernel "
        f"{v['ipykernel']}, pyzmq {v['pyzmq']}, PySide6 {v['PySide6-Essentials']}, "
        f"qasync {v['qasync']}"
    )
    lines.append(
        f"transport {data['config']['transport']}"
        + (
            " (kernelmon, raw, bare: ipc; jupyter_server: tcp)"
            if data["config"]["transport"] == "default"
            else ""
        )
        + f"; reps {data['config']['reps']}"
        + (" (quick)" if data["config"]["quick"] else "")
        + load_note(m)
    )
    for w in data["config"]["workloads"]:
        spec = WORKLOADS[w]
        labels = [lb for lb in spec["labels"] if lb in data["samples"].get(w, {})]
        floor = spec["floor"] if spec["floor"] in labels else None
        head = ["figure", *labels]
        if "jupyter_server" in labels:
            head.append("km/js")
        if floor:
            head.append(f"km/{floor}")
        rows = [head]
        for metric, desc, unit in spec["rows"]:
            cells = data["summary"][w].get(metric, {})
            if not cells:
                continue
            row = [desc + (f" [{unit}]" if unit not in ("", "ok") else "")]
            for lb in labels:
                c = cells.get(lb)
                if c is None:
                    row.append("-")
                elif unit == "ok":
                    row.append(f"{c['ok']}/{c['n']}")
                elif c["n"] == 1:
                    row.append(fmt(c["median"], unit))
                else:
                    row.append(
                        f"{fmt(c['median'], unit)} [{fmt(c['min'], unit)}-{fmt(c['max'], unit)}]"
                    )
            r = data["ratios"][w].get(metric, {})
            if "jupyter_server" in labels:
                x = r.get("kernelmon/jupyter_server")
                row.append(f"{x:.2f}" if x is not None else "-")
            if floor:
                x = r.get(f"kernelmon/{floor}")
                row.append(f"{x:.2f}" if x is not None else "-")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines.append("")
        lines.append(spec["title"])
        for i, r in enumerate(rows):
            lines.append(
                "  ".join(
                    c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)
                )
            )
            if i == 0:
                lines.append("  ".join("-" * wd for wd in widths))
    if data.get("goals"):
        lines.append("")
        lines.append("Goals (medians)")
        for g in data["goals"]:
            lines.append(f"  {'met   ' if g['met'] else 'MISSED'}  {g['goal']}: {g['value']:.3f}")
    failures = sum(
        1 for by in data["samples"].values() for rs in by.values() for r in rs if not r.get("ok")
    )
    if failures:
        lines.append(f"\n{failures} measurement(s) failed; see the messages above.")
    if not data["meta"]["jupyter_server_present"]:
        lines.append("\njupyter_server was not run (not installed, or --no-peer).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small workloads, 1 repetition")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 1)")
    ap.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    ap.add_argument(
        "--workloads",
        default=",".join(ORDER),
        help=f"comma-separated subset of {','.join(ORDER)} (default: all)",
    )
    ap.add_argument(
        "--transport",
        choices=["default", "ipc", "tcp"],
        default="default",
        help="default: each manager's own (kernelmon ipc, jupyter_server tcp; raw and bare "
        "as kernelmon); ipc or tcp: the same for all",
    )
    ap.add_argument(
        "--bigflood-messages",
        type=int,
        metavar="N",
        help="messages in the big flood (default 1000000; quick 20000)",
    )
    ap.add_argument(
        "--bigflood-rate",
        type=float,
        metavar="R",
        help="messages per second the kernel publishes in the big flood (default 20000)",
    )
    ap.add_argument("--no-peer", action="store_true", help="do not run jupyter_server")
    ap.add_argument(
        "--contenders",
        metavar="A,B",
        help=f"only these contenders (of {','.join(LABELS)}; default: all)",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="print each raw result")
    args = ap.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 5
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(ORDER)
    if unknown:
        ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    if not have("jupyter_server"):
        print("jupyter_server is not installed: running without the peer.", file=sys.stderr)
    try:
        data = run_all(args)
    except KeyboardInterrupt:
        return 130
    summarise(data)
    print(table(data))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    failed = any(
        not r.get("ok") for by in data["samples"].values() for rs in by.values() for r in rs
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
