"""The command line: argparse, rendering, exit statuses. Nothing else knows about the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any, NoReturn

from remediate import __version__, api
from remediate.diagnose import COMPARISON_ROWS, Diagnosis, DnDiagnosis
from remediate.env import Environment
from remediate.errors import RemediateError, UsageError
from remediate.inventory import VAULT_PASSWORD_FILE_ENV, default_inventory
from remediate.live import parse_duration
from remediate.status import ExitStatus

Handler = Callable[[argparse.Namespace, Environment], ExitStatus]

MAIN_EXAMPLES = """\
examples:
  remediate diagnose --log SIP_P-001.20260202_135459_850.log --dn 5002 --dn 1003
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
        from remediate.lab.layout import DEFAULT_LAB_DIR_ENV, load_layout
    except ImportError as missing:
        raise RemediateError(
            f"the lab cannot run here: {missing}",
            reference="lab-not-installed",
            hint="install the lab's extra: pip install 'remediate[lab]'",
        ) from missing
    root = args.dir or Path(env.environ.get(DEFAULT_LAB_DIR_ENV) or ".lab")
    layout, _ = load_layout(root)

    def progress(message: str) -> None:
        env.stderr.write(f"  {message}\n")
        env.stderr.flush()

    try:
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
        if args.lab_action == "up":
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
    else:
        env.stdout.write(_render_lab_status(status))
    return ExitStatus.SUCCESS


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
