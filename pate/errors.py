"""The one exception type the library raises for bad input.

Library code never prints or exits. It raises :class:`PateError` with a one-line message that names the
file or option, the value found and the value expected; the CLI prints it and exits non-zero without a
traceback.
"""

from __future__ import annotations


class PateError(Exception):
    """A user-facing error: bad input, a refused operation, or a spent budget.

    ``exit_code`` lets the CLI tell kinds apart (2: bad input, 3: budget exhausted, 4: refused output).
    """

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BudgetExhausted(PateError):
    """The privacy budget does not allow one more answer."""

    exit_code = 3


class PrivateDataWarning(UserWarning):
    """A warning about the private data (for the operator only, never for a release). The library
    also returns these in its results; the CLI prints them itself, once, and silences this category."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`PateError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise PateError(message)
