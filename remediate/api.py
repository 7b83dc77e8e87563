"""The facade that the CLI (and, later, the Ansible modules) call.

Each function validates its input, raises `RemediateError`s with a reference, a message and a
hint, and returns plain data (`remediate.diagnose.Diagnosis`, `remediate.engine.Plan`,
`remediate.engine.RunReport`, `remediate.journal.RunRecord`); nothing here writes to a terminal.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from remediate import engine
from remediate.diagnose import Diagnosis, diagnose_events
from remediate.dn import validate_dn
from remediate.errors import InputError
from remediate.genesys.logs import LogEvent, read_logs
from remediate.inventory import load_site
from remediate.journal import RunRecord, list_runs, read_run
from remediate.live import diagnose_site
from remediate.state import StateDir, resolve_state_dir
from remediate.verification.runner import (
    DEFAULT_TIMEOUT_SECONDS,
    VerificationResult,
    run_verification,
)

_SNIFF_BYTES = 64 * 1024
NO_HOOKS = engine.Hooks()


def diagnose_logs(
    paths: Sequence[str | os.PathLike[str]],
    dns: Sequence[str],
    since: datetime | None = None,
) -> Diagnosis:
    """Diagnose each DN from SIP Server log segments (any order; they are sorted by the time
    stamp in their names). `since` is the SIP Server host's local time: earlier lines are ignored.
    """
    wanted = list(dict.fromkeys(validate_dn(dn) for dn in dns))
    if not wanted:
        raise InputError("no DN to diagnose", reference="bad-dn", hint="give --dn 5001")
    if not paths:
        raise InputError(
            "no log file given", reference="log-missing", hint="give --log SIP_P-001.<stamp>.log"
        )
    files = [check_log_file(path) for path in paths]
    counted = _Counted(read_logs(files))
    diagnosis = diagnose_events(_since(counted, since), wanted, since=since, sources=files)
    if counted.total == 0:
        raise InputError(
            f"{', '.join(files)}: no SIP Server header or log line found",
            reference="log-not-recognized",
            hint="give the SIP Server's own log segments, e.g. D:\\gcti_logs\\SIP_P\\"
            "SIP_P-001.20260202_135459_850.log",
        )
    return diagnosis


def parse_since(text: str) -> datetime:
    """`--since`: ISO 8601 local time of the SIP Server host, e.g. 2026-02-02T13:55."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"{text!r} is not a date and time",
            reference="bad-since",
            hint="give the SIP Server host's local time in ISO 8601, e.g. --since 2026-02-02T13:55",
        ) from None
    if moment.tzinfo is not None:
        raise InputError(
            f"{text!r} carries a UTC offset; log times are the SIP Server host's local time",
            reference="bad-since",
            hint="drop the offset and give the host's local time, e.g. --since 2026-02-02T13:55",
        )
    return moment


def check_log_file(path: str | os.PathLike[str]) -> str:
    """The path, if it is a readable, non-empty text file; else an `InputError` saying why."""
    name = os.fspath(path)
    candidate = Path(name)
    hint = "give a SIP Server log segment, e.g. --log SIP_P-001.20260202_135459_850.log"
    if candidate.is_dir():
        raise InputError(f"{name} is a directory", reference="log-is-directory", hint=hint)
    try:
        with candidate.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file", reference="log-not-found", hint=hint) from None
    except OSError as error:
        raise InputError(
            f"{name}: cannot be read ({error.strerror or error})",
            reference="log-unreadable",
            hint="check the file's permissions",
        ) from None
    if not head:
        raise InputError(
            f"{name} is empty",
            reference="log-empty",
            hint="the segment may have just been opened; give the previous one as well",
        )
    if b"\0" in head:
        raise InputError(
            f"{name} is not a text file (it contains NUL bytes)",
            reference="log-not-text",
            hint="give the SIP Server's .log segment itself, not an archive or a capture",
        )
    return name


class _Counted:
    """Passes events through, counting them (to tell a log from a file that is not one)."""

    def __init__(self, events: Iterable[LogEvent]) -> None:
        self._events = events
        self.total = 0

    def __iter__(self) -> Iterator[LogEvent]:
        for event in self._events:
            self.total += 1
            yield event


def _since(events: Iterable[LogEvent], since: datetime | None) -> Iterator[LogEvent]:
    """The events at or after `since` (events without a time are kept: they cannot be placed)."""
    for event in events:
        if since is None or event.time is None or event.time >= since:
            yield event


def diagnose_live(
    inventory: Path | None,
    site: str | None,
    dns: Sequence[str],
    since: str | None = None,
    capture_seconds: float | None = None,
    vault_password_file: Path | None = None,
) -> Diagnosis:
    """Diagnose each DN from the live estate of one site of the inventory (read-only): see
    `remediate.live`. Unreachable or refusing hosts raise errors with exit status 7."""
    return diagnose_site(inventory, site, list(dns), since, capture_seconds, vault_password_file)


# The change transaction ----------------------------------------------------------------------


def _state(state_dir: Path | None, environ: Mapping[str, str]) -> StateDir:
    return StateDir.open(resolve_state_dir(state_dir, environ))


def _targets(dns: Sequence[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(validate_dn(dn) for dn in dns))
    if not wanted:
        raise InputError("no DN given", reference="bad-dn", hint="give --dn 5001")
    return wanted


def plan(
    inventory: Path | None,
    site: str | None,
    options: engine.Options,
    hooks: engine.Hooks = NO_HOOKS,
) -> engine.Plan:
    """What `apply` would change for `options.dns` (the fix's playbook in check mode, after the
    same preflight as apply); nothing is changed and no run is recorded."""
    options = replace(options, dns=_targets(options.dns))
    loaded = load_site(inventory, site, vault_password_file=options.vault_password_file)
    with tempfile.TemporaryDirectory(prefix="remediate-plan-") as work:
        return engine.make_plan(loaded, options, hooks, Path(work))


def apply(
    inventory: Path | None,
    site: str | None,
    options: engine.Options,
    hooks: engine.Hooks = NO_HOOKS,
    *,
    state_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> engine.RunReport:
    """The change transaction for `options.dns` on one site (DESIGN section 4); the report says
    how it ended (`report.exit_status`). Errors before the run starts (bad input, an unreadable
    inventory or state directory) raise."""
    options = replace(options, dns=_targets(options.dns))
    state = _state(state_dir, os.environ if environ is None else environ)
    loaded = load_site(inventory, site, vault_password_file=options.vault_password_file)
    return engine.apply_fix(loaded, state, options, hooks)


def rollback(
    inventory: Path | None,
    site: str | None,
    run_id: str,
    options: engine.Options,
    hooks: engine.Hooks = NO_HOOKS,
    *,
    state_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> engine.RunReport:
    """Restore the backups of an earlier apply (`remediate rollback RUN_ID`), as a run of its
    own; the site defaults to the run's."""
    state = _state(state_dir, os.environ if environ is None else environ)
    original = read_run(state, run_id)
    loaded = load_site(
        inventory, site or original.metadata.site, vault_password_file=options.vault_password_file
    )
    return engine.rollback_run(loaded, state, original, options, hooks)


def history(
    state_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> list[RunRecord]:
    """Every recorded run, newest first."""
    return list_runs(_state(state_dir, os.environ if environ is None else environ))


def show(
    run_id: str, state_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> RunRecord:
    """The full record of one run (a unique prefix of its id works)."""
    return read_run(_state(state_dir, os.environ if environ is None else environ), run_id)


# Post-change verification ----------------------------------------------------------------------


def verify(
    inventory: Path | None,
    site: str | None,
    dns: Sequence[str],
    *,
    run_id: str | None = None,
    fix: str | None = None,
    state_dir: Path | None = None,
    vault_password_file: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    environ: Mapping[str, str] | None = None,
) -> VerificationResult:
    """Run the pytest-testinfra verification suite for `dns` (default with `run_id`: the run's)
    and return its checks; the JUnit XML goes into the run's record (or `<state dir>/verify/`).
    `result.exit_status`: 0 passed, 3 a check failed, 7 a host unreachable."""
    return run_verification(
        inventory,
        site,
        dns,
        run_id=run_id,
        state_dir=state_dir,
        fix=fix,
        vault_password_file=vault_password_file,
        timeout=timeout,
        environ=environ,
    )
