"""The desktop app: arguments, logging, QApplication, the qasync loop, core <-> UI wiring."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

# PySide6 before qasync: qasync picks the Qt binding that is already imported.
from PySide6.QtWidgets import QApplication

import qasync  # isort: skip

from . import __version__, paths
from .cli.logs import LOG_FORMAT, log_file_handler
from .cli.ops import register_ops
from .cli.parser import add_log_level, folder_args
from .core import KernelMap, Settings
from .core.instance import (
    InstanceError,
    InstanceLock,
    InstanceServer,
    NoAnswer,
    OpError,
    RunningInstance,
    claim_instance,
)
from .desktop import IN_TRAY
from .launch_errors import desktop_entry, tell
from .settings_file import load_settings, save_settings
from .ui.errors import ErrorReporter

logger = logging.getLogger(__name__)

#: How long a launch waits for a running kernelmon that is quitting to be gone.
QUIT_WAIT = 30.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelmon",
        description=(
            "A desktop monitor and manager for Jupyter kernels: start, watch, restart, "
            "interrupt, cull and shut down kernels, and see every kernel on the machine "
            "with its CPU and memory."
        ),
        epilog=(
            f"Settings are kept in {paths.settings_file()}, the log in {paths.log_file()}. "
            "kernelmon runs once per user: launched again, it hands its options to the "
            "running kernelmon, whose window comes to the front, and exits."
        ),
    )
    parser.add_argument(
        "--root-dir",
        metavar="FOLDER",
        help=(
            "folder under which kernels may work (default: the one used last time, else "
            "your home folder); it is remembered for later runs"
        ),
    )
    parser.add_argument(
        "--runtime-dir",
        metavar="FOLDER",
        action="append",
        default=[],
        help=(
            "also watch this folder for kernel connection files, for this run only (may be "
            "given more than once; folders to watch always are set in the app)"
        ),
    )
    add_log_level(parser)
    parser.add_argument(
        "--no-tray",
        action="store_true",
        help="do not show a system tray icon (closing the window then quits)",
    )
    parser.add_argument(
        IN_TRAY,
        action="store_true",
        help="start with the window hidden in the system tray, where there is one (as the "
        "login autostart does)",
    )
    desktop = parser.add_mutually_exclusive_group()
    desktop.add_argument(
        "--install-desktop-entry",
        action="store_true",
        help="add kernelmon to your applications menu (a .desktop file and its icon in "
        "$XDG_DATA_HOME, ~/.local/share by default) and exit",
    )
    desktop.add_argument(
        "--uninstall-desktop-entry",
        action="store_true",
        help="remove what --install-desktop-entry added, and kernelmon's login autostart "
        "entry ($XDG_CONFIG_HOME/autostart), and exit",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def setup_logging(level: str | None) -> logging.Handler | None:
    """Log to a rotating file in the log folder (else to stderr)."""
    level = level or "INFO"
    root = logging.getLogger()
    root.setLevel(level)
    handler: logging.Handler | None = None
    try:
        handler = log_file_handler()
    except OSError as e:
        print(f"kernelmon: cannot write the log file ({e}); logging to stderr", file=sys.stderr)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(level)
    root.addHandler(handler)
    return handler


async def run_app(
    kernel_map: KernelMap,
    settings_message: str | None,
    args: argparse.Namespace,
    user_settings: Settings | None = None,
    run_folders: Sequence[str] = (),
    instance: InstanceLock | None = None,
    instance_problem: str | None = None,
) -> int:
    from .ui.collector import MainThreadCollector
    from .ui.handover import stays_in_tray
    from .ui.main_window import MainWindow
    from .ui.notifier import Level

    collector = MainThreadCollector()  # Qt objects are never collected on a worker thread
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_REPORTER.loop_exception_handler)
    window = MainWindow(
        kernel_map,
        use_tray=not args.no_tray,
        user_settings=user_settings,
        run_folders=run_folders,
    )
    _REPORTER.window = window
    # Logging out or Ctrl+C in a terminal: quit without asking, shutting kernels down.
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, window.quit_without_asking, True)
        except (NotImplementedError, RuntimeError, ValueError):  # not on this platform
            pass
    if not stays_in_tray(window, args.in_tray):
        window.show()
    server: InstanceServer | None = None
    if instance is not None and instance.sock is not None:
        server = InstanceServer(instance, __version__)
        server.add_op("activate", lambda request: activate(window, request))
        register_ops(server, kernel_map)  # the command line acts through this window
        await server.start()
    window.commands.restore_and_monitor().add_done_callback(freeze_startup_objects)
    if settings_message:
        window.notifier.notify(Level.ERROR, "Settings", settings_message, dialog=True)
    if instance_problem:
        window.notifier.notify(
            Level.ERROR, "Another launch of kernelmon", instance_problem, dialog=True
        )
    try:
        await window.wait_finished()
    finally:
        if server is not None:
            await server.close()
        _REPORTER.window = None
        window.deleteLater()
        gc.unfreeze()  # what start-up left is garbage like any other now
        collector.stop()
    return 0


def forwarded_argv(
    args: argparse.Namespace, root_dir: str | None, run_folders: Sequence[str]
) -> list[str]:
    """The options of this launch for the running kernelmon, folders made absolute (they
    are this launch's, relative to its current folder)."""
    argv: list[str] = []
    if root_dir is not None:
        argv += ["--root-dir", root_dir]
    for folder in run_folders:
        argv += ["--runtime-dir", folder]
    if args.log_level:
        argv += ["--log-level", args.log_level]
    if args.no_tray:
        argv.append("--no-tray")
    if args.in_tray:
        argv.append(IN_TRAY)
    return argv


async def activate(window: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The ``activate`` op: another launch's options for this window, which is raised (not
    for ``--in-tray`` while its tray icon shows)."""
    argv = request.get("argv", [])
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise OpError("'argv' must be a list of strings.", code="bad-request")
    parser = build_parser()

    def refuse(message: str) -> NoReturn:  # instead of printing usage and exiting
        raise OpError(f"Cannot read the options {argv!r}: {message}.", code="bad-request")

    parser.error = refuse  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    if window.is_finished or window.quitting:
        raise OpError(
            f"kernelmon (pid {os.getpid()}) is quitting; launch it again once it has gone.",
            code="quitting",
        )
    launcher = request.get("pid")
    from .ui.handover import stays_in_tray, take_launch

    applied, ignored = take_launch(
        window,
        root_dir=args.root_dir,
        run_folders=list(args.runtime_dir),
        no_tray=args.no_tray,
        in_tray=args.in_tray,
        launcher_pid=launcher if isinstance(launcher, int) else None,
        log_level=args.log_level,
        apply_log_level=apply_log_level,
    )
    raised = not stays_in_tray(window, args.in_tray)
    return {"pid": os.getpid(), "raised": raised, "applied": applied, "ignored": ignored}


def apply_log_level(level: str) -> None:
    """Log at ``level`` from now on (the log file's handler too)."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        handler.setLevel(level)


def hand_over(running: RunningInstance, argv: list[str]) -> int | None:
    """Give this launch's options to the running kernelmon; the exit status, or None when
    the running kernelmon is quitting (this launch may start once it has gone)."""
    who = f"pid {running.pid}" if running.pid else "its process id is unknown"
    timeout = running.answer_timeout()
    try:
        reply = running.request("activate", timeout=timeout, argv=argv, pid=os.getpid())
    except NoAnswer as e:
        logger.error("The running kernelmon (%s) did not answer: %s", who, e)
        end = f"end it (kill {running.pid}) and " if running.pid else "end it and "
        tell(
            f"kernelmon is already running ({who}) but did not answer within {timeout:.0f} s; "
            "this launch stops rather than run a second copy beside it. If it hangs, "
            f"{end}launch kernelmon again."
        )
        return 1
    except InstanceError as e:
        logger.error("Cannot reach the running kernelmon: %s", e)
        tell(f"kernelmon: cannot reach the running kernelmon: {e}")
        return 1
    if reply.get("code") == "quitting":
        print(
            f"kernelmon ({who}) is quitting; this launch starts once it has gone.",
            file=sys.stderr,
        )
        return None
    if reply.get("ok") is not True:
        error = reply.get("error") or "no reason given"
        tell(f"kernelmon is already running ({who}) and refused this launch: {error}")
        return 1
    pid = reply.get("pid", running.pid)
    logger.info("kernelmon already runs (pid %s); handed this launch over to it", pid)
    shown = "its window was raised" if reply.get("raised", True) else "it stays in the tray"
    print(f"kernelmon is already running (pid {pid}); {shown}.", file=sys.stderr)
    return 0


def freeze_startup_objects(*_args: Any) -> None:
    """Move every object alive after start-up (modules, Qt wrappers, the window, restored
    kernels; some 50,000) out of the garbage collector's reach: they live as long as the
    app, and a full collection, which stops the event loop, no longer walks them. Under a
    flood of messages a full collection took 15-25 ms without this. Garbage is collected
    first so none is kept forever."""
    gc.collect()
    gc.freeze()
    logger.debug("Froze %d start-up objects", gc.get_freeze_count())


_REPORTER = ErrorReporter()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app; returns the exit status."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.install_desktop_entry or args.uninstall_desktop_entry:
        return desktop_entry(args.install_desktop_entry)
    handler = setup_logging(args.log_level)
    old_hook = sys.excepthook
    sys.excepthook = _REPORTER.excepthook
    instance: InstanceLock | None = None
    started = True
    try:
        try:
            root_dir, run_folders = folder_args(args)
        except ValueError as e:
            tell(f"kernelmon: {e}")
            return 2
        try:
            claimed = claim_instance()
            if isinstance(claimed, RunningInstance):
                status = hand_over(claimed, forwarded_argv(args, root_dir, run_folders))
                if status is not None:
                    started = False
                    return status
                claimed = claim_instance(wait=QUIT_WAIT)  # it is quitting: start after it
                if isinstance(claimed, RunningInstance):
                    started = False
                    tell(
                        f"kernelmon (pid {claimed.pid}) is still quitting after "
                        f"{QUIT_WAIT:.0f} s; launch kernelmon again once it has gone."
                    )
                    return 1
        except InstanceError as e:
            # another kernelmon may be running: two would fight over the same kernels
            started = False
            logger.error("Cannot make sure this is the only kernelmon: %s", e)
            tell(
                "kernelmon does not start, because it cannot make sure that no other "
                f"kernelmon is running (two would fight over the same kernels): {e}"
            )
            return 1
        instance = claimed
        instance_problem: str | None = None
        if claimed.problem:
            instance_problem = (
                "This is the only kernelmon running, but another launch cannot hand its "
                f"options over to it and is refused instead: {claimed.problem}"
            )
            print(f"kernelmon: {instance_problem}", file=sys.stderr)
        settings, message = load_settings(paths.settings_file(), root_dir)
        if root_dir is not None and message is None:
            problem = save_settings(settings, paths.settings_file())  # remember the folder
            if problem:
                message = problem
        logger.info("kernelmon %s starting; root folder %s", __version__, settings.root_dir)
        existing = QApplication.instance()
        app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
        app.setApplicationName("kernelmon")
        app.setApplicationVersion(__version__)
        app.setDesktopFileName("kernelmon")
        from .ui.icons import app_icon

        app.setWindowIcon(app_icon())
        # The window decides when to quit (it may ask about running kernels first).
        app.setQuitOnLastWindowClosed(False)
        from .ui.settings_controller import effective_settings

        kernel_map = KernelMap(effective_settings(settings, paused=False, run_folders=run_folders))
        with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
            return runner.run(
                run_app(
                    kernel_map,
                    message,
                    args,
                    settings,
                    tuple(run_folders),
                    instance,
                    instance_problem,
                )
            )
    except Exception as e:
        traceback.print_exc()
        logger.exception("kernelmon stopped on an error")
        tell(f"kernelmon stopped on an error: {type(e).__name__}: {e} (the log has the details)")
        return 1
    finally:
        if instance is not None:
            instance.release()
        sys.excepthook = old_hook
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
        if started:
            logger.info("kernelmon stopped")


if __name__ == "__main__":
    sys.exit(main())
