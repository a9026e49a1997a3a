"""Errors raised by the core, each with a message a person can act on."""

from __future__ import annotations


class KernelmonError(Exception):
    """Base class of every error the core raises on purpose."""


class KernelNotFound(KernelmonError, KeyError):
    """No kernel with this id is known."""

    def __init__(self, kernel_id: str) -> None:
        super().__init__(kernel_id)
        self.kernel_id = kernel_id

    def __str__(self) -> str:  # KeyError would repr() the argument
        return f"No kernel with id {self.kernel_id!r} is known to kernelmon."


class SettingsError(KernelmonError, ValueError):
    """A setting has a value kernelmon cannot use."""

    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"Setting {field!r} cannot be {value!r}: {why}")
        self.field = field
        self.value = value
        self.why = why


class KernelSpecNotFound(KernelmonError, LookupError):
    """The kernel spec asked for is not installed."""

    def __init__(self, kernel_name: str, available: list[str]) -> None:
        names = ", ".join(sorted(available)) or "none"
        super().__init__(
            f"No kernel spec named {kernel_name!r} is installed (installed: {names}). "
            "Install it (e.g. `python -m ipykernel install --user --name NAME`) or pick another."
        )
        self.kernel_name = kernel_name
        self.available = available


class PathOutsideRoot(KernelmonError, ValueError):
    """An API path would put a kernel's working folder outside the root folder."""

    def __init__(self, path: str, root_dir: str) -> None:
        super().__init__(
            f"The path {path!r} leaves the root folder {root_dir!r}; "
            "kernels can only work in folders under it."
        )
        self.path = path
        self.root_dir = root_dir


class KernelStartFailed(KernelmonError, RuntimeError):
    """A kernel could not be started (its process exited, or it never answered)."""


class KernelStartTimeout(KernelStartFailed, TimeoutError):
    """A new kernel did not answer a kernel_info_request in time."""


class RestartFailed(KernelmonError, RuntimeError):
    """A restarted kernel died before it answered."""


class RestartRefused(RestartFailed):
    """A restart was refused before anything changed: the kernel runs on as it was."""


class RestartTimeout(KernelmonError, TimeoutError):
    """A restarted kernel did not answer a kernel_info_request in time."""


class ActionRefused(KernelmonError, RuntimeError):
    """The kernel's backend refuses the action now; the message is its ``refusal`` sentence,
    the one the kernel model's ``refusals`` shows."""


class KernelDead(ActionRefused):
    """The action needs a live kernel, and this one is dead."""


class NotRestartable(ActionRefused):
    """kernelmon cannot restart this kernel (it did not start it, or it is going away)."""
