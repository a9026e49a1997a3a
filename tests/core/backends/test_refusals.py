"""What a backend refuses, in the kernel model (the UI shows these sentences as they are)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from kernelmon.core.backends.base import Action, KernelBackend
from kernelmon.core.backends.external import ExternalKernel
from kernelmon.core.backends.factory import BackendFactory
from kernelmon.core.errors import KernelDead, KernelmonError, NotRestartable
from kernelmon.core.records import ExecutionState, KernelRecord, Origin


def test_a_stale_kernel_can_only_be_cleaned_up():
    record = KernelRecord(id="k1", name="python3", origin=Origin.STALE)
    backend = BackendFactory().stale(record, "/nonexistent/kernel-k1.json")
    refusals = record.to_model()["refusals"]
    assert set(refusals) == {"interrupt", "restart", "connect"}
    assert "clean it up" in refusals["restart"]
    assert backend.refusal(Action.SHUTDOWN) is None


class RecordOnly(KernelBackend):
    """The base's own rules, nothing overridden (no process is touched by these tests)."""

    connection_info = {}  # type: ignore[assignment]

    async def interrupt(self) -> None: ...
    async def restart(self, timeout: float) -> None: ...
    async def shutdown(self, now: bool = False) -> None: ...
    async def is_alive(self) -> bool:
        return True


def test_refusals_follow_the_record_as_it_changes():
    record = KernelRecord(id="k2", name="python3", origin=Origin.EXTERNAL, parent_app="jupyter-lab")
    record.parent_pid = 4242
    RecordOnly(record)
    record.execution_state = ExecutionState.IDLE
    refusals = record.to_model()["refusals"]
    assert set(refusals) == {"restart"}
    assert "jupyter-lab (pid 4242) owns it" in refusals["restart"]
    record.execution_state = ExecutionState.DEAD
    refusals = record.to_model()["refusals"]
    assert "nothing to interrupt" in refusals["interrupt"]
    assert "dead" in refusals["connect"]


def test_a_record_without_a_backend_refuses_nothing():
    assert KernelRecord(id="k3", name="python3").to_model()["refusals"] == {}


# -- one decision, one sentence: what an action raises is what the model shows ------------


def raised_by(coro) -> KernelmonError:
    with pytest.raises(KernelmonError) as caught:
        asyncio.run(coro)
    return caught.value


def raises_what_it_shows(backend: KernelBackend) -> None:
    """Interrupt and restart, both refused, raise the model's sentences; the record's
    flags say so too."""
    refusals = backend.record.to_model()["refusals"]
    assert str(raised_by(backend.interrupt())) == refusals["interrupt"]
    restart = raised_by(backend.restart(1.0))
    assert isinstance(restart, NotRestartable)
    assert str(restart) == refusals["restart"]
    assert (backend.record.can_interrupt, backend.record.can_restart) == (False, False)


def test_a_stale_kernel_raises_the_sentence_its_model_shows():
    record = KernelRecord(id="k4", name="python3", origin=Origin.STALE)
    backend = BackendFactory().stale(record, "/nonexistent/kernel-k4.json")
    assert isinstance(raised_by(backend.interrupt()), KernelDead)
    raises_what_it_shows(backend)


def test_an_unadopted_kernel_can_only_be_killed_and_says_so():
    record = KernelRecord(id="k5", name="python3", execution_state=ExecutionState.PROBLEM)
    record.reason = "kernelmon could not adopt it: its kernel spec is gone"
    saved = {"id": "k5", "connection_file": "/nonexistent/kernel-k5.json"}
    backend = BackendFactory().unadopted(record, saved, {}, None, False, 1.0)
    refusals = record.to_model()["refusals"]
    assert set(refusals) == {"interrupt", "restart", "connect"}
    assert backend.refusal(Action.SHUTDOWN) is None
    assert "can only kill it" in refusals["restart"]
    raises_what_it_shows(backend)


def test_an_external_kernel_raises_the_restart_sentence_its_model_shows():
    record = KernelRecord(id="k6", name="python3", origin=Origin.ORPHAN)
    record.execution_state = ExecutionState.IDLE
    info = {"transport": "tcp", "ip": "127.0.0.1", "key": "k", "shell_port": 1}
    backend = ExternalKernel(record, "/nonexistent/kernel-k6.json", on_change=ignore, info=info)
    refusals = record.to_model()["refusals"]
    assert set(refusals) == {"restart"}
    assert "the application that started it is gone" in refusals["restart"]
    restart = raised_by(backend.restart(1.0))
    assert isinstance(restart, NotRestartable)
    assert str(restart) == refusals["restart"]
    assert record.can_restart is False
    assert backend.can_restart is False
    # the kernel's state decides the rest, for the model and the action alike
    record.execution_state = ExecutionState.DEAD
    refusals = record.to_model()["refusals"]
    interrupt = raised_by(backend.interrupt())
    assert isinstance(interrupt, KernelDead)
    assert str(interrupt) == refusals["interrupt"]
    assert backend.can_interrupt is False  # now
    assert record.can_interrupt is True  # the model's flag: its kind can be interrupted


def ignore(record: KernelRecord, fields: set[str], now: datetime | None) -> None:
    pass
