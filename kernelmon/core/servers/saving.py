"""Writing the servers file from the loop (the map's ``Servers`` part, part.py, and the kernel
starts, kernel_starts.py, keep their changes through it).

The file itself, and the tokens, are the book's (book.py); here is when it is written: in a
worker thread, one write at a time, each with the servers as they are when its turn comes (a
slow write never lands after a later one). A failed write is said (logged, in the book's
``problems``, and as the server's error in ``list_servers`` until a save succeeds), never
raised into the loop by ``saved``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from ..threads import run_in_thread

if TYPE_CHECKING:
    from .book import ServerBook
    from .watch import ServerWatch

logger = logging.getLogger(__name__)


class ServerSaves:
    """The servers file's writes (see the module).

    ``watches``: the servers kernelmon watches, by id (the file keeps those that are not
    local); ``book()``: the servers file and the tokens; ``announce(watch, text)``: tells the
    map that a server changed; ``background(coro)``: runs a coroutine as the part's task."""

    def __init__(
        self,
        watches: Mapping[str, ServerWatch],
        book: Callable[[], ServerBook],
        announce: Callable[[ServerWatch, str], None],
        background: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._watches = watches
        self._book = book
        self._announce = announce
        self._background = background
        self._writing = asyncio.Lock()
        #: server id -> why its last change is not in the servers file (a failed save)
        self._unsaved: dict[str, str] = {}

    def unsaved(self, server_id: str) -> str | None:
        """Why the server's last change is not in the servers file (None: it is)."""
        return self._unsaved.get(server_id)

    async def save(self) -> None:
        """Write the servers file (``OSError`` when it cannot be written). One write at a
        time, each of the servers as they are when its turn comes: a slow write never
        lands after a later one."""
        async with self._writing:
            configs = [w.config.saved() for w in self._watches.values() if not w.config.local]
            await run_in_thread(self._book().save, configs)
            self._unsaved.clear()

    async def saved(self, watch: ServerWatch | None = None, what: str = "") -> bool:
        """Write the servers file; never raises: a failure is logged, kept in the book's
        ``problems`` and shown as ``watch``'s error in ``list_servers`` (``what`` says
        what was not kept) until a save succeeds."""
        try:
            await self.save()
        except Exception as error:  # a full disk, a read-only folder: said, never raised
            book = self._book()
            sentence = f"The servers file {book.path} could not be written ({error})"
            if what:
                sentence += f": {what}"
            logger.error("%s", sentence)
            book.problems.append(sentence)
            if watch is not None and self._watches.get(watch.id) is watch:
                self._unsaved[watch.id] = sentence
                self._announce(watch, sentence)
            return False
        return True

    async def keep_or_log(self, watch: ServerWatch) -> None:
        """Keep a kernel started on the server in the file (a failure is said, not raised)."""
        if not watch.config.local:
            await self.saved(watch, "a kernel started there is followed only while kernelmon runs")

    def save_soon(self, watch: ServerWatch | None = None, what: str = "") -> None:
        """``saved`` in the background (the caller does not wait for the write)."""
        self._background(self.saved(watch, what))
