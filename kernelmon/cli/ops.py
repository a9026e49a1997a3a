"""The command line's ops on a ``KernelMap``: what ``kernelmon list``, ``stop`` ... ask.

One set of handlers serves both ways a command reaches the kernels: over the instance
socket of a running kernelmon (window or ``serve``: ``register_ops(server, kmap)``), and in
the command's own process when none runs (``handlers(kmap)``, called directly). Each
handler takes a request dict and returns the reply's fields or raises ``OpError`` with a
sentence and a code (``not-found``, ``ambiguous``, ``bad-request``, ``refused``,
``failed``). Kernel ids may be given as unique prefixes.

Nothing here imports Qt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core.errors import KernelmonError
from ..core.instance import InstanceServer, OpError
from ..ui.ownership import foreign_warning, is_foreign

if TYPE_CHECKING:
    from ..core.kernel_map import KernelMap

logger = logging.getLogger(__name__)

#: The ops this module adds (protocol version 1 of the instance socket; docs/cli.md).
OPS = ("list", "show", "interrupt", "restart", "stop", "cleanup")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def model(kmap: KernelMap, kernel_id: str) -> dict[str, Any]:
    """The core's model of a kernel plus ``cull_eta`` (seconds until the culler may take
    it; None when its rules spare it)."""
    found = dict(kmap.kernel_model(kernel_id))
    found["cull_eta"] = kmap.cull_eta(kernel_id)
    return found


def resolve(kmap: KernelMap, given: object) -> str:
    """The id of the one kernel whose id is ``given`` or starts with it."""
    if not isinstance(given, str) or not given:
        raise OpError("A kernel id (or the start of one) is needed.", code="bad-request")
    if given in kmap:
        return given
    matches = sorted(k for k in kmap if k.startswith(given))
    if not matches:
        raise OpError(f"No kernel's id starts with {given!r}.", code="not-found")
    if len(matches) > 1:
        raise OpError(
            f"{given!r} is the start of {len(matches)} kernels' ids ({', '.join(matches)}); "
            "give more of the id.",
            code="ambiguous",
        )
    return matches[0]


def other_kernelmon(found: dict[str, Any]) -> str | None:
    """Why a kernel another running kernelmon recorded is not this one's to act on."""
    if found.get("origin") == "external" and found.get("parent_app") == "kernelmon":
        pid = found.get("parent_pid")
        return f"Another kernelmon (pid {pid}) started this kernel and runs; it alone acts on it."
    return None


def warning(found: dict[str, Any]) -> str | None:
    """The warning before shutting down a kernel kernelmon did not start (the window's)."""
    return foreign_warning(found, "shutting it down") if is_foreign(found) else None


def _ids(request: dict[str, Any]) -> list[Any]:
    ids = request.get("ids")
    if not isinstance(ids, list) or not ids:
        raise OpError("'ids' must be a non-empty list of kernel ids.", code="bad-request")
    return ids


def _refuse_foreign_kernelmon(found: dict[str, Any]) -> None:
    why = other_kernelmon(found)
    if why is not None:
        raise OpError(why, code="refused")


async def _stop_one(kmap: KernelMap, kernel_id: str) -> dict[str, Any]:
    try:
        found = model(kmap, kernel_id)
        _refuse_foreign_kernelmon(found)
        await kmap.shutdown_kernel(kernel_id)
    except OpError as e:
        return {"id": kernel_id, "ok": False, "error": str(e)}
    except KernelmonError as e:  # KernelNotFound too: gone meanwhile
        return {"id": kernel_id, "ok": False, "error": str(e)}
    except Exception as e:
        logger.exception("Stopping kernel %s failed", kernel_id)
        return {"id": kernel_id, "ok": False, "error": f"Stopping it failed: {e}"}
    cleaned = found.get("origin") == "stale"
    return {"id": kernel_id, "ok": True, "cleaned": cleaned}


def _plan(kmap: KernelMap, ids: list[str]) -> list[dict[str, Any]]:
    plan = []
    for kid in ids:
        found = model(kmap, kid)
        plan.append(
            {
                "id": kid,
                "model": found,
                "warning": warning(found),
                "refusal": other_kernelmon(found),
            }
        )
    return plan


def handlers(kmap: KernelMap) -> dict[str, Handler]:
    """The ops on ``kmap``, by name."""

    async def list_op(request: dict[str, Any]) -> dict[str, Any]:
        return {"kernels": [model(kmap, k) for k in list(kmap)]}

    async def show_op(request: dict[str, Any]) -> dict[str, Any]:
        return {"kernel": model(kmap, resolve(kmap, request.get("id")))}

    async def interrupt_op(request: dict[str, Any]) -> dict[str, Any]:
        kid = resolve(kmap, request.get("id"))
        found = model(kmap, kid)
        _refuse_foreign_kernelmon(found)
        refusal = found.get("refusals", {}).get("interrupt")
        if refusal:
            raise OpError(refusal, code="refused")
        try:
            await kmap.interrupt_kernel(kid)
        except KernelmonError as e:
            raise OpError(str(e), code="failed") from e
        return {"kernel": model(kmap, kid)}

    async def restart_op(request: dict[str, Any]) -> dict[str, Any]:
        kid = resolve(kmap, request.get("id"))
        found = model(kmap, kid)
        refusal = found.get("refusals", {}).get("restart")
        if found.get("origin") != "owned" or refusal:
            raise OpError(
                refusal or f"kernelmon did not start kernel {kid}, so it cannot restart it.",
                code="refused",
            )
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await kmap.restart_kernel(kid)
        except KernelmonError as e:
            raise OpError(str(e), code="failed") from e
        return {"kernel": model(kmap, kid), "seconds": round(loop.time() - began, 3)}

    async def stop_op(request: dict[str, Any]) -> dict[str, Any]:
        ids = list(dict.fromkeys(resolve(kmap, given) for given in _ids(request)))
        if request.get("dry_run") is True:
            return {"kernels": _plan(kmap, ids)}
        results = await asyncio.gather(*(_stop_one(kmap, kid) for kid in ids))
        return {"results": list(results)}

    async def cleanup_op(request: dict[str, Any]) -> dict[str, Any]:
        origins = ("stale", "orphan") if request.get("orphans") is True else ("stale",)
        ids = [k for k in list(kmap) if kmap.kernel_model(k).get("origin") in origins]
        if "ids" in request:  # only those listed to the user (and still stale or orphans)
            ids = [k for k in ids if k in _ids(request)]
        if request.get("dry_run") is True:
            return {"kernels": _plan(kmap, ids)}
        results = await asyncio.gather(*(_stop_one(kmap, kid) for kid in ids))
        return {"results": list(results)}

    return {
        "list": list_op,
        "show": show_op,
        "interrupt": interrupt_op,
        "restart": restart_op,
        "stop": stop_op,
        "cleanup": cleanup_op,
    }


def register_ops(server: InstanceServer, kmap: KernelMap) -> None:
    """Serve the command line's ops on ``kmap`` over the instance socket (the window and
    ``kernelmon serve`` call this once, after making the server)."""
    for name, handler in handlers(kmap).items():
        server.add_op(name, handler)
