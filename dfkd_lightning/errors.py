"""The errors a user fixes (a config value, a path, a checkpoint), as opposed to bugs.

The ``dfkd`` command prints a :class:`UserError` as its last lines, without a traceback, and
exits with status 2 (``--debug`` or ``DFKD_DEBUG=1`` shows the traceback). Anything else keeps
its traceback: it is a bug to report.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["ConfigError", "MissingFileError", "UserError", "causes", "find_user_error"]


class UserError(Exception):
    """Input the user fixes; the message says what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """A config value out of range or of the wrong kind."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the run needs is not there."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from or during, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def find_user_error(error: BaseException) -> UserError | None:
    """The outermost :class:`UserError` in ``error``'s chain (jsonargparse and Lightning wrap
    what a constructor raises), or None."""
    return next((cause for cause in causes(error) if isinstance(cause, UserError)), None)
