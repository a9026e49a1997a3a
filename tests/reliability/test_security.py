"""Kernels are private to their user: IPC sockets, 0600 files, signed messages, no leaked keys."""

from __future__ import annotations

import json
import logging
import os
import stat

from kernelmon.core.events import KernelEvent


def test_local_kernels_use_private_ipc_sockets(aio, kmap):
    kid = aio.run(kmap.start_kernel())
    backend = kmap.backend(kid)
    with open(backend.connection_file) as f:
        info = json.load(f)
    assert info["transport"] == "ipc"
    assert info["key"]  # signing on, never an empty key
    assert info["signature_scheme"] == "hmac-sha256"
    for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
        sock = f"{info['ip']}-{info[name]}"
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
    folder = os.path.dirname(backend.connection_file)
    assert os.stat(backend.connection_file).st_mode & 0o777 == 0o600
    assert os.stat(folder).st_mode & 0o077 == 0  # only the owner may enter
    aio.run(kmap.shutdown_kernel(kid))
    for name in ("shell_port", "iopub_port"):
        assert not os.path.exists(f"{info['ip']}-{info[name]}")


def test_tcp_binds_loopback_only(aio, root):
    from kernelmon.core import KernelMap, Settings

    km = KernelMap(Settings(root_dir=str(root)), transport="tcp")
    kid = aio.run(km.start_kernel())
    info = km.backend(kid).connection_info
    assert info["transport"] == "tcp"
    assert info["ip"] == "127.0.0.1"
    aio.run(km.close())


def test_no_key_in_logs_or_events(aio, kmap, caplog):
    events: list[KernelEvent] = []
    unsubscribe = kmap.subscribe(events.append)
    with caplog.at_level(logging.DEBUG, logger="kernelmon"):
        kid = aio.run(kmap.start_kernel())
        key = kmap.backend(kid).connection_info["key"]
        key = key.decode() if isinstance(key, bytes) else key
        aio.run(kmap.restart_kernel(kid))
        aio.run(kmap.interrupt_kernel(kid))
        aio.run(kmap.shutdown_kernel(kid))
    unsubscribe()
    assert len(key) >= 32
    assert caplog.records
    assert all(key not in r.getMessage() for r in caplog.records)
    assert all(key not in repr(e) for e in events)
