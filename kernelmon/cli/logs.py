"""The log file the window and ``kernelmon serve`` both write: rotating, in the log folder."""

from __future__ import annotations

import logging
import logging.handlers

from .. import paths

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def log_file_handler() -> logging.Handler:
    """A handler writing the log file (its folder made; kept to 4 files of 1 MB), in
    ``LOG_FORMAT``; ``OSError`` when the file cannot be written."""
    paths.log_dir().mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        paths.log_file(), maxBytes=1_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler
