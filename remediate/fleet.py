"""Fleets: `apply` and `plan` on several sites (`--site a --site b`, or `--site all` for every
`site_<name>` group of the inventory).

Each site is the engine's own transaction, unchanged: its lock, its journal, one SIP Server
restart for all its DNs, its rollback. The fleet only schedules them:

- at most `parallel` sites at a time, in the order asked (`all`: by name);
- the brake: once `max_failed` sites have failed, no new site starts; the sites already started
  finish, or roll back, on their own; the others are reported `skipped`. Ctrl-C brakes the same
  way: a started transaction is never abandoned half-way;
- the exit status is 0 when every site succeeded, else the worst site's by `SEVERITY`.

The playbooks run on Ansible's machinery: the sites' transactions hand them to one
`PlaybookBatcher` (remediate/batch.py), which runs the same step of all the sites at that step as
one ansible-playbook (`--limit site_a:site_b`, forks across their hosts); each site gets its own
hosts' result, so a failure on one site fails, and rolls back, that site alone.

Concurrency: sites run in worker threads (their work is I/O and subprocesses). The inventory is read
in the caller's thread before any site starts, because Ansible's inventory and vault loaders keep
process-wide state. Past that, a site's transaction shares nothing with another's but its batched
playbook runs: its own run directory, its own transports; nothing changes the working directory or
the environment, and ansible-runner installs no signal handler outside the main thread. Hooks run
in the workers' threads: they must be thread-safe.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from remediate import engine
from remediate.batch import PlaybookBatcher
from remediate.dn import validate_dn
from remediate.errors import InputError, RemediateError, UsageError
from remediate.inventory import ParsedInventory, Site, read_inventory
from remediate.journal import RunStatus
from remediate.state import StateDir, resolve_state_dir
from remediate.status import ExitStatus

SCHEMA_VERSION = 1
ALL_SITES = "all"

SEVERITY: tuple[ExitStatus, ...] = (
    ExitStatus.ROLLBACK_FAILED,
    ExitStatus.INTERRUPTED,
    ExitStatus.VERIFICATION_FAILED,
    ExitStatus.PRECONDITION_FAILED,
    ExitStatus.LOCKED,
    ExitStatus.OUTSIDE_WINDOW,
    ExitStatus.ERROR,
    ExitStatus.PLAN_HAS_CHANGES,
)
"""Worst first: a person must restore a site (4); the operator stopped the fleet (130); a site
rolled back (3); a site could not start its change (7, 5, 6); an error (1); and, for `plan
--detailed-exitcode` only, a plan with changes (2). The fleet exits with the first of these that
any site ended with, 0 when none did."""

HooksFor = Callable[[str], engine.Hooks]


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Stop(StrEnum):
    """Why the fleet started no more sites."""

    MAX_FAILED = "max-failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class SiteResult:
    """How one site of the fleet ended."""

    site: str
    outcome: Outcome
    status: str
    """The run's status (committed, no-change, rolled-back, ...); for a plan `changes`,
    `no-change` or `failed`; `skipped` for a site that never started."""
    exit_status: ExitStatus | None
    """None for a skipped site."""
    message: str
    fix: str | None = None
    in_service: tuple[str, ...] = ()
    run_id: str | None = None
    elapsed: float = 0.0
    document: Mapping[str, Any] | None = None
    """The site's own run (or plan) document, as `remediate apply|plan --output json` prints it."""
    error: RemediateError | None = None
    plan: engine.Plan | None = None
    """For `plan`: the site's plan, for people to review."""

    @classmethod
    def from_report(cls, site: str, report: engine.RunReport) -> SiteResult:
        succeeded = report.exit_status is ExitStatus.SUCCESS
        return cls(
            site=site,
            outcome=Outcome.SUCCEEDED if succeeded else Outcome.FAILED,
            status=report.status.value,
            exit_status=report.exit_status,
            message=report.message,
            fix=report.fix.name if report.fix else None,
            in_service=tuple(report.in_service),
            run_id=report.run_id,
            elapsed=report.elapsed,
            document=report.to_json(),
            error=report.error if not succeeded else None,
        )

    @classmethod
    def from_plan(
        cls, site: str, plan: engine.Plan, elapsed: float, detailed_exitcode: bool
    ) -> SiteResult:
        """With `detailed_exitcode`, a plan that changes something exits 2, as one site's does."""
        changes = not plan.nothing_to_do
        return cls(
            site=site,
            outcome=Outcome.SUCCEEDED,
            status="changes" if changes else "no-change",
            exit_status=ExitStatus.PLAN_HAS_CHANGES
            if changes and detailed_exitcode
            else ExitStatus.SUCCESS,
            message=plan.note or ("nothing to do" if plan.nothing_to_do else "changes planned"),
            fix=plan.fix.name if plan.fix else None,
            in_service=tuple(plan.baseline),
            elapsed=elapsed,
            document=plan.to_json(),
            plan=plan,
        )

    @classmethod
    def from_error(cls, site: str, error: RemediateError, elapsed: float) -> SiteResult:
        """A site whose run could not start (its inventory entry, the state directory, a bug)."""
        return cls(
            site=site,
            outcome=Outcome.FAILED,
            status=RunStatus.FAILED_BEFORE_CHANGE.value,
            exit_status=error.exit_status,
            message=f"{error.message}; nothing was changed",
            elapsed=elapsed,
            error=error,
        )

    @classmethod
    def skipped(cls, site: str, why: str) -> SiteResult:
        return cls(
            site=site, outcome=Outcome.SKIPPED, status="skipped", exit_status=None, message=why
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "outcome": self.outcome.value,
            "status": self.status,
            "exit_code": None if self.exit_status is None else int(self.exit_status),
            "message": self.message,
            "fix": self.fix,
            "dns_in_service": list(self.in_service),
            "run_id": self.run_id,
            "elapsed_seconds": round(self.elapsed, 3),
            "error": None
            if self.error is None
            else {
                "reference": self.error.reference,
                "message": self.error.message,
                "hint": self.error.hint,
            },
            "run": self.document,
        }


@dataclass(frozen=True)
class FleetReport:
    action: str  # "apply" or "plan"
    dns: tuple[str, ...]
    change_id: str | None
    parallel: int
    max_failed: int | None
    sites: tuple[SiteResult, ...]
    stopped: Stop | None
    elapsed: float
    exit_status: ExitStatus

    def count(self, outcome: Outcome) -> int:
        return sum(result.outcome is outcome for result in self.sites)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "fleet",
            "action": self.action,
            "dns": list(self.dns),
            "change_id": self.change_id,
            "parallel": self.parallel,
            "max_failed": self.max_failed,
            "stopped": None if self.stopped is None else self.stopped.value,
            "exit_code": int(self.exit_status),
            "counts": {outcome.value: self.count(outcome) for outcome in Outcome},
            "elapsed_seconds": round(self.elapsed, 3),
            "sites": [result.to_json() for result in self.sites],
        }


def is_fleet_request(sites: Sequence[str] | None) -> bool:
    """`--site` given more than once, or `--site all`: a fleet. One `--site NAME`: one site."""
    return bool(sites) and (len(sites or ()) > 1 or ALL_SITES in (sites or ()))


def exit_status_of(codes: Iterable[ExitStatus | None]) -> ExitStatus:
    """The fleet's exit status: the worst of the sites' by `SEVERITY`, 0 when all succeeded."""
    found = {code for code in codes if code is not None and code is not ExitStatus.SUCCESS}
    for code in SEVERITY:
        if code in found:
            return code
    return ExitStatus.ERROR if found else ExitStatus.SUCCESS


def render(report: FleetReport) -> str:
    """The fleet summary table, then what went wrong where (text; the CLI prints it)."""
    header = ("SITE", "FIX", "STATUS", "EXIT", "DNS IN SERVICE", "RUN ID", "ELAPSED")
    rows = [
        (
            result.site,
            result.fix or "-",
            result.status,
            "-" if result.exit_status is None else str(int(result.exit_status)),
            ",".join(result.in_service) or "-",
            result.run_id or "-",
            "-" if result.outcome is Outcome.SKIPPED else f"{result.elapsed:.1f}s",
        )
        for result in report.sites
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    counts = ", ".join(f"{report.count(outcome)} {outcome.value}" for outcome in Outcome)
    brake = f", max-failed {report.max_failed}" if report.max_failed is not None else ""
    lines.append(
        f"Fleet {report.action}, DN {', '.join(report.dns)}: {counts} of {len(report.sites)} "
        f"site(s) in {report.elapsed:.1f} s (parallel {report.parallel}{brake}); "
        f"exit {int(report.exit_status)}"
    )
    if report.stopped is Stop.MAX_FAILED:
        lines.append(f"  the --max-failed {report.max_failed} brake stopped the fleet")
    elif report.stopped is Stop.INTERRUPTED:
        lines.append("  interrupted: the started sites finished; the others did not start")
    for result in report.sites:
        if result.outcome is not Outcome.FAILED:
            continue
        lines.append(f"  {result.site}: {result.status}: {result.message}")
        if result.error is not None and result.error.hint:
            lines.append(f"    hint: {result.error.hint}")
        if result.run_id:
            lines.append(f"    record: remediate show {result.run_id}")
    return "\n".join(lines) + "\n"


# Choosing and loading the sites ---------------------------------------------------------------


def select_sites(inventory: ParsedInventory, requested: Sequence[str]) -> list[str]:
    """The sites `--site` names, in the order given (duplicates dropped); `all`: every site."""
    known = inventory.site_names
    if not known:
        raise InputError(
            f"the inventory {inventory.path} has no site_<name> group",
            reference="inventory-no-site",
            hint="put the genesys and asterisk hosts of a site under a parent group site_<name>",
        )
    if ALL_SITES in requested:
        if len(requested) > 1:
            raise UsageError(
                "--site all cannot be combined with site names",
                hint="give --site all alone, or name each site",
            )
        return known
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise InputError(
            f"no site {', '.join(map(repr, unknown))} in {inventory.path} "
            f"(sites: {', '.join(known)})",
            reference="site-unknown",
            hint="see the site_<name> groups of the inventory, or use --site all",
        )
    return list(dict.fromkeys(requested))


def _load_sites(
    inventory: ParsedInventory, names: Sequence[str]
) -> dict[str, Site | RemediateError]:
    """Each site, or why it cannot be loaded (that site fails when its turn comes)."""
    loaded: dict[str, Site | RemediateError] = {}
    for name in names:
        try:
            loaded[name] = inventory.site(name)
        except RemediateError as error:
            loaded[name] = error
    _check_one_site_per_host(loaded)
    return loaded


def _check_one_site_per_host(loaded: Mapping[str, Site | RemediateError]) -> None:
    """Two sites on one SIP Server (or one gateway) would restart it, or edit its files, twice
    and at once: refuse before anything starts."""
    owners: dict[tuple[str, str], str] = {}
    for name, site in loaded.items():
        if not isinstance(site, Site):
            continue
        keys = [
            ("SIP Server host", site.genesys.name),
            ("SIP Server", f"{site.genesys.sip_address}:{site.genesys.sip_port}"),
            ("Asterisk host", site.asterisk.name),
            ("Asterisk gateway", f"{site.asterisk.sip_address}:{site.asterisk.sip_port}"),
        ]
        for key in keys:
            other = owners.setdefault(key, name)
            if other != name:
                raise InputError(
                    f"sites {other} and {name} share the {key[0]} {key[1]}: run as two sites, "
                    "it would be changed and restarted twice, at the same time",
                    reference="fleet-shared-host",
                    hint="give each host to one site_<name> group, and every DN of that host "
                    "to that site's run",
                )


def _targets(dns: Sequence[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(validate_dn(dn) for dn in dns))
    if not wanted:
        raise InputError("no DN given", reference="bad-dn", hint="give --dn 5001")
    return wanted


def _check_bounds(parallel: int, max_failed: int | None) -> None:
    if parallel < 1:
        raise UsageError(f"--parallel must be 1 or more, not {parallel}")
    if max_failed is not None and max_failed < 1:
        raise UsageError(
            f"--max-failed must be 1 or more, not {max_failed}",
            hint="leave it out to let every site run whatever fails",
        )


# Scheduling -----------------------------------------------------------------------------------


def run_sites(
    names: Sequence[str],
    run_site: Callable[[str], SiteResult],
    *,
    parallel: int,
    max_failed: int | None,
) -> tuple[list[SiteResult], Stop | None]:
    """Run `run_site` for each name, `parallel` at a time, braking after `max_failed` failures
    or at Ctrl-C; results in the order of `names`."""
    _check_bounds(parallel, max_failed)
    pending = deque(names)
    running: dict[Future[SiteResult], str] = {}
    results: dict[str, SiteResult] = {}
    failed = 0
    stopped: Stop | None = None
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="fleet-site") as pool:
        while pending or running:
            try:
                while pending and stopped is None and len(running) < parallel:
                    name = pending.popleft()
                    running[pool.submit(_guarded, run_site, name)] = name
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    results[running.pop(future)] = result
                    failed += result.outcome is Outcome.FAILED
                    if stopped is None and max_failed is not None and failed >= max_failed:
                        stopped = Stop.MAX_FAILED
            except KeyboardInterrupt:
                # The started sites go on to their commit or rollback: waiting for them is the
                # only safe way out (a SIGKILL leaves them to `remediate recover`).
                stopped = Stop.INTERRUPTED
    why = {
        Stop.MAX_FAILED: f"not started: {failed} site(s) failed, the --max-failed {max_failed} "
        "brake stopped the fleet",
        Stop.INTERRUPTED: "not started: the fleet was interrupted",
    }
    for name in pending:
        assert stopped is not None
        results[name] = SiteResult.skipped(name, why[stopped])
    return [results[name] for name in names], stopped


def _guarded(run_site: Callable[[str], SiteResult], name: str) -> SiteResult:
    started = time.monotonic()
    try:
        return run_site(name)
    except RemediateError as error:
        return SiteResult.from_error(name, error, time.monotonic() - started)
    except Exception as error:  # one site's bug must not take the others' reports with it
        bug = RemediateError(
            f"{type(error).__name__}: {error}",
            reference="unexpected-error",
            hint="this is a bug in remediate: report it with the fleet's JSON",
        )
        return SiteResult.from_error(name, bug, time.monotonic() - started)


# apply and plan -------------------------------------------------------------------------------


def _no_hooks(_site: str) -> engine.Hooks:
    return engine.Hooks()


def _run_batched(
    names: Sequence[str],
    loaded: Mapping[str, Site | RemediateError],
    hooks_for: HooksFor,
    run_one: Callable[[str, Site, engine.Hooks], SiteResult],
    parallel: int,
    max_failed: int | None,
) -> tuple[list[SiteResult], Stop | None]:
    """`run_sites` with every site's playbooks handed to one `PlaybookBatcher`."""
    batcher = PlaybookBatcher()

    def run_site(name: str) -> SiteResult:
        site = loaded[name]
        if isinstance(site, RemediateError):
            raise site
        with batcher.member():
            return run_one(name, site, replace(hooks_for(name), run_playbook=batcher))

    return run_sites(names, run_site, parallel=parallel, max_failed=max_failed)


def apply(
    inventory: Path | None,
    sites: Sequence[str],
    options: engine.Options,
    *,
    parallel: int = 1,
    max_failed: int | None = None,
    hooks_for: HooksFor = _no_hooks,
    state_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> FleetReport:
    """`remediate apply --site ...`: the change transaction on each site (see the module's doc).
    A fleet asks no questions: `options.yes` is required (review `remediate plan` first)."""
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    _check_bounds(parallel, max_failed)
    if not options.yes:
        raise UsageError(
            "a fleet run asks no questions: several sites change at once",
            reference="fleet-confirmation-required",
            hint="review the change with 'remediate plan --site ...', then pass --yes",
        )
    if not options.interactive and not options.change_id:
        raise UsageError(
            "a change id is required when remediate does not run at a terminal",
            reference="change-id-required",
            hint="pass --change-id CHG0042 (your change ticket)",
        )
    options = replace(options, dns=_targets(options.dns))
    state = StateDir.open(resolve_state_dir(state_dir, environ))
    parsed = read_inventory(
        inventory, vault_password_file=options.vault_password_file, environ=environ
    )
    names = select_sites(parsed, sites)
    loaded = _load_sites(parsed, names)

    def apply_site(name: str, site: Site, hooks: engine.Hooks) -> SiteResult:
        return SiteResult.from_report(name, engine.apply_fix(site, state, options, hooks))

    results, stopped = _run_batched(names, loaded, hooks_for, apply_site, parallel, max_failed)
    return _report("apply", options, parallel, max_failed, results, stopped, started)


def plan(
    inventory: Path | None,
    sites: Sequence[str],
    options: engine.Options,
    *,
    parallel: int = 1,
    max_failed: int | None = None,
    hooks_for: HooksFor = _no_hooks,
    detailed_exitcode: bool = False,
    environ: Mapping[str, str] | None = None,
) -> FleetReport:
    """`remediate plan --site ...`: each site's plan (nothing is changed, no run is recorded).
    With `detailed_exitcode`, a site whose plan changes something counts as exit 2."""
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    options = replace(options, dns=_targets(options.dns))
    _check_bounds(parallel, max_failed)
    parsed = read_inventory(
        inventory, vault_password_file=options.vault_password_file, environ=environ
    )
    names = select_sites(parsed, sites)
    loaded = _load_sites(parsed, names)

    def plan_site(name: str, site: Site, hooks: engine.Hooks) -> SiteResult:
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="remediate-plan-") as work:
            made = engine.make_plan(site, options, hooks, Path(work))
        return SiteResult.from_plan(name, made, time.monotonic() - began, detailed_exitcode)

    results, stopped = _run_batched(names, loaded, hooks_for, plan_site, parallel, max_failed)
    return _report("plan", options, parallel, max_failed, results, stopped, started)


def _report(
    action: str,
    options: engine.Options,
    parallel: int,
    max_failed: int | None,
    results: Sequence[SiteResult],
    stopped: Stop | None,
    started: float,
) -> FleetReport:
    codes = [result.exit_status for result in results]
    if stopped is Stop.INTERRUPTED:
        codes.append(ExitStatus.INTERRUPTED)
    return FleetReport(
        action=action,
        dns=options.dns,
        change_id=options.change_id,
        parallel=parallel,
        max_failed=max_failed,
        sites=tuple(results),
        stopped=stopped,
        elapsed=time.monotonic() - started,
        exit_status=exit_status_of(codes),
    )


__all__ = [
    "ALL_SITES",
    "SEVERITY",
    "FleetReport",
    "Outcome",
    "SiteResult",
    "Stop",
    "apply",
    "exit_status_of",
    "is_fleet_request",
    "plan",
    "render",
    "run_sites",
    "select_sites",
]
