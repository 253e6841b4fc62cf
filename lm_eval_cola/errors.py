"""User errors: bad input that deserves one clear line, not a traceback."""

from __future__ import annotations

import sys
from types import TracebackType


class UserError(ValueError):
    """Bad input from the user. The message is one line that names the bad value and
    what is allowed."""


def _excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if isinstance(error, UserError):
        print(f"error: {error}", file=sys.stderr)
        return
    _previous(kind, error, tb)


_previous = sys.excepthook


def install_excepthook() -> None:
    """Make an uncaught UserError print one line (the exit status stays 1), also under
    the plain ``lm_eval`` command, whose main we do not own."""
    if sys.excepthook is not _excepthook:
        global _previous
        _previous = sys.excepthook
        sys.excepthook = _excepthook
