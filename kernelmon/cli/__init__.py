"""kernelmon on the command line: ``kernelmon list``, ``show``, ``interrupt``, ``restart``,
``stop``, ``cleanup`` and ``serve`` (headless). Nothing here imports Qt.

``entry`` is the ``kernelmon`` executable: with a command it runs the command line, without
one it opens the window (``kernelmon.app.main``, imported only then).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from .parser import build_parser, commands_help
from .render import sentence
from .target import CommandError

logger = logging.getLogger(__name__)

#: The first argument that makes ``kernelmon`` a command rather than the window.
COMMANDS = ("list", "ls", "show", "interrupt", "restart", "stop", "cleanup", "serve")
HEADLESS = "--headless"


def is_command(argv: Sequence[str]) -> bool:
    return bool(argv) and (argv[0] in COMMANDS or HEADLESS in argv)


def entry(argv: Sequence[str] | None = None) -> int:
    """The ``kernelmon`` executable: a command, or (no command) the window."""
    args = list(sys.argv[1:] if argv is None else argv)
    if is_command(args):
        return main(args)
    try:
        from ..app import main as window  # imports Qt: only for the window
    except ImportError as e:  # no Qt, or its system libraries are missing
        if args in (["-h"], ["--help"]):
            build_parser().print_help()
            return 0
        print(
            f"kernelmon cannot open its window ({e}); the commands work without it: "
            "kernelmon list, kernelmon serve (kernelmon --help lists them all).",
            file=sys.stderr,
        )
        return 1

    if args in (["-h"], ["--help"]):
        try:
            return window(args)
        finally:  # argparse exits after the window's options: the commands follow them
            print(f"\n{commands_help()}")
    return window(args)


def main(argv: Sequence[str]) -> int:
    """Run one command; the exit status (0 done, 1 failed, 2 usage, 3 not found). Errors
    are one sentence on stderr, never a traceback."""
    argv = list(argv)
    if HEADLESS in argv:
        argv = ["serve", *(a for a in argv if a != HEADLESS)]
    args = build_parser().parse_args(argv)  # usage errors: argparse exits with 2
    try:
        if args.command == "serve":
            from .serve import serve

            return serve(args)
        from .commands import run

        # the core's warnings (a file it cannot watch...) are the window's and the log's
        # business; a command says what it did, in sentences of its own
        logging.getLogger().addHandler(logging.NullHandler())
        return run(args)
    except CommandError as e:
        print(f"kernelmon: {sentence(e)}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("kernelmon: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (``kernelmon list | head``): nothing to say
        with contextlib.suppress(OSError):  # nor to flush at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except Exception as e:
        logger.debug("The command failed", exc_info=True)
        print(f"kernelmon: the command failed inside kernelmon: {e}", file=sys.stderr)
        return 1
