"""Quiet runs: without the library warnings and tips a user can do nothing about.

``dfkd`` runs inside :func:`quiet_library_output` unless ``--debug`` is given. What it hides:
Lightning's advertising tips, the deprecation warnings libraries raise about each other's
APIs, and warnings that describe what the suite does on purpose (a frozen teacher in eval
mode). Everything else still shows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["HIDDEN_WARNINGS", "quiet_library_output"]

#: Regular expressions of the warning messages hidden in a normal run.
HIDDEN_WARNINGS: tuple[str, ...] = (
    r".*is deprecated",  # libraries' deprecation notices about each other (torch <-> lightning)
    r"Found \d+ module\(s\) in eval mode",  # the frozen teacher, on purpose
)
#: Log-record prefixes hidden from Lightning's loggers.
HIDDEN_LOG_PREFIXES: tuple[str, ...] = ("💡 Tip:",)
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


class _HideTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HIDDEN_LOG_PREFIXES)


@contextmanager
def quiet_library_output(enabled: bool = True) -> Iterator[None]:
    """Hide :data:`HIDDEN_WARNINGS` and Lightning's tips inside the block."""
    if not enabled:
        yield
        return
    hide = _HideTips()
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    handlers = [handler for logger in loggers for handler in logger.handlers]
    for target in [*loggers, *handlers]:
        target.addFilter(hide)
    try:
        with warnings.catch_warnings():
            for pattern in HIDDEN_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for target in [*loggers, *handlers]:
            target.removeFilter(hide)
