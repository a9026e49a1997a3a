"""When to cull a kernel: pure decisions, tested with a fake clock.

The rules are those of the classic notebook server's culler:

* culling is off while ``cull_idle_timeout`` is 0;
* a kernel is culled once it has been idle (no activity) for longer than the timeout;
* a busy kernel is spared unless ``cull_busy``;
* a kernel with connected frontends is spared unless ``cull_connected``;
* a dead kernel is always removed (there is nothing left to save);
* only kernels kernelmon started are culled, and orphans (kernels whose application is
  gone) too when ``cull_orphans`` is on; other applications' kernels are theirs;
* a Jupyter server's kernel only when the user allowed it for that server
  (``KernelMap.set_server_culling``), and only after the server was asked about it again
  (``ServerKernel.prove``); the server then shuts it down (``DELETE``). A server says
  "starting" of a kernel that answered long ago: that counts as idle, as for its own culler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .records import ExecutionState, KernelRecord, Origin
from .settings import Settings


@dataclass(frozen=True, slots=True)
class CullFacts:
    """What the decision looks at; a ``KernelRecord`` has all of it."""

    execution_state: str
    last_activity: datetime
    connections: int
    origin: Origin = Origin.OWNED
    #: a server's kernel: whether the user lets kernelmon's culler act on its server
    server_culling: bool = False


def _facts(kernel: KernelRecord | CullFacts) -> CullFacts:
    if isinstance(kernel, CullFacts):
        return kernel
    return CullFacts(
        kernel.execution_state,
        kernel.last_activity,
        kernel.connections,
        kernel.origin,
        kernel.server_culling,
    )


def _cullable_origin(facts: CullFacts, settings: Settings) -> bool:
    origin = facts.origin
    if origin == Origin.SERVER:
        return facts.server_culling
    return origin == Origin.OWNED or (origin == Origin.ORPHAN and settings.cull_orphans)


def _spared_because(facts: CullFacts, settings: Settings) -> str | None:
    """Why a kernel is never culled as it stands (regardless of time), or None."""
    if settings.cull_idle_timeout <= 0:
        return "culling is off"
    if not _cullable_origin(facts, settings):
        if facts.origin == Origin.ORPHAN:
            return "it is an orphan (culling orphans is off)"
        if facts.origin == Origin.SERVER:
            return "its server runs it (kernelmon culls a server's kernels only if allowed)"
        return f"it is {facts.origin} (not started by kernelmon)"
    if facts.execution_state == ExecutionState.BUSY and not settings.cull_busy:
        return "it is busy"
    if facts.connections > 0 and not settings.cull_connected:
        return "it has connections"
    if facts.origin != Origin.OWNED and facts.execution_state == ExecutionState.UNKNOWN:
        return "its state is unknown (it published no status since kernelmon found it)"
    if facts.execution_state == ExecutionState.PROBLEM:
        return "it could not be adopted (only its user may kill it)"
    if facts.execution_state == ExecutionState.RESTARTING or (
        # a server keeps "starting" in its model for a kernel that answered long ago
        # (jupyter_server 2, Enterprise Gateway 3); its own culler takes it for idle too
        facts.execution_state == ExecutionState.STARTING and facts.origin != Origin.SERVER
    ):
        return f"it is {facts.execution_state}"
    return None


def cull_reason(kernel: KernelRecord | CullFacts, settings: Settings, now: datetime) -> str | None:
    """Why this kernel should be culled now, or None if it should stay."""
    facts = _facts(kernel)
    if facts.execution_state == ExecutionState.DEAD and facts.origin == Origin.OWNED:
        return "the kernel is dead"
    if _spared_because(facts, settings) is not None:
        return None
    idle = (now - facts.last_activity).total_seconds()
    if idle > settings.cull_idle_timeout:
        state = "busy" if facts.execution_state == ExecutionState.BUSY else "idle"
        n = facts.connections
        conns = f", {n} connection{'' if n == 1 else 's'}" if n else ""
        return (
            f"{state} with no activity for {idle:.0f} s "
            f"(timeout {settings.cull_idle_timeout:g} s{conns})"
        )
    return None


def cull_eta(kernel: KernelRecord | CullFacts, settings: Settings, now: datetime) -> float | None:
    """Seconds until this kernel becomes cullable if nothing happens (0 if it is already),
    or None if the current rules never cull it. The culler acts on its next pass after."""
    facts = _facts(kernel)
    if cull_reason(facts, settings, now) is not None:
        return 0.0
    if _spared_because(facts, settings) is not None:
        return None
    idle = (now - facts.last_activity).total_seconds()
    return max(0.0, settings.cull_idle_timeout - idle)
