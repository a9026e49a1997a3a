"""Domain settings: what the culler, the buffer and the kernel checks do.

``Settings`` is an immutable dataclass that validates itself on creation, so a
``Settings`` object that exists is a usable one. Change settings with
``dataclasses.replace(settings, field=value)`` (validated again) and hand the
result to ``KernelMap.apply_settings``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .files import write_json_atomic

logger = logging.getLogger(__name__)

#: Written into saved files; a file with a higher version is read field by field.
SETTINGS_VERSION = 1
DEFAULT_CULL_INTERVAL = 300.0
#: The ranges of the numeric settings (inclusive). Intervals and timeouts end up in timers,
#: whose limits they must stay far from (a culler every 1e-9 s, or in 1e12 s, is a bug).
MIN_CULL_INTERVAL = 0.1
MAX_CULL_INTERVAL = 7 * 24 * 3600.0
MIN_SAMPLE_INTERVAL = 0.1
MAX_SAMPLE_INTERVAL = 3600.0
MIN_KERNEL_INFO_TIMEOUT = 0.1
MAX_KERNEL_INFO_TIMEOUT = 24 * 3600.0
#: Idle timeouts and job lengths: a year at most (0 turns them off).
MAX_DURATION = 365 * 24 * 3600.0
MAX_BUFFER_MESSAGES = 10_000_000
MAX_BUFFER_BYTES = 64 * 1024**3
#: 16 TiB in MiB.
MAX_MEMORY_MB = 16 * 1024 * 1024
#: At most this many message types in ``untracked_message_types``, each this long at most.
MAX_UNTRACKED = 256
MAX_MESSAGE_TYPE = 100
#: A settings file is a few KiB; anything beyond this is not one.
MAX_FILE_SIZE = 1024 * 1024

#: Message types that are not activity: a message moves a kernel's ``last_activity`` unless
#: both its type and its parent request's type are in this list (or the kernel is busy).
#: jupyter_server's ``MappingKernelManager.untracked_message_types`` default, plus the
#: ``usage_request``/``usage_reply`` its list lacks (resource-usage extensions send them
#: every few seconds, which must not keep an idle kernel alive).
UNTRACKED_MESSAGE_TYPES: tuple[str, ...] = (
    "comm_info_request",
    "comm_info_reply",
    "kernel_info_request",
    "kernel_info_reply",
    "shutdown_request",
    "shutdown_reply",
    "interrupt_request",
    "interrupt_reply",
    "debug_request",
    "debug_reply",
    "stream",
    "display_data",
    "update_display_data",
    "execute_input",
    "execute_result",
    "error",
    "status",
    "clear_output",
    "debug_event",
    "input_request",
    "input_reply",
    "usage_request",
    "usage_reply",
)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(name, value, "it must be a number of seconds")
    if math.isnan(value) or math.isinf(value):
        raise SettingsError(name, value, "it must be a finite number")
    return float(value)


def _whole(name: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(name, value, "it must be a whole number")
    if value < 0:
        raise SettingsError(name, value, "it must not be negative")
    if value > maximum:
        raise SettingsError(name, value, f"it must be at most {maximum:,}")
    return value


def _seconds(name: str, value: object, low: float, high: float) -> float:
    """A number of seconds from ``low`` to ``high``."""
    seconds = _number(name, value)
    if not low <= seconds <= high:
        raise SettingsError(name, value, f"it must be from {low:g} to {high:g} s")
    return seconds


def _off_or_seconds(name: str, value: object, high: float) -> float:
    """0 (off) or a number of seconds up to ``high``."""
    seconds = _number(name, value)
    if seconds < 0:
        raise SettingsError(name, value, "use 0 to turn off")
    if seconds > high:
        raise SettingsError(name, value, f"it must be at most {high:g} s (0 turns it off)")
    return seconds


def _message_types(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise SettingsError(name, value, "it must be a list of message types")
    if len(value) > MAX_UNTRACKED:
        raise SettingsError(name, value, f"it may name at most {MAX_UNTRACKED} message types")
    clean: list[str] = []
    for item in value:
        if (
            not isinstance(item, str)
            or not item.strip()
            or len(item) > MAX_MESSAGE_TYPE
            or not item.strip().replace("_", "").isalnum()
        ):
            raise SettingsError(
                name,
                value,
                f"each entry must be a message type (like kernel_info_request), not {item!r}",
            )
        if item.strip() not in clean:
            clean.append(item.strip())
    return tuple(clean)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(name, value, "it must be true or false")
    return value


@dataclass(frozen=True)
class Settings:
    """What kernelmon's core does with the kernels it manages.

    All durations are in seconds.
    """

    #: Folder under which every kernel's working folder must lie.
    root_dir: str = field(default_factory=os.getcwd)
    #: Shut down kernels idle for longer than this; 0 turns culling off.
    cull_idle_timeout: float = 0.0
    #: How often the culler looks for idle kernels.
    cull_interval: float = DEFAULT_CULL_INTERVAL
    #: Cull kernels that still have frontends connected.
    cull_connected: bool = False
    #: Cull kernels that are busy (running code).
    cull_busy: bool = False
    #: Keep messages for a frontend that disconnected, replay them when it reconnects.
    buffer_offline_messages: bool = True
    #: How long a starting or restarted kernel may take to answer kernel_info_request.
    kernel_info_timeout: float = 60.0
    #: At most this many messages are buffered per disconnected session (oldest dropped).
    buffer_max_messages: int = 10_000
    #: At most this many bytes are buffered per disconnected session (oldest dropped).
    buffer_max_bytes: int = 16 * 1024 * 1024
    #: Show kernels other applications started, found in the Jupyter runtime folder.
    discover_kernels: bool = True
    #: Folders watched for kernel connection files besides the Jupyter runtime folder.
    runtime_folders: tuple[str, ...] = ()
    #: Let the culler shut down orphaned kernels (their application is gone) too.
    cull_orphans: bool = False
    #: How often CPU and memory of every kernel's process tree are sampled.
    sample_interval: float = 2.0
    #: Warn when one kernel uses more memory (RSS, MiB) than this; 0 turns it off.
    memory_warn_kernel_mb: int = 0
    #: Warn when all kernels together use more memory (RSS, MiB) than this; 0 turns it off.
    memory_warn_total_mb: int = 0
    #: Tell when a kernel that was busy at least this long becomes idle; 0 turns it off.
    notify_job_seconds: float = 0.0
    #: Message types that are not activity (see ``UNTRACKED_MESSAGE_TYPES``).
    untracked_message_types: tuple[str, ...] = UNTRACKED_MESSAGE_TYPES

    # -- the console's scrollback --
    #: Lines a console window keeps; older ones are dropped, and counted at its top.
    console_scrollback_lines: int = 10_000

    # -- Jupyter servers and gateways --
    #: How often each server's kernels are listed (give or take a fifth, so that servers
    #: polled at the same interval do not fall into step).
    server_poll_interval: float = 5.0
    #: How long a server may take to answer one request (a restart: kernel_info_timeout).
    server_timeout: float = 10.0
    #: Where no system keyring exists: keep server tokens in a file only the user can read.
    server_token_file: bool = False

    def __post_init__(self) -> None:
        root = self.root_dir
        if not isinstance(root, str | os.PathLike):
            raise SettingsError("root_dir", root, "it must be a folder path")
        root_str = os.fspath(root)
        if not isinstance(root_str, str) or not root_str:
            raise SettingsError("root_dir", root, "it must be a folder path")
        root_abs = os.path.abspath(os.path.expanduser(root_str))
        if not os.path.isdir(root_abs):
            raise SettingsError("root_dir", root, "it is not an existing folder")
        object.__setattr__(self, "root_dir", root_abs)

        idle = _off_or_seconds("cull_idle_timeout", self.cull_idle_timeout, MAX_DURATION)
        object.__setattr__(self, "cull_idle_timeout", idle)
        interval = _seconds(
            "cull_interval", self.cull_interval, MIN_CULL_INTERVAL, MAX_CULL_INTERVAL
        )
        object.__setattr__(self, "cull_interval", interval)

        _flag("cull_connected", self.cull_connected)
        _flag("cull_busy", self.cull_busy)
        _flag("buffer_offline_messages", self.buffer_offline_messages)

        timeout = _seconds(
            "kernel_info_timeout",
            self.kernel_info_timeout,
            MIN_KERNEL_INFO_TIMEOUT,
            MAX_KERNEL_INFO_TIMEOUT,
        )
        object.__setattr__(self, "kernel_info_timeout", timeout)

        _whole("buffer_max_messages", self.buffer_max_messages, MAX_BUFFER_MESSAGES)
        _whole("buffer_max_bytes", self.buffer_max_bytes, MAX_BUFFER_BYTES)

        _flag("discover_kernels", self.discover_kernels)
        _flag("cull_orphans", self.cull_orphans)
        folders = self.runtime_folders
        if isinstance(folders, str | os.PathLike) or not isinstance(folders, list | tuple):
            raise SettingsError("runtime_folders", folders, "it must be a list of folder paths")
        clean: list[str] = []
        for folder in folders:
            if not isinstance(folder, str) or not folder.strip():
                raise SettingsError(
                    "runtime_folders", folders, f"each entry must be a folder path, not {folder!r}"
                )
            path = os.path.abspath(os.path.expanduser(folder))
            if path not in clean:
                clean.append(path)
        object.__setattr__(self, "runtime_folders", tuple(clean))
        sample = _seconds(
            "sample_interval", self.sample_interval, MIN_SAMPLE_INTERVAL, MAX_SAMPLE_INTERVAL
        )
        object.__setattr__(self, "sample_interval", sample)
        _whole("memory_warn_kernel_mb", self.memory_warn_kernel_mb, MAX_MEMORY_MB)
        _whole("memory_warn_total_mb", self.memory_warn_total_mb, MAX_MEMORY_MB)
        job = _off_or_seconds("notify_job_seconds", self.notify_job_seconds, MAX_DURATION)
        object.__setattr__(self, "notify_job_seconds", job)
        object.__setattr__(
            self,
            "untracked_message_types",
            _message_types("untracked_message_types", self.untracked_message_types),
        )

        # -- the console's scrollback --
        if _whole("console_scrollback_lines", self.console_scrollback_lines, 1_000_000) < 1:
            raise SettingsError(
                "console_scrollback_lines", self.console_scrollback_lines, "keep at least 1 line"
            )

        # -- Jupyter servers and gateways --
        poll = _seconds("server_poll_interval", self.server_poll_interval, 0.5, 3600.0)
        object.__setattr__(self, "server_poll_interval", poll)
        timeout = _seconds("server_timeout", self.server_timeout, 0.1, 600.0)
        object.__setattr__(self, "server_timeout", timeout)
        _flag("server_token_file", self.server_token_file)

    # -- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-safe dict (with the file format version)."""
        data: dict[str, Any] = {"version": SETTINGS_VERSION}
        data.update(dataclasses.asdict(self))
        data["runtime_folders"] = list(self.runtime_folders)
        data["untracked_message_types"] = list(self.untracked_message_types)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Build settings from a dict as ``to_dict`` writes it.

        Unknown keys are ignored with a log line; missing keys take their defaults; bad
        values, and a file from a newer format version, raise ``SettingsError``.
        """
        if not isinstance(data, dict):
            raise SettingsError("settings", data, "the file must hold a JSON object")
        version = data.get("version", SETTINGS_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SettingsError("version", version, "it must be a whole number from 1")
        if version > SETTINGS_VERSION:
            raise SettingsError(
                "version",
                version,
                f"the file was written by a newer kernelmon; this one reads version "
                f"{SETTINGS_VERSION}",
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"version"})
        if unknown:
            logger.info("Ignoring unknown settings: %s", ", ".join(unknown))
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Settings:
        """Read settings saved by ``save``.

        Raises ``FileNotFoundError`` when there is no file and ``SettingsError`` when the file
        cannot be read as settings.
        """
        p = Path(path)
        try:
            with p.open("rb") as f:
                raw = f.read(MAX_FILE_SIZE + 1)
            if len(raw) > MAX_FILE_SIZE:
                raise SettingsError(
                    "settings file", str(p), f"it is larger than {MAX_FILE_SIZE // 1024} KiB"
                )
            text = raw.decode("utf-8")
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError("settings file", str(p), f"it cannot be read ({e})") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SettingsError("settings file", str(p), f"it is not valid JSON ({e})") from e
        except (ValueError, RecursionError) as e:
            # a number of thousands of digits (ValueError) or absurdly deep nesting
            why = "it nests too deeply" if isinstance(e, RecursionError) else str(e)
            raise SettingsError("settings file", str(p), f"it is not usable JSON ({why})") from e
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the settings atomically (temporary file, fsync, rename).

        On failure the previous file is left as it was and ``OSError`` propagates.
        """
        write_json_atomic(Path(path), self.to_dict())
