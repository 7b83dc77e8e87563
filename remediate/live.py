"""Live diagnosis: the evidence read from the estate, read-only, and the diagnosis built from it.

The seed's diagnostic steps, answered from the inventory in seconds:
- the SIP Server service state and the host's clock (WinRM);
- the log segments written since a time (the host's clock), filtered on the Windows side so that
  only the target DNs' REGISTER transactions and a few anchor lines cross the wire, then parsed by
  `remediate.genesys.logs`;
- what listens on the softphone port (5090) and which process owns it;
- which Trunk DNs (TServer `contact`) or switch annex options cover the Asterisk address (GAX);
- the Asterisk registrations of the DNs and their state, the pjsip.conf settings that keep a
  registration from recovering, and whether the context that calls from Genesys land in has an
  extension for the DN (SSH);
- optionally, the REGISTERs seen on the Asterisk host during a short capture, their headers set
  against a working DN's.

Nothing here changes anything. A part that cannot be reached or refuses us stops the run with its
own error (exit status 7): a diagnosis built on missing evidence would mislead.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remediate.asterisk import capture, cli, conf
from remediate.diagnose import (
    Diagnosis,
    DnDiagnosis,
    Finding,
    Fix,
    Observation,
    Recommendation,
    RootCause,
    diagnose_history,
)
from remediate.dn import validate_dn
from remediate.errors import InputError
from remediate.genesys import logs, powershell
from remediate.genesys.gax import CfgObject, GaxClient, annex_options
from remediate.genesys.service import SipServerService
from remediate.inventory import Site, load_site
from remediate.transport import TransportError
from remediate.transport.ssh import SSHTransport
from remediate.transport.winrm import WinRMTransport

DEFAULT_LOOKBACK = datetime.timedelta(hours=24)
# Lines the diagnosis needs beside the target DNs' REGISTER transactions (and the binding expiries
# that powershell.read_log_filtered adds with them): the date anchors, and the event 1 line that
# opens an expiry, which follows no REGISTER.
ANCHOR_PATTERNS = ("Trc 04120 Check point", "handle registration event 1")
MAX_CAPTURE_SECONDS = 120.0
TRUNK_DN_TYPE = "CFGTrunk"
TRUNK_SECTION = "TServer"


# Evidence ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrunkDn:
    name: str
    dbid: int
    contact: str
    prefix: str
    enabled: bool
    covers_gateway: bool


@dataclass(frozen=True)
class GatewayCoverage:
    """What in Genesys configuration makes the Asterisk address a known gateway, if anything."""

    gateway_address: str
    trunks: tuple[TrunkDn, ...]
    annex_section: str
    annex_list_option: str
    annex_list_value: str | None
    annex_mode_option: str
    annex_mode_value: str | None
    annex_trusts_gateway: bool

    @property
    def covering_trunks(self) -> tuple[TrunkDn, ...]:
        return tuple(t for t in self.trunks if t.covers_gateway and t.enabled)

    @property
    def covered(self) -> bool:
        return self.annex_trusts_gateway or bool(self.covering_trunks)


@dataclass(frozen=True)
class DnConfiguration:
    dn: str
    exists: bool
    enabled: bool
    dn_type: str


@dataclass(frozen=True)
class AsteriskRegistration:
    """How the Asterisk gateway registers one DN with Genesys."""

    dn: str
    registration: str | None
    status: str | None  # from `pjsip show registrations`; None when Asterisk has no such row
    expires_in: int | None
    server_uri: str
    location: str  # pjsip.conf:line of the registration section
    retry_problems: tuple[conf.RetryProblem, ...]


@dataclass(frozen=True)
class ReverseRoute:
    """Whether calls from Genesys to the DN find an extension on Asterisk."""

    dn: str
    context: str
    endpoint: str | None  # the pjsip endpoint Genesys reaches Asterisk through
    found: bool
    missing: str  # "extension" or "context" when not found
    extensions: tuple[str, ...]  # "pattern [file:line]"


@dataclass(frozen=True)
class HeaderComparison:
    """The seed's step 3: a failing DN's REGISTER next to a working DN's, header by header."""

    failing_dn: str
    working_dn: str
    failing_origin: str
    working_origin: str
    rows: tuple[tuple[str, str, str], ...]  # (header, failing value, working value)


@dataclass
class LiveEvidence:
    site: str
    dns: list[str]
    host_time: datetime.datetime | None = None
    since: datetime.datetime | None = None
    service: powershell.ServiceState | None = None
    log_segments: list[str] = field(default_factory=list)
    log_bytes_on_host: int = 0
    winrm_bytes_received: int = 0
    history: logs.RegistrationHistory | None = None
    softphone_port: int = 5090
    listeners: list[powershell.PortListener] = field(default_factory=list)
    dn_configuration: dict[str, DnConfiguration] = field(default_factory=dict)
    coverage: GatewayCoverage | None = None
    asterisk_version: str = ""
    registrations: dict[str, AsteriskRegistration] = field(default_factory=dict)
    reverse_routes: dict[str, ReverseRoute] = field(default_factory=dict)
    capture_seconds: float | None = None
    captured: list[capture.CapturedRegister] = field(default_factory=list)
    capture_note: str = ""
    comparisons: list[HeaderComparison] = field(default_factory=list)


# Time -------------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`10s`, `2m`, `1.5h`, `1d` (a bare number is seconds) -> seconds."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    match = _RELATIVE.fullmatch(value)
    if match is None:
        raise InputError(
            f"{text!r} is not a duration", reference="bad-duration", hint="use e.g. 10s, 5m, 2h, 1d"
        )
    return float(match["amount"]) * _UNIT_SECONDS[match["unit"]]


def resolve_since(text: str | None, host_now: datetime.datetime) -> datetime.datetime:
    """The start of the log window, on the host's clock: a duration back from the host's now
    (`2h`), or a time (`2026-02-02T13:54`, `13:54` today) read in the host's time zone."""
    if text is None:
        return host_now - DEFAULT_LOOKBACK
    value = text.strip()
    if _RELATIVE.fullmatch(value.lower()):
        return host_now - datetime.timedelta(seconds=parse_duration(value))
    zone = host_now.tzinfo
    try:
        if re.fullmatch(r"\d\d:\d\d(?::\d\d)?", value):
            clock = datetime.time.fromisoformat(value)
            moment = datetime.datetime.combine(host_now.date(), clock, tzinfo=zone)
            return moment if moment <= host_now else moment - datetime.timedelta(days=1)
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"--since {text!r} is neither a time nor a duration",
            reference="bad-since",
            hint="use e.g. --since 2h, --since 13:54 or --since 2026-02-02T13:54 (host time)",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


# Genesys side: WinRM ----------------------------------------------------------------------------


def _checked(result_ok: bool, what: str, stderr: str) -> None:
    if not result_ok:
        raise TransportError(
            f"{what} failed on the SIP Server host: {' '.join(stderr.split())[:300]}",
            reference="winrm-command-failed",
        )


def collect_genesys(
    site: Site, transport: WinRMTransport, dns: Sequence[str], since_text: str | None
) -> dict[str, Any]:
    """Service state, host clock, filtered log, listeners on the softphone port."""
    genesys = site.genesys
    found: dict[str, Any] = {}
    found["service"] = SipServerService(transport, genesys.service_name).state()
    clock = transport.run(powershell.host_clock().command_line)
    _checked(clock.ok, "reading the host's clock", clock.stderr_text)
    host_now = powershell.parse_host_clock(clock.stdout_text)
    since = resolve_since(since_text, host_now)
    found["host_time"], found["since"] = host_now, since

    listing = transport.run(
        powershell.list_log_segments(
            genesys.log_dir, f"{genesys.log_prefix}.*.log", since
        ).command_line
    )
    missing_dir = not listing.ok and "ItemNotFound" in listing.stderr_text
    if missing_dir and found["service"].status == "Running":
        raise InputError(
            f"the log directory {genesys.log_dir} does not exist on {genesys.name}",
            reference="genesys-log-dir-missing",
            hint="check genesys_log_dir in the inventory",
        )
    if not missing_dir:  # a SIP Server that never ran has written no log yet
        _checked(listing.ok, f"listing {genesys.log_dir}", listing.stderr_text)
    segments = [] if missing_dir else powershell.parse_log_segments(listing.stdout_text)
    ordered = logs.segment_order([segment.name for segment in segments])
    found["log_segments"] = ordered
    found["log_bytes_on_host"] = sum(segment.length for segment in segments)

    events: list[logs.LogEvent] = []
    for name in ordered:
        command = powershell.read_log_filtered(genesys.log_dir, name, ANCHOR_PATTERNS, dns)
        result = transport.run(command.command_line)
        _checked(result.ok, f"reading {name}", result.stderr_text)
        # One piece: the parser reads an expiry's AOR from the lines after it in the same buffer.
        events.extend(logs.read_stream([result.stdout], name))
    found["history"] = logs.registrations(events, dns)

    listeners = transport.run(powershell.port_listeners(genesys.softphone_port).command_line)
    _checked(
        listeners.ok, f"listing listeners on port {genesys.softphone_port}", listeners.stderr_text
    )
    found["listeners"] = powershell.parse_port_listeners(listeners.stdout_text)
    found["winrm_bytes_received"] = transport.bytes_received
    return found


# Genesys side: GAX ------------------------------------------------------------------------------


def _address_host(value: str) -> str:
    """`127.0.0.54:5060`, `sip:127.0.0.54:5060;transport=udp`, `[::1]:5060` -> the host part."""
    text = value.strip()
    if text.lower().startswith(("sip:", "sips:")):
        return conf.uri_host(text)
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.split(":", 1)[0] if text.count(":") == 1 else text


def _enabled(obj: CfgObject) -> bool:
    return str(obj.get("state", "CFGEnabled")) == "CFGEnabled"


def collect_gax(site: Site, client: GaxClient, dns: Sequence[str]) -> dict[str, Any]:
    gateway = site.asterisk.sip_address
    options = site.fixes.trusted_gateway
    all_dns = client.find_all("CfgDN")
    trunks: list[TrunkDn] = []
    configured: dict[str, DnConfiguration] = {
        dn: DnConfiguration(dn, False, False, "") for dn in dns
    }
    for obj in all_dns:
        name = str(obj.get("name", ""))
        number = str(obj.get("number", name))
        dn_type = str(obj.get("dntype", ""))
        for dn in dns:
            if dn in (name, number):
                configured[dn] = DnConfiguration(dn, True, _enabled(obj), dn_type)
        if dn_type != TRUNK_DN_TYPE:
            continue
        annex = annex_options(obj)
        contact = annex.get((TRUNK_SECTION, "contact"), "")
        trunks.append(
            TrunkDn(
                name=name,
                dbid=int(obj.get("dbid", 0)),
                contact=contact,
                prefix=annex.get((TRUNK_SECTION, "prefix"), ""),
                enabled=_enabled(obj),
                covers_gateway=bool(contact) and _address_host(contact) == gateway,
            )
        )
    switch = client.find("CfgSwitch", site.genesys.switch)
    if switch is None:
        raise InputError(
            f"GAX has no switch named {site.genesys.switch!r}",
            reference="genesys-switch-missing",
            hint="check genesys_switch in the inventory",
        )
    annex = annex_options(switch)
    list_value = annex.get((options.section, options.list_option))
    mode_value = annex.get((options.section, options.mode_option))
    listed = {_address_host(item) for item in re.split(r"[\s,;]+", list_value or "") if item}
    trusts = gateway in listed and (mode_value is None or mode_value == options.mode_value)
    coverage = GatewayCoverage(
        gateway_address=gateway,
        trunks=tuple(trunks),
        annex_section=options.section,
        annex_list_option=options.list_option,
        annex_list_value=list_value,
        annex_mode_option=options.mode_option,
        annex_mode_value=mode_value,
        annex_trusts_gateway=trusts,
    )
    return {"coverage": coverage, "dn_configuration": configured}


# Asterisk side: SSH -----------------------------------------------------------------------------


def _reader(transport: SSHTransport) -> conf.Reader:
    def read(path: str) -> bytes:
        try:
            return transport.read_file(path)
        except TransportError as error:
            if error.reference == "ssh-file-missing":
                raise FileNotFoundError(path) from None
            raise

    return read


def _rx(site: Site, transport: SSHTransport, command: str) -> str:
    result = transport.run(cli.rx(command, binary=site.asterisk.command))
    if result.exit_code == 127 or (not result.ok and not result.stdout):
        raise TransportError(
            f"`{site.asterisk.command} -rx` could not run on {site.asterisk.name}: "
            f"{result.stderr_text.strip()[:200] or f'exit code {result.exit_code}'}",
            reference="asterisk-unavailable",
            hint="check asterisk_command in the inventory and that Asterisk is running",
        )
    return result.stdout_text


def _genesys_endpoint(pjsip: conf.ConfigFile, genesys_address: str) -> conf.PjsipObject | None:
    """The endpoint whose `identify` matches the SIP Server's address."""
    endpoints = {obj.name: obj for obj in conf.pjsip_objects(pjsip, "endpoint")}
    for identify in conf.pjsip_objects(pjsip, "identify"):
        matches = {
            _address_host(m.split("/")[0]) for m in re.split(r"[\s,]+", identify.get("match")) if m
        }
        if genesys_address in matches and identify.get("endpoint") in endpoints:
            return endpoints[identify.get("endpoint")]
    return None


def collect_asterisk(site: Site, transport: SSHTransport, dns: Sequence[str]) -> dict[str, Any]:
    asterisk = site.asterisk
    version = cli.parse_version(_rx(site, transport, cli.show_version()))
    rows = {
        row.name: row
        for row in cli.parse_registrations(_rx(site, transport, cli.show_registrations()))
    }
    pjsip = conf.parse_config(asterisk.pjsip_conf, _reader(transport))
    registrations_conf = {obj.name: obj for obj in conf.pjsip_objects(pjsip, "registration")}

    registrations: dict[str, AsteriskRegistration] = {}
    for dn in dns:
        name = site.registration_for(dn)
        if name is None:  # not in the inventory's map: look for it by its user part
            name = next(
                (
                    obj.name
                    for obj in registrations_conf.values()
                    if dn in (obj.get("contact_user"), conf.uri_user(obj.get("client_uri")))
                ),
                None,
            )
        section = registrations_conf.get(name) if name else None
        row = rows.get(name) if name else None
        registrations[dn] = AsteriskRegistration(
            dn=dn,
            registration=name,
            status=row.status if row else None,
            expires_in=row.expires_in if row else None,
            server_uri=(row.server_uri if row else section.get("server_uri") if section else ""),
            location=str(section.location) if section else "",
            retry_problems=tuple(conf.registration_retry_problems(section)) if section else (),
        )

    endpoint = _genesys_endpoint(pjsip, site.genesys.sip_address)
    context = (
        endpoint.get("context")
        if endpoint and endpoint.get("context")
        else site.fixes.dialplan_context
    )
    routes: dict[str, ReverseRoute] = {}
    for dn in dns:
        shown = cli.parse_dialplan_show(_rx(site, transport, cli.dialplan_show(context, dn)))
        routes[dn] = ReverseRoute(
            dn=dn,
            context=context,
            endpoint=endpoint.name if endpoint else None,
            found=shown.found,
            missing=shown.missing,
            extensions=tuple(
                f"{ext.pattern} [{ext.priorities[0].location}]" if ext.priorities else ext.pattern
                for ext in shown.extensions
            ),
        )
    return {"asterisk_version": version, "registrations": registrations, "reverse_routes": routes}


# Capture ----------------------------------------------------------------------------------------


def capture_registers(
    site: Site, transport: SSHTransport, seconds: float
) -> tuple[list[capture.CapturedRegister], str]:
    """REGISTERs between the gateway and the SIP Server during `seconds`, and how they were seen."""
    asterisk, genesys = site.asterisk, site.genesys
    has_tcpdump = transport.run("command -v tcpdump", timeout=10).ok
    if has_tcpdump:
        bpf = f"udp and host {genesys.sip_address} and port {genesys.sip_port}"
        command = f"timeout {int(seconds) + 1} tcpdump -i any -n -U -s 0 -w - '{bpf}' 2>/dev/null"
        result = transport.run(command, timeout=seconds + 15)
        if result.stdout:
            return capture.registers_from_pcap(result.stdout), "tcpdump on the Asterisk host"
        note = "tcpdump is installed but captured nothing (it may need root)"
    else:
        note = "the Asterisk host has no tcpdump"
    record = asterisk.capture_record
    if record is None:
        return [], f"{note}; no asterisk_capture_record is configured"
    before = transport.stat(record)
    offset = (before.st_size or 0) if before is not None else 0
    time.sleep(seconds)
    after = transport.stat(record)
    if after is not None and (after.st_size or 0) < offset:
        offset = 0  # the record was rotated during the window
    data = transport.read_file(record, offset) if after is not None else b""
    return (
        capture.registers_from_record(data, record, f"{asterisk.sip_address}:{asterisk.sip_port}"),
        f"{note}; read the REGISTER record {record}",
    )


# The seed's step 3 -------------------------------------------------------------------------------

COMPARED_HEADERS = ("Via", "Contact", "From", "To", "User-Agent", "Expires", "Authorization")


def _transaction_column(transaction: logs.RegistrationTransaction) -> dict[str, str]:
    request = transaction.request
    gateway = transaction.gateway
    column = {name: request.header(name) or "-" for name in COMPARED_HEADERS}
    column["Source"] = f"{transaction.source_address}:{transaction.source_port}"
    column["Gateway"] = gateway.text.split(": ", 1)[-1] if gateway else "-"
    events = transaction.server_events
    column["Server event"] = str(events[-1]) if events else "-"
    column["Outcome"] = transaction.verdict.value
    return column


def _captured_column(register: capture.CapturedRegister) -> dict[str, str]:
    column = {name: register.header(name) or "-" for name in COMPARED_HEADERS}
    column["Source"] = register.source
    return column


def _latest(timeline: logs.DnTimeline | None) -> logs.RegistrationTransaction | None:
    if timeline is None:
        return None
    transactions = [e for e in timeline.entries if isinstance(e, logs.RegistrationTransaction)]
    return transactions[-1] if transactions else None


def compare_registers(
    evidence: LiveEvidence, failing: Sequence[str], working: Sequence[str]
) -> list[HeaderComparison]:
    """Each failing DN's latest REGISTER next to the first working DN's latest accepted one. The
    failing side comes from the capture when it holds full headers, else from the SIP Server log."""
    history = evidence.history
    if history is None or not working:
        return []
    working_dn = working[0]
    accepted = (
        history.timelines[working_dn].last_accepted if working_dn in history.timelines else None
    )
    if accepted is None:
        return []
    right = _transaction_column(accepted)
    comparisons: list[HeaderComparison] = []
    for dn in failing:
        left: dict[str, str] | None = None
        origin = ""
        registration = evidence.registrations.get(dn)
        captured = [
            r
            for r in evidence.captured
            if r.start_line.startswith("REGISTER")
            and (r.dn == dn or (registration and r.registration == registration.registration))
            and r.header("Via")
        ]
        if captured:
            left, origin = _captured_column(captured[-1]), f"capture ({captured[-1].origin})"
        else:
            transaction = _latest(history.timelines.get(dn))
            if transaction is not None:
                left, origin = (
                    _transaction_column(transaction),
                    f"SIP Server log {transaction.request.where}",
                )
        if left is None:
            continue
        names = ["Source", *COMPARED_HEADERS, "Gateway", "Server event", "Outcome"]
        rows = tuple((name, left.get(name, "-"), right.get(name, "-")) for name in names)
        comparisons.append(
            HeaderComparison(
                failing_dn=dn,
                working_dn=working_dn,
                failing_origin=origin,
                working_origin=f"SIP Server log {accepted.request.where}",
                rows=rows,
            )
        )
    return comparisons


# Orchestration ----------------------------------------------------------------------------------


def collect(
    site: Site,
    dns: Sequence[str],
    since: str | None = None,
    capture_seconds: float | None = None,
) -> LiveEvidence:
    """Every piece of evidence, the three hosts read in parallel. The first part (in the order
    WinRM, GAX, SSH) that fails raises its own error."""
    evidence = LiveEvidence(
        site=site.name, dns=list(dns), softphone_port=site.genesys.softphone_port
    )
    winrm = WinRMTransport(site.genesys.winrm)
    gax = GaxClient(site.genesys.gax)
    ssh = SSHTransport(site.asterisk.ssh)
    capture_ssh = SSHTransport(site.asterisk.ssh)  # its own connection: the capture waits
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            parts: list[Future[dict[str, Any]]] = [
                pool.submit(collect_genesys, site, winrm, dns, since),
                pool.submit(collect_gax, site, gax, dns),
                pool.submit(collect_asterisk, site, ssh, dns),
            ]
            captured: Future[tuple[list[capture.CapturedRegister], str]] | None = None
            if capture_seconds:
                seconds = min(capture_seconds, MAX_CAPTURE_SECONDS)
                captured = pool.submit(capture_registers, site, capture_ssh, seconds)
            for part in parts:
                for key, value in part.result().items():
                    setattr(evidence, key, value)
            if captured is not None:
                evidence.captured, evidence.capture_note = captured.result()
                evidence.capture_seconds = capture_seconds
    finally:
        winrm.close()
        gax.close()
        ssh.close()
        capture_ssh.close()
    return evidence


# Diagnosis --------------------------------------------------------------------------------------


def _observation(source: str, code: str, summary: str, **details: str) -> Observation:
    return Observation(source=source, code=code, summary=summary, details=details)


def _estate_observations(site: Site, evidence: LiveEvidence) -> list[Observation]:
    found: list[Observation] = []
    service = evidence.service
    if service is not None:
        found.append(
            _observation(
                "service",
                f"service-{service.status.lower()}",
                f"{service.name} ({service.display_name}) on {site.genesys.name} is "
                f"{service.status}",
                host_time=evidence.host_time.isoformat() if evidence.host_time else "",
            )
        )
    if evidence.since is not None:
        found.append(
            _observation(
                "winrm",
                "log-read",
                f"read {len(evidence.log_segments)} log segment(s) written since "
                f"{evidence.since.isoformat(timespec='seconds')} (host time), "
                f"{evidence.log_bytes_on_host / 1e6:.1f} MB on the host, filtered there: "
                f"{evidence.winrm_bytes_received / 1e3:.1f} kB crossed WinRM",
                segments=", ".join(evidence.log_segments),
            )
        )
    port = evidence.softphone_port
    if evidence.listeners:
        owners = "; ".join(
            f"{item.protocol} {item.local_address}:{item.local_port} by {item.process_name} "
            f"(pid {item.pid})"
            for item in evidence.listeners
        )
        found.append(
            _observation(
                "winrm",
                "port-owner",
                f"on {site.genesys.name}, port {port} is held by {owners}: whatever registers "
                f"from {site.genesys.sip_address}:{port} runs on the SIP Server host itself",
                port=str(port),
                process=evidence.listeners[0].process_name,
            )
        )
    else:
        found.append(
            _observation(
                "winrm", "port-free", f"nothing listens on port {port} of {site.genesys.name}"
            )
        )
    coverage = evidence.coverage
    if coverage is not None:
        found.append(_coverage_observation(coverage))
    if evidence.capture_seconds is not None:
        registers = [r for r in evidence.captured if r.start_line.startswith("REGISTER")]
        responses = [r.start_line for r in evidence.captured if r.start_line.startswith("SIP/2.0")]
        found.append(
            _observation(
                "capture",
                "capture",
                f"{len(registers)} REGISTER(s) and {len(responses)} response(s) seen on "
                f"{site.asterisk.name} in {evidence.capture_seconds:g} s ({evidence.capture_note})"
                + (f"; responses: {', '.join(sorted(set(responses)))}" if responses else ""),
            )
        )
    for comparison in evidence.comparisons:
        found.append(
            _observation(
                "comparison",
                "register-headers",
                f"REGISTER of failing DN {comparison.failing_dn} ({comparison.failing_origin}) "
                f"against working DN {comparison.working_dn} ({comparison.working_origin})",
                **{name: f"{left}  |  {right}" for name, left, right in comparison.rows},
            )
        )
    return found


def _coverage_observation(coverage: GatewayCoverage) -> Observation:
    address = coverage.gateway_address
    trunks = ", ".join(
        f"{t.name} (contact {t.contact}, prefix {t.prefix or '-'})"
        for t in coverage.covering_trunks
    )
    annex = (
        f"[{coverage.annex_section}] {coverage.annex_list_option} = "
        f"{coverage.annex_list_value if coverage.annex_list_value is not None else '(not set)'}"
    )
    if coverage.covered:
        how = []
        if trunks:
            how.append(f"Trunk DN {trunks}")
        if coverage.annex_trusts_gateway:
            how.append(f"switch annex {annex}")
        return _observation(
            "gax",
            "gateway-covered",
            f"Genesys configuration knows {address} as a gateway: {'; '.join(how)}",
        )
    other = ", ".join(f"{t.name} ({t.contact or 'no contact'})" for t in coverage.trunks) or "none"
    return _observation(
        "gax",
        "gateway-not-covered",
        f"no Trunk DN contact and no switch annex option covers {address} (Trunk DNs: {other}; "
        f"{annex})",
    )


def _dn_observations(site: Site, evidence: LiveEvidence, dn: str) -> list[Observation]:
    found: list[Observation] = []
    configured = evidence.dn_configuration.get(dn)
    if configured is not None:
        if not configured.exists:
            found.append(
                _observation(
                    "gax", "dn-missing", f"DN {dn} does not exist in Genesys configuration"
                )
            )
        elif not configured.enabled:
            found.append(_observation("gax", "dn-disabled", f"DN {dn} exists but is disabled"))
        else:
            found.append(
                _observation(
                    "gax", "dn-configured", f"DN {dn} is configured ({configured.dn_type}, enabled)"
                )
            )
    registration = evidence.registrations.get(dn)
    if registration is not None and registration.registration is not None:
        state = registration.status or "not loaded by Asterisk"
        summary = (
            f"Asterisk registers {dn} with {registration.registration} "
            f"({registration.location}) to {registration.server_uri or '?'}: {state}"
        )
        if registration.expires_in is not None:
            when = registration.expires_in
            summary += f" (next attempt in {when} s)" if when >= 0 else f" ({-when} s overdue)"
        found.append(
            _observation(
                "asterisk",
                f"registration-{(registration.status or 'absent').lower()}",
                summary,
                registration=registration.registration,
            )
        )
        if registration.retry_problems and registration.status != "Registered":
            settings = ", ".join(f"{p.setting}={p.value}" for p in registration.retry_problems)
            reasons = "; ".join(p.why for p in registration.retry_problems)
            found.append(
                _observation(
                    "asterisk",
                    "registration-will-not-recover",
                    f"{registration.registration} will not recover on its own: {settings} "
                    f"({reasons}); after a fix, trigger it: asterisk -rx "
                    f'"pjsip send register {registration.registration}"',
                    location=registration.location,
                )
            )
    elif registration is not None:
        found.append(
            _observation(
                "asterisk", "registration-none", f"no Asterisk registration registers {dn}"
            )
        )
    route = evidence.reverse_routes.get(dn)
    if route is not None:
        via = f" (endpoint {route.endpoint})" if route.endpoint else ""
        if route.found:
            found.append(
                _observation(
                    "asterisk",
                    "reverse-route",
                    f"calls from Genesys{via} to {dn} match {', '.join(route.extensions)} in "
                    f"context {route.context}",
                )
            )
        else:
            missing = (
                "the context does not exist"
                if route.missing == "context"
                else "no extension matches it"
            )
            found.append(
                _observation(
                    "asterisk",
                    "no-reverse-route",
                    f"calls from Genesys{via} to {dn} land in context {route.context}, where "
                    f"{missing}",
                )
            )
    return found


def _trunk_for(coverage: GatewayCoverage | None, dn: str) -> TrunkDn | None:
    if coverage is None:
        return None
    return next(
        (t for t in coverage.covering_trunks if not t.prefix or dn.startswith(t.prefix)), None
    )


def _live_root_cause(site: Site, evidence: LiveEvidence, diagnosis: DnDiagnosis) -> DnDiagnosis:
    """The root cause the estate proves beyond the log: the service stopped, or a trunk that
    routes the DN to Asterisk where no extension takes the call."""
    service = evidence.service
    if service is not None and service.status != "Running":
        return dataclasses.replace(
            diagnosis,
            in_service=False,
            root_cause=Finding(
                RootCause.SERVICE_STOPPED,
                f"The SIP Server service {service.name} on {site.genesys.name} is "
                f"{service.status}: no DN can register or stay in service until it runs.",
                diagnosis.root_cause.evidence,
            ),
            recommendation=Recommendation(
                Fix.NONE,
                "no configuration change helps while SIP Server is not running",
                f"start {service.name} on {site.genesys.name} (Start-Service {service.name}) and "
                "read the newest log segment for why it stopped; then trigger re-registration "
                'on the gateway (asterisk -rx "pjsip send register *all")',
            ),
        )
    trunk = _trunk_for(evidence.coverage, diagnosis.dn)
    route = evidence.reverse_routes.get(diagnosis.dn)
    if (
        trunk is not None
        and route is not None
        and not route.found
        and diagnosis.root_cause.code in (RootCause.IN_SERVICE, RootCause.NO_REGISTER_SEEN)
    ):
        missing = (
            "does not exist"
            if route.missing == "context"
            else f"has no extension matching {diagnosis.dn}"
        )
        return dataclasses.replace(
            diagnosis,
            root_cause=Finding(
                RootCause.NO_REVERSE_ROUTE,
                f"Trunk DN {trunk.name} routes calls for {diagnosis.dn} to the gateway "
                f"({trunk.contact}), but on Asterisk the context {route.context} that calls from "
                f"Genesys land in{f' (endpoint {route.endpoint})' if route.endpoint else ''} "
                f"{missing}: calls to {diagnosis.dn} cannot reach the agent.",
                diagnosis.root_cause.evidence,
            ),
            recommendation=Recommendation(
                Fix.DIALPLAN,
                f"Genesys already sends {diagnosis.dn}'s calls over the trunk; only Asterisk's "
                "route back to the DN is missing, so no Genesys change is needed",
                f"add the DN range to [{route.context}] on Asterisk (remediate plan --dn "
                f"{diagnosis.dn} --fix dialplan), reload the dialplan and prove it with "
                f'asterisk -rx "dialplan show {diagnosis.dn}@{route.context}"',
            ),
        )
    registration = evidence.registrations.get(diagnosis.dn)
    if (
        diagnosis.recommendation.fix is Fix.ASTERISK_REREGISTER
        and registration is not None
        and registration.registration is not None
    ):
        name = registration.registration
        return dataclasses.replace(
            diagnosis,
            recommendation=dataclasses.replace(
                diagnosis.recommendation,
                action=f"on {site.asterisk.name}, registration {name} is "
                f"{registration.status or 'not loaded'}: find why it stopped (its settings at "
                f"{registration.location}, the Asterisk log {site.asterisk.log_file}), then "
                f'register it again: asterisk -rx "pjsip send register {name}"',
            ),
        )
    return diagnosis


def build_diagnosis(site: Site, evidence: LiveEvidence) -> Diagnosis:
    history = evidence.history
    if history is None:
        raise InputError("no SIP Server log was read", reference="genesys-log-missing")
    sources = [
        f"{site.genesys.name}:{site.genesys.log_dir}\\{name}" for name in evidence.log_segments
    ]
    diagnosis = diagnose_history(history, evidence.dns, since=evidence.since, sources=sources)
    diagnosis.dns = [_live_root_cause(site, evidence, item) for item in diagnosis.dns]
    failing = [item.dn for item in diagnosis.dns if item.in_service is False]
    working = [item.dn for item in diagnosis.dns if item.in_service]
    evidence.comparisons = compare_registers(evidence, failing, working)
    for item in diagnosis.dns:
        item.observations.extend(_dn_observations(site, evidence, item.dn))
    diagnosis.observations.extend(_estate_observations(site, evidence))
    return diagnosis


def diagnose_site(
    inventory: Path | None,
    site: str | None,
    dns: list[str],
    since: str | None,
    capture_seconds: float | None,
    vault_password_file: Path | None,
) -> Diagnosis:
    """`remediate diagnose` without `--log`: load the site, read the estate, diagnose `dns`."""
    wanted = list(dict.fromkeys(validate_dn(dn) for dn in dns))
    if not wanted:
        raise InputError("no DN to diagnose", reference="bad-dn", hint="give --dn 5001")
    if capture_seconds is not None and not 0 < capture_seconds <= MAX_CAPTURE_SECONDS:
        raise InputError(
            f"--capture must be between 0 and {MAX_CAPTURE_SECONDS:g} seconds",
            reference="bad-capture",
            hint="e.g. --capture 10s",
        )
    loaded = load_site(inventory, site, vault_password_file=vault_password_file)
    evidence = collect(loaded, wanted, since, capture_seconds)
    return build_diagnosis(loaded, evidence)
