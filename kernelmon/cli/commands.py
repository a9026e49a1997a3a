"""The commands: each asks its ops of the kernelmon at work (see target.py) and prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .render import as_json, details, name_of, owner_of, sort_models, table
from .target import QUIT_WAIT, CommandError, Direct, Glance, Remote, connect

Target = Remote | Direct | Glance


def say(text: str) -> None:
    """A line for the user that is not the command's output (stderr, at once)."""
    print(text, file=sys.stderr, flush=True)


def label(model: dict[str, Any]) -> str:
    return f"{model.get('id')} ({name_of(model)}, {owner_of(model)})"


def confirm(args: argparse.Namespace, question: str) -> bool:
    """Ask on a terminal; ``--yes`` says yes; with no terminal and no ``--yes``, refuse."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise CommandError(
            f"kernelmon {args.command} asks before it acts and there is no terminal to ask "
            "on; add --yes to act without asking.",
            status=2,
            code="bad-request",
        )
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def list_kernels(target: Target, args: argparse.Namespace) -> int:
    models = target.call("list")["kernels"]
    if not args.all:
        models = [m for m in models if m.get("origin") != "stale"]
    models = sort_models(models, args.sort)
    print(as_json(models) if args.json else table(models))
    return 0


def show(target: Target, args: argparse.Namespace) -> int:
    model = target.call("show", id=args.id)["kernel"]
    print(as_json(model) if args.json else details(model))
    return 0


def interrupt(target: Target, args: argparse.Namespace) -> int:
    model = target.call("interrupt", id=args.id)["kernel"]
    print(f"Interrupted kernel {label(model)}.")
    return 0


def restart(target: Target, args: argparse.Namespace) -> int:
    model = target.call("show", id=args.id)["kernel"]
    if model.get("origin") == "owned" and "restart" not in (model.get("refusals") or {}):
        say(f"Restarting kernel {label(model)} through {target.where}…")
    reply = target.call("restart", id=model["id"])
    state = reply["kernel"].get("execution_state")
    print(f"Restarted kernel {model['id']} in {reply.get('seconds', 0):.1f} s; it is {state}.")
    return 0


def _what(item: dict[str, Any]) -> str:
    model = item["model"]
    if model.get("origin") == "stale":
        return f"  {label(model)}: remove its connection file {model.get('connection_file')}"
    why = item.get("warning") or "Its variables are lost."
    return f"  {label(model)}: {why}"


def _act(target: Target, op: str, plan: list[dict[str, Any]], **fields: Any) -> int:
    results = target.call(op, ids=[item["id"] for item in plan], **fields)["results"]
    failed = 0
    for result in results:
        if result.get("ok"):
            done = "Removed the connection file of" if result.get("cleaned") else "Stopped"
            print(f"{done} kernel {result['id']}.")
        else:
            failed += 1
            say(f"kernelmon: kernel {result['id']} was not stopped: {result.get('error')}")
    return 1 if failed else 0


def stop(target: Target, args: argparse.Namespace) -> int:
    plan = target.call("stop", ids=args.ids, dry_run=True)["kernels"]
    refused = [item for item in plan if item.get("refusal")]
    for item in refused:
        say(f"kernelmon: kernel {item['id']} is left alone: {item['refusal']}")
    plan = [item for item in plan if not item.get("refusal")]
    if not plan:
        return 1
    say(f"kernelmon {args.command} will shut down through {target.where}:")
    for item in plan:
        say(_what(item))
    if not confirm(args, f"Shut down {len(plan)} kernel(s)?"):
        say("Nothing was stopped.")
        return 1
    status = _act(target, "stop", plan)
    return 1 if refused else status


def cleanup(target: Target, args: argparse.Namespace) -> int:
    plan = target.call("cleanup", orphans=args.orphans, dry_run=True)["kernels"]
    if not plan:
        print("Nothing to clean up.")
        return 0
    say(f"kernelmon cleanup will, through {target.where}:")
    for item in plan:
        say(_what(item))
    orphans = [item for item in plan if item["model"].get("origin") == "orphan"]
    if orphans and not confirm(args, f"Shut down {len(orphans)} orphaned kernel(s)?"):
        say("Nothing was cleaned up.")
        return 1
    return _act(target, "cleanup", plan, orphans=args.orphans)


COMMANDS: dict[str, Callable[[Target, argparse.Namespace], int]] = {
    "list": list_kernels,
    "ls": list_kernels,
    "show": show,
    "interrupt": interrupt,
    "restart": restart,
    "stop": stop,
    "cleanup": cleanup,
}


def run(args: argparse.Namespace) -> int:
    """Run one command (not ``serve``) against the kernelmon at work; its exit status. A
    running kernelmon that is quitting (or another command at work) is waited for, then
    the command acts directly."""
    command = COMMANDS[args.command]
    read_only = command is list_kernels
    target = connect(args.runtime_dir, read_only=read_only)
    try:
        return command(target, args)
    except CommandError as e:
        if e.code != "quitting":
            raise
        say(f"kernelmon: {e} Waiting up to {QUIT_WAIT:g} s…")
    finally:
        target.close()
    target = connect(args.runtime_dir, wait=QUIT_WAIT, read_only=read_only)
    try:
        return command(target, args)
    finally:
        target.close()
