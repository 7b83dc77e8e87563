"""The change transaction (DESIGN section 4): guards, preflight, plan, backup, apply, restart,
verify, then commit or roll back, and the report. Each step is recorded in the run's journal before
it starts and after it ends.

A change ends in one of two states: applied and verified (COMMITTED), or the estate as it was
(ROLLED_BACK: every backed-up object and file byte-identical to its backup by SHA-256, every DN
that was in service before in service again). When the rollback itself fails the run ends
ROLLBACK_FAILED with a report that names, for each object and file, the backup to restore.

Observation (the preflight diagnosis, backups, verification, checksums) goes through the
transports; every change (the fix, the restart, the rollback) is an Ansible playbook run.

Hooks, ansible-runner style, called in the caller's thread:
- `on_progress(step, message)`: what the run is doing, for people;
- `on_step(step, phase)`: phase `started` (after the journal recorded it, before the step runs),
  `finished` or `failed` (after the journal recorded it); tests switch lab faults on here;
- `confirm(plan) -> bool`: asked before anything changes when the run is interactive and `--yes`
  was not given; False ends the run ABORTED with nothing changed.

The guards come first, before anything touches a host: the change id (and `--yes`) when nobody is
at a terminal, the change window (the run must end, rollback included, before the window closes:
`worst_case`), then the site's locks, local and on the Asterisk host (`remediate.lock`), held
until the run ends and refreshed at every long step. A run left open by a dead controller blocks
its site until `remediate recover` finishes it (`recover_run`): it rolls back from the journal
alone, or confirms a change whose verification had finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any

from remediate import live
from remediate.ansible import (
    PlaybookEvent,
    PlaybookResult,
    kill_run_processes,
    scrub_private_dir,
)
from remediate.batch import PlaybookRequest, PlaybookRunner, run_alone
from remediate.diagnose import Diagnosis, DnDiagnosis, Fix, RootCause
from remediate.errors import InputError, PreconditionError, RemediateError, UsageError
from remediate.fixes import (
    AUTO,
    FIX_NAMES,
    FileTarget,
    FixSpec,
    ObjectTarget,
    Target,
    build_fix,
    common_extravars,
)
from remediate.fixes.changes import Change, UnmappedChangeError, change_set
from remediate.genesys import powershell
from remediate.genesys.gax import GaxClient
from remediate.genesys.logs import RegistrationTransaction, TimelineEntry, Verdict
from remediate.inventory import Site
from remediate.journal import (
    BACKUP_DIR,
    Journal,
    JournalError,
    RunRecord,
    RunStatus,
    StepOutcome,
    open_runs,
    read_backup,
    read_run_dir,
)
from remediate.lock import LockedError, SiteLock, TargetLock, holder_record
from remediate.notify import NotifyResult, notify
from remediate.report import DnStates, RegistrationState, StateChange, dn_states
from remediate.state import StateDir, make_private_dir
from remediate.status import ExitStatus
from remediate.transport import TransportError
from remediate.transport.ssh import SSHTransport
from remediate.transport.winrm import WinRMTransport
from remediate.verification.runner import run_verification
from remediate.window import ChangeWindow, FixedWindow, check_window

SCHEMA_VERSION = 1
PLAYBOOK_DIR = Path(__file__).resolve().parents[1] / "playbooks"
PLAYBOOK_DIR_ENV = "REMEDIATE_PLAYBOOK_DIR"
RESTART_PLAYBOOK = "restart.yml"
ROLLBACK_PLAYBOOK = "rollback.yml"
EXTENSION_DN_TYPES = frozenset({"CFGExtension", "CFGACDPosition"})
OBSERVATION_BOUND = 60.0
"""Seconds allowed, in the worst case, for one reading of the estate (the preflight's diagnosis,
the backup, the checksums): each transport call is bounded by its own timeouts."""
LOCK_MARGIN = timedelta(minutes=10)
"""A lock lasts the run's worst case plus this, unless refreshed."""
TIMELINE_KEEP = 30
"""Registration entries kept per DN in the journal at each reading (for `remediate report`)."""


class Step(StrEnum):
    GUARDS = "guards"
    PREFLIGHT = "preflight"
    PLAN = "plan"
    BACKUP = "backup"
    APPLY = "apply"
    RESTART = "restart"
    VERIFY = "verify"
    VERIFY_SUITE = "verify-suite"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    ROLLBACK_RESTART = "rollback-restart"
    ROLLBACK_VERIFY = "rollback-verify"
    RECOVER = "recover"


CHANGING_STEPS = frozenset(
    {
        Step.APPLY,
        Step.RESTART,
        Step.VERIFY,
        Step.VERIFY_SUITE,
        Step.COMMIT,
        Step.ROLLBACK,
        Step.ROLLBACK_RESTART,
        Step.ROLLBACK_VERIFY,
    }
)
"""Once one of these started, the estate may have changed: a crash there needs a rollback."""
LONG_STEPS = CHANGING_STEPS - {Step.COMMIT}
"""Steps that may take minutes: the site's lock is refreshed when each starts."""


ProgressHook = Callable[[str, str], None]
StepHook = Callable[[str, str], None]
PlanHook = Callable[["Plan"], None]
ConfirmHook = Callable[[str], bool]


@dataclass(frozen=True)
class Hooks:
    on_progress: ProgressHook | None = None
    """(step, message): what the run is doing."""
    on_step: StepHook | None = None
    """(step, phase): phase `started`, `finished` or `failed`, once the journal recorded it."""
    on_plan: PlanHook | None = None
    """The plan of an apply, once known (before the question, if one is asked)."""
    confirm: ConfirmHook | None = None
    """(question) -> yes? Asked on a terminal before anything changes, unless --yes."""
    run_playbook: PlaybookRunner = run_alone
    """Runs the site's playbooks: alone, or batched with other sites' (a fleet's batcher)."""


@dataclass(frozen=True)
class Options:
    """What a run is asked to do, and its bounds."""

    dns: tuple[str, ...]
    fix: str = AUTO
    change_id: str | None = None
    yes: bool = False
    interactive: bool = False
    force: bool = False
    verify_timeout: float = 120.0
    """How long verification waits for the DNs (and the route) before it gives up."""
    poll_interval: float = 1.0
    playbook_timeout: float = 600.0
    vault_password_file: Path | None = None
    playbook_dir: Path | None = None
    window: FixedWindow | None = None
    """`--window`: replaces the inventory's recurring windows for this run."""
    verify_suite: bool = False
    """`--verify`: the pytest-testinfra suite runs after the engine's own verification."""
    suite_timeout: float = 300.0
    notify_url: str | None = None
    """`--notify`: the run's JSON is POSTed there when the run ends (checked before it starts)."""


def worst_case(options: Options, *, rollback_only: bool = False) -> timedelta:
    """The longest a run may take, from the engine's own bounds: every playbook at its timeout
    (plan, apply, restart, then the rollback and its restart), verification at its bound (the
    change's and the rollback's), the suite's bound with `--verify`, and each reading of the
    estate at OBSERVATION_BOUND. A change must be able to roll back inside its window too."""
    playbook, verify = options.playbook_timeout, options.verify_timeout
    rollback = 2 * playbook + verify + 2 * OBSERVATION_BOUND  # restore, restart, checksums, verify
    if rollback_only:
        return timedelta(seconds=rollback + OBSERVATION_BOUND)
    change = 3 * playbook + verify + 3 * OBSERVATION_BOUND  # preflight, plan, backup, apply...
    if options.verify_suite:
        change += options.suite_timeout
    return timedelta(seconds=change + rollback)


class VerificationError(RemediateError):
    reference = "verification-failed"
    exit_status = ExitStatus.VERIFICATION_FAILED


class StepFailed(RemediateError):
    """A playbook of the change (apply, restart, rollback) did not succeed."""

    reference = "playbook-failed"


# The plan ---------------------------------------------------------------------------------------


@dataclass
class Plan:
    site: str
    dns: list[str]
    requested_fix: str
    fix: FixSpec | None
    diagnosis: Diagnosis | None
    baseline: list[str]
    changes: list[Change]
    note: str = ""
    """Why there is nothing to do, or why only a restart is planned."""
    restart_only: bool = False
    """The configuration already holds the fix but SIP Server has not read it: restart alone."""
    timelines: dict[str, tuple[dict[str, str], ...]] = field(default_factory=dict)
    """Per DN, the registration states the preflight read (for the journal; see `timeline_json`)."""

    @property
    def nothing_to_do(self) -> bool:
        return self.fix is None or (not self.changes and not self.restart_only)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "plan",
            "site": self.site,
            "dns": self.dns,
            "requested_fix": self.requested_fix,
            "fix": _fix_json(self.fix),
            "baseline": self.baseline,
            "changes": [change.to_json() for change in self.changes],
            "restart": self.fix is not None and self.fix.needs_restart and not self.nothing_to_do,
            "nothing_to_do": self.nothing_to_do,
            "note": self.note,
            "diagnosis": self.diagnosis.to_json() if self.diagnosis else None,
        }


def _fix_json(fix: FixSpec | None) -> dict[str, Any] | None:
    if fix is None:
        return None
    return {
        "name": fix.name,
        "summary": fix.summary,
        "playbook": fix.playbook,
        "needs_restart": fix.needs_restart,
        "proves_route": fix.proves_route,
        "targets": [_target_json(target) for target in fix.targets],
    }


def _target_json(target: Target) -> dict[str, Any]:
    if isinstance(target, ObjectTarget):
        return {"kind": "object", "cfg_type": target.cfg_type, "name": target.name}
    return {"kind": "file", "path": target.path}


def _target_from_json(data: Mapping[str, Any]) -> Target:
    if data["kind"] == "object":
        return ObjectTarget(str(data["cfg_type"]), str(data["name"]))
    return FileTarget(str(data["path"]))


# The report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupEntry:
    target: Target
    name: str
    sha256: str
    run_dir: Path
    """The directory of the run that stored the backup."""
    absent: bool
    """The object did not exist before the run: restoring it means deleting it."""

    @property
    def path(self) -> Path:
        return self.run_dir / BACKUP_DIR / self.name

    def content(self) -> bytes:
        """The backup's bytes, checked against the SHA-256 its journal recorded."""
        return read_backup(read_run_dir(self.run_dir), self.name)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], run_dir: Path) -> BackupEntry:
        return cls(
            target=_target_from_json(data),
            name=str(data["backup"]),
            sha256=str(data["sha256"]),
            run_dir=run_dir,
            absent=bool(data["absent"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **_target_json(self.target),
            "target": self.target.key,
            "backup": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "absent": self.absent,
        }


@dataclass
class RunReport:
    run_id: str
    action: str
    site: str
    dns: list[str]
    change_id: str | None
    requested_fix: str
    status: RunStatus = RunStatus.RUNNING
    exit_status: ExitStatus = ExitStatus.SUCCESS
    message: str = ""
    fix: FixSpec | None = None
    baseline: list[str] = field(default_factory=list)
    plan: list[Change] = field(default_factory=list)
    applied: list[Change] = field(default_factory=list)
    restarted: bool = False
    in_service: list[str] = field(default_factory=list)
    not_in_service: list[str] = field(default_factory=list)
    backups: list[BackupEntry] = field(default_factory=list)
    restore: list[dict[str, Any]] = field(default_factory=list)
    """For ROLLBACK_FAILED: per object and file, whether it is restored and how to restore it."""
    error: RemediateError | None = None
    rolls_back: str | None = None
    elapsed: float = 0.0
    window: dict[str, Any] | None = None
    """The change window's decision (`WindowDecision.to_json()`)."""
    lock: dict[str, Any] | None = None
    """The lock held: `holder`, `takeovers`, and `release_warning` when it could not be removed."""
    verification: dict[str, Any] | None = None
    """`--verify`: the suite's result (`VerificationResult.to_json()`, JUnit XML in the record)."""
    recovered: dict[str, Any] | None = None
    """Set when `remediate recover` finished the run: what it found and decided."""
    notification: NotifyResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": f"{self.action}-run",
            "run_id": self.run_id,
            "action": self.action,
            "site": self.site,
            "dns": self.dns,
            "change_id": self.change_id,
            "requested_fix": self.requested_fix,
            "fix": _fix_json(self.fix),
            "status": self.status.value,
            "exit_code": int(self.exit_status),
            "message": self.message,
            "baseline": self.baseline,
            "plan": [change.to_json() for change in self.plan],
            "changes": [change.to_json() for change in self.applied],
            "restarted": self.restarted,
            "in_service": self.in_service,
            "not_in_service": self.not_in_service,
            "backups": [backup.to_json() for backup in self.backups],
            "restore": self.restore,
            "rolls_back": self.rolls_back,
            "error": _error_json(self.error),
            "elapsed_seconds": round(self.elapsed, 3),
            "window": self.window,
            "lock": self.lock,
            "verification": self.verification,
            "recovered": self.recovered,
            "notification": None if self.notification is None else self.notification.to_json(),
        }


def _error_json(error: RemediateError | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"reference": error.reference, "message": error.message, "hint": error.hint}


# Reading the estate -----------------------------------------------------------------------------


def canonical_object(value: Any) -> bytes:
    """A configuration object (None: absent) as its backup holds it; compared by SHA-256."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read_target(site: Site, target: Target) -> tuple[bytes, bool]:
    """The current state of a target as backup bytes, and whether it is absent."""
    if isinstance(target, ObjectTarget):
        with GaxClient(site.genesys.gax) as gax:
            obj = gax.find(target.cfg_type, target.name)
        return canonical_object(obj), obj is None
    with SSHTransport(site.asterisk.ssh) as ssh:
        try:
            return ssh.read_file(target.path), False
        except TransportError as error:
            if error.reference == "ssh-file-missing":
                raise PreconditionError(
                    f"{target.path} does not exist on {site.asterisk.name}",
                    reference="target-file-missing",
                    hint="check asterisk_extensions_conf in the inventory",
                ) from None
            raise


def host_clock(transport: WinRMTransport) -> datetime:
    """The SIP Server host's clock (aware): log times are compared with it, never ours."""
    result = transport.run(powershell.host_clock().command_line)
    if not result.ok:
        raise TransportError(
            f"reading the clock of {transport.settings.inventory_host} failed",
            reference="winrm-command-failed",
        )
    return powershell.parse_host_clock(result.stdout_text)


@dataclass(frozen=True)
class DnState:
    dn: str
    ok: bool
    detail: str
    timeline: tuple[dict[str, str], ...] = ()
    """The DN's registration states as the log showed them (see `timeline_json`)."""


def timeline_json(
    entries: Sequence[TimelineEntry], dn: str, host_zone: tzinfo | None
) -> tuple[dict[str, str], ...]:
    """The latest registration entries of a DN as the journal keeps them for `remediate report`:
    `{time (UTC), state, detail}`. Log times are the host's: `host_zone` places them."""
    states = dn_states(dn, entries[-TIMELINE_KEEP:], host_zone or UTC)
    return tuple(
        {
            "time": change.time.astimezone(UTC).isoformat(),
            "state": change.state.value,
            "detail": change.detail,
        }
        for change in states.changes
    )


def recorded_timelines(record: RunRecord) -> list[DnStates]:
    """Per DN, every registration state the run recorded (preflight, verify, rollback-verify),
    oldest first: what `remediate report` draws, with no host to reach."""
    seen: dict[str, dict[tuple[str, str], StateChange]] = {}
    for step in record.steps:
        timelines = step.data.get("timelines")
        if not isinstance(timelines, Mapping):
            continue
        for dn, entries in timelines.items():
            for entry in entries if isinstance(entries, list) else []:
                try:
                    change = StateChange(
                        datetime.fromisoformat(str(entry["time"])),
                        RegistrationState(entry["state"]),
                        str(entry.get("detail", "")),
                    )
                except (KeyError, TypeError, ValueError):
                    continue
                seen.setdefault(str(dn), {})[(entry["time"], entry["state"])] = change
    order = _ordered([*record.metadata.dns, *seen])
    return [
        DnStates(dn, tuple(sorted(seen.get(dn, {}).values(), key=lambda c: c.time))) for dn in order
    ]


def registration_states(
    site: Site, transport: WinRMTransport, dns: Sequence[str], since: datetime | None
) -> dict[str, DnState]:
    """Per DN, whether its latest registration in the SIP Server log is accepted (and, with
    `since`, happened at or after that moment of the host's clock)."""
    found = live.collect_genesys(site, transport, dns, since.isoformat() if since else None)
    history = found["history"]
    zone = found["host_time"].tzinfo
    local_since = since.replace(tzinfo=None) if since is not None else None
    states: dict[str, DnState] = {}
    for dn in dns:
        timeline = history.timelines.get(dn)
        entries = list(timeline.entries) if timeline else []
        recorded = timeline_json(entries, dn, zone)
        if local_since is not None:
            entries = [e for e in entries if e.time is not None and e.time >= local_since]
        last = entries[-1] if entries else None
        if last is None:
            when = (
                f" since {local_since.isoformat(sep=' ', timespec='seconds')}"
                if local_since
                else ""
            )
            states[dn] = DnState(dn, False, f"{dn}: no registration{when}", recorded)
        elif isinstance(last, RegistrationTransaction) and last.verdict is Verdict.ACCEPTED:
            stamp = last.time.isoformat(sep=" ", timespec="milliseconds") if last.time else "?"
            states[dn] = DnState(
                dn,
                True,
                f"{dn}: accepted at {stamp} from {last.source_address}:{last.source_port}",
                recorded,
            )
        else:
            stamp = last.time.isoformat(sep=" ", timespec="milliseconds") if last.time else "?"
            verdict = last.verdict.value if isinstance(last, RegistrationTransaction) else "expired"
            states[dn] = DnState(
                dn, False, f"{dn}: latest registration {verdict} at {stamp}", recorded
            )
    return states


def route_states(site: Site, transport: SSHTransport, dns: Sequence[str]) -> dict[str, DnState]:
    """Per DN, whether Asterisk's dialplan routes a call from Genesys to it (`dialplan show`)."""
    routes = live.collect_asterisk(site, transport, dns)["reverse_routes"]
    return {
        dn: DnState(
            dn,
            routes[dn].found,
            f"{dn}@{routes[dn].context}: "
            + (
                ", ".join(routes[dn].extensions) if routes[dn].found else f"no {routes[dn].missing}"
            ),
        )
        for dn in dns
    }


def switch_extension_dns(site: Site) -> list[str]:
    """The enabled extension DNs of the site's switch: the candidates for the baseline."""
    with GaxClient(site.genesys.gax) as gax:
        switch = gax.find("CfgSwitch", site.genesys.switch)
        objects = gax.find_all("CfgDN")
    switch_dbid = switch.get("dbid") if switch else None
    numbers = []
    for obj in objects:
        if str(obj.get("dntype", "")) not in EXTENSION_DN_TYPES:
            continue
        if str(obj.get("state", "CFGEnabled")) != "CFGEnabled":
            continue
        if switch_dbid is not None and obj.get("switchdbid") not in (None, switch_dbid):
            continue
        numbers.append(str(obj.get("number") or obj.get("name")))
    return sorted(set(numbers), key=lambda dn: (len(dn), dn))


# Choosing the fix -------------------------------------------------------------------------------


def _needs_nothing(item: DnDiagnosis) -> bool:
    return item.root_cause.code is RootCause.IN_SERVICE and item.recommendation.fix is Fix.NONE


def choose_fix(
    diagnosis: Diagnosis, targets: Sequence[str], requested: str, force: bool
) -> str | None:
    """The fix to plan for `targets`, or None when every DN is in service and `auto` was asked.

    `auto` takes the diagnosis's recommendation; one that no fix of remediate carries out (an
    Asterisk-side re-register, `none` for a DN out of service) or DNs that need different fixes
    are refused (exit 7) with what to do instead. A named fix that the evidence contradicts is
    refused unless `force`.
    """
    by_dn = {item.dn: item for item in diagnosis.dns}
    needing = [by_dn[dn] for dn in targets if not _needs_nothing(by_dn[dn])]
    if requested == AUTO:
        if not needing:
            return None
        wanted = {item.recommendation.fix for item in needing}
        unfixable = [item for item in needing if item.recommendation.fix.value not in FIX_NAMES]
        if unfixable:
            raise PreconditionError(
                "the diagnosis recommends no change that remediate makes: "
                + "; ".join(
                    f"DN {item.dn}: {item.root_cause.code.value}, fix "
                    f"{item.recommendation.fix.value}"
                    for item in unfixable
                ),
                reference="no-applicable-fix",
                hint="; ".join(f"{item.dn}: {item.recommendation.action}" for item in unfixable),
            )
        if len(wanted) > 1:
            raise PreconditionError(
                "the DNs need different fixes: "
                + ", ".join(f"{item.dn}: {item.recommendation.fix.value}" for item in needing),
                reference="fixes-differ",
                hint="apply them one DN group at a time, each with its --fix",
            )
        return wanted.pop().value
    if requested not in FIX_NAMES:
        raise InputError(
            f"there is no fix {requested!r}",
            reference="bad-fix",
            hint=f"use one of: {AUTO}, {', '.join(FIX_NAMES)}",
        )
    contradicted = [
        item
        for item in needing
        if requested != item.recommendation.fix.value
        and requested not in {fix.value for fix in item.recommendation.alternatives}
    ]
    if contradicted and not force:
        raise PreconditionError(
            f"the evidence contradicts the {requested} fix: "
            + "; ".join(
                f"DN {item.dn}: {item.root_cause.code.value} -> {item.recommendation.fix.value}"
                for item in contradicted
            ),
            reference="fix-contradicted",
            hint="; ".join(f"{item.dn}: {item.recommendation.action}" for item in contradicted)
            + " (or --force to apply it anyway)",
        )
    return requested


# The run ----------------------------------------------------------------------------------------


def _secrets(site: Site) -> list[str]:
    return [site.genesys.winrm.password, site.genesys.gax.password]


def _failure_text(result: PlaybookResult) -> str:
    if result.failures:
        return "; ".join(
            f"{failure.host}: {failure.task}: {failure.message or 'failed'}"
            for failure in result.failures
        )
    tail = result.output_tail.strip().splitlines()
    return f"{result.status.value}: {tail[-1] if tail else 'no output'}"


def _unexpected(error: BaseException) -> RemediateError:
    return RemediateError(
        f"{type(error).__name__}: {error}",
        reference="unexpected-error",
        hint="this is a bug in remediate: report it with the run's record (remediate show)",
    )


def _ordered(dns: Sequence[str]) -> list[str]:
    return sorted(dict.fromkeys(dns), key=lambda dn: (len(dn), dn))


class _Context:
    """What every run of one site shares: the site, the hooks, the playbook runner."""

    def __init__(
        self, site: Site, options: Options, hooks: Hooks, state: StateDir | None = None
    ) -> None:
        self.site = site
        self.state = state
        self.options = options
        self.hooks = hooks
        directory = options.playbook_dir or Path(os.environ.get(PLAYBOOK_DIR_ENV) or PLAYBOOK_DIR)
        self.playbook_dir = directory
        config = directory.parent / "ansible.cfg"
        # The playbooks' modules and roles are found through the project's ansible.cfg.
        self.ansible_environment = {"ANSIBLE_CONFIG": str(config)} if config.is_file() else {}
        self.started = time.monotonic()
        self.current_step = ""

    def progress(self, message: str, step: str | None = None) -> None:
        if self.hooks.on_progress is not None:
            self.hooks.on_progress(step or self.current_step, message)

    def playbook(
        self,
        name: str,
        private_dir: Path,
        extravars: Mapping[str, Any],
        *,
        check: bool = False,
    ) -> PlaybookResult:
        path = self.playbook_dir / name
        if not path.is_file():
            raise PreconditionError(
                f"the playbook {path} does not exist",
                reference="playbook-missing",
                hint=f"run remediate from its source tree, or set {PLAYBOOK_DIR_ENV}",
            )

        def on_event(event: PlaybookEvent) -> None:
            if event.kind.value in ("changed", "failed", "unreachable") and event.task:
                where = f"{event.host}: " if event.host else ""
                said = (
                    f" ({event.message})" if event.message and event.kind.value != "changed" else ""
                )
                self.progress(f"{event.kind.value:8} {where}{event.task}{said}")

        return self.hooks.run_playbook(
            PlaybookRequest(
                playbook=path,
                inventory=self.site.inventory,
                private_dir=private_dir,
                timeout=self.options.playbook_timeout,
                limit=f"site_{self.site.name}",
                hosts=(self.site.genesys.name, self.site.asterisk.name),
                extravars=dict(extravars),
                secrets=tuple(_secrets(self.site)),
                check=check,
                diff=True,
                on_event=on_event,
                vault_password_file=self.options.vault_password_file,
                environment=self.ansible_environment,
            )
        )

    def checked_playbook(
        self, name: str, private_dir: Path, extravars: Mapping[str, Any], what: str
    ) -> PlaybookResult:
        result = self.playbook(name, private_dir, extravars)
        if not result.succeeded:
            raise StepFailed(
                f"{what} failed ({name}, {result.status.value}): {_failure_text(result)}",
                hint=f"Ansible's artifacts are in {result.artifact_dir}",
            )
        return result


def _preflight(ctx: _Context, fix_name: str, force: bool) -> Plan:
    """Reach WinRM, GAX and SSH, diagnose the target DNs and every extension DN of the switch,
    record the baseline, choose the fix."""
    site, targets = ctx.site, list(ctx.options.dns)
    ctx.progress(f"reading {site.genesys.name} (WinRM, GAX) and {site.asterisk.name} (SSH)")
    candidates = _ordered([*targets, *switch_extension_dns(site)])
    evidence = live.collect(site, candidates)
    diagnosis = live.build_diagnosis(site, evidence)
    states = {item.dn: item for item in diagnosis.dns}
    baseline = [dn for dn in candidates if states[dn].in_service]
    for dn in targets:
        item = states[dn]
        state = {True: "in service", False: "OUT OF SERVICE", None: "state unknown"}[
            item.in_service
        ]
        ctx.progress(
            f"DN {dn}: {state}, {item.root_cause.code.value} -> {item.recommendation.fix.value}"
        )
    ctx.progress(f"baseline (in service now): {', '.join(baseline) or 'none'}")
    zone = evidence.host_time.tzinfo if evidence.host_time else None
    history = evidence.history
    timelines = {
        dn: timeline_json(list(history.timelines[dn].entries), dn, zone)
        for dn in candidates
        if history is not None and dn in history.timelines
    }
    chosen = choose_fix(diagnosis, targets, fix_name, force)
    target_diagnosis = Diagnosis(
        dns=[states[dn] for dn in targets],
        sources=diagnosis.sources,
        since=diagnosis.since,
        log_start=diagnosis.log_start,
        log_end=diagnosis.log_end,
        observations=diagnosis.observations,
    )
    plan = Plan(
        site=site.name,
        dns=targets,
        requested_fix=fix_name,
        fix=build_fix(chosen, site) if chosen else None,
        diagnosis=target_diagnosis,
        baseline=baseline,
        changes=[],
        timelines=timelines,
    )
    if chosen is None:
        plan.note = f"nothing to do: {', '.join(targets)} in service and nothing to fix"
    return plan


def _check_plan(ctx: _Context, plan: Plan) -> None:
    """Every change of the plan must be on something the fix backs up; decide what an empty
    plan means."""
    fix = plan.fix
    assert fix is not None
    outside = [change for change in plan.changes if fix.target(change.target) is None]
    if outside:
        raise PreconditionError(
            f"the {fix.playbook} plan changes what the {fix.name} fix does not back up: "
            + ", ".join(f"{change.target} on {change.host}" for change in outside),
            reference="plan-outside-targets",
            hint="the playbook and remediate.fixes disagree: report it; nothing was changed",
        )
    if plan.changes:
        return
    assert plan.diagnosis is not None
    failing = [item.dn for item in plan.diagnosis.dns if not _needs_nothing(item)]
    if not failing:
        plan.note = (
            f"nothing to do: the {fix.name} fix is already in place and "
            f"{', '.join(plan.dns)} in service"
        )
    elif fix.needs_restart:
        plan.restart_only = True
        plan.note = (
            f"the configuration already holds the {fix.name} fix but {', '.join(failing)} "
            f"still out of service: SIP Server has not read it yet, so only the restart is planned"
        )
    else:
        raise PreconditionError(
            f"the {fix.name} fix is already in place, yet {', '.join(failing)} still fail",
            reference="fix-present-dn-failing",
            hint="read 'remediate diagnose --dn ...' for what else is wrong",
        )


def _plan_changes(ctx: _Context, plan: Plan, private_dir: Path, run_id: str) -> list[Change]:
    fix = plan.fix
    assert fix is not None
    extravars = {
        **common_extravars(plan.dns, run_id, ctx.options.change_id),
        **fix.extravars,
    }
    ctx.progress(f"{fix.playbook} in check mode")
    result = ctx.playbook(fix.playbook, private_dir, extravars, check=True)
    if not result.succeeded:
        raise PreconditionError(
            f"the dry run of {fix.playbook} failed: {_failure_text(result)}",
            reference="plan-failed",
            hint=f"nothing was changed; Ansible's artifacts are in {result.artifact_dir}",
        )
    try:
        return change_set(result.changes)
    except UnmappedChangeError as error:
        raise PreconditionError(str(error), reference="plan-unreadable") from None


def make_plan(site: Site, options: Options, hooks: Hooks, work_dir: Path) -> Plan:
    """`remediate plan`: preflight and the fix's playbook in check mode; nothing is changed."""
    ctx = _Context(site, options, hooks)
    ctx.current_step = Step.PREFLIGHT
    plan = _preflight(ctx, options.fix, options.force)
    if plan.fix is None:
        return plan
    ctx.current_step = Step.PLAN
    plan.changes = _plan_changes(ctx, plan, work_dir / "plan", "plan")
    _check_plan(ctx, plan)
    return plan


def target_lock(site: Site) -> TargetLock:
    """The site's lock file on its Asterisk host (`remediate_lock_path`)."""
    return TargetLock(site.asterisk.ssh, site.lock_path)


def utc_now() -> datetime:
    return datetime.now(UTC)


def site_windows(site: Site, options: Options) -> tuple[ChangeWindow, ...]:
    """`--window` when given, else the inventory's recurring windows."""
    return (options.window,) if options.window is not None else site.change_windows


def _left_open(takeovers: Sequence[Any], own_run_id: str) -> str | None:
    """A lock taken over from a run that a crash left open (its record on this machine says it
    never ended): the site may be half-changed, so it must be recovered first."""
    for takeover in takeovers:
        previous = takeover.previous
        if previous is None or previous.run_id == own_run_id:
            continue
        record = holder_record(previous)
        if record is not None and record.status is RunStatus.RUNNING:
            return (
                f"run {previous.run_id} ({previous.who}, state directory {previous.state_dir}) "
                f"left site {previous.site} open when its controller died"
            )
    return None


class _Run:
    """One journaled run of one site: an apply, the rollback of an earlier run, or the recovery
    of a run a crash left open."""

    def __init__(self, ctx: _Context, journal: Journal, report: RunReport) -> None:
        self.ctx = ctx
        self.journal = journal
        self.report = report
        self.lock: SiteLock | None = None
        self.restart_started = False

    @property
    def site(self) -> Site:
        return self.ctx.site

    @contextmanager
    def step(self, name: Step, data: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        self.journal.step_started(name, data)
        self.ctx.current_step = name
        hook = self.ctx.hooks.on_step
        if hook is not None:
            hook(name, "started")
        results: dict[str, Any] = {}
        try:
            if name in LONG_STEPS:
                self.refresh_lock(name, results)
            yield results
        except BaseException as error:
            message = str(error) or type(error).__name__
            self.journal.step_failed(name, message, results)
            self.ctx.progress(f"failed: {message}", name)
            if hook is not None:
                hook(name, "failed")
            raise
        self.journal.step_finished(name, results)
        if hook is not None:
            hook(name, "finished")

    def private_dir(self, name: str) -> Path:
        """A fresh directory for one playbook run (a recovered run may repeat a step)."""
        parent = make_private_dir(self.journal.path / "ansible")
        path, attempt = parent / name, 1
        while path.exists():
            attempt += 1
            path = parent / f"{name}-{attempt}"
        return path

    def extravars(self, dns: Sequence[str]) -> dict[str, Any]:
        return common_extravars(dns, self.journal.run_id, self.report.change_id)

    def finish(
        self,
        status: RunStatus,
        exit_status: ExitStatus,
        message: str,
        error: RemediateError | None = None,
    ) -> RunReport:
        """Record how the run ended: release the locks, POST the run's JSON to `--notify` (its
        outcome goes into the record, never into the exit status), then the journal's end."""
        report = self.report
        report.status, report.exit_status, report.message = status, exit_status, message
        report.error = error or report.error
        self.release()
        report.elapsed = time.monotonic() - self.ctx.started
        url = self.ctx.options.notify_url
        if url:
            report.notification = notify(url, report.to_json(), secrets=_secrets(self.site))
            self.ctx.progress(report.notification.summary(), "notify")
        self.journal.finish(status, report.to_json())
        return report

    # guards

    def guards(self, *, window: bool) -> None:
        """Before anything touches a host: the change id and `--yes` without a terminal, the
        change window (`window`: an apply; restoring is never held to one), then no run of this
        site left open by a crash, and the site's locks, local and on the Asterisk host."""
        options = self.ctx.options
        # Recorded as the step starts: what `recover` needs to reach the site again (paths,
        # never secrets) and whether the suite was part of the verification.
        started = {
            "change_id": options.change_id,
            "verify_suite": options.verify_suite,
            "inventory": str(self.site.inventory.absolute()),
            "vault_password_file": (
                str(options.vault_password_file.absolute()) if options.vault_password_file else None
            ),
        }
        with self.step(Step.GUARDS, started) as results:
            if not options.interactive and not options.change_id:
                raise UsageError(
                    "a change id is required when remediate does not run at a terminal",
                    reference="change-id-required",
                    hint="pass --change-id CHG0042 (your change ticket)",
                )
            if not options.interactive and not options.yes:
                raise UsageError(
                    "refusing to change anything without a terminal to confirm on",
                    reference="confirmation-required",
                    hint="review the change with 'remediate plan', then pass --yes",
                )
            longest = worst_case(options, rollback_only=not window)
            if window:
                decision = check_window(site_windows(self.site, options), utc_now(), longest)
                self.report.window = results["window"] = decision.to_json()
                self.ctx.progress(decision.message)
                decision.require()
            self.check_nothing_left_open()
            self.acquire_lock(longest + LOCK_MARGIN)
            results["lock"] = self.report.lock

    def check_nothing_left_open(self) -> None:
        assert self.ctx.state is not None
        left = [
            record
            for record in open_runs(self.ctx.state)
            if record.metadata.site == self.site.name and record.run_id != self.journal.run_id
        ]
        if left:
            ids = ", ".join(record.run_id for record in left)
            raise LockedError(
                f"site {self.site.name} is held by run {ids}, left open when its controller "
                "died: the site may be half-changed",
                hint=f"finish it first: remediate recover --state-dir {self.ctx.state.path}",
            )

    def acquire_lock(self, ttl: timedelta) -> None:
        assert self.ctx.state is not None
        lock = SiteLock(
            self.ctx.state,
            self.site.name,
            run_id=self.journal.run_id,
            change_id=self.report.change_id,
            ttl=ttl,
            target=target_lock(self.site),
        )
        holder = lock.acquire()
        left = _left_open(lock.takeovers, self.journal.run_id)
        if left is not None:
            lock.release()
            raise LockedError(
                f"{left}: the site may be half-changed",
                hint="finish it first, on that machine: remediate recover --state-dir "
                "<its state directory>",
            )
        self.lock = lock
        self.report.lock = {
            "holder": holder.to_json(),
            "takeovers": [takeover.to_json() for takeover in lock.takeovers],
        }
        for takeover in lock.takeovers:
            self.ctx.progress(f"took over the stale {takeover.where}: {takeover.reason}")

    def refresh_lock(self, step: str, results: dict[str, Any]) -> None:
        """Push the lock's expiry on. A lock someone broke stops a change (the failure rolls it
        back); a rollback goes on regardless: leaving the estate half-changed is worse."""
        if self.lock is None:
            return
        try:
            results["lock_expires"] = self.lock.refresh().to_json()["expires"]
        except RemediateError as error:
            if step in (Step.ROLLBACK, Step.ROLLBACK_RESTART, Step.ROLLBACK_VERIFY):
                results["lock_warning"] = f"{error.reference}: {error.message}"
                self.ctx.progress(f"warning: the lock could not be refreshed: {error.message}")
                return
            raise

    def confirmed(self, question: str) -> bool:
        options = self.ctx.options
        if options.yes or not options.interactive:
            return True
        confirm = self.ctx.hooks.confirm
        return confirm is not None and confirm(question)

    def release(self) -> None:
        lock, self.lock = self.lock, None
        if lock is None:
            return
        warning = lock.release()
        if warning:
            self.ctx.progress(f"warning: {warning}")
            if self.report.lock is not None:
                self.report.lock["release_warning"] = warning

    # backup

    def backup(self, fix: FixSpec) -> list[BackupEntry]:
        """The exact before-state of every target of the fix, read through the transports."""
        with self.step(Step.BACKUP) as results:
            entries = []
            for index, target in enumerate(fix.targets, start=1):
                content, absent = read_target(self.site, target)
                stem = re.sub(r"[^A-Za-z0-9._-]+", "_", target.key.strip("/"))[-100:]
                name = f"{index:02d}-{stem}" + (".json" if isinstance(target, ObjectTarget) else "")
                source = (
                    f"{self.site.genesys.name}:gax:{target.key}"
                    if isinstance(target, ObjectTarget)
                    else f"{self.site.asterisk.name}:{target.path}"
                )
                record = self.journal.store_backup(
                    name, content, source=source, kind="absent" if absent else target.kind
                )
                entries.append(BackupEntry(target, name, record.sha256, self.journal.path, absent))
                self.ctx.progress(
                    f"{target.key}: {'absent' if absent else f'{record.size} bytes'}, "
                    f"sha256 {record.sha256[:12]}"
                )
            results["backups"] = [entry.to_json() for entry in entries]
            self.report.backups = entries
        return entries

    # restart and verification

    def restart(self, step: Step, dns: Sequence[str]) -> datetime:
        """Restart SIP Server once for the site and trigger re-registration of `dns`; returns
        the host's clock just before the restart (registrations count from then on)."""
        with self.step(step, {"dns": list(dns)}) as results:
            self.restart_started = True
            with WinRMTransport(self.site.genesys.winrm) as winrm:
                before = host_clock(winrm)
            results["host_clock"] = before.isoformat()
            self.ctx.progress(
                f"restarting {self.site.genesys.service_name} on {self.site.genesys.name} (host "
                f"clock {before.isoformat(timespec='seconds')}), then re-registering "
                f"{', '.join(dns)}"
            )
            started = time.monotonic()
            self.ctx.checked_playbook(
                RESTART_PLAYBOOK, self.private_dir(step), self.extravars(dns), "the restart"
            )
            results["seconds"] = round(time.monotonic() - started, 3)
            self.report.restarted = True
        return before

    def wait_for(
        self,
        dns: Sequence[str],
        since: datetime | None,
        route_dns: Sequence[str],
        results: dict[str, Any],
    ) -> list[str]:
        """Poll within the bound until each DN's latest registration is accepted (at or after
        `since`) and Asterisk routes each of `route_dns`; the proof, or VerificationError. The
        step's `results` get each DN's registration timeline as last read."""
        options = self.ctx.options
        started = time.monotonic()
        deadline = started + options.verify_timeout
        winrm: WinRMTransport | None = None
        ssh: SSHTransport | None = None
        try:
            while True:
                try:
                    winrm = winrm or WinRMTransport(self.site.genesys.winrm)
                    states = registration_states(self.site, winrm, dns, since)
                    results["timelines"] = {dn: states[dn].timeline for dn in dns}
                    self.report.in_service = [dn for dn in dns if states[dn].ok]
                    self.report.not_in_service = [dn for dn in dns if not states[dn].ok]
                    if route_dns:
                        ssh = ssh or SSHTransport(self.site.asterisk.ssh)
                        routes = route_states(self.site, ssh, route_dns)
                        states.update({f"route {dn}": state for dn, state in routes.items()})
                    problems = [state.detail for state in states.values() if not state.ok]
                    if not problems:
                        for state in states.values():
                            self.ctx.progress(f"ok  {state.detail}")
                        return [state.detail for state in states.values()]
                except RemediateError as error:
                    problems = [f"{error.reference}: {error.message}"]
                    for transport in (winrm, ssh):
                        if transport is not None:
                            transport.close()
                    winrm = ssh = None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise VerificationError(
                        f"not verified within {options.verify_timeout:g} s: " + "; ".join(problems),
                        hint="'remediate diagnose --dn ...' tells what the estate shows now",
                    )
                waited = time.monotonic() - started
                self.ctx.progress(f"waiting ({waited:.0f} s): {'; '.join(problems)}")
                time.sleep(min(options.poll_interval, remaining))
        finally:
            for transport in (winrm, ssh):
                if transport is not None:
                    transport.close()

    def verify_suite(self, dns: Sequence[str], fix: FixSpec) -> None:
        """`--verify`: the pytest-testinfra suite against the run while it is still open (its log
        events count from this run's restart); its JUnit XML goes into the run's record. A
        failure, or a host it cannot reach, fails the change (and rolls it back)."""
        assert self.ctx.state is not None
        options = self.ctx.options
        with self.step(Step.VERIFY_SUITE, {"dns": list(dns)}) as results:
            result = run_verification(
                self.site.inventory,
                self.site.name,
                dns,
                run_id=self.journal.run_id,
                state_dir=self.ctx.state.path,
                fix=fix.name,
                vault_password_file=options.vault_password_file,
                timeout=options.suite_timeout,
            )
            self.report.verification = result.to_json()
            results.update(
                junit=str(result.junit_path),
                passed=result.passed,
                checks=[check.to_json() for check in result.checks],
            )
            for check in result.checks:
                self.ctx.progress(f"{check.outcome.value:<11} {check.name} {check.target}")
            if not result.passed:
                failing = result.failed + result.unreachable
                raise VerificationError(
                    "the verification suite failed: "
                    + "; ".join(f"{c.name} ({c.target}): {c.message}" for c in failing)
                    if failing
                    else "the verification suite ran no check that applies",
                    hint=f"its JUnit XML: {result.junit_path}",
                )

    # rollback

    def rollback(
        self,
        backups: Sequence[BackupEntry],
        *,
        restart: bool,
        baseline: Sequence[str],
        reregister: Sequence[str],
    ) -> None:
        """Restore every backup, restart SIP Server if the change had restarted it, then prove
        the estate is back: each target byte-identical to its backup, the baseline in service.
        On failure the report gets, per target, what is restored and how to restore the rest."""
        try:
            with self.step(Step.ROLLBACK, {"backups": [b.name for b in backups]}):
                objects: list[dict[str, Any]] = []
                files: list[dict[str, Any]] = []
                for backup in backups:
                    content = backup.content()
                    if isinstance(backup.target, ObjectTarget):
                        objects.append(
                            {
                                "cfg_type": backup.target.cfg_type,
                                "name": backup.target.name,
                                "before": json.loads(content),
                            }
                        )
                    else:
                        files.append({"path": backup.target.path, "backup": str(backup.path)})
                self.ctx.progress(
                    f"restoring {len(objects)} object(s) and {len(files)} file(s) from "
                    f"{backups[0].run_dir / BACKUP_DIR if backups else 'no backup'}"
                )
                self.ctx.checked_playbook(
                    ROLLBACK_PLAYBOOK,
                    self.private_dir(Step.ROLLBACK),
                    {
                        **self.extravars(reregister),
                        "remediate_rollback_objects": objects,
                        "remediate_rollback_files": files,
                    },
                    "the rollback",
                )
            since = self.restart(Step.ROLLBACK_RESTART, reregister) if restart else None
            with self.step(Step.ROLLBACK_VERIFY, {"baseline": list(baseline)}) as results:
                checksums = self.checksums(backups)
                results["checksums"] = checksums
                different = [entry["target"] for entry in checksums if not entry["restored"]]
                if different:
                    raise VerificationError(
                        "after the rollback these differ from their backups (or cannot be "
                        f"read): {', '.join(different)}",
                        reference="rollback-not-identical",
                    )
                self.ctx.progress(f"{len(backups)} target(s) byte-identical to their backups")
                results["proof"] = self.wait_for(baseline, since, (), results) if baseline else []
        except BaseException:
            self.report.restore = self.restore_instructions(backups)
            raise

    def checksums(self, backups: Sequence[BackupEntry]) -> list[dict[str, Any]]:
        """Each target now, against its backup's SHA-256 (`restored` None: it cannot be read)."""
        found = []
        for backup in backups:
            entry: dict[str, Any] = {"target": backup.target.key, "backup": str(backup.path)}
            try:
                content, _ = read_target(self.site, backup.target)
            except RemediateError as error:
                entry.update(restored=None, error=f"{error.reference}: {error.message}")
            else:
                entry.update(restored=_sha256(content) == backup.sha256, sha256=_sha256(content))
            found.append(entry)
        return found

    def restore_instructions(self, backups: Sequence[BackupEntry]) -> list[dict[str, Any]]:
        """Per target: restored or not, and exactly how a person restores it from its backup."""
        site = self.site
        restart = (
            f"then restart {site.genesys.service_name} on {site.genesys.name} and trigger "
            f're-registration on {site.asterisk.name} (asterisk -rx "pjsip send register *all")'
        )
        instructions = []
        for entry, backup in zip(self.checksums(backups), backups, strict=True):
            target = backup.target
            if isinstance(target, ObjectTarget) and backup.absent:
                how = (
                    f"delete {target.cfg_type} {target.name!r} in Genesys configuration (GAX of "
                    f"{site.genesys.name}): it did not exist before the run ({backup.path} "
                    f"records its absence); {restart}"
                )
            elif isinstance(target, ObjectTarget):
                how = (
                    f"restore {target.cfg_type} {target.name!r} in Genesys configuration (GAX of "
                    f"{site.genesys.name}) to the object in {backup.path} (PUT it to "
                    f"/gax/api/cfg/objects/{target.cfg_type}/<dbid>, or set its annex options "
                    f"as listed there in Genesys Administrator); {restart}"
                )
            else:
                how = (
                    f"copy {backup.path} to {site.asterisk.name}:{target.path} (keep the file's "
                    'owner and mode), then asterisk -rx "dialplan reload"'
                )
            state = {True: "restored", False: "NOT restored", None: "unknown (cannot read it)"}
            instructions.append({**backup.to_json(), "state": state[entry["restored"]], "how": how})
        return instructions

    # the transaction

    def apply(self) -> RunReport:
        options, report = self.ctx.options, self.report
        try:
            self.guards(window=True)
            with self.step(Step.PREFLIGHT) as results:
                plan = _preflight(self.ctx, options.fix, options.force)
                report.baseline, report.fix = plan.baseline, plan.fix
                results.update(
                    fix=_fix_json(plan.fix),
                    baseline=plan.baseline,
                    diagnosis=[
                        {
                            "dn": item.dn,
                            "in_service": item.in_service,
                            "root_cause": item.root_cause.code.value,
                            "recommendation": item.recommendation.fix.value,
                        }
                        for item in (plan.diagnosis.dns if plan.diagnosis else [])
                    ],
                    timelines=plan.timelines,
                )
            if plan.fix is not None:
                with self.step(Step.PLAN) as results:
                    plan.changes = _plan_changes(
                        self.ctx, plan, self.private_dir(Step.PLAN), self.journal.run_id
                    )
                    _check_plan(self.ctx, plan)
                    results.update(changes=[c.to_json() for c in plan.changes], note=plan.note)
                report.plan = plan.changes
            if self.ctx.hooks.on_plan is not None:
                self.ctx.hooks.on_plan(plan)
            if plan.nothing_to_do:
                report.in_service = list(plan.baseline)
                return self.finish(RunStatus.NO_CHANGE, ExitStatus.SUCCESS, plan.note)
            if not self.confirmed("Apply these changes?"):
                return self.finish(
                    RunStatus.ABORTED,
                    ExitStatus.ERROR,
                    "not applied: the change was not confirmed; nothing was changed",
                )
            assert plan.fix is not None
            backups = self.backup(plan.fix)
        except RemediateError as error:
            return self.finish(
                RunStatus.FAILED_BEFORE_CHANGE,
                error.exit_status,
                f"{error.message}; nothing was changed",
                error,
            )
        except KeyboardInterrupt:
            return self.finish(
                RunStatus.ABORTED, ExitStatus.INTERRUPTED, "interrupted; nothing was changed"
            )
        except Exception as unexpected:
            bug = _unexpected(unexpected)
            return self.finish(
                RunStatus.FAILED_BEFORE_CHANGE,
                ExitStatus.ERROR,
                f"{bug.message}; nothing was changed",
                bug,
            )
        return self.change(plan, plan.fix, backups)

    def change(self, plan: Plan, fix: FixSpec, backups: list[BackupEntry]) -> RunReport:
        """Apply, restart, verify, commit; on any failure, roll back."""
        report = self.report
        everyone = _ordered([*plan.dns, *plan.baseline])
        try:
            if plan.changes:
                with self.step(Step.APPLY) as results:
                    result = self.ctx.checked_playbook(
                        fix.playbook,
                        self.private_dir(Step.APPLY),
                        {**self.extravars(plan.dns), **fix.extravars},
                        f"the {fix.name} fix",
                    )
                    report.applied = change_set(result.changes)
                    results["changes"] = [change.to_json() for change in report.applied]
            since = self.restart(Step.RESTART, everyone) if fix.needs_restart else None
            with self.step(Step.VERIFY, {"dns": everyone}) as results:
                results["proof"] = self.wait_for(
                    everyone, since, plan.dns if fix.proves_route else (), results
                )
            if self.ctx.options.verify_suite:
                self.verify_suite(plan.dns, fix)
            with self.step(Step.COMMIT) as results:
                results["after"] = {
                    entry["target"]: entry.get("sha256") for entry in self.checksums(backups)
                }
        except BaseException as failure:
            return self.roll_back_failed_change(failure, backups, plan.baseline, everyone)
        return self.finish(
            RunStatus.COMMITTED,
            ExitStatus.SUCCESS,
            f"{fix.name} applied and verified; in service: {', '.join(report.in_service)}",
        )

    def roll_back_failed_change(
        self,
        failure: BaseException,
        backups: Sequence[BackupEntry],
        baseline: Sequence[str],
        reregister: Sequence[str],
    ) -> RunReport:
        interrupted = isinstance(failure, KeyboardInterrupt)
        if isinstance(failure, RemediateError):
            error = failure
        elif interrupted:
            error = RemediateError("interrupted during the change", reference="interrupted")
        else:
            error = _unexpected(failure)
        self.report.error = error
        self.ctx.progress(f"{error.message}; rolling back", Step.ROLLBACK)
        try:
            self.rollback(
                backups, restart=self.restart_started, baseline=baseline, reregister=reregister
            )
        except Exception as rollback_error:
            return self.finish(
                RunStatus.ROLLBACK_FAILED,
                ExitStatus.ROLLBACK_FAILED,
                f"{error.message}; THE ROLLBACK FAILED TOO ({rollback_error}): a person must "
                "restore what the report lists",
                error,
            )
        return self.finish(
            RunStatus.ROLLED_BACK,
            ExitStatus.INTERRUPTED if interrupted else ExitStatus.VERIFICATION_FAILED,
            f"{error.message}; rolled back: every object and file is byte-identical to its "
            f"backup and {', '.join(baseline) or 'no DN'} in service as before",
            error,
        )

    def roll_back_run(self, original: RunRecord) -> RunReport:
        """Restore the backups of an earlier run (`remediate rollback RUN_ID`)."""
        options = self.ctx.options
        steps = {step.name: step for step in original.steps}
        self.report.rolls_back = original.run_id
        try:
            self.guards(window=False)
            with self.step(Step.PREFLIGHT, {"rolls_back": original.run_id}) as results:
                backups = [
                    BackupEntry.from_json(data, original.path)
                    for data in steps[Step.BACKUP].data.get("backups", [])
                ]
                preflight = steps[Step.PREFLIGHT].data
                self.report.baseline = list(preflight.get("baseline", []))
                fix_data = preflight.get("fix") or {}
                restart = bool(fix_data.get("needs_restart")) and Step.RESTART in steps
                after = steps[Step.COMMIT].data.get("after", {}) if Step.COMMIT in steps else {}
                for backup in backups:
                    backup.content()  # refuses a backup whose checksum no longer matches
                changed_since = [
                    entry["target"]
                    for entry in self.checksums(backups)
                    if after and entry.get("sha256") != after.get(entry["target"])
                ]
                results.update(backups=[b.name for b in backups], changed_since=changed_since)
                if changed_since and not options.force:
                    raise PreconditionError(
                        f"changed since run {original.run_id} committed: "
                        f"{', '.join(changed_since)}; restoring would undo those changes too",
                        reference="changed-since-run",
                        hint="look at what changed; --force restores the backups anyway",
                    )
                for backup in backups:
                    self.ctx.progress(f"will restore {backup.target.key} from {backup.path}")
            if not self.confirmed(f"Restore these {len(backups)} backup(s)?"):
                return self.finish(
                    RunStatus.ABORTED, ExitStatus.ERROR, "not confirmed; nothing was changed"
                )
        except RemediateError as error:
            return self.finish(
                RunStatus.FAILED_BEFORE_CHANGE,
                error.exit_status,
                f"{error.message}; nothing was changed",
                error,
            )
        self.report.backups = backups
        everyone = _ordered([*original.metadata.dns, *self.report.baseline])
        try:
            self.rollback(
                backups, restart=restart, baseline=self.report.baseline, reregister=everyone
            )
        except Exception as error:
            failure = error if isinstance(error, RemediateError) else None
            return self.finish(
                RunStatus.ROLLBACK_FAILED,
                ExitStatus.ROLLBACK_FAILED,
                f"the rollback of run {original.run_id} failed ({error}): a person must restore "
                "what the report lists",
                failure,
            )
        return self.finish(
            RunStatus.ROLLED_BACK,
            ExitStatus.SUCCESS,
            f"run {original.run_id} rolled back: every object and file byte-identical to its "
            f"backup, {', '.join(self.report.baseline) or 'no DN'} in service",
        )

    # recovery

    def recover(self, record: RunRecord) -> RunReport:
        """Finish a run a crash left open, from its journal alone: stop what its controller left
        running, then confirm a change whose verification had finished, roll back one that may
        have changed anything, or just close a run that changed nothing."""
        report = self.report
        steps = {step.name: step for step in record.steps}
        started = [step.name for step in record.steps]
        decision = recovery_decision(record)
        source = record
        if record.metadata.action == "rollback" and Step.PREFLIGHT in steps:
            report.rolls_back = str(steps[Step.PREFLIGHT].data.get("rolls_back") or "") or None
            if report.rolls_back and decision == "roll-back":
                assert self.ctx.state is not None
                source = read_run_dir(self.ctx.state.run_path(report.rolls_back))
        source_steps = {step.name: step for step in source.steps}
        preflight = source_steps[Step.PREFLIGHT].data if Step.PREFLIGHT in source_steps else {}
        report.baseline = [str(dn) for dn in preflight.get("baseline", [])]
        fix_data = preflight.get("fix") or {}
        if fix_data.get("name") in FIX_NAMES:
            report.fix = build_fix(str(fix_data["name"]), self.site)
        if Step.PLAN in steps:
            report.plan = [Change.from_json(c) for c in steps[Step.PLAN].data.get("changes", [])]
        if Step.APPLY in steps and steps[Step.APPLY].outcome is StepOutcome.FINISHED:
            report.applied = [
                Change.from_json(c) for c in steps[Step.APPLY].data.get("changes", [])
            ]
        report.restarted = Step.RESTART in steps
        last = started[-1] if started else "none"
        owner = record.owner
        report.recovered = {
            "decision": decision,
            "last_step": last,
            "interrupted_steps": record.unfinished_steps,
            "dead_owner": f"{owner.operator}@{owner.host} pid {owner.pid}",
        }
        died = f"its controller (pid {owner.pid} on {owner.host}) died during step {last}"
        try:
            with self.step(Step.RECOVER, dict(report.recovered)) as results:
                killed = scrubbed = 0
                ansible_dir = record.path / "ansible"
                for private in sorted(ansible_dir.iterdir()) if ansible_dir.is_dir() else []:
                    killed += kill_run_processes(private.absolute())
                    scrubbed += scrub_private_dir(private, _secrets(self.site))
                results.update(killed_processes=killed, scrubbed_files=scrubbed)
                report.recovered.update(killed_processes=killed, scrubbed_files=scrubbed)
                self.ctx.progress(
                    f"run {record.run_id}: {died}; {killed} leftover process(es) stopped; "
                    f"decision: {decision}"
                )
                if decision != "nothing-changed" and not self.confirmed(
                    f"Recover run {record.run_id} ({decision})?"
                ):
                    raise UsageError(
                        "the recovery was not confirmed; the run stays open",
                        reference="not-confirmed",
                    )
                longest = worst_case(self.ctx.options, rollback_only=True)
                try:
                    self.acquire_lock(longest + LOCK_MARGIN)
                except RemediateError as error:
                    if decision != "nothing-changed":
                        raise
                    # Nothing to undo: the lock is not needed, and one left behind expires.
                    results["lock"] = f"not taken ({error.reference}: {error.message})"
                backups = [
                    BackupEntry.from_json(data, source.path)
                    for data in (
                        source_steps[Step.BACKUP].data.get("backups", [])
                        if Step.BACKUP in source_steps
                        else []
                    )
                ]
                report.backups = backups
        except LockedError:
            raise
        except RemediateError as error:
            report.status, report.exit_status, report.error = (
                RunStatus.RUNNING,
                error.exit_status,
                error,
            )
            report.message = f"{error.message}; run {record.run_id} is still open"
            return report
        if decision == "nothing-changed":
            return self.finish(
                RunStatus.FAILED_BEFORE_CHANGE,
                ExitStatus.SUCCESS,
                f"recovered: {died}, before anything was changed; nothing to undo, the "
                "site's locks are released",
            )
        if decision == "confirm":
            with self.step(Step.COMMIT) as results:
                results["after"] = {
                    entry["target"]: entry.get("sha256") for entry in self.checksums(backups)
                }
            verified = steps[Step.VERIFY].data.get("dns", []) if Step.VERIFY in steps else []
            report.in_service = [str(dn) for dn in verified]
            return self.finish(
                RunStatus.COMMITTED,
                ExitStatus.SUCCESS,
                f"recovered: {died}, after the change was applied and verified: confirmed "
                "(committed)",
            )
        source_started = {step.name for step in source.steps}
        restart = bool(fix_data.get("needs_restart")) or Step.RESTART in source_started
        everyone = _ordered([*source.metadata.dns, *report.baseline])
        try:
            if not backups:
                raise JournalError(
                    f"run {source.run_id} recorded no backup to restore from",
                    reference="backup-missing",
                )
            self.rollback(backups, restart=restart, baseline=report.baseline, reregister=everyone)
        except Exception as failure:
            problem = failure if isinstance(failure, RemediateError) else _unexpected(failure)
            return self.finish(
                RunStatus.ROLLBACK_FAILED,
                ExitStatus.ROLLBACK_FAILED,
                f"recovering: {died}; THE ROLLBACK FAILED ({problem.message}): a person must "
                "restore what the report lists",
                problem,
            )
        return self.finish(
            RunStatus.ROLLED_BACK,
            ExitStatus.SUCCESS,
            f"recovered: {died}; rolled back: every object and file is byte-identical to its "
            f"backup and {', '.join(report.baseline) or 'no DN'} in service as before",
        )


def recovery_decision(record: RunRecord) -> str:
    """What `recover` does with an open run: `nothing-changed` (no step that may change the
    estate had started), `confirm` (an apply whose verification, the suite included when it was
    asked for, had finished, and no rollback had started), else `roll-back`."""
    started = {step.name for step in record.steps}
    if not started & CHANGING_STEPS:
        return "nothing-changed"
    if record.metadata.action != "apply":
        return "roll-back"
    finished = {step.name for step in record.steps if step.outcome is StepOutcome.FINISHED}
    guards = next((step for step in record.steps if step.name == Step.GUARDS), None)
    suite = bool(guards is not None and guards.data.get("verify_suite"))
    rolling_back = started & {Step.ROLLBACK, Step.ROLLBACK_RESTART, Step.ROLLBACK_VERIFY}
    verified = Step.VERIFY in finished and (not suite or Step.VERIFY_SUITE in finished)
    return "confirm" if verified and not rolling_back else "roll-back"


# Entry points -----------------------------------------------------------------------------------


def _start(
    site: Site, state: StateDir, options: Options, hooks: Hooks, action: str, fix: str
) -> _Run:
    journal = Journal.start(
        state,
        site=site.name,
        dns=list(options.dns),
        fix=fix,
        change_id=options.change_id,
        action=action,
        secrets=_secrets(site),
    )
    report = RunReport(
        run_id=journal.run_id,
        action=action,
        site=site.name,
        dns=list(options.dns),
        change_id=options.change_id,
        requested_fix=fix,
    )
    return _Run(_Context(site, options, hooks, state), journal, report)


def apply_fix(site: Site, state: StateDir, options: Options, hooks: Hooks) -> RunReport:
    """`remediate apply`: the whole transaction for `options.dns` on `site`, journaled in
    `state`. Returns the report; its `exit_status` is what the CLI exits with."""
    run = _start(site, state, options, hooks, "apply", options.fix)
    try:
        return run.apply()
    finally:
        run.release()
        run.journal.close()


ROLLBACK_ABLE = (RunStatus.COMMITTED, RunStatus.ROLLBACK_FAILED)


def rollback_run(
    site: Site, state: StateDir, original: RunRecord, options: Options, hooks: Hooks
) -> RunReport:
    """`remediate rollback RUN_ID`: restore the backups of a committed apply (or finish the
    rollback that failed), restart if it had restarted, and verify like an apply's rollback."""
    if original.metadata.action != "apply":
        raise InputError(
            f"run {original.run_id} is a {original.metadata.action}, not an apply",
            reference="not-an-apply",
            hint="roll back the apply run itself (see 'remediate history')",
        )
    if original.status not in ROLLBACK_ABLE:
        hint = (
            "it has not finished: wait for it, or 'remediate recover' once its process is gone"
            if original.status is RunStatus.RUNNING
            else "it changed nothing that is still in place"
        )
        raise PreconditionError(
            f"run {original.run_id} ended {original.status.value}: nothing to roll back",
            reference="nothing-to-roll-back",
            hint=hint,
        )
    if original.metadata.site != site.name:
        raise InputError(
            f"run {original.run_id} changed site {original.metadata.site}, not {site.name}",
            reference="site-mismatch",
            hint=f"pass --site {original.metadata.site}",
        )
    options = replace(
        options,
        dns=original.metadata.dns,
        change_id=options.change_id or original.metadata.change_id,
    )
    run = _start(site, state, options, hooks, "rollback", original.metadata.fix)
    try:
        return run.roll_back_run(original)
    finally:
        run.release()
        run.journal.close()


def recover_run(
    site: Site, state: StateDir, record: RunRecord, options: Options, hooks: Hooks
) -> RunReport:
    """`remediate recover`, for one run left open (`journal.open_runs`): take its journal over
    and finish it (see `_Run.recover`). A run another live process owns, or whose site lock a
    live run holds, raises LockedError (exit 5) and stays open."""
    try:
        journal = Journal.resume(state, record.run_id, secrets=_secrets(site))
    except JournalError as error:
        if error.reference == "run-owned":
            raise LockedError(f"run {record.run_id}: {error.message}", hint=error.hint) from None
        raise
    try:
        record = journal.record()
        for name in record.unfinished_steps:
            journal.step_failed(name, "interrupted: the controller died during this step")
        options = replace(
            options,
            dns=record.metadata.dns,
            fix=record.metadata.fix,
            change_id=record.metadata.change_id,
        )
        report = RunReport(
            run_id=record.run_id,
            action=record.metadata.action,
            site=site.name,
            dns=list(record.metadata.dns),
            change_id=record.metadata.change_id,
            requested_fix=record.metadata.fix,
        )
        run = _Run(_Context(site, options, hooks, state), journal, report)
        try:
            return run.recover(record)
        finally:
            run.release()
    finally:
        journal.close()


__all__ = [
    "SCHEMA_VERSION",
    "BackupEntry",
    "Hooks",
    "Options",
    "Plan",
    "RunReport",
    "Step",
    "apply_fix",
    "choose_fix",
    "make_plan",
    "recorded_timelines",
    "recover_run",
    "recovery_decision",
    "rollback_run",
    "worst_case",
]
