"""What one verification checks: the site, the DNs, the fix whose configuration must be present,
and the moment from which SIP Server log events count.

With a run id, the run's record decides the fix (unless `--fix` names one) and the moment: the
SIP Server host's clock as the run recorded it just before its last restart (log times are the
host's, never the controller's); a run that restarted nothing (the dialplan fix) counts from its
start, which the journal records on the controller's clock in UTC.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from remediate.diagnose import Fix
from remediate.dn import validate_dn
from remediate.errors import InputError
from remediate.fixes import FIX_NAMES
from remediate.inventory import Site, default_inventory, load_site
from remediate.journal import RunRecord, read_run
from remediate.state import StateDir, resolve_state_dir

TRUSTED_GATEWAY, TRUNK, DIALPLAN = Fix.TRUSTED_GATEWAY.value, Fix.TRUNK.value, Fix.DIALPLAN.value


@dataclass(frozen=True)
class Since:
    """Log events count from `moment` (aware); `source` says where that moment comes from.

    After a restart SIP Server holds no binding until a fresh REGISTER arrives, so each DN needs
    an accepted registration after the moment (`after_restart`). Without a restart, a binding
    accepted before the moment still holds unless a later event (an un-registration, a refusal,
    an expiry) says otherwise.
    """

    moment: datetime
    source: str
    after_restart: bool


@dataclass(frozen=True)
class VerificationTarget:
    site: Site
    dns: tuple[str, ...]
    fix: str | None
    run: RunRecord | None
    since: Since | None

    def describe(self) -> str:
        fix = self.fix or "none named (no fix configuration checked)"
        run = f" of run {self.run.run_id}" if self.run else ""
        since = (
            f"; log events since {self.since.source}"
            if self.since
            else "; log events of the last 24 h (no run given)"
        )
        winrm = self.site.genesys.winrm
        insecure = (
            "; WinRM certificate NOT validated (ansible_winrm_server_cert_validation: ignore)"
            if winrm.scheme == "https" and not winrm.validate_certificate
            else ""
        )
        return f"site {self.site.name}, DN {', '.join(self.dns)}, fix {fix}{run}{since}{insecure}"


def run_fix(run: RunRecord) -> str | None:
    """The fix the run applied (or planned): its preflight's choice, else what it was asked."""
    for step in run.steps:
        chosen = step.data.get("fix") if step.name == "preflight" else None
        if isinstance(chosen, Mapping) and chosen.get("name") in FIX_NAMES:
            return str(chosen["name"])
    return run.metadata.fix if run.metadata.fix in FIX_NAMES else None


def run_since(run: RunRecord) -> Since:
    """The host-clock moment of the run's last restart, else the run's start."""
    for step in reversed(run.steps):
        clock = step.data.get("host_clock")
        if isinstance(clock, str) and clock:
            try:
                moment = datetime.fromisoformat(clock)
            except ValueError:
                continue
            if moment.tzinfo is not None:
                source = f"{clock} (host clock before the {step.name} of run {run.run_id})"
                return Since(moment, source, after_restart=True)
    started = datetime.fromisoformat(run.metadata.started)
    return Since(
        started,
        f"{run.metadata.started} (start of run {run.run_id}, controller clock: the run "
        "recorded no restart)",
        after_restart=False,
    )


def check_fix(fix: str) -> str:
    if fix not in FIX_NAMES:
        raise InputError(
            f"there is no fix {fix!r}",
            reference="bad-fix",
            hint=f"use one of: {', '.join(FIX_NAMES)}",
        )
    return fix


def resolve_target(
    inventory: Path | None,
    site: str | None,
    dns: Sequence[str],
    *,
    run_id: str | None = None,
    state_dir: Path | None = None,
    fix: str | None = None,
    vault_password_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> VerificationTarget:
    """Check the inputs and load what they name; the DNs default to the run's."""
    environ = os.environ if environ is None else environ
    run = read_run(StateDir.open(resolve_state_dir(state_dir, environ)), run_id) if run_id else None
    wanted = tuple(dict.fromkeys(validate_dn(dn) for dn in dns))
    if not wanted and run is not None:
        wanted = tuple(run.metadata.dns)
    if not wanted:
        raise InputError(
            "no DN to verify", reference="bad-dn", hint="give --dn 5001 (or --run RUN_ID)"
        )
    loaded = load_site(
        inventory or default_inventory(environ),
        site or (run.metadata.site if run else None),
        vault_password_file=vault_password_file,
        environ=environ,
    )
    if run is not None and run.metadata.site != loaded.name:
        raise InputError(
            f"run {run.run_id} changed site {run.metadata.site}, not {loaded.name}",
            reference="run-site-mismatch",
            hint=f"pass --site {run.metadata.site} (or leave --site out)",
        )
    chosen = check_fix(fix) if fix else (run_fix(run) if run else None)
    return VerificationTarget(
        site=loaded,
        dns=wanted,
        fix=chosen,
        run=run,
        since=run_since(run) if run else None,
    )
