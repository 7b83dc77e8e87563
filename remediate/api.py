"""The facade that the CLI (and, later, the Ansible modules) call.

Each function validates its input, raises `RemediateError`s with a reference, a message and a
hint, and returns plain data (`remediate.diagnose.Diagnosis`, `remediate.engine.Plan`,
`remediate.engine.RunReport`, `remediate.journal.RunRecord`); nothing here writes to a terminal.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from remediate import engine
from remediate.diagnose import Diagnosis, diagnose_events
from remediate.dn import validate_dn
from remediate.errors import InputError, RemediateError, UsageError
from remediate.genesys.logs import LogEvent, read_logs
from remediate.inventory import load_site
from remediate.journal import (
    Journal,
    JournalError,
    RunRecord,
    RunStatus,
    list_runs,
    open_runs,
    read_run,
)
from remediate.live import diagnose_site
from remediate.lock import LOCK_DIR, BrokenLock, LockHolder, break_lock
from remediate.notify import check_notify_url
from remediate.report import render_html
from remediate.state import StateDir, resolve_state_dir, write_private_file
from remediate.status import ExitStatus
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
    if options.notify_url:
        check_notify_url(options.notify_url)
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
    if options.notify_url:
        check_notify_url(options.notify_url)
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


# Recovery, locks, reports ------------------------------------------------------------------------


@dataclass
class RecoveredRun:
    """What `recover` did with one open run (`report` None: it could not be taken over)."""

    run_id: str
    site: str
    action: str
    exit_status: ExitStatus
    message: str
    report: engine.RunReport | None = None
    error: RemediateError | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "site": self.site,
            "action": self.action,
            "exit_code": int(self.exit_status),
            "message": self.message,
            "decision": (self.report.recovered or {}).get("decision") if self.report else None,
            "status": self.report.status.value if self.report else RunStatus.RUNNING.value,
            "run": self.report.to_json() if self.report else None,
            "error": engine._error_json(self.error),
        }


@dataclass
class Recovery:
    """The outcome of `remediate recover`: one entry per run that was left open."""

    state_dir: Path
    runs: list[RecoveredRun] = field(default_factory=list)

    @property
    def exit_status(self) -> ExitStatus:
        """0 when every run ended restored or confirmed; 4 when a rollback failed (a person must
        act, whatever else happened); 5 when a live process holds a run's lock; else the worst."""
        codes = {run.exit_status for run in self.runs}
        for severe in (ExitStatus.ROLLBACK_FAILED, ExitStatus.LOCKED):
            if severe in codes:
                return severe
        failed = sorted(code for code in codes if code is not ExitStatus.SUCCESS)
        return failed[-1] if failed else ExitStatus.SUCCESS

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": engine.SCHEMA_VERSION,
            "kind": "recovery",
            "state_dir": str(self.state_dir),
            "exit_code": int(self.exit_status),
            "runs": [run.to_json() for run in self.runs],
        }


def recover(
    inventory: Path | None,
    options: engine.Options,
    hooks: engine.Hooks = NO_HOOKS,
    *,
    state_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Recovery:
    """`remediate recover`: finish every run of the state directory that a crash left open
    (started, never ended, its process gone), oldest first. Each run's site is loaded from
    `inventory`, else from the inventory the run recorded. Idempotent: a second call finds
    nothing, and a recovery that dies midway leaves the run open for the next one."""
    if options.notify_url:
        check_notify_url(options.notify_url)
    state = _state(state_dir, os.environ if environ is None else environ)
    recovery = Recovery(state.path)
    records = list(reversed(open_runs(state)))
    if records and not options.interactive and not options.yes:
        raise UsageError(
            f"{len(records)} run(s) left open: refusing to recover without a terminal to "
            "confirm on",
            reference="confirmation-required",
            hint="pass --yes (see 'remediate history' for the open runs)",
        )
    for record in records:
        guards = next((step.data for step in record.steps if step.name == engine.Step.GUARDS), {})
        recorded_vault = guards.get("vault_password_file")
        run_options = replace(
            options,
            vault_password_file=options.vault_password_file
            or (Path(recorded_vault) if recorded_vault else None),
        )
        recorded_inventory = guards.get("inventory")
        entry = RecoveredRun(
            record.run_id,
            record.metadata.site,
            record.metadata.action,
            ExitStatus.SUCCESS,
            "",
        )
        try:
            site = load_site(
                inventory or (Path(recorded_inventory) if recorded_inventory else None),
                record.metadata.site,
                vault_password_file=run_options.vault_password_file,
            )
            report = engine.recover_run(site, state, record, run_options, hooks)
        except JournalError as error:
            if error.reference == "run-finished":
                continue  # another recover finished it meanwhile
            entry.exit_status, entry.message, entry.error = error.exit_status, error.message, error
        except RemediateError as error:
            entry.exit_status, entry.message, entry.error = error.exit_status, error.message, error
        else:
            entry.report, entry.exit_status, entry.message = (
                report,
                report.exit_status,
                report.message,
            )
            entry.error = report.error if report.exit_status is not ExitStatus.SUCCESS else None
        recovery.runs.append(entry)
    return recovery


@dataclass(frozen=True)
class LockState:
    """Who holds a site's locks now, as `remediate lock status` shows it."""

    site: str
    local_path: Path
    local: LockHolder | None
    target_where: str
    target: LockHolder | None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": engine.SCHEMA_VERSION,
            "kind": "lock-status",
            "site": self.site,
            "local": {
                "where": str(self.local_path),
                "holder": None if self.local is None else self.local.to_json(),
            },
            "target": {
                "where": self.target_where,
                "holder": None if self.target is None else self.target.to_json(),
            },
        }


def lock_status(
    inventory: Path | None,
    site: str | None,
    *,
    state_dir: Path | None = None,
    vault_password_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LockState:
    """The holders the site's two lock bodies name (read-only; the target over SFTP)."""
    state = _state(state_dir, os.environ if environ is None else environ)
    loaded = load_site(inventory, site, vault_password_file=vault_password_file)
    local_path = state.path / LOCK_DIR / f"site_{loaded.name}.lock"
    local = LockHolder.parse(local_path.read_bytes()) if local_path.is_file() else None
    target = engine.target_lock(loaded)
    return LockState(loaded.name, local_path, local, target.where, target.peek())


@dataclass(frozen=True)
class LockBreak:
    run_id: str
    broken: BrokenLock

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": engine.SCHEMA_VERSION,
            "kind": "lock-break",
            "run_id": self.run_id,
            **self.broken.to_json(),
        }


def break_site_lock(
    inventory: Path | None,
    site: str,
    reason: str,
    *,
    change_id: str | None = None,
    state_dir: Path | None = None,
    vault_password_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LockBreak:
    """`remediate lock break SITE --reason TEXT`: remove both locks of a site whose holder is
    dead (a live holder on this host is refused, exit 5), logged and journaled as a run of its
    own (action `lock-break`), so `history` shows who broke which lock and why."""
    state = _state(state_dir, os.environ if environ is None else environ)
    loaded = load_site(inventory, site, vault_password_file=vault_password_file)
    journal = Journal.start(
        state,
        site=loaded.name,
        dns=[],
        fix="none",
        change_id=change_id,
        action="lock-break",
        secrets=[loaded.genesys.winrm.password, loaded.genesys.gax.password],
    )
    with journal:
        try:
            with journal.step("break", {"reason": reason}) as results:
                broken = break_lock(state, loaded.name, reason, target=engine.target_lock(loaded))
                results.update(broken.to_json())
        except RemediateError as error:
            journal.finish(
                RunStatus.FAILED_BEFORE_CHANGE,
                {
                    "schema_version": engine.SCHEMA_VERSION,
                    "kind": "lock-break",
                    "exit_code": int(error.exit_status),
                    "message": error.message,
                },
            )
            raise
        holders = [h.describe() for h in (broken.local, broken.target) if h is not None]
        journal.finish(
            RunStatus.NO_CHANGE,
            {
                **LockBreak(journal.run_id, broken).to_json(),
                "exit_code": int(ExitStatus.SUCCESS),
                "message": f"broke the lock of site {loaded.name} "
                f"({'; '.join(holders) or 'no holder recorded'}): {broken.reason}",
            },
        )
    return LockBreak(journal.run_id, broken)


@dataclass(frozen=True)
class RunPage:
    run_id: str
    path: Path
    dns: list[str]
    steps: int
    states: int
    """Registration state changes drawn (0: the run recorded none)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": engine.SCHEMA_VERSION,
            "kind": "report",
            "run_id": self.run_id,
            "html": str(self.path),
            "dns": self.dns,
            "steps": self.steps,
            "registration_states": self.states,
        }


def report(
    run_id: str,
    html_path: Path,
    *,
    state_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunPage:
    """`remediate report RUN_ID --html FILE`: the run's page, from its journal alone (the
    registration states its preflight and verification recorded): no host is reached."""
    record = read_run(_state(state_dir, os.environ if environ is None else environ), run_id)
    timelines = engine.recorded_timelines(record)
    page = render_html(record, timelines)
    try:
        write_private_file(html_path, page.encode("utf-8"))
    except OSError as error:
        raise InputError(
            f"cannot write {html_path}: {error.strerror or error}",
            reference="report-unwritable",
            hint="give --html a path in a directory you can write",
        ) from None
    return RunPage(
        record.run_id,
        html_path,
        [timeline.dn for timeline in timelines],
        len(record.steps),
        sum(len(timeline.changes) for timeline in timelines),
    )


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
