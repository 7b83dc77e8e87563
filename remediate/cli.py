"""The command line: argparse, rendering, exit statuses. Nothing else knows about the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any, NoReturn

from remediate import __version__, api, engine, fleet
from remediate.diagnose import COMPARISON_ROWS, Diagnosis, DnDiagnosis
from remediate.env import Environment
from remediate.errors import RemediateError, UsageError
from remediate.fixes.changes import Change, render_changes
from remediate.inventory import VAULT_PASSWORD_FILE_ENV, default_inventory
from remediate.journal import RunRecord
from remediate.live import parse_duration
from remediate.status import ExitStatus
from remediate.verification.runner import Outcome, VerificationResult
from remediate.window import parse_window_option

Handler = Callable[[argparse.Namespace, Environment], ExitStatus]

MAIN_EXAMPLES = """\
examples:
  remediate diagnose --log SIP_P-001.20260202_135459_850.log --dn 5002 --dn 1003
  remediate plan --dn 5001
  remediate apply --dn 5001 --dn 5002 --change-id CHG0042
  remediate history
  remediate recover --yes
  remediate report 20261205T163000Z-5f2a --html run.html
  remediate lab up
  remediate lab status

exit codes:
  0 done (or nothing to do)          4 the rollback failed: a person must act
  1 error (bad input, usage)         5 another run holds the site's lock
  2 plan shows changes               6 outside the change window
  3 verification failed, rolled back 7 a precondition failed; nothing was changed
  130 interrupted
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors render like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks instead of short error messages",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="remediate",
        description=(
            "Diagnose and fix Genesys SIP Server DNs that go out of service when they register "
            "through an Asterisk gateway."
        ),
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"remediate {__version__}")
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_diagnose_parser(commands)
    _add_plan_parser(commands)
    _add_apply_parser(commands)
    _add_rollback_parser(commands)
    _add_history_parser(commands)
    _add_show_parser(commands)
    _add_verify_parser(commands)
    _add_recover_parser(commands)
    _add_lock_parser(commands)
    _add_report_parser(commands)
    _add_lab_parser(commands)
    return parser


# -- diagnose ---------------------------------------------------------------------------------

DIAGNOSE_EXAMPLES = """\
examples:
  remediate diagnose --log SIP_P-001.20260202_135459_850.log --dn 5002
  remediate diagnose --log SIP_P-001.*.log --dn 5001 --dn 5002 --dn 1003
  remediate diagnose --log SIP_P-001.20260202_135459_850.log --dn 5002 --since 2026-02-02T13:55
  remediate diagnose --log SIP_P-001.20260202_135459_850.log --dn 5002 --output json
  remediate diagnose --dn 5002 --dn 1003                  (live, from inventories/lab)
  remediate diagnose -i inventories/prod --site uat --dn 5002 --since 2h --capture 10s

Segments of one application may be given in any order: they are read in the order of the time
stamp in their names. --since is the SIP Server host's local time, as written in its log.

Without --log the diagnosis is live and read-only: the site's SIP Server host (WinRM: service state,
its log filtered on the host, what listens on the softphone port), its configuration (GAX: Trunk
DNs, the switch annex) and its Asterisk gateway (SSH: registrations, pjsip.conf, the dialplan) are
read, never changed. -i defaults to $REMEDIATE_INVENTORY, else inventories/lab; --site to the
inventory's only site_<name> group; --since to 24h (a duration, or a time on the host's clock).

exit codes:
  0 the diagnosis ran, whatever it found (read the root cause, or .dns[].root_cause.code in JSON)
  1 bad input: a log file missing, a directory, unreadable, empty or binary; a bad DN or --since;
    an inventory variable missing or unsafe
  7 live: a host or GAX unreachable, refusing or too slow (the error names which); nothing changed
"""


def _add_diagnose_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "diagnose",
        help="say why DNs are out of service, from the live estate or SIP Server log files",
        description=(
            "Read SIP Server log segments (--log) or the live estate of a site (the default) and, "
            "for each DN, tell its state now, its latest registration transactions, the root "
            "cause with the evidence that proves it, and the recommended fix."
        ),
        epilog=DIAGNOSE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser)
    parser.add_argument(
        "--log",
        dest="logs",
        metavar="FILE",
        nargs="+",
        action="extend",
        help="SIP Server log segment(s), e.g. SIP_P-001.20260202_135459_850.log; without --log "
        "the diagnosis is live",
    )
    parser.add_argument(
        "--dn",
        dest="dns",
        metavar="DN",
        action="append",
        required=True,
        help="a DN to diagnose; repeat for several (they are then compared side by side)",
    )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="ignore log lines before TIME, the SIP Server host's local time (2026-02-02T13:55); "
        "live, also a duration back from the host's clock (2h)",
    )
    parser.add_argument(
        "-i",
        "--inventory",
        type=Path,
        metavar="INVENTORY",
        help="live: the Ansible inventory (default: $REMEDIATE_INVENTORY, else inventories/lab)",
    )
    parser.add_argument(
        "--site",
        metavar="NAME",
        help="live: the site_<NAME> group to diagnose (default: the only one)",
    )
    parser.add_argument(
        "--capture",
        metavar="DURATION",
        help="live: also watch the gateway's REGISTERs for DURATION (e.g. 10s) and compare headers",
    )
    parser.add_argument(
        "--vault-password-file",
        type=Path,
        metavar="FILE",
        help="live: Ansible Vault password file (default: $ANSIBLE_VAULT_PASSWORD_FILE)",
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or JSON for machines (schema_version 1)",
    )
    parser.set_defaults(handler=_run_diagnose)


def _run_diagnose(args: argparse.Namespace, env: Environment) -> ExitStatus:
    if args.logs:
        since = api.parse_since(args.since) if args.since is not None else None
        diagnosis = api.diagnose_logs(args.logs, args.dns, since)
    else:
        diagnosis = api.diagnose_live(
            args.inventory or default_inventory(env.environ),
            args.site,
            args.dns,
            args.since,
            parse_duration(args.capture) if args.capture is not None else None,
            args.vault_password_file or _environment_path(env, VAULT_PASSWORD_FILE_ENV),
        )
    if args.output == "json":
        write_json(diagnosis.to_json(), env)
    else:
        env.stdout.write(render_diagnosis(diagnosis))
    return ExitStatus.SUCCESS


def render_diagnosis(diagnosis: Diagnosis) -> str:
    """The diagnosis as an operator reads it at 2 a.m.: state, cause, proof, fix, per DN."""
    names = ", ".join(_file_name(source) for source in diagnosis.sources)
    out = [f"Diagnosis from {names}"]
    if diagnosis.log_start or diagnosis.log_end:
        out[0] += f" (log {_stamp(diagnosis.log_start)} .. {_stamp(diagnosis.log_end)})"
    if diagnosis.since:
        out.append(f"considering log lines from {_stamp(diagnosis.since)} on")
    for dn_diagnosis in diagnosis.dns:
        out.append("")
        out.extend(_render_dn(dn_diagnosis))
    table = diagnosis.comparison()
    if table is not None:
        out.append("")
        out.extend(_render_comparison(diagnosis, table))
    if diagnosis.observations:
        out.append("")
        out.append("Estate")
        for observation in diagnosis.observations:
            out.extend(_wrapped(f"{observation.source}: {observation.summary}"))
            width = max((len(key) for key in observation.details), default=0)
            if observation.code == "register-headers":
                out.extend(
                    f"      {key.ljust(width)}  {value}"
                    for key, value in observation.details.items()
                )
    return "\n".join(out) + "\n"


def _environment_path(env: Environment, name: str) -> Path | None:
    value = env.environ.get(name)
    return Path(value) if value else None


def _render_dn(diagnosis: DnDiagnosis) -> list[str]:
    state = {True: "IN SERVICE", False: "OUT OF SERVICE", None: "STATE UNKNOWN"}[
        diagnosis.in_service
    ]
    since = f" since {_stamp(diagnosis.since)}" if diagnosis.since else ""
    cause = diagnosis.root_cause
    fix = diagnosis.recommendation
    lines = [f"DN {diagnosis.dn}: {state}{since}"]
    lines.append(f"  root cause  {cause.code.value}")
    lines.extend(_wrapped(cause.summary))
    if cause.evidence:
        lines.append("  evidence")
        for line in cause.evidence:
            lines.append(f"    {_file_name(line.file)}:{line.line}  {line.text}")
    alternatives = ", ".join(alternative.value for alternative in fix.alternatives)
    lines.append(
        f"  fix         {fix.fix.value}"
        + (f" (alternatives: {alternatives})" if alternatives else "")
    )
    lines.extend(_wrapped(f"why: {fix.reason}"))
    lines.extend(_wrapped(f"next: {fix.action}"))
    if diagnosis.transactions:
        lines.append("  latest registrations (oldest first)")
        for entry in diagnosis.transactions:
            if entry.kind == "expiry":
                lines.append(f"    {_stamp(entry.time)}  binding expired  ({entry.where})")
                continue
            expires = "-" if entry.expires is None else str(entry.expires)
            events = ",".join(str(kind) for kind in entry.events) or "-"
            lines.append(
                f"    {_stamp(entry.time)}  {entry.source_address}:{entry.source_port}  "
                f"{entry.user_agent or '-'}  Expires {expires}  event {events}  "
                f"{entry.outcome}  [{entry.verdict}]"
            )
    for observation in diagnosis.observations:
        lines.extend(_wrapped(f"{observation.source}: {observation.summary}"))
    return lines


def _render_comparison(diagnosis: Diagnosis, table: dict[str, dict[str, str]]) -> list[str]:
    states = {True: "in service", False: "out of service", None: "unknown"}
    headers = [f"{item.dn} ({states[item.in_service]})" for item in diagnosis.dns]
    columns = [table[item.dn] for item in diagnosis.dns]
    widths = [
        max(len(header), *(len(column[row]) for row in COMPARISON_ROWS))
        for header, column in zip(headers, columns, strict=True)
    ]
    label = max(len(row) for row in COMPARISON_ROWS) + 2
    out = ["Comparison (latest registration of each DN)"]
    header_cells = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out.append(f"  {' ' * label}{header_cells}".rstrip())
    for row in COMPARISON_ROWS:
        cells = "  ".join(
            column[row].ljust(width) for column, width in zip(columns, widths, strict=True)
        )
        out.append(f"  {row.ljust(label)}{cells}".rstrip())
    return out


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(
        text, width=98, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
    )


def _stamp(moment: datetime | None) -> str:
    return moment.isoformat(sep=" ", timespec="milliseconds") if moment else "?"


def _file_name(path: str) -> str:
    return PureWindowsPath(path).name


# -- lab --------------------------------------------------------------------------------------

LAB_EXAMPLES = """\
examples:
  remediate lab up                          start the lab (the seed's fault) in ./.lab
  remediate lab up --scenario trunk-no-reverse-route --dir /tmp/lab2
  remediate lab status                      each component, its address, the DNs in service
  remediate lab fault winrm-401             make WinRM refuse every credential
  remediate lab fault winrm-401 --off
  remediate lab logs --lines 20             the newest SIP Server log lines, the Asterisk log
  remediate lab down

The lab listens on loopback only: the Genesys host at 127.0.0.81 (SIP 5060, WinRM 5985/5986, GAX
8080/8443, the softphone on 5090) and the Asterisk host at 127.0.0.54 (SSH 2222, SIP 5060). Its
inventory is inventories/lab for the default directory; `up` also writes DIR/inventory/hosts.yml.
The lab needs the `lab` extra: pip install 'remediate[lab]'.

exit codes:
  0 done   1 bad input   7 the lab cannot start or is not running (a port taken, a host failed)
"""


def _add_lab_parser(commands: Any) -> None:
    # layout.py is plain data (no lab dependencies), so `remediate --help` works without the extra.
    from remediate.lab.layout import DEFAULT_SCENARIO, FAULTS, SCENARIOS

    lab = commands.add_parser(
        "lab",
        help="run the simulated estate (Genesys and Asterisk hosts) on loopback",
        description=(
            "Start, inspect, break and stop the lab: a simulated Genesys SIP Server host and "
            "Asterisk gateway host on loopback addresses that reproduce the seed's fault. "
            "Operators rehearse a change on it; the tests run against it."
        ),
        epilog=LAB_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(lab)
    actions = lab.add_subparsers(dest="lab_action", metavar="ACTION", parser_class=_Parser)
    actions.required = True

    def action(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(
            name,
            help=text,
            description=text,
            epilog=LAB_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(parser)
        parser.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="the lab's directory (default: $REMEDIATE_LAB_DIR, else ./.lab)",
        )
        parser.add_argument("--output", choices=("text", "json"), default="text")
        parser.set_defaults(handler=_run_lab)
        return parser

    up = action("up", "start the lab and wait until every component answers")
    up.add_argument(
        "--scenario",
        choices=tuple(SCENARIOS),
        default=DEFAULT_SCENARIO,
        help="; ".join(f"{name}: {text}" for name, text in SCENARIOS.items()),
    )
    up.add_argument(
        "--sites",
        type=int,
        metavar="N",
        help="a fleet: N sites, each a Genesys and an Asterisk host on addresses of its own (the "
        "first site's plus 1, 2, ... on the last octet), in DIR/lab01 ... and one inventory, "
        "DIR/inventory/hosts.yml, with a site_labNN group per site",
    )
    up.add_argument("--genesys-host", metavar="ADDRESS", help="the (first) Genesys host's address")
    up.add_argument(
        "--asterisk-host", metavar="ADDRESS", help="the (first) Asterisk host's address"
    )
    action("down", "stop the lab; no process and no bound port is left")
    action("status", "each component and its address, the service state, the DNs in service")
    fault = action("fault", "switch a fault on (or off with --off)")
    fault.add_argument(
        "name",
        metavar="NAME",
        choices=tuple(FAULTS),
        help="; ".join(f"{name}: {text}" for name, text in FAULTS.items()),
    )
    fault.add_argument("--off", action="store_true", help="switch the fault off")
    logs = action("logs", "the newest SIP Server log lines, the Asterisk log, the process logs")
    logs.add_argument("--lines", type=int, default=40, help="lines of each log (default 40)")


def _run_lab(args: argparse.Namespace, env: Environment) -> ExitStatus:
    try:
        from remediate.lab import control
        from remediate.lab import fleet as lab_fleet
        from remediate.lab.layout import DEFAULT_LAB_DIR_ENV, LabLayout, load_layout
    except ImportError as missing:
        raise RemediateError(
            f"the lab cannot run here: {missing}",
            reference="lab-not-installed",
            hint="install the lab's extra: pip install 'remediate[lab]'",
        ) from missing
    root = args.dir or Path(env.environ.get(DEFAULT_LAB_DIR_ENV) or ".lab")
    layout, _ = load_layout(root)
    is_fleet = lab_fleet.is_fleet(root)

    def progress(message: str) -> None:
        env.stderr.write(f"  {message}\n")
        env.stderr.flush()

    try:
        if args.lab_action == "up":
            first = lab_fleet.load_fleet(root).sites[0].layout.addresses if is_fleet else None
            addresses = first or layout.addresses
            addresses = replace(
                addresses,
                genesys_host=args.genesys_host or addresses.genesys_host,
                asterisk_host=args.asterisk_host or addresses.asterisk_host,
            )
            layout = LabLayout(layout.root, addresses)
        if is_fleet and args.lab_action in ("fault", "logs"):
            raise control.LabError(
                "lab-fleet-site-needed",
                f"{root} holds a fleet of sites: {args.lab_action} works on one site",
                hint=f"give that site's directory, e.g. --dir {root / lab_fleet.site_name(0)}",
            )
        if args.lab_action == "fault":
            faults = control.fault(layout, args.name, not args.off)
            if args.output == "json":
                write_json({"schema_version": 1, "faults": sorted(faults)}, env)
            else:
                env.stdout.write(f"faults on: {', '.join(sorted(faults)) or 'none'}\n")
            return ExitStatus.SUCCESS
        if args.lab_action == "logs":
            excerpts = control.logs(layout, args.lines)
            if args.output == "json":
                write_json({"schema_version": 1, "logs": [x.to_json() for x in excerpts]}, env)
            else:
                for excerpt in excerpts:
                    env.stdout.write(f"==> {excerpt.name}: {excerpt.path or '(none yet)'}\n")
                    env.stdout.writelines(f"{line}\n" for line in excerpt.lines)
            return ExitStatus.SUCCESS
        status: control.LabStatus | lab_fleet.FleetStatus
        if args.lab_action == "up" and (args.sites or is_fleet):
            count = args.sites or len(lab_fleet.load_fleet(root).sites)
            status = lab_fleet.up(root, count, layout.addresses, args.scenario, progress=progress)
        elif is_fleet and args.lab_action == "down":
            status = lab_fleet.down(root, progress=progress)
        elif is_fleet:
            status = lab_fleet.status(root)
        elif args.lab_action == "up":
            status = control.up(layout, args.scenario, progress=progress)
        elif args.lab_action == "down":
            status = control.down(layout, progress=progress)
        else:
            status = control.status(layout)
    except control.LabError as error:
        unknown_name = error.reference.startswith("lab-unknown")
        raise RemediateError(
            error.message,
            reference=error.reference,
            hint=error.hint,
            exit_status=ExitStatus.ERROR if unknown_name else ExitStatus.PRECONDITION_FAILED,
        ) from error
    if args.output == "json":
        write_json({"schema_version": 1, **status.to_json()}, env)
    elif isinstance(status, lab_fleet.FleetStatus):
        env.stdout.write(_render_fleet_status(status))
    else:
        env.stdout.write(_render_lab_status(status))
    return ExitStatus.SUCCESS


def _render_fleet_status(status: Any) -> str:
    lines = [
        f"fleet {status.state}: {len(status.sites)} sites, scenario {status.scenario}, DNs "
        f"{', '.join(status.dns)}, directory {status.root}"
    ]
    lines.append(
        f"  {'SITE':<8}{'GENESYS':<16}{'ASTERISK':<16}{'STATE':<8}{'SERVICE':<10}IN SERVICE"
    )
    for name, site in status.sites:
        hosts = {component.host: component.address for component in site.components}
        lines.append(
            f"  {name:<8}{hosts['genesys']:<16}{hosts['asterisk']:<16}{site.state:<8}"
            f"{site.service_state or '-':<10}{', '.join(site.dns_in_service) or '-'}"
        )
    lines.append(f"  inventory: {status.inventory}")
    return "\n".join(lines) + "\n"


def _render_lab_status(status: Any) -> str:
    lines = [f"lab {status.state}: scenario {status.scenario}, directory {status.root}"]
    if status.state != "down":
        lines.append(f"  {'COMPONENT':<22}{'ADDRESS':<24}{'STATE':<7}PID")
        for component in status.components:
            address = f"{component.address}:{component.port}/{component.protocol}"
            pid = "" if component.pid is None else str(component.pid)
            lines.append(f"  {component.name:<22}{address:<24}{component.state:<7}{pid}")
        lines.append(f"  service TSrvSIP64: {status.service_state or 'unknown'}")
        lines.append(f"  DNs in service: {', '.join(status.dns_in_service) or 'none'}")
        lines.append(f"  faults on: {', '.join(status.faults) or 'none'}")
        lines.append(f"  inventory: {status.inventory}")
    return "\n".join(lines) + "\n"


# -- plan, apply, rollback, history, show -------------------------------------------------------

FIX_CHOICES = ("auto", "trusted-gateway", "trunk", "dialplan")

PLAN_EXAMPLES = """\
examples:
  remediate plan --dn 5001                                  (the fix the diagnosis recommends)
  remediate plan --dn 5001 --dn 5002 --fix trusted-gateway
  remediate plan --dn 5001 --fix trunk --detailed-exitcode  (exit 2 when something would change)
  remediate plan -i inventories/prod --site uat --dn 5001 --output json

The plan is what 'remediate apply' with the same options would change: every configuration object
option and every file line, from the fix's playbook run in check mode after the same preflight
(WinRM, GAX and SSH reached, each DN diagnosed). Nothing is changed and no run is recorded.

exit codes:
  0 the plan was made (with --detailed-exitcode: and it changes nothing)
  1 bad input (a DN, the inventory, --fix)
  2 with --detailed-exitcode: the plan changes something (or restarts SIP Server)
  7 a host unreachable or refusing, the dry run failed, or the evidence contradicts the fix
    (--force plans it anyway); nothing was changed
"""

APPLY_EXAMPLES = """\
examples:
  remediate apply --dn 5001                                 (asks before changing anything)
  remediate apply --dn 5001 --dn 5002 --fix trusted-gateway --change-id CHG0042
  remediate apply --dn 5001 --fix auto --yes --change-id CHG0042 --output json   (unattended)
  remediate apply --dn 5001 --dn 5002 --fix trusted-gateway --change-id CHG0042 --yes \
      --window 2026-12-05T22:00+05:30/2026-12-06T02:00+05:30 --verify \
      --notify https://hooks.example.com/remediate --output json

The change is a transaction, recorded step by step in the state directory: preflight (hosts
reached, DNs diagnosed, the DNs in service now kept as the baseline), plan, backup of everything
the plan touches, the fix's playbook, one restart of SIP Server for the site when the fix needs it
(with re-registration), verification that each DN registered and was accepted after the restart
and that the baseline is still in service. Any failure rolls back from the backups, restarts, and
proves the estate is byte-identical and the baseline back. Without a terminal, --change-id and
--yes are required.

Guards, before any host is touched: the change window (--window, else the inventory's
remediate_change_windows; the run must fit, rollback included, before the window closes), then the
site's locks (in the state directory and remediate_lock_path on the Asterisk host). --verify runs
the pytest-testinfra suite as the last step (its JUnit XML goes into the run's record; a failure
rolls back). --notify POSTs the run's JSON when it ends, whatever the outcome.

exit codes:
  0 applied and verified, or nothing to do (the DNs are in service and the fix is in place)
  1 bad input, or the change was not confirmed (nothing was changed)
  3 the change failed or did not verify; the rollback restored the estate
  4 THE ROLLBACK FAILED: a person must restore what the report lists (remediate show RUN_ID)
  5 another run holds the site's lock (or a run left open by a crash: remediate recover)
  6 outside the change window, or the run would outlast it; nothing was touched
  7 a precondition failed (a host unreachable, a contradicting diagnosis); nothing was changed
  130 interrupted (after a rollback when the change had started)
"""

ROLLBACK_EXAMPLES = """\
examples:
  remediate rollback 20261128T143501Z-5f2a
  remediate rollback 20261128T1435 --yes --change-id CHG0043   (a unique prefix works)

Restores every object and file that the apply run backed up, restarts SIP Server if that run had
restarted it, and proves each target byte-identical to its backup (SHA-256) and the run's baseline
DNs in service. Refused when a target changed since the run committed (--force restores anyway).
A run that ended rollback-failed can be rolled back again once the cause is fixed.

exit codes:
  0 rolled back and verified     4 the rollback failed: restore by hand what the report lists
  1 bad input or not confirmed   5 another run holds the site's lock
  7 nothing to roll back, a target changed since, or a host unreachable; nothing was changed
"""

HISTORY_EXAMPLES = """\
examples:
  remediate history
  remediate history --output json
"""

SHOW_EXAMPLES = """\
examples:
  remediate show 20261128T143501Z-5f2a
  remediate show 20261128T1435 --output json
"""


def _add_inventory_options(parser: argparse.ArgumentParser, inventory_help: str) -> None:
    """-i/--inventory and --vault-password-file, alike on every subcommand that reads one."""
    parser.add_argument("-i", "--inventory", type=Path, metavar="INVENTORY", help=inventory_help)
    parser.add_argument(
        "--vault-password-file",
        type=Path,
        metavar="FILE",
        help="Ansible Vault password file (default: $ANSIBLE_VAULT_PASSWORD_FILE)",
    )


def _add_site_options(parser: argparse.ArgumentParser, *, fleet_options: bool = False) -> None:
    _add_inventory_options(
        parser, "the Ansible inventory (default: $REMEDIATE_INVENTORY, else inventories/lab)"
    )
    if fleet_options:
        _add_fleet_options(parser)
    else:
        parser.add_argument(
            "--site", metavar="NAME", help="the site_<NAME> group (default: the only one)"
        )


def _add_fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--site",
        metavar="NAME",
        action="append",
        help="the site_<NAME> group (default: the only one); repeat it, or give 'all' for every "
        "site_* group, to run on a fleet of sites",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        default=1,
        help="fleet: how many sites run at once (default 1)",
    )
    parser.add_argument(
        "--max-failed",
        type=int,
        metavar="N",
        help="fleet: once N sites have failed, start no other (started ones finish or roll back; "
        "the rest are skipped); default: no brake",
    )


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where runs are recorded (default: $REMEDIATE_STATE_DIR, else "
        "$XDG_STATE_HOME/remediate, else ~/.local/state/remediate)",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or JSON for machines (schema_version 1)",
    )


def _add_change_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-y", "--yes", action="store_true", help="do not ask before changing anything"
    )
    parser.add_argument(
        "--change-id",
        metavar="ID",
        help="the change ticket, recorded with the run (required without a terminal)",
    )
    parser.add_argument(
        "--verify-timeout",
        metavar="DURATION",
        default="120s",
        help="how long verification waits for the DNs to register (default 120s)",
    )


def _add_notify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notify",
        metavar="URL",
        help="POST the run's JSON to URL when it ends (retried, bounded; never changes the exit "
        "code)",
    )


def _add_guard_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--window",
        metavar="START/END",
        type=parse_window_option,
        help="the approved change window, ISO 8601 with offsets "
        "(2026-12-05T22:00+05:30/2026-12-06T02:00+05:30); replaces the inventory's "
        "remediate_change_windows",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the pytest-testinfra verification suite as the last step (a failure rolls back)",
    )


def _add_dn_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dn",
        dest="dns",
        metavar="DN",
        action="append",
        required=True,
        help="a DN to fix; repeat for several (one restart serves them all)",
    )
    parser.add_argument(
        "--fix",
        choices=FIX_CHOICES,
        default="auto",
        help="the fix (default auto: the one the diagnosis recommends)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="go on with a fix that the diagnosis contradicts",
    )


def _command(commands: Any, name: str, summary: str, description: str, examples: str) -> Any:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser)
    return parser


def _add_plan_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "plan",
        "show what apply would change, changing nothing",
        "Diagnose the DNs, choose the fix, and run its playbook in check mode: every object "
        "option and file line that apply would change, and whether SIP Server would restart.",
        PLAN_EXAMPLES,
    )
    _add_dn_options(parser)
    _add_site_options(parser, fleet_options=True)
    parser.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when the plan changes something (0 when it does not)",
    )
    _add_output(parser)
    parser.set_defaults(handler=_run_plan)


def _add_apply_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "apply",
        "fix the DNs as a transaction: applied and verified, or rolled back",
        "Apply the fix for the DNs on one site: preflight, plan (shown, then confirmed on a "
        "terminal), backup, the fix, one restart, verification; a failure rolls back.",
        APPLY_EXAMPLES,
    )
    _add_dn_options(parser)
    _add_change_options(parser)
    _add_guard_options(parser)
    _add_notify(parser)
    _add_site_options(parser, fleet_options=True)
    _add_state_dir(parser)
    _add_output(parser)
    parser.set_defaults(handler=_run_apply)


def _add_rollback_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "rollback",
        "restore what an apply run changed, from its backups",
        "Put back every object and file an apply run backed up, restart if it had restarted, "
        "and verify the estate is as before that run.",
        ROLLBACK_EXAMPLES,
    )
    parser.add_argument("run_id", metavar="RUN_ID", help="the apply run (see remediate history)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="restore even what changed since the run committed",
    )
    _add_change_options(parser)
    _add_notify(parser)
    _add_site_options(parser)
    _add_state_dir(parser)
    _add_output(parser)
    parser.set_defaults(handler=_run_rollback)


def _add_history_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "history",
        "list the recorded runs, newest first",
        "Every run recorded in the state directory: when, what, for which DNs, how it ended.",
        HISTORY_EXAMPLES,
    )
    _add_state_dir(parser)
    _add_output(parser)
    parser.set_defaults(handler=_run_history)


def _add_show_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "show",
        "show one run: its steps, backups and result",
        "The record of one run: each step with its outcome, the backups with their SHA-256, the "
        "changes, and how it ended (for a failed rollback, what to restore by hand).",
        SHOW_EXAMPLES,
    )
    parser.add_argument("run_id", metavar="RUN_ID", help="a run id, or a unique prefix of one")
    _add_state_dir(parser)
    _add_output(parser)
    parser.set_defaults(handler=_run_show)


def _engine_options(args: argparse.Namespace, env: Environment, dns: Sequence[str]) -> Any:
    return engine.Options(
        dns=tuple(dns),
        fix=getattr(args, "fix", "auto"),
        change_id=getattr(args, "change_id", None),
        yes=getattr(args, "yes", False),
        interactive=env.stdin_isatty,
        force=getattr(args, "force", False),
        verify_timeout=parse_duration(getattr(args, "verify_timeout", "120s")),
        vault_password_file=args.vault_password_file
        or _environment_path(env, VAULT_PASSWORD_FILE_ENV),
        window=getattr(args, "window", None),
        verify_suite=getattr(args, "verify", False),
        notify_url=getattr(args, "notify", None),
    )


class _Progress:
    """Progress lines with the elapsed time; on stderr when stdout carries JSON."""

    def __init__(self, env: Environment, json_output: bool) -> None:
        self.stream = env.stderr if json_output else env.stdout
        self.started = time.monotonic()

    def __call__(self, step: str, message: str) -> None:
        self.stream.write(f"[{time.monotonic() - self.started:6.1f}s] {step:<16} {message}\n")
        self.stream.flush()


def _hooks(args: argparse.Namespace, env: Environment) -> engine.Hooks:
    json_output = args.output == "json"
    out = env.stderr if json_output else env.stdout

    def show_plan(plan: engine.Plan) -> None:
        out.write("\n" + render_plan(plan) + "\n")
        out.flush()

    def confirm(question: str) -> bool:
        env.stderr.write(f"{question} [y/N] ")
        env.stderr.flush()
        return env.stdin.readline().strip().lower() in ("y", "yes")

    return engine.Hooks(
        on_progress=_Progress(env, json_output),
        on_plan=show_plan,
        confirm=confirm,
    )


def _run_plan(args: argparse.Namespace, env: Environment) -> ExitStatus:
    if fleet.is_fleet_request(args.site):
        return _run_fleet(args, env)
    json_output = args.output == "json"
    plan = api.plan(
        args.inventory or default_inventory(env.environ),
        _one_site(args),
        _engine_options(args, env, args.dns),
        engine.Hooks(on_progress=_Progress(env, json_output)),
    )
    if json_output:
        write_json(plan.to_json(), env)
    else:
        env.stdout.write("\n" + render_plan(plan))
    if args.detailed_exitcode and not plan.nothing_to_do:
        return ExitStatus.PLAN_HAS_CHANGES
    return ExitStatus.SUCCESS


def _one_site(args: argparse.Namespace) -> str | None:
    return str(args.site[0]) if args.site else None


def _run_fleet(args: argparse.Namespace, env: Environment) -> ExitStatus:
    """apply/plan on several sites: progress lines tagged with their site (from the sites'
    threads), then each plan (plan) and the fleet's summary table, or the fleet's JSON."""
    json_output = args.output == "json"
    stream = env.stderr if json_output else env.stdout
    lock = threading.Lock()
    started = time.monotonic()

    def hooks_for(site: str) -> engine.Hooks:
        def on_progress(step: str, message: str) -> None:
            with lock:
                elapsed = time.monotonic() - started
                stream.write(f"[{elapsed:6.1f}s] {site:<12} {step:<16} {message}\n")
                stream.flush()

        return engine.Hooks(on_progress=on_progress)

    inventory = args.inventory or default_inventory(env.environ)
    options = _engine_options(args, env, args.dns)
    if args.command == "apply":
        report = fleet.apply(
            inventory,
            args.site,
            options,
            parallel=args.parallel,
            max_failed=args.max_failed,
            hooks_for=hooks_for,
            state_dir=args.state_dir,
            environ=env.environ,
        )
    else:
        report = fleet.plan(
            inventory,
            args.site,
            options,
            parallel=args.parallel,
            max_failed=args.max_failed,
            hooks_for=hooks_for,
            detailed_exitcode=args.detailed_exitcode,
            environ=env.environ,
        )
    if json_output:
        write_json(report.to_json(), env)
        return report.exit_status
    for result in report.sites:
        if result.plan is not None:
            env.stdout.write("\n" + render_plan(result.plan))
    env.stdout.write("\n" + fleet.render(report))
    return report.exit_status


def render_plan(plan: engine.Plan) -> str:
    """The plan as an operator reviews it before saying yes."""
    out = [f"Plan for site {plan.site}, DN {', '.join(plan.dns)}"]
    fix = plan.fix
    if fix is None or plan.nothing_to_do:
        out.append(f"  {plan.note or 'nothing to do'}")
        return "\n".join(out) + "\n"
    out.append(f"  fix {fix.name}: {fix.summary}")
    out.extend(f"  {line}" for line in render_changes(plan.changes))
    if plan.note:
        out.extend(_wrapped(plan.note))
    objects = sum(change.kind == "object" for change in plan.changes)
    files = len(plan.changes) - objects
    then = ["back up every target first"]
    if fix.needs_restart:
        then.append(f"restart SIP Server once, re-register {', '.join(plan.dns)}")
    then.append(
        f"verify {', '.join(plan.dns)} accepted"
        + (" after the restart" if fix.needs_restart else "")
        + (" and routed by Asterisk" if fix.proves_route else "")
        + (f", baseline {', '.join(plan.baseline)} still in service" if plan.baseline else "")
    )
    out.append(f"  then: {'; '.join(then)}")
    out.append(f"Plan: {objects} configuration object(s) and {files} file(s) to change.")
    return "\n".join(out) + "\n"


def _run_apply(args: argparse.Namespace, env: Environment) -> ExitStatus:
    if fleet.is_fleet_request(args.site):
        return _run_fleet(args, env)
    report = api.apply(
        args.inventory or default_inventory(env.environ),
        _one_site(args),
        _engine_options(args, env, args.dns),
        _hooks(args, env),
        state_dir=args.state_dir,
        environ=env.environ,
    )
    return _report(report, args, env)


def _run_rollback(args: argparse.Namespace, env: Environment) -> ExitStatus:
    report = api.rollback(
        args.inventory or default_inventory(env.environ),
        args.site,
        args.run_id,
        _engine_options(args, env, ()),
        _hooks(args, env),
        state_dir=args.state_dir,
        environ=env.environ,
    )
    return _report(report, args, env)


def _report(report: engine.RunReport, args: argparse.Namespace, env: Environment) -> ExitStatus:
    if args.output == "json":
        write_json(report.to_json(), env)
    else:
        env.stdout.write("\n" + render_report(report))
    if report.error is not None and report.exit_status is not ExitStatus.SUCCESS:
        render_error(report.error, env)
    return report.exit_status


def render_report(report: engine.RunReport) -> str:
    """How a run ended, for people: the summary first, then what to do if a person must act."""
    title = f"Run {report.run_id} ({report.action}, site {report.site}"
    title += f", change {report.change_id})" if report.change_id else ")"
    out = [f"{title}: {report.status.value.upper()} in {report.elapsed:.1f} s"]
    out.extend(_wrapped(report.message))
    if report.fix is not None:
        out.append(f"  fix          {report.fix.name}")
    if report.applied:
        out.append("  changed")
        out.extend(f"    {line}" for line in render_changes(report.applied))
    if report.restarted:
        out.append("  restarted    SIP Server (once)")
    if report.baseline:
        out.append(f"  baseline     {', '.join(report.baseline)}")
    if report.in_service:
        out.append(f"  in service   {', '.join(report.in_service)}")
    if report.not_in_service:
        out.append(f"  NOT in service {', '.join(report.not_in_service)}")
    if report.backups:
        out.append(f"  backups      {report.backups[0].run_dir / 'backups'}")
    if report.window is not None:
        out.extend(_wrapped(f"window: {report.window['message']}"))
    if report.lock is not None:
        holder = report.lock["holder"]
        out.append(f"  lock         held as {holder['owner']} pid {holder['pid']}")
        for takeover in report.lock.get("takeovers", []):
            out.extend(_wrapped(f"took over the stale {takeover['where']}: {takeover['reason']}"))
        if report.lock.get("release_warning"):
            out.extend(_wrapped(f"WARNING: {report.lock['release_warning']}"))
    if report.verification is not None:
        verdict = "passed" if report.verification["passed"] else "FAILED"
        out.append(f"  suite        {verdict}, JUnit XML {report.verification['junit']}")
    if report.recovered is not None:
        recovered = report.recovered
        out.append(
            f"  recovered    {recovered['decision']} (the dead controller's last step: "
            f"{recovered['last_step']})"
        )
    if report.notification is not None:
        out.extend(_wrapped(report.notification.summary()))
    if report.restore:
        out.append("")
        out.append("RESTORE BY HAND (the rollback could not finish):")
        for item in report.restore:
            out.append(f"  {item['target']}: {item['state']}")
            out.append(f"    backup {item['path']} (sha256 {item['sha256']})")
            out.extend(
                textwrap.wrap(
                    item["how"], width=98, initial_indent="    ", subsequent_indent="    "
                )
            )
        again = report.rolls_back or report.run_id
        out.append(f"  or, once the cause is fixed: remediate rollback {again}")
    out.append(f"Record: remediate show {report.run_id}")
    return "\n".join(out) + "\n"


def _run_history(args: argparse.Namespace, env: Environment) -> ExitStatus:
    records = api.history(args.state_dir, env.environ)
    if args.output == "json":
        write_json(
            {"schema_version": 1, "kind": "history", "runs": [_run_summary(r) for r in records]},
            env,
        )
        return ExitStatus.SUCCESS
    if not records:
        env.stdout.write("no runs recorded\n")
        return ExitStatus.SUCCESS
    rows = [("RUN ID", "STARTED (UTC)", "ACTION", "SITE", "FIX", "DNS", "CHANGE", "STATUS")]
    for record in records:
        summary = _run_summary(record)
        rows.append(
            (
                record.run_id,
                record.metadata.started[:19].replace("T", " "),
                record.metadata.action,
                record.metadata.site,
                summary["fix"],
                ",".join(record.metadata.dns),
                record.metadata.change_id or "-",
                record.status.value,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        env.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        env.stdout.write("\n")
    return ExitStatus.SUCCESS


def _run_summary(record: RunRecord) -> dict[str, Any]:
    result = record.result
    fix = result.get("fix")
    return {
        "run_id": record.run_id,
        "started": record.metadata.started,
        "finished": record.finished,
        "action": record.metadata.action,
        "site": record.metadata.site,
        "dns": list(record.metadata.dns),
        "fix": fix["name"] if isinstance(fix, dict) else record.metadata.fix,
        "change_id": record.metadata.change_id,
        "operator": record.metadata.owner.operator,
        "status": record.status.value,
        "exit_code": result.get("exit_code"),
        "message": result.get("message", ""),
    }


def _run_show(args: argparse.Namespace, env: Environment) -> ExitStatus:
    record = api.show(args.run_id, args.state_dir, env.environ)
    if args.output == "json":
        write_json(
            {
                "schema_version": 1,
                "kind": "run",
                **_run_summary(record),
                "path": str(record.path),
                "steps": [
                    {
                        "name": step.name,
                        "outcome": step.outcome.value,
                        "started": step.started,
                        "ended": step.ended,
                        "error": step.error,
                        "data": dict(step.data),
                    }
                    for step in record.steps
                ],
                "backups": [
                    {
                        "name": backup.name,
                        "source": backup.source,
                        "kind": backup.kind,
                        "sha256": backup.sha256,
                        "size": backup.size,
                        "path": str(record.path / "backups" / backup.name),
                    }
                    for backup in record.backups.values()
                ],
                "result": dict(record.result),
            },
            env,
        )
        return ExitStatus.SUCCESS
    env.stdout.write(render_run(record))
    return ExitStatus.SUCCESS


def render_run(record: RunRecord) -> str:
    summary = _run_summary(record)
    meta = record.metadata
    out = [
        f"Run {record.run_id}: {record.status.value.upper()}",
        f"  action       {meta.action} ({summary['fix']}) on site {meta.site}, DN "
        f"{', '.join(meta.dns)}",
        f"  change       {meta.change_id or '-'}",
        f"  by           {meta.owner.operator} on {meta.owner.host} (pid {meta.owner.pid}), "
        f"remediate {meta.version}",
        f"  started      {meta.started}",
        f"  finished     {record.finished or '-'}",
    ]
    if summary["message"]:
        out.extend(_wrapped(summary["message"]))
    out.append("  steps")
    for step in record.steps:
        ended = f" .. {step.ended[11:23]}" if step.ended else " .. (no end recorded)"
        out.append(f"    {step.name:<16} {step.outcome.value:<9} {step.started[11:23]}{ended}")
        if step.error:
            out.extend(
                textwrap.wrap(
                    step.error, width=98, initial_indent="      ", subsequent_indent="      "
                )
            )
    if record.backups:
        out.append("  backups")
        for backup in record.backups.values():
            out.append(
                f"    {backup.name}  {backup.kind}  {backup.size} bytes  sha256 {backup.sha256}"
            )
            out.append(f"      of {backup.source}")
            out.append(f"      at {record.path / 'backups' / backup.name}")
    changes = [Change.from_json(item) for item in record.result.get("changes", [])]
    if changes:
        out.append("  changed")
        out.extend(f"    {line}" for line in render_changes(changes))
    restore = record.result.get("restore") or []
    if restore:
        out.append("  RESTORE BY HAND")
        for item in restore:
            out.append(f"    {item['target']}: {item['state']}")
            out.extend(
                textwrap.wrap(
                    item["how"], width=98, initial_indent="      ", subsequent_indent="      "
                )
            )
    if record.torn_tail_bytes:
        out.append(f"  (a torn last journal line of {record.torn_tail_bytes} bytes was ignored)")
    return "\n".join(out) + "\n"


# -- verify -----------------------------------------------------------------------------------

VERIFY_EXAMPLES = """\
examples:
  remediate verify --dn 5001
  remediate verify --dn 5001 --dn 5002 --run 20261128T143501Z-5f2a
  remediate verify --run 20261128T1435                  (the run's DNs and fix)
  remediate verify -i inventories/prod --site uat --dn 5001 --fix trusted-gateway --output json

The checks are a pytest-testinfra suite; the same suite runs without this command:
  pytest --pyargs remediate.verification --inventory inventories/lab --dn 5001 [--run RUN_ID]
SIP Server host (WinRM): TSrvSIP64 running, each DN's latest registration accepted (after the
run's restart with --run), each DN configured, the fix's configuration present (GAX). Asterisk
host (SSH): the managed dialplan block present and loaded, each DN's registration Registered, UDP
SIP listening. Network: a SIP OPTIONS from here to SIP Server answered 200. Checks that do not
apply to the fix are skipped, with the reason. The JUnit XML goes into the run's record with
--run, else into <state dir>/verify/.

exit codes:
  0 every check that applies passed
  1 bad input (a DN, the inventory, the run id)
  3 a check failed (the table names it; the JUnit XML has the details)
  7 a host (WinRM, SSH or GAX) cannot be reached or refuses us, or the suite did not finish in time
"""


def _add_verify_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "verify",
        "check the DNs and the fix on the estate with the pytest-testinfra suite",
        "Run the post-change verification suite for the DNs of one site and print each check, "
        "its target, its result and why; the JUnit XML is kept for the change record.",
        VERIFY_EXAMPLES,
    )
    parser.add_argument(
        "--dn",
        dest="dns",
        metavar="DN",
        action="append",
        default=[],
        help="a DN to verify; repeat for several (default with --run: the run's DNs)",
    )
    parser.add_argument(
        "--run",
        metavar="RUN_ID",
        help="verify after this run: log events count from its restart, its fix is checked",
    )
    parser.add_argument(
        "--fix",
        choices=FIX_CHOICES[1:],
        help="the fix whose configuration must be present (default: the run's; none without)",
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        default="300s",
        help="stop the suite after DURATION (default 300s; exit 7)",
    )
    _add_site_options(parser)
    _add_state_dir(parser)
    _add_output(parser)
    parser.set_defaults(handler=_run_verify)


def _run_verify(args: argparse.Namespace, env: Environment) -> ExitStatus:
    result = api.verify(
        args.inventory or default_inventory(env.environ),
        args.site,
        args.dns,
        run_id=args.run,
        fix=args.fix,
        state_dir=args.state_dir,
        vault_password_file=args.vault_password_file
        or _environment_path(env, VAULT_PASSWORD_FILE_ENV),
        timeout=parse_duration(args.timeout),
        environ=env.environ,
    )
    if args.output == "json":
        write_json(result.to_json(), env)
    else:
        env.stdout.write(render_verification(result))
    return result.exit_status


def render_verification(result: VerificationResult) -> str:
    """One line per check (check, target, result, reason), then the verdict and the XML's path."""
    rows = [("CHECK", "TARGET", "RESULT", "REASON")]
    for check in result.checks:
        shown = check.outcome.value
        if check.outcome not in (Outcome.PASSED, Outcome.SKIPPED):
            shown = shown.upper()
        rows.append((check.name, check.target, shown, check.message))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    out = [f"Verification: {result.scope}"]
    for name, target, shown, reason in rows:
        cells = "  ".join(
            cell.ljust(width) for cell, width in zip((name, target, shown), widths, strict=True)
        )
        out.append(f"  {cells}  {reason}".rstrip())
    counts = {outcome: 0 for outcome in Outcome}
    for check in result.checks:
        counts[check.outcome] += 1
    summary = ", ".join(f"{count} {outcome.value}" for outcome, count in counts.items() if count)
    verdict = {
        ExitStatus.SUCCESS: "PASSED",
        ExitStatus.VERIFICATION_FAILED: "FAILED",
        ExitStatus.PRECONDITION_FAILED: "INCOMPLETE: a host could not be reached",
    }[result.exit_status]
    out.append(f"{verdict}: {len(result.checks)} checks, {summary} ({result.seconds:.1f} s)")
    out.append(f"JUnit XML: {result.junit_path}")
    return "\n".join(out) + "\n"


# -- recover, lock, report ----------------------------------------------------------------------

RECOVER_EXAMPLES = """\
examples:
  remediate recover                      (asks before finishing each run)
  remediate recover --yes --output json  (unattended, e.g. at the controller's boot)
  remediate recover --state-dir /var/lib/remediate -i inventories/prod --yes

Finds the runs of the state directory that a crash left open (started, never ended, their process
gone: SIGKILL, power loss) and finishes each one from its journal alone: it stops the Ansible
processes the dead run left behind and scrubs their files, then
  - nothing had changed yet (it died before apply): releases the site's locks;
  - the change had started: restores every backup, restarts SIP Server if the run had or the fix
    needs it, and proves the estate byte-identical and the baseline DNs in service;
  - the change had been applied and verified: confirms it (commit).
Each recovery is journaled in the run it finishes. Running it again finds nothing; a recovery
that dies midway is finished by the next one. Without -i, each run's own inventory is used.

exit codes:
  0 nothing left open, or every open run ended restored or confirmed
  1 bad input, or not confirmed (the runs stay open)
  4 a rollback failed: a person must restore what 'remediate show RUN_ID' lists
  5 a live process owns a run or holds its site's lock (the run stays open)
  7 a host unreachable (the run stays open; run recover again)
"""

LOCK_EXAMPLES = """\
examples:
  remediate lock status --site uat
  remediate lock break uat --reason "controller ctl2 died during CHG0042"

Each run holds two locks on its site: locks/site_<site>.lock in the state directory and the file
remediate_lock_path on the site's Asterisk host (any controller, and a person on the host, can read
who holds it). A lock whose holder died on this machine, or that expired, is taken over by the
next run. 'break' removes both now, with a reason that is logged and journaled (a run of action
lock-break in 'remediate history'); a holder alive on this machine is never broken.

exit codes:
  0 done   1 bad input (a reason is required)   5 the holder is alive on this machine
  7 the Asterisk host cannot be reached
"""

REPORT_EXAMPLES = """\
examples:
  remediate report 20261205T163000Z-5f2a --html run.html
  remediate report 20261205T1630 --html /srv/changes/CHG0042.html --output json

A self-contained HTML page (no script, no external resource): the run's steps, and on one time
axis each DN's registration state (in service, out of service, unknown) before, during and after
the change, drawn as SVG. It is made from the run's journal alone (the registration states the
run read at preflight and verification), so no host needs to be up.
"""


def _add_recover_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "recover",
        "finish the runs a crash left open: roll back or confirm, from the journal",
        "Find runs left open by a dead controller and finish each from its journal alone.",
        RECOVER_EXAMPLES,
    )
    parser.add_argument(
        "-y", "--yes", action="store_true", help="do not ask before finishing each run"
    )
    _add_inventory_options(parser, "the Ansible inventory (default: the one each run recorded)")
    parser.add_argument(
        "--verify-timeout",
        metavar="DURATION",
        default="120s",
        help="how long the rollback's verification waits for the DNs (default 120s)",
    )
    _add_notify(parser)
    _add_state_dir(parser)
    _add_output(parser)
    parser.set_defaults(handler=_run_recover)


def _run_recover(args: argparse.Namespace, env: Environment) -> ExitStatus:
    recovery = api.recover(
        args.inventory,
        _engine_options(args, env, ()),
        _hooks(args, env),
        state_dir=args.state_dir,
        environ=env.environ,
    )
    if args.output == "json":
        write_json(recovery.to_json(), env)
    else:
        env.stdout.write(render_recovery(recovery))
    for run in recovery.runs:
        if run.error is not None:
            render_error(run.error, env)
    return recovery.exit_status


def render_recovery(recovery: api.Recovery) -> str:
    if not recovery.runs:
        return f"no run left open in {recovery.state_dir}: nothing to recover\n"
    out = [f"Recovered {len(recovery.runs)} run(s) left open in {recovery.state_dir}"]
    for run in recovery.runs:
        if run.report is not None:
            out.append("")
            out.append(render_report(run.report).rstrip("\n"))
        else:
            out.append(f"Run {run.run_id} ({run.action}, site {run.site}): STILL OPEN")
            out.extend(_wrapped(run.message))
    return "\n".join(out) + "\n"


def _add_lock_parser(commands: Any) -> None:
    lock = _command(
        commands,
        "lock",
        "show or break a site's locks",
        "Show who holds a site's locks, or break them once their holder is known dead.",
        LOCK_EXAMPLES,
    )
    actions = lock.add_subparsers(dest="lock_action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    status = _command(
        actions, "status", "who holds the site's locks", "Both lock bodies.", LOCK_EXAMPLES
    )
    _add_site_options(status)
    _add_state_dir(status)
    _add_output(status)
    broken = _command(
        actions,
        "break",
        "remove a dead controller's locks of a site, with a reason",
        "Remove both locks of SITE (a holder alive on this machine is refused); logged and "
        "journaled.",
        LOCK_EXAMPLES,
    )
    broken.add_argument("site", metavar="SITE", help="the site (its site_<SITE> group)")
    broken.add_argument("--reason", required=True, help="why: journaled with the break")
    broken.add_argument("--change-id", metavar="ID", help="the ticket this break belongs to")
    _add_inventory_options(
        broken, "the Ansible inventory (default: $REMEDIATE_INVENTORY, else inventories/lab)"
    )
    _add_state_dir(broken)
    _add_output(broken)
    lock.set_defaults(handler=_run_lock)


def _run_lock(args: argparse.Namespace, env: Environment) -> ExitStatus:
    inventory = args.inventory or default_inventory(env.environ)
    vault = args.vault_password_file or _environment_path(env, VAULT_PASSWORD_FILE_ENV)
    if args.lock_action == "break":
        done = api.break_site_lock(
            inventory,
            args.site,
            args.reason,
            change_id=args.change_id,
            state_dir=args.state_dir,
            vault_password_file=vault,
            environ=env.environ,
        )
        if args.output == "json":
            write_json(done.to_json(), env)
        else:
            broken = done.broken
            holders = [h.describe() for h in (broken.local, broken.target) if h is not None]
            env.stdout.write(
                f"broke the lock of site {broken.site} (journaled as run {done.run_id})\n"
                f"  was held by  {'; '.join(holders) or 'nobody recorded'}\n"
                f"  reason       {broken.reason}\n  by           {broken.by}\n"
            )
        return ExitStatus.SUCCESS
    state = api.lock_status(
        inventory,
        args.site,
        state_dir=args.state_dir,
        vault_password_file=vault,
        environ=env.environ,
    )
    if args.output == "json":
        write_json(state.to_json(), env)
    else:
        local = state.local.describe() if state.local else "free"
        target = state.target.describe() if state.target else "free"
        env.stdout.write(
            f"site {state.site}\n  local   {state.local_path}: {local}\n"
            f"  target  {state.target_where}: {target}\n"
        )
    return ExitStatus.SUCCESS


def _add_report_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "report",
        "write a run's steps and DN registration timeline as an HTML page",
        "Make a self-contained HTML page of one run from its journal: steps, and each DN's "
        "registration state over time (SVG).",
        REPORT_EXAMPLES,
    )
    parser.add_argument("run_id", metavar="RUN_ID", help="a run id, or a unique prefix of one")
    parser.add_argument(
        "--html", type=Path, metavar="FILE", required=True, help="the page to write"
    )
    _add_state_dir(parser)
    _add_output(parser)
    parser.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace, env: Environment) -> ExitStatus:
    page = api.report(args.run_id, args.html, state_dir=args.state_dir, environ=env.environ)
    if args.output == "json":
        write_json(page.to_json(), env)
    else:
        drawn = (
            f"{page.states} registration state(s) of DN {', '.join(page.dns)}"
            if page.states
            else "no registration state recorded by the run"
        )
        env.stdout.write(f"wrote {page.path}: run {page.run_id}, {page.steps} steps, {drawn}\n")
    return ExitStatus.SUCCESS


def render_error(error: RemediateError, env: Environment) -> None:
    env.stderr.write(f"error: {error.reference}: {error.message}\n")
    if error.hint:
        env.stderr.write(f"hint: {error.hint}\n")


def write_json(document: Any, env: Environment) -> None:
    json.dump(document, env.stdout, indent=2, sort_keys=False)
    env.stdout.write("\n")


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment()
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exit_request:  # --help and --version
            return int(exit_request.code or 0)
        handler: Handler = args.handler
        return int(handler(args, env))
    except KeyboardInterrupt:
        env.stderr.write("interrupted\n")
        return int(ExitStatus.INTERRUPTED)
    except RemediateError as error:
        if debug:
            raise
        render_error(error, env)
        return int(error.exit_status)
    except Exception as error:
        if debug:
            raise
        env.stderr.write(f"error: unexpected-error: {type(error).__name__}: {error}\n")
        env.stderr.write("hint: rerun with --debug for the traceback, and report it\n")
        return int(ExitStatus.ERROR)
