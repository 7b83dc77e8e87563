"""Errors the product raises on purpose: a stable reference, a message, a hint, an exit status.

Only `remediate.cli` renders them (`error: <reference>: <message>` then `hint: <hint>`); with
`--debug` the CLI re-raises them so the traceback shows.
"""

from __future__ import annotations

from remediate.status import ExitStatus


class RemediateError(Exception):
    """Base of every error meant for the operator."""

    reference = "remediate-error"
    exit_status = ExitStatus.ERROR

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        reference: str | None = None,
        exit_status: ExitStatus | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if reference is not None:
            self.reference = reference
        if exit_status is not None:
            self.exit_status = exit_status

    def __str__(self) -> str:
        return f"{self.reference}: {self.message}"


class InputError(RemediateError):
    """A value the operator (or the inventory) gave cannot be used."""

    reference = "bad-input"
    exit_status = ExitStatus.ERROR


class UsageError(InputError):
    """The command line itself is wrong."""

    reference = "usage-error"


class PreconditionError(RemediateError):
    """Something the run needs is missing or refusing; nothing was changed."""

    reference = "precondition-failed"
    exit_status = ExitStatus.PRECONDITION_FAILED
