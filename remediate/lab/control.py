"""Start, stop and inspect the lab: the back end of `remediate lab up|down|status|fault|logs`.

No terminal I/O here: functions return data and report progress through an optional callback; the
CLI renders both. The two host processes (`remediate.lab.genesys`, `remediate.lab.asterisk`) run
detached in their own sessions, so the lab outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from remediate.lab import tls
from remediate.lab.layout import (
    DEFAULT_SCENARIO,
    FAULTS,
    GENESYS_APPLICATION,
    GENESYS_SERVICE,
    GENESYS_SWITCH,
    SCENARIOS,
    WINDOWS_LOG_DIR,
    LabLayout,
    active_faults,
    load_layout,
    save_layout,
    set_fault,
)

Progress = Callable[[str], None]

HOSTS = ("genesys", "asterisk")
"""The lab's host processes; each is `python -m remediate.lab.<name>`."""

# Name of the inventory file `up` writes into `layout.inventory_dir`.
INVENTORY_FILE = "hosts.yml"

# The registration sections of the lab's pjsip.conf, by the Genesys DN each one registers.
DN_REGISTRATIONS = {"5001": "genesys_reg_5001", "5002": "genesys_reg_5002"}

# Scenarios in which the SIP registrar is expected to stay silent once the lab is up.
_REGISTRAR_SILENT_SCENARIOS = frozenset({"service-stopped"})

_POLL_INTERVAL = 0.05
_SIP_RETRANSMIT_INTERVAL = 0.25
_STOP_GRACE_SECONDS = 3.0
_KILL_GRACE_SECONDS = 2.0
_LOG_TAIL_ON_FAILURE = 20
_FIRST_REGISTRATION_BOUND = 3.0


class LabError(Exception):
    """A lab operation failed. The CLI turns it into the product's error rendering."""

    def __init__(self, reference: str, message: str, *, hint: str = "") -> None:
        super().__init__(f"{reference}: {message}")
        self.reference = reference
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Endpoint:
    """One address:port a host process binds."""

    host: str  # "genesys" or "asterisk": the process that binds it
    name: str  # e.g. "genesys/sip"
    address: str
    port: int
    protocol: str  # "udp" or "tcp"

    @property
    def label(self) -> str:
        return f"{self.address}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class ComponentStatus:
    name: str  # "genesys/sip", "genesys/softphone", "genesys/winrm-http", ..., "asterisk/ssh"
    host: str  # the process: "genesys" or "asterisk"
    address: str
    port: int
    protocol: str  # "udp" or "tcp"
    state: (
        str  # "up": bound by its live process; "down"; "stale": its pid file names a dead process
    )
    pid: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "state": self.state,
            "pid": self.pid,
        }


@dataclass(frozen=True)
class LabStatus:
    root: Path
    scenario: str
    state: str  # "up" (both processes running), "down", "partial", or "stale" (dead pid files)
    components: tuple[ComponentStatus, ...]
    service_state: str | None  # TSrvSIP64 as the Genesys host reports it; None when unknown
    dns_in_service: tuple[str, ...]
    bindings: dict[str, Any]  # per DN, as the Genesys host's status file reports them
    trunks: dict[str, Any]  # per Trunk DN (contact, state, ...), from the same file
    faults: tuple[str, ...]
    inventory: Path  # the inventory `up` wrote for this lab

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "scenario": self.scenario,
            "state": self.state,
            "components": [component.to_json() for component in self.components],
            "service_state": self.service_state,
            "dns_in_service": list(self.dns_in_service),
            "bindings": self.bindings,
            "trunks": self.trunks,
            "faults": list(self.faults),
            "inventory": str(self.inventory),
        }


@dataclass(frozen=True)
class LogExcerpt:
    name: str  # "sip-server", "asterisk", "genesys-process", "asterisk-process"
    path: Path | None  # None when there is no such file yet (e.g. no SIP Server segment)
    lines: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": None if self.path is None else str(self.path),
            "lines": list(self.lines),
        }


# Endpoints ------------------------------------------------------------------------------------


def endpoints(layout: LabLayout) -> tuple[Endpoint, ...]:
    """Every address:port the lab binds, in the order `status` reports them."""
    a = layout.addresses
    return (
        Endpoint("genesys", "genesys/sip", a.genesys_host, a.sip_port, "udp"),
        Endpoint("genesys", "genesys/softphone", a.genesys_host, a.softphone_port, "udp"),
        Endpoint("genesys", "genesys/winrm-http", a.genesys_host, a.winrm_http_port, "tcp"),
        Endpoint("genesys", "genesys/winrm-https", a.genesys_host, a.winrm_https_port, "tcp"),
        Endpoint("genesys", "genesys/gax-http", a.genesys_host, a.gax_http_port, "tcp"),
        Endpoint("genesys", "genesys/gax-https", a.genesys_host, a.gax_https_port, "tcp"),
        Endpoint("asterisk", "asterisk/ssh", a.asterisk_host, a.ssh_port, "tcp"),
        Endpoint("asterisk", "asterisk/sip", a.asterisk_host, a.asterisk_sip_port, "udp"),
    )


def _port_is_free(endpoint: Endpoint) -> bool:
    kind = socket.SOCK_DGRAM if endpoint.protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        if endpoint.protocol == "tcp":
            # As the servers do: a TIME_WAIT left by a previous lab must not count as taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((endpoint.address, endpoint.port))
        except OSError:
            return False
    return True


# Sockets and processes, from /proc ------------------------------------------------------------


@dataclass(frozen=True)
class _Socket:
    protocol: str
    address: ipaddress.IPv4Address | None  # None: the wildcard (0.0.0.0 or ::)
    port: int
    listening: bool
    inode: int


def _decode_proc_address(text: str) -> tuple[ipaddress.IPv4Address | None, int] | None:
    """`0100007F:13C4` (or its 32-digit IPv6 form) as /proc/net prints it, in host byte order.

    Returns the IPv4 address (None for a wildcard) and port, or None for an IPv6-only address,
    which cannot hold an IPv4 loopback port.
    """
    hex_address, hex_port = text.split(":")
    raw = bytes.fromhex(hex_address)
    packed = b"".join(
        struct.pack("=I", struct.unpack(">I", raw[i : i + 4])[0]) for i in range(0, len(raw), 4)
    )
    port = int(hex_port, 16)
    if len(packed) == 4:
        v4 = ipaddress.IPv4Address(packed)
        return (None if v4.is_unspecified else v4), port
    v6 = ipaddress.IPv6Address(packed)
    if v6.is_unspecified:
        return None, port
    if v6.ipv4_mapped is not None:
        return v6.ipv4_mapped, port
    return None


def _proc_sockets() -> list[_Socket]:
    sockets: list[_Socket] = []
    for protocol in ("tcp", "udp"):
        for suffix in ("", "6"):
            try:
                lines = Path(f"/proc/net/{protocol}{suffix}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) < 10:
                    continue
                decoded = _decode_proc_address(fields[1])
                if decoded is None:
                    continue
                address, port = decoded
                # A TCP port is held by its listener (0A); any UDP socket holds its port.
                listening = fields[3] == "0A" if protocol == "tcp" else True
                sockets.append(_Socket(protocol, address, port, listening, int(fields[9])))
    return sockets


def _socket_inodes_by_pid() -> Iterator[tuple[int, set[int]]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:  # gone, or not ours to look at
            continue
        inodes: set[int] = set()
        for descriptor in descriptors:
            try:
                target = os.readlink(descriptor)
            except OSError:  # closed meanwhile (the listing's own descriptor, for one)
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
        if inodes:
            yield int(entry.name), inodes


def _holders(endpoint: Endpoint, sockets: list[_Socket]) -> set[int]:
    """Inodes of the sockets that keep `endpoint` from being bound."""
    wanted = ipaddress.IPv4Address(endpoint.address)
    return {
        s.inode
        for s in sockets
        if s.protocol == endpoint.protocol
        and s.port == endpoint.port
        and s.listening
        and (s.address is None or s.address == wanted)
    }


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _describe_process(pid: int) -> str:
    command = " ".join(_command_line(pid)) or "?"
    if len(command) > 160:
        command = command[:157] + "..."
    return f"pid {pid} ({command})"


def _reap(pid: int) -> None:
    """Collect `pid` if it is a child of ours that has exited, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def _is_lab_process(pid: int, layout: LabLayout, host: str) -> bool:
    command = _command_line(pid)
    return f"remediate.lab.{host}" in command and str(layout.root) in command


def _parent_pids() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return parents


def _descendants(pids: Iterable[int]) -> set[int]:
    parents = _parent_pids()
    found: set[int] = set()
    frontier = set(pids)
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


# Pid files --------------------------------------------------------------------------------------


def _read_pid(layout: LabLayout, host: str) -> int | None:
    try:
        return int(layout.pid_file(host).read_text().strip())
    except (OSError, ValueError):
        return None


def _running_pid(layout: LabLayout, host: str) -> int | None:
    """The pid of this lab's `host` process if it runs (pid file first, then a /proc scan)."""
    pid = _read_pid(layout, host)
    if pid is not None and _alive(pid) and _is_lab_process(pid, layout, host):
        return pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            candidate = int(entry.name)
            if _is_lab_process(candidate, layout, host) and _alive(candidate):
                return candidate
    return None


def _host_state(layout: LabLayout, host: str) -> tuple[str, int | None]:
    pid = _running_pid(layout, host)
    if pid is not None:
        return "up", pid
    if layout.pid_file(host).exists():
        return "stale", _read_pid(layout, host)
    return "down", None


def _clean_run_files(layout: LabLayout, host: str) -> None:
    for path in (layout.pid_file(host), layout.ready_file(host)):
        path.unlink(missing_ok=True)


# Readiness probes -----------------------------------------------------------------------------


class _TcpProbe:
    """Answers once a TCP connection is accepted and, where one is expected, the server's first
    words arrive (SSH's banner) or a TLS handshake succeeds against the lab's CA."""

    def __init__(
        self, endpoint: Endpoint, *, banner: bytes = b"", tls_ca: Path | None = None
    ) -> None:
        self.endpoint = endpoint
        self.banner = banner
        self.tls_ca = tls_ca
        self.failure = "never accepted a connection"

    def poll(self) -> bool:
        address = (self.endpoint.address, self.endpoint.port)
        try:
            with socket.create_connection(address, timeout=1.0) as connection:
                if self.tls_ca is not None:
                    return self._handshake(connection, self.tls_ca)
                if self.banner:
                    return self._read_banner(connection)
                return True
        except OSError as error:
            self.failure = f"refused the connection ({error.strerror or error})"
            return False

    def _read_banner(self, connection: socket.socket) -> bool:
        received = connection.recv(256)
        if received.startswith(self.banner):
            return True
        self.failure = f"answered {received[:40]!r} instead of {self.banner!r}"
        return False

    def _handshake(self, connection: socket.socket, ca: Path) -> bool:
        context = ssl.create_default_context(cafile=str(ca))
        try:
            with context.wrap_socket(connection, server_hostname=self.endpoint.address) as secure:
                # A clean TLS close, so the server sees a client that left, not a broken one.
                secure.unwrap()
        except ssl.SSLCertVerificationError as error:
            self.failure = f"presented a certificate the lab's CA does not verify ({error})"
            return False
        except (ssl.SSLError, OSError) as error:
            if isinstance(error, ssl.SSLError) and "UNEXPECTED_EOF" in str(error):
                return True  # the handshake completed; the server closed without close_notify
            self.failure = f"failed the TLS handshake ({error})"
            return False
        return True

    def close(self) -> None:
        pass


class _SipOptionsProbe:
    """Sends SIP OPTIONS (retransmitted); answers once a response with its Call-ID comes back."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.failure = "never answered SIP OPTIONS"
        self.call_id = f"{uuid.uuid4().hex}@remediate-lab"
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.sent_at = 0.0
        self.cseq = 0

    def _request(self) -> bytes:
        local_address, local_port = self.socket.getsockname()
        target = f"{self.endpoint.address}:{self.endpoint.port}"
        self.cseq += 1
        return (
            f"OPTIONS sip:{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local_address}:{local_port};branch=z9hG4bK{uuid.uuid4().hex[:16]}"
            ";rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:lab-probe@{local_address}>;tag={uuid.uuid4().hex[:10]}\r\n"
            f"To: <sip:{target}>\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {self.cseq} OPTIONS\r\n"
            "User-Agent: remediate-lab-probe\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def poll(self) -> bool:
        while True:
            try:
                data = self.socket.recv(65535)
            except BlockingIOError:
                break
            except OSError:  # ICMP port unreachable surfaces here: nothing listens yet
                break
            if data.startswith(b"SIP/2.0 ") and self.call_id.encode() in data:
                return True
        now = time.monotonic()
        if now - self.sent_at >= _SIP_RETRANSMIT_INTERVAL:
            self.sent_at = now
            try:
                self.socket.sendto(self._request(), (self.endpoint.address, self.endpoint.port))
            except OSError as error:
                self.failure = f"could not be sent SIP OPTIONS ({error})"
        return False

    def close(self) -> None:
        self.socket.close()


def _probes(layout: LabLayout, scenario: str) -> list[_TcpProbe | _SipOptionsProbe]:
    probes: list[_TcpProbe | _SipOptionsProbe] = []
    for endpoint in endpoints(layout):
        if endpoint.name == "genesys/sip":
            if scenario not in _REGISTRAR_SILENT_SCENARIOS:
                probes.append(_SipOptionsProbe(endpoint))
        elif endpoint.name == "asterisk/sip":
            probes.append(_SipOptionsProbe(endpoint))
        elif endpoint.name == "asterisk/ssh":
            probes.append(_TcpProbe(endpoint, banner=b"SSH-"))
        elif endpoint.name.endswith("-https"):
            probes.append(_TcpProbe(endpoint, tls_ca=layout.ca_cert))
        elif endpoint.protocol == "tcp":
            probes.append(_TcpProbe(endpoint))
        # The softphone is a client: it only has to be bound, which `status` reports.
    return probes


# Logs -------------------------------------------------------------------------------------------


def _tail(path: Path, lines: int) -> tuple[str, ...]:
    """The last `lines` lines of `path`, reading backwards so that a 200 MB log costs nothing."""
    if lines <= 0:
        return ()
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    text = data.decode("utf-8", errors="replace")
    return tuple(text.splitlines()[-lines:])


_SEGMENT_NAME = re.compile(r"^.+\.(\d{8}_\d{6}_\d{3})\.log$")


def newest_log_segment(layout: LabLayout) -> Path | None:
    """The SIP Server's current log segment: the one whose name carries the latest start time."""
    try:
        candidates = [
            (match.group(1), path.name, path)
            for path in layout.log_dir.iterdir()
            if (match := _SEGMENT_NAME.match(path.name))
        ]
    except FileNotFoundError:
        return None
    return max(candidates)[2] if candidates else None


def _log_tail_text(layout: LabLayout, host: str) -> str:
    path = layout.process_log(host)
    try:
        tail = _tail(path, _LOG_TAIL_ON_FAILURE)
    except OSError:
        return f"(no output: {path} does not exist)"
    if not tail:
        return f"(no output in {path})"
    return f"last lines of {path}:\n" + "\n".join(f"  {line}" for line in tail)


# Inventory --------------------------------------------------------------------------------------


def capture_record_path(layout: LabLayout) -> Path:
    """Where the lab's gateway records the REGISTERs it sends and their answers (JSON lines): the
    stand-in for a capture on a host without tcpdump. The same path as
    `remediate.lab.asterisk.daemon.register_record_path`, which this module does not import (it
    pulls asyncio and the SIP stack into every `remediate lab` command)."""
    return layout.asterisk_log.parent / "sip-register.jsonl"


def lab_inventory(layout: LabLayout, user: str | None = None) -> dict[str, Any]:
    """This lab as an Ansible inventory with literal values (no templates), so that tools which do
    not template inventory variables (testinfra) read it as well as Ansible does.

    Same groups, hosts and variables as the committed `inventories/lab/`.
    """
    a = layout.addresses
    c = layout.credentials
    root = str(layout.root)
    ca = str(layout.ca_cert)
    etc = layout.asterisk_etc
    genesys_vars: dict[str, Any] = {
        "ansible_connection": "winrm",
        "ansible_host": a.genesys_host,
        "ansible_port": a.winrm_https_port,
        "ansible_user": c.winrm_user,
        "ansible_password": c.winrm_password,
        "ansible_winrm_scheme": "https",
        "ansible_winrm_transport": "ntlm",
        "ansible_winrm_server_cert_validation": "validate",
        "ansible_winrm_ca_trust_path": ca,
        "genesys_application": GENESYS_APPLICATION,
        "genesys_service_name": GENESYS_SERVICE,
        "genesys_service_control": "service",
        "genesys_log_dir": str(WINDOWS_LOG_DIR),
        "genesys_log_prefix": f"{GENESYS_APPLICATION}-001",
        "genesys_switch": GENESYS_SWITCH,
        "genesys_sip_address": a.genesys_host,
        "genesys_sip_port": a.sip_port,
        "genesys_softphone_port": a.softphone_port,
        "genesys_gax_url": f"https://{a.genesys_host}:{a.gax_https_port}/gax/api",
        "genesys_gax_user": c.gax_user,
        "genesys_gax_password": c.gax_password,
        "genesys_gax_ca_path": ca,
        "genesys_trusted_gateway_section": "sip",
        "genesys_trusted_gateway_option": "trusted-gateways",
        "genesys_gateway_auth_option": "gateway-ip-auth-mode",
    }
    asterisk_vars: dict[str, Any] = {
        "ansible_connection": "ssh",
        "ansible_host": a.asterisk_host,
        "ansible_port": a.ssh_port,
        "ansible_user": user or getpass.getuser(),
        "ansible_ssh_private_key_file": str(layout.ssh_client_key),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={layout.known_hosts} -o StrictHostKeyChecking=yes"
        ),
        # The lab's Asterisk host is this machine: run modules with this very Python.
        "ansible_python_interpreter": sys.executable,
        "asterisk_sip_address": a.asterisk_host,
        "asterisk_sip_port": a.asterisk_sip_port,
        "asterisk_etc_dir": str(etc),
        "asterisk_pjsip_conf": str(etc / "pjsip.conf"),
        "asterisk_extensions_conf": str(etc / "extensions.conf"),
        "asterisk_log_file": str(layout.asterisk_log),
        "asterisk_command": "asterisk",
        "asterisk_dn_registrations": dict(DN_REGISTRATIONS),
        "asterisk_capture_record": str(capture_record_path(layout)),
        "remediate_lock_path": os.path.realpath(layout.root / "remediate-lab.lock"),
    }
    return {
        "all": {
            "children": {
                "site_lab": {
                    "vars": {"remediate_lab": True, "remediate_lab_dir": root},
                    "children": {
                        "genesys": {"hosts": {"genesys-lab": genesys_vars}},
                        "asterisk": {"hosts": {"asterisk-lab": asterisk_vars}},
                    },
                }
            }
        }
    }


def write_inventory(layout: LabLayout) -> Path:
    layout.inventory_dir.mkdir(parents=True, exist_ok=True)
    path = layout.inventory_dir / INVENTORY_FILE
    header = (
        "# Written by `remediate lab up` for the lab in "
        f"{layout.root}: literal addresses and paths.\n"
        "# Regenerated on every start; edit inventories/lab/ instead.\n"
    )
    temporary = path.with_suffix(".tmp")
    temporary.write_text(
        header + yaml.safe_dump(lab_inventory(layout), sort_keys=False, width=1000),
        encoding="utf-8",
    )
    os.replace(temporary, path)
    return path


# Operations -------------------------------------------------------------------------------------


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        known = ", ".join(SCENARIOS)
        raise LabError(
            "lab-unknown-scenario",
            f"there is no lab scenario {scenario!r}; the lab knows: {known}",
            hint="pick one of those with --scenario",
        )


def _check_ports(layout: LabLayout) -> None:
    taken = [endpoint for endpoint in endpoints(layout) if not _port_is_free(endpoint)]
    if not taken:
        return
    sockets = _proc_sockets()
    wanted = {endpoint: _holders(endpoint, sockets) for endpoint in taken}
    owners: dict[int, int] = {}
    all_inodes = set().union(*wanted.values())
    if all_inodes:
        for pid, inodes in _socket_inodes_by_pid():
            for inode in inodes & all_inodes:
                owners[inode] = pid
    # One sentence per holder: a lab left running holds all eight ports.
    by_holder: dict[str, list[Endpoint]] = {}
    other_labs: set[str] = set()
    for endpoint in taken:
        pids = sorted({owners[inode] for inode in wanted[endpoint] if inode in owners})
        holder = ", ".join(_describe_process(pid) for pid in pids)
        by_holder.setdefault(holder, []).append(endpoint)
        for pid in pids:
            command = _command_line(pid)
            if "--dir" in command and any(p.startswith("remediate.lab.") for p in command):
                other_labs.add(command[command.index("--dir") + 1])
    descriptions = []
    for holder, held in by_holder.items():
        listed = ", ".join(f"{endpoint.label} ({endpoint.name})" for endpoint in held)
        descriptions.append(f"{listed} held by {holder}" if holder else f"{listed} in use")
    hint = "stop what holds those ports, or start the lab on other loopback addresses"
    if other_labs:
        hint = "another lab holds them: " + "; ".join(
            f"remediate lab down --dir {other}" for other in sorted(other_labs)
        )
    raise LabError(
        "lab-port-in-use",
        "cannot start the lab, ports are taken: " + "; ".join(descriptions),
        hint=hint,
    )


def _discard_certificate_of_another_address(layout: LabLayout) -> None:
    """A lab directory reused on another address needs a server certificate for that address."""
    try:
        certificate = x509.load_pem_x509_certificate(layout.server_cert.read_bytes())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, ValueError, x509.ExtensionNotFound):
        return
    wanted = ipaddress.ip_address(layout.addresses.genesys_host)
    if wanted not in names.value.get_values_for_type(x509.IPAddress):
        for path in (layout.ca_cert, layout.server_cert, layout.server_key):
            path.unlink(missing_ok=True)


def _spawn(layout: LabLayout, host: str, scenario: str) -> int:
    environment = dict(os.environ)
    # The children import the very package this module comes from, installed or not.
    package_parent = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (package_parent, environment.get("PYTHONPATH", "")) if part
    )
    environment["PYTHONUNBUFFERED"] = "1"
    log = layout.process_log(host)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    arguments = [
        sys.executable,
        "-m",
        f"remediate.lab.{host}",
        "--dir",
        str(layout.root),
        "--scenario",
        scenario,
    ]
    # posix_spawn with setsid: detached from our session and terminal, and no Popen object whose
    # finalizer would complain that the lab is still running.
    pid = os.posix_spawn(
        sys.executable,
        arguments,
        environment,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), flags, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    layout.pid_file(host).write_text(f"{pid}\n", encoding="utf-8")
    return pid


def _signal_group(pid: int, signal_number: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal_number)
        else:
            os.kill(pid, signal_number)
    except ProcessLookupError:
        pass


def _terminate(pids: set[int], progress: Progress | None) -> set[int]:
    """SIGTERM, then SIGKILL after a bound; returns the pids that survived even that."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    remaining = {pid for pid in pids if _alive(pid)}
    while remaining and time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL)
        remaining = {pid for pid in remaining if _alive(pid)}
    if remaining:
        listed = ", ".join(_describe_process(pid) for pid in sorted(remaining))
        _say(progress, f"still running after {_STOP_GRACE_SECONDS:.0f} s, killing: {listed}")
        for pid in remaining:
            _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_GRACE_SECONDS
        while remaining and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)
            remaining = {pid for pid in remaining if _alive(pid)}
    return remaining


def _stop(layout: LabLayout, progress: Progress | None) -> None:
    running = {host: pid for host in HOSTS if (pid := _running_pid(layout, host)) is not None}
    if running:
        described = ", ".join(f"{host} host (pid {pid})" for host, pid in running.items())
        _say(progress, f"stopping {described}")
        # Children that left the process group (commands run over SSH with a pty) go too.
        targets = set(running.values()) | _descendants(running.values())
        survivors = _terminate(targets, progress)
        if survivors:
            listed = ", ".join(_describe_process(pid) for pid in sorted(survivors))
            raise LabError(
                "lab-stop-failed",
                f"these lab processes survived SIGKILL: {listed}",
                hint="they may be stuck in the kernel (state D); check `ps -o stat,pid,cmd`",
            )
    for host in HOSTS:
        _clean_run_files(layout, host)


def _wait_until_answering(
    layout: LabLayout,
    scenario: str,
    host: str,
    started: dict[str, int],
    deadline: float,
    progress: Progress | None,
) -> None:
    """Wait for `host`'s ready file, then for each of its endpoints to answer, while every host
    `started` so far stays alive."""
    probes = [probe for probe in _probes(layout, scenario) if probe.endpoint.host == host]
    ready = False
    try:
        while True:
            for name, pid in started.items():
                if not _alive(pid):
                    raise LabError(
                        "lab-start-failed",
                        f"the {name} host (pid {pid}) exited while starting\n"
                        + _log_tail_text(layout, name),
                        hint=f"its full output is in {layout.process_log(name)}",
                    )
            if not ready and layout.ready_file(host).exists():
                ready = True
                _say(progress, f"{host} host ready (pid {started[host]})")
            if ready:
                pending = []
                for probe in probes:
                    if probe.poll():
                        _say(progress, f"{probe.endpoint.name} answers on {probe.endpoint.label}")
                        probe.close()
                    else:
                        pending.append(probe)
                probes = pending
                if not probes:
                    return
            if time.monotonic() >= deadline:
                if not ready:
                    reasons = [f"the {host} host never became ready"]
                else:
                    reasons = [
                        f"{probe.endpoint.name} ({probe.endpoint.label}) {probe.failure}"
                        for probe in probes
                    ]
                raise LabError(
                    "lab-start-timeout",
                    "the lab did not answer in time: "
                    + "; ".join(reasons)
                    + "\n"
                    + _log_tail_text(layout, host),
                    hint="raise the timeout if this machine is slow, or read the process logs "
                    f"in {layout.run_dir}",
                )
            time.sleep(_POLL_INTERVAL)
    finally:
        for probe in probes:
            probe.close()


def _first_registration_outcomes(layout: LabLayout) -> dict[str, str]:
    """Per gateway registration, how its first REGISTER fared: the response's status line, or
    `no answer` once the gateway had to retransmit it. From the gateway's own record."""
    try:
        lines = capture_record_path(layout).read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    outcomes: dict[str, str] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line being written
            continue
        name = record.get("registration")
        if record.get("direction") == "received":
            outcomes.setdefault(name, str(record.get("line", "")).removeprefix("SIP/2.0 "))
        elif record.get("direction") == "sent" and record.get("retransmission"):
            outcomes.setdefault(name, "no answer")
    return outcomes


def _wait_for_first_registrations(
    layout: LabLayout, deadline: float, progress: Progress | None
) -> None:
    """Hold `up` until the gateway's first REGISTERs have been answered (or retransmitted), so
    that the scenario's starting state, e.g. the seed's refused 5001/5002, shows as soon as `up`
    returns. The registrations start after Asterisk's `max_random_initial_delay` (1 s in the lab).
    The estate's behaviour is not the lab's health: past the bound this reports and returns."""
    wanted = sorted(DN_REGISTRATIONS.values())
    bound = min(deadline, time.monotonic() + _FIRST_REGISTRATION_BOUND)
    outcomes = _first_registration_outcomes(layout)
    while not set(wanted) <= set(outcomes) and time.monotonic() < bound:
        time.sleep(_POLL_INTERVAL)
        outcomes = _first_registration_outcomes(layout)
    described = ", ".join(f"{name}: {outcomes.get(name, 'not sent yet')}" for name in wanted)
    _say(progress, f"gateway registrations: {described}")


@contextlib.contextmanager
def _exclusive(layout: LabLayout) -> Iterator[None]:
    """One `up` or `down` at a time per lab directory (two terminals, two test runs)."""
    if not layout.run_dir.is_dir():
        yield
        return
    with (layout.run_dir / "control.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(
    layout: LabLayout,
    scenario: str = DEFAULT_SCENARIO,
    *,
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> LabStatus:
    """Start the lab in `layout.root` and return once every component answers."""
    started_at = time.monotonic()
    _check_scenario(scenario)
    layout = LabLayout(layout.root.resolve(), layout.addresses, layout.credentials)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(layout):
        return _up(layout, scenario, started_at + timeout, progress)


def _up(layout: LabLayout, scenario: str, deadline: float, progress: Progress | None) -> LabStatus:
    started_at = time.monotonic()
    recorded, recorded_scenario = load_layout(layout.root)
    states = {host: _host_state(recorded, host) for host in HOSTS}
    running = [host for host, (state, _) in states.items() if state == "up"]
    if len(running) == len(HOSTS) and all(recorded.ready_file(h).exists() for h in HOSTS):
        if recorded.addresses != layout.addresses or recorded_scenario != scenario:
            raise LabError(
                "lab-already-up",
                f"the lab in {layout.root} is already up with scenario {recorded_scenario!r} "
                f"on {recorded.addresses.genesys_host} and {recorded.addresses.asterisk_host}",
                hint=f"stop it first: remediate lab down --dir {layout.root}",
            )
        _say(progress, f"the lab in {layout.root} is already up (scenario {scenario})")
        return status(layout)
    if running:
        # Half a lab is no lab: start both afresh.
        _say(progress, f"the lab is only partly running ({', '.join(running)}): restarting it")
        _stop(recorded, progress)
    for host, (state, pid) in states.items():
        if state == "stale":
            _say(progress, f"removing the stale pid file of the {host} host (pid {pid} is gone)")
        _clean_run_files(recorded, host)

    _say(progress, "checking that the lab's ports are free")
    _check_ports(layout)
    save_layout(layout, scenario)
    leftover_faults = active_faults(layout)
    for name in leftover_faults:
        set_fault(layout, name, False)
    if leftover_faults:
        _say(
            progress, f"cleared faults left from the last run: {', '.join(sorted(leftover_faults))}"
        )
    _discard_certificate_of_another_address(layout)
    tls.ensure_certificates(layout)
    inventory = write_inventory(layout)
    _say(progress, f"wrote the lab's inventory: {inventory}")

    pids: dict[str, int] = {}
    try:
        for host in HOSTS:
            pids[host] = _spawn(layout, host, scenario)
            _say(progress, f"started the {host} host (pid {pids[host]})")
        for host in HOSTS:
            _wait_until_answering(layout, scenario, host, pids, deadline, progress)
        _wait_for_first_registrations(layout, deadline, progress)
    except BaseException:
        # Leave nothing half-started behind, whatever interrupted the start.
        _stop(layout, None)
        raise
    _say(progress, f"lab up in {time.monotonic() - started_at:.1f} s (scenario {scenario})")
    return status(layout)


def down(layout: LabLayout, *, progress: Progress | None = None) -> LabStatus:
    """Stop the lab; stopping a lab that is not running is not an error."""
    with _exclusive(layout):
        return _down(layout, progress)


def _down(layout: LabLayout, progress: Progress | None) -> LabStatus:
    recorded, _ = load_layout(layout.root)
    states = {host: _host_state(recorded, host) for host in HOSTS}
    if all(state == "down" for state, _ in states.values()):
        _say(progress, f"the lab in {recorded.root} is not running")
    for host, (state, pid) in states.items():
        if state == "stale":
            _say(progress, f"removing the stale pid file of the {host} host (pid {pid} is gone)")
    _stop(recorded, progress)
    leftovers = _lab_sockets_left(recorded)
    if leftovers:
        raise LabError(
            "lab-stop-failed",
            "the lab is stopped but its ports are still bound: " + "; ".join(leftovers),
            hint="stop those processes, then run `remediate lab down` again",
        )
    _say(progress, "lab down")
    return status(recorded)


def _lab_sockets_left(layout: LabLayout) -> list[str]:
    """Endpoints of this lab still bound by a process of this lab (its command line names it)."""
    sockets = _proc_sockets()
    wanted = {endpoint: _holders(endpoint, sockets) for endpoint in endpoints(layout)}
    all_inodes = set().union(*wanted.values())
    if not all_inodes:
        return []
    found = []
    for pid, inodes in _socket_inodes_by_pid():
        if not inodes & all_inodes or str(layout.root) not in _command_line(pid):
            continue
        for endpoint, endpoint_inodes in wanted.items():
            if inodes & endpoint_inodes:
                found.append(f"{endpoint.label} by {_describe_process(pid)}")
    return found


def _read_genesys_status(layout: LabLayout) -> dict[str, Any]:
    try:
        document = json.loads(layout.genesys_status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def status(layout: LabLayout) -> LabStatus:
    recorded, scenario = load_layout(layout.root)
    hosts = {host: _host_state(recorded, host) for host in HOSTS}
    bound: dict[Endpoint, set[int]] = {}
    if any(state == "up" for state, _ in hosts.values()):
        sockets = _proc_sockets()
        lab_pids = {pid for state, pid in hosts.values() if state == "up" and pid is not None}
        lab_pids |= _descendants(lab_pids)
        lab_inodes: set[int] = set()
        for holder, inodes in _socket_inodes_by_pid():
            if holder in lab_pids:
                lab_inodes |= inodes
        for endpoint in endpoints(recorded):
            bound[endpoint] = _holders(endpoint, sockets) & lab_inodes
    components = []
    for endpoint in endpoints(recorded):
        host_state, pid = hosts[endpoint.host]
        state = host_state
        if host_state == "up" and not bound.get(endpoint):
            state = "down"
        components.append(
            ComponentStatus(
                endpoint.name,
                endpoint.host,
                endpoint.address,
                endpoint.port,
                endpoint.protocol,
                state,
                pid,
            )
        )
    host_states = {state for state, _ in hosts.values()}
    if host_states == {"up"}:
        overall = "up"
    elif "up" in host_states:
        overall = "partial"
    elif "stale" in host_states:
        overall = "stale"
    else:
        overall = "down"
    report = _read_genesys_status(recorded) if overall in ("up", "partial") else {}
    return LabStatus(
        root=recorded.root,
        scenario=scenario,
        state=overall,
        components=tuple(components),
        service_state=report.get("service"),
        dns_in_service=tuple(str(dn) for dn in report.get("in_service", [])),
        bindings=dict(report.get("bindings", {})),
        trunks=dict(report.get("trunks", {})),
        faults=tuple(sorted(active_faults(recorded))),
        inventory=recorded.inventory_dir / INVENTORY_FILE,
    )


def fault(layout: LabLayout, name: str, on: bool) -> frozenset[str]:
    """Switch a fault on or off; returns the faults now active."""
    if name not in FAULTS:
        known = ", ".join(FAULTS)
        raise LabError(
            "lab-unknown-fault",
            f"there is no lab fault {name!r}; the lab knows: {known}",
            hint="`remediate lab fault --help` describes each one",
        )
    recorded, _ = load_layout(layout.root)
    if on and any(_running_pid(recorded, host) is None for host in HOSTS):
        raise LabError(
            "lab-not-running",
            f"the lab in {recorded.root} is not running, so a fault would have no effect "
            "(and `lab up` clears faults)",
            hint=f"start it first: remediate lab up --dir {recorded.root}",
        )
    return set_fault(recorded, name, on)


def logs(layout: LabLayout, lines: int = 40) -> list[LogExcerpt]:
    """The tails of the SIP Server's newest log segment, the Asterisk log and each process log."""
    recorded, _ = load_layout(layout.root)
    sources: list[tuple[str, Path | None]] = [
        ("sip-server", newest_log_segment(recorded)),
        ("asterisk", recorded.asterisk_log),
    ]
    sources += [(f"{host}-process", recorded.process_log(host)) for host in HOSTS]
    excerpts = []
    for name, path in sources:
        if path is None or not path.is_file():
            excerpts.append(LogExcerpt(name, None if path is None else path, ()))
        else:
            excerpts.append(LogExcerpt(name, path, _tail(path, lines)))
    return excerpts
