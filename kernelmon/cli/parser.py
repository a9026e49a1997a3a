"""The command line's arguments (argparse; usage errors exit with status 2)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    from ..core.settings import Settings

EPILOG = (
    "While a kernelmon runs (the window or 'kernelmon serve'), the commands act through it, "
    "so that its kernels are stopped by their owner; otherwise they act directly. Exit "
    "status: 0 done, 1 the action failed, 2 usage (also an ambiguous id), 3 no such kernel."
)
#: One line per command, for its entry in the help.
SUMMARY = {
    "list": "list every kernel on the machine",
    "show": "show one kernel's details",
    "interrupt": "interrupt the code a kernel runs",
    "restart": "restart a kernel kernelmon started",
    "stop": "shut kernels down",
    "cleanup": "remove the connection files of dead kernels",
    "serve": "run kernelmon without a window (also: kernelmon --headless)",
}
ID_HELP = "a kernel's id, or the start of it (unique among the kernels listed)"


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """``--log-level``, as the window and ``serve`` take it."""
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to write to the log file (default: INFO)",
    )


def folder_args(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """``--root-dir`` and ``--runtime-dir`` (of the window or ``serve``) made absolute;
    ``ValueError`` naming one that is not a folder."""
    root = os.path.abspath(os.path.expanduser(args.root_dir)) if args.root_dir else None
    if root is not None and not os.path.isdir(root):
        raise ValueError(f"--root-dir {args.root_dir!r} is not a folder.")
    folders = [os.path.abspath(os.path.expanduser(f)) for f in args.runtime_dir]
    for given, folder in zip(args.runtime_dir, folders, strict=True):
        if not os.path.isdir(folder):
            raise ValueError(f"--runtime-dir {given!r} is not a folder.")
    return root, folders


def with_runtime_folders(settings: Settings, folders: Sequence[str]) -> Settings:
    """``settings`` also watching the ``--runtime-dir`` folders given (for this run only)."""
    extra = tuple(f for f in folders if f not in settings.runtime_folders)
    if not extra:
        return settings
    return dataclasses.replace(settings, runtime_folders=settings.runtime_folders + extra)


def add_command(
    sub: Any, name: str, description: str, aliases: Sequence[str] = ()
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, aliases=list(aliases), help=SUMMARY[name], description=description, epilog=EPILOG
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelmon",
        description=(
            "Jupyter kernels on the command line: list every kernel on the machine, show, "
            "interrupt, restart and stop them, clean up what is left of dead ones, or run "
            "kernelmon headless (no window). Without a command, kernelmon opens its window."
        ),
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ls = add_command(
        sub,
        "list",
        (
            "List every kernel on the machine: short id, name (working folder), kernel "
            "spec, owner (kernelmon, the application that started it, orphan), state, "
            "CPU (100%% = one core), memory (RSS of its process tree), last activity and "
            "when the culler will shut it down."
        ),
        aliases=["ls"],
    )
    ls.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of the kernels' models (fields: see docs/cli.md)",
    )
    ls.add_argument(
        "--all", action="store_true", help="also list stale connection files (no process)"
    )
    ls.add_argument(
        "--sort",
        choices=["mem", "cpu", "activity"],
        help="largest memory or CPU, or latest activity first (default: oldest start first)",
    )

    show = add_command(
        sub,
        "show",
        (
            "Show one kernel: process and its tree's size, resources, connection file, "
            "transport, parent application or Jupyter server, and why it is dead, "
            "unverifiable or cannot be acted on."
        ),
    )
    show.add_argument("id", metavar="ID", help=ID_HELP)
    show.add_argument("--json", action="store_true", help="print the kernel's model as JSON")

    interrupt = add_command(
        sub, "interrupt", "Interrupt the code a kernel runs (as the window's Interrupt does)."
    )
    interrupt.add_argument("id", metavar="ID", help=ID_HELP)

    restart = add_command(
        sub,
        "restart",
        (
            "Restart a kernel kernelmon started (same id and folder; its variables are "
            "lost); returns once the new process answers. Other applications' kernels "
            "are refused: restart them from their application."
        ),
    )
    restart.add_argument("id", metavar="ID", help=ID_HELP)

    stop = add_command(
        sub,
        "stop",
        (
            "Shut kernels down (shutdown request, then SIGTERM, then SIGKILL to the "
            "kernel's process group); for a stale connection file, remove it. Kernels "
            "other applications started are named with their owner first. Asks on a "
            "terminal; without one it needs --yes."
        ),
    )
    stop.add_argument("ids", metavar="ID", nargs="+", help=ID_HELP)
    stop.add_argument("-y", "--yes", action="store_true", help="do not ask")

    cleanup = add_command(
        sub,
        "cleanup",
        (
            "Remove what dead kernels left behind (stale connection files: no process "
            "runs for them; a file is removed only when kernelmon can prove its kernel is "
            "gone). With --orphans, also shut down orphans (kernels whose application is "
            "gone), after listing them; that asks on a terminal, and without one needs "
            "--yes."
        ),
    )
    cleanup.add_argument("--orphans", action="store_true", help="also shut down orphaned kernels")
    cleanup.add_argument("-y", "--yes", action="store_true", help="do not ask")

    serve = add_command(
        sub,
        "serve",
        (
            "Run kernelmon without a window (no Qt needed): take over the kernels of an "
            "earlier kernelmon run, watch every kernel on the machine, cull as the settings "
            "say, and answer the commands above. Logs to the log folder. On SIGTERM or "
            "SIGINT it shuts down the kernels it owns (as the window does when it quits "
            "that way) and stops; other applications' kernels keep running."
        ),
    )
    serve.add_argument(
        "--root-dir",
        metavar="FOLDER",
        help="folder under which kernels may work (default: the one in the settings)",
    )
    serve.add_argument(
        "--runtime-dir",
        metavar="FOLDER",
        action="append",
        default=[],
        help="also watch this folder for kernel connection files (may be repeated)",
    )
    add_log_level(serve)
    serve.add_argument(
        "--leave-kernels",
        action="store_true",
        help=(
            "on SIGTERM/SIGINT leave the kernels it owns running (the next kernelmon "
            "takes them over) instead of shutting them down"
        ),
    )
    for command in (ls, show, interrupt, restart, stop, cleanup):
        command.add_argument(
            "--runtime-dir",
            metavar="FOLDER",
            action="append",
            default=[],
            help=(
                "with no kernelmon running, also look in this folder for kernel "
                "connection files (may be repeated)"
            ),
        )
    return parser


def commands_help() -> str:
    """The commands in a few lines, for the end of the window's ``--help``."""
    lines = [f"  {name:<10} {text}" for name, text in SUMMARY.items()]
    return "\n".join(["commands (kernelmon COMMAND --help for each):", *lines])
