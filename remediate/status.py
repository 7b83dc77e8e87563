"""The one set of exit codes every subcommand returns (DESIGN section 3)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes. Scripts and schedulers rely on these numbers: never renumber."""

    SUCCESS = 0
    """Done, or nothing to do."""
    ERROR = 1
    """Bad input, bad usage, or an unexpected failure; nothing was changed."""
    PLAN_HAS_CHANGES = 2
    """`plan --detailed-exitcode`: the plan would change something."""
    VERIFICATION_FAILED = 3
    """Verification failed and the rollback restored the estate."""
    ROLLBACK_FAILED = 4
    """The rollback itself failed: a person must act (the report says what to restore)."""
    LOCKED = 5
    """Another run holds the site's lock."""
    OUTSIDE_WINDOW = 6
    """Outside the change window; nothing was touched."""
    PRECONDITION_FAILED = 7
    """A precondition failed (a host unreachable or refusing, a contradicting diagnosis);
    nothing was changed."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C / SIGINT)."""
