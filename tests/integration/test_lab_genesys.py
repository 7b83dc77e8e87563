"""The lab's Genesys host against real clients: sipp and a raw UDP user agent for SIP, requests for
GAX, the service's restart and faults, and the log it writes.

Each test runs its own GenesysHost in this process (ports freed by `free_lab_dir` first), on
REMEDIATE_TEST_GENESYS_HOST / REMEDIATE_TEST_ASTERISK_HOST (defaults 127.0.0.81 / 127.0.0.54).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from remediate.lab.genesys.host import GenesysHost
from remediate.lab.genesys.sipp import SippResult, run_register
from remediate.lab.layout import LabLayout, save_layout, set_fault
from remediate.lab.sip import (
    SipMessage,
    build_request,
    build_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from remediate.lab.tls import ensure_certificates
from remediate.lab.windows import ServiceError

HostFactory = Callable[..., GenesysHost]


@pytest.fixture
def genesys(free_lab_dir: LabLayout) -> Iterator[HostFactory]:
    started: list[GenesysHost] = []

    def start(scenario: str, *, start_service: bool = True) -> GenesysHost:
        save_layout(free_lab_dir, scenario)
        ensure_certificates(free_lab_dir)
        host = GenesysHost(free_lab_dir, scenario, start_delay=0.05, stop_delay=0.02)
        started.append(host)
        host.start(start_service=start_service)
        if start_service:
            host.softphone.wait_first_attempts(3)
        return host

    yield start
    for host in started:
        host.close()


def eventually(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def status(layout: LabLayout) -> dict[str, object]:
    try:
        document: dict[str, object] = json.loads(layout.genesys_status_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return document


def in_service(layout: LabLayout) -> list[str]:
    value = status(layout).get("in_service", [])
    assert isinstance(value, list)
    return value


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def sipp_register(
    host: GenesysHost, tmp_path: Path, dn: str, expected: int, **options: int
) -> tuple[SippResult, int]:
    addresses = host.layout.addresses
    port = free_udp_port(addresses.asterisk_host)
    result = run_register(
        tmp_path / f"sipp-{dn}-{expected}",
        target=(addresses.genesys_host, addresses.sip_port),
        local=(addresses.asterisk_host, port),
        dn=dn,
        expected_status=expected,
        timeout=20,
        **options,
    )
    return result, port


# The log, read as its blocks and lines ------------------------------------------------------


@dataclass
class Block:
    direction: str  # "in" or "out"
    size: int
    peer: str
    message: SipMessage
    raw_text: str


SIP_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}): (.*)$")
RECEIVED = re.compile(r"^SIPTR: Received \[0,UDP\] (\d+) bytes from (\S+) <<<<<$")
SENDING = re.compile(r"^Sending  \[0,UDP\] (\d+) bytes to (\S+) >>>>>$")


def read_log(layout: LabLayout) -> list[Block | str]:
    """Every segment in order: SIP blocks, and the SIP-layer lines' text without their time."""
    entries: list[Block | str] = []
    for segment in sorted(layout.log_dir.glob("SIP_P-001.*.log")):
        lines = segment.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            match = SIP_LINE.match(lines[index])
            index += 1
            if match is None:
                continue
            text = match.group(2)
            block = RECEIVED.match(text) or SENDING.match(text)
            if block is None:
                entries.append(text)
                continue
            body: list[str] = []
            while lines[index] != "":
                body.append(lines[index])
                index += 1
            index += 1
            raw = "\r\n".join(body) + "\r\n\r\n"
            entries.append(
                Block(
                    "in" if text.startswith("SIPTR") else "out",
                    int(block.group(1)),
                    block.group(2),
                    parse_message(raw.encode()),
                    raw,
                )
            )
    return entries


def transaction(entries: list[Block | str], call_id: str, cseq: str) -> list[Block | str]:
    """From the request with this Call-ID/CSeq to its response (matched by both, not position)."""
    start = next(
        i
        for i, e in enumerate(entries)
        if isinstance(e, Block)
        and e.direction == "in"
        and e.message.header("Call-ID") == call_id
        and e.message.header("CSeq") == cseq
    )
    for end in range(start + 1, len(entries)):
        entry = entries[end]
        if (
            isinstance(entry, Block)
            and entry.direction == "out"
            and entry.message.header("Call-ID") == call_id
            and entry.message.header("CSeq") == cseq
        ):
            return entries[start : end + 1]
    return entries[start:]


def handling_lines(part: list[Block | str]) -> list[str]:
    return [entry for entry in part if isinstance(entry, str)]


# A raw UDP user agent ------------------------------------------------------------------------


class UserAgent:
    def __init__(self, local_host: str, registrar: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_host, 0))
        self.local = self.sock.getsockname()
        self.registrar = registrar
        self.call_id = new_call_id(local_host)
        self.tag = new_tag()
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def register(
        self, dn: str, *, expires: int, contact_port: int | None = None, compact: bool = False
    ) -> bytes:
        self.cseq += 1
        host, port = self.local
        target = f"{self.registrar[0]}:{self.registrar[1]}"
        names = (
            ("v", "f", "t", "i", "m") if compact else ("Via", "From", "To", "Call-ID", "Contact")
        )
        return build_request(
            "REGISTER",
            f"sip:{target}",
            [
                (names[0], f"SIP/2.0/UDP {host}:{port};rport;branch={new_branch()}"),
                (names[1], f"<sip:{dn}@{target}>;tag={self.tag}"),
                (names[2], f"<sip:{dn}@{target}>"),
                (names[3], self.call_id),
                ("CSeq", f"{self.cseq} REGISTER"),
                (names[4], f"<sip:{dn}@{host}:{contact_port or port}>"),
                ("Expires", str(expires)),
                ("User-Agent", "Asterisk-Genesys-Gateway"),
            ],
        )

    def options(self) -> bytes:
        host, port = self.local
        return build_request(
            "OPTIONS",
            f"sip:{self.registrar[0]}:{self.registrar[1]}",
            [
                ("Via", f"SIP/2.0/UDP {host}:{port};branch={new_branch()}"),
                ("From", f"<sip:probe@{host}>;tag={new_tag()}"),
                ("To", f"<sip:{self.registrar[0]}>"),
                ("Call-ID", new_call_id(host)),
                ("CSeq", "1 OPTIONS"),
                ("Max-Forwards", "70"),
            ],
        )

    def exchange(self, data: bytes, timeout: float = 1.0) -> SipMessage | None:
        self.sock.sendto(data, self.registrar)
        self.sock.settimeout(timeout)
        try:
            answer, _ = self.sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
        return parse_message(answer)


@pytest.fixture
def user_agent(free_lab_dir: LabLayout) -> Iterator[UserAgent]:
    addresses = free_lab_dir.addresses
    agent = UserAgent(addresses.asterisk_host, (addresses.genesys_host, addresses.sip_port))
    yield agent
    agent.close()


# GAX ----------------------------------------------------------------------------------------


def gax_session(layout: LabLayout, scheme: str = "http") -> tuple[requests.Session, str]:
    addresses = layout.addresses
    port = addresses.gax_https_port if scheme == "https" else addresses.gax_http_port
    base = f"{scheme}://{addresses.genesys_host}:{port}/gax/api"
    session = requests.Session()
    # REQUESTS_CA_BUNDLE in the environment would win over session.verify
    session.trust_env = False
    session.verify = str(layout.ca_cert)
    response = session.post(
        f"{base}/session/login",
        json={
            "username": layout.credentials.gax_user,
            "password": layout.credentials.gax_password,
            "isPasswordEncrypted": False,
        },
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return session, base


def add_switch_options(layout: LabLayout, options: list[tuple[str, str, str]]) -> None:
    session, base = gax_session(layout)
    (switch,) = session.get(
        f"{base}/cfg/objects", params={"type": "CfgSwitch", "name": "SIP_P"}, timeout=5
    ).json()
    switch["userproperties"]["property"].extend(
        {"section": s, "key": k, "value": v} for s, k, v in options
    )
    updated = session.put(f"{base}/cfg/objects/CfgSwitch/{switch['dbid']}", json=switch, timeout=5)
    assert updated.status_code == 200, updated.text


# SIP: the trust rule through sipp -------------------------------------------------------------


def test_untrusted_gateway_gets_403_and_the_log_shows_the_seeds_excerpts(
    genesys: HostFactory, tmp_path: Path
) -> None:
    host = genesys("untrusted-gateway")
    layout = host.layout
    addresses = layout.addresses
    eventually(lambda: in_service(layout) == ["1002", "1003"])
    result, port = sipp_register(host, tmp_path, "5002", 403)
    assert result.returncode == 0, result.output
    assert (result.calls, result.successful, result.failed) == (1, 1, 0)
    assert in_service(layout) == ["1002", "1003"]

    entries = read_log(layout)
    softphone_1003 = next(
        e
        for e in entries
        if isinstance(e, Block)
        and e.direction == "in"
        and e.message.method == "REGISTER"
        and e.message.header("To") == f"<sip:1003@{addresses.genesys_host}:{addresses.sip_port}>"
    )
    assert softphone_1003.peer == f"{addresses.genesys_host}:{addresses.softphone_port}"
    assert softphone_1003.message.header("User-Agent") == "Genesys-Softphone/9.0.014.13"
    assert softphone_1003.size == len(softphone_1003.raw_text.encode())
    part = transaction(entries, softphone_1003.message.header("Call-ID") or "", "2 REGISTER")
    lines = handling_lines(part)
    ip = addresses.genesys_host
    assert lines[:3] == [
        "Unable to resolve number for DN:1003",
        f"trunk ip addr {ip}",
        f"no gateway is found using address '{ip}' for number '1003'",
    ]
    event = lines.index("SIPTS: handle registration event 0")
    assert re.fullmatch(r"\$\*:SIP:CTI:DN_IN_SERVICE:\d+", lines[event + 1])
    response = part[-1]
    assert isinstance(response, Block) and response.message.start_line == "SIP/2.0 200 OK"

    gateway_5002 = next(
        e
        for e in entries
        if isinstance(e, Block) and e.direction == "in" and e.peer.endswith(f":{port}")
    )
    assert gateway_5002.peer == f"{addresses.asterisk_host}:{port}"
    assert gateway_5002.message.header("User-Agent") == "Asterisk-Genesys-Gateway"
    part = transaction(entries, gateway_5002.message.header("Call-ID") or "", "1 REGISTER")
    asterisk = addresses.asterisk_host
    assert handling_lines(part) == [
        "Unable to resolve number for DN:5002",
        f"trunk ip addr {asterisk}",
        f"no gateway is found using address '{asterisk}' for number '5002'",
        "SIPTS: handle registration event 2",
        "REGISTRAR: TERMINATED:5002",
    ]
    response = part[-1]
    assert isinstance(response, Block)
    assert response.peer == f"{asterisk}:{port}"
    assert response.message.start_line == "SIP/2.0 403 Forbidden"
    assert re.search(r";tag=\w+$", response.message.header("To") or "")
    assert response.size == len(response.raw_text.encode())


def test_trunk_dn_covers_the_gateway(genesys: HostFactory, tmp_path: Path) -> None:
    host = genesys("trunk-no-reverse-route")
    layout = host.layout
    result, port = sipp_register(host, tmp_path, "5001", 200)
    assert result.returncode == 0, result.output
    eventually(lambda: "5001" in in_service(layout))
    binding = status(layout)["bindings"]["5001"]  # type: ignore[index]
    assert binding["source"] == f"{layout.addresses.asterisk_host}:{port}"
    assert binding["user_agent"] == "Asterisk-Genesys-Gateway"
    entries = read_log(layout)
    asterisk = layout.addresses.asterisk_host
    lines = [e for e in entries if isinstance(e, str)]
    assert f"gateway 'AsteriskTrunk_webRTC' associated with address '{asterisk}'" in lines
    assert "REGISTRAR: ACTIVE:5001" in lines


def test_dn_not_configured_gets_404(genesys: HostFactory, tmp_path: Path) -> None:
    host = genesys("dn-not-configured")
    result, _ = sipp_register(host, tmp_path, "5002", 404)
    assert result.returncode == 0, result.output
    lines = [e for e in read_log(host.layout) if isinstance(e, str)]
    assert "GetRegistration::Unable to resolve number for DN:5002" in lines
    assert "DN 5002 is not configured or disabled in CME. Registration attempt rejected" in lines
    # 5001 exists: the untrusted gateway is refused as usual
    result, _ = sipp_register(host, tmp_path, "5001", 403)
    assert result.returncode == 0, result.output


def test_trusted_option_takes_effect_at_the_next_service_start(
    genesys: HostFactory, tmp_path: Path
) -> None:
    host = genesys("untrusted-gateway")
    layout = host.layout
    first_segments = set(layout.log_dir.glob("*.log"))
    add_switch_options(
        layout,
        [
            ("sip", "trusted-gateways", layout.addresses.asterisk_host),
            ("sip", "gateway-ip-auth-mode", "enabled"),
        ],
    )
    result, _ = sipp_register(host, tmp_path, "5001", 403)  # not before a restart
    assert result.returncode == 0, result.output

    assert host.restart_service("TSrvSIP64", timeout=5) == "Running"
    new_segments = set(layout.log_dir.glob("*.log")) - first_segments
    assert len(new_segments) == 1
    eventually(lambda: in_service(layout) == ["1002", "1003"], timeout=2)
    result, _ = sipp_register(host, tmp_path, "5001", 200)
    assert result.returncode == 0, result.output
    eventually(lambda: "5001" in in_service(layout))
    # a restart drops every binding; the softphone's come back at once, the gateway's do not
    host.restart_service("tsrvsip64", timeout=5)
    eventually(lambda: in_service(layout) == ["1002", "1003"], timeout=2)


# SIP: the registrar's transactions -----------------------------------------------------------


def test_binding_lifecycle(genesys: HostFactory, user_agent: UserAgent) -> None:
    host = genesys("binding-expired")
    layout = host.layout

    answer = user_agent.exchange(user_agent.register("5001", expires=120))
    assert answer is not None and answer.status_code == 200
    port = user_agent.local[1]
    assert answer.header_values("Contact") == [
        f"<sip:5001@{layout.addresses.asterisk_host}:{port}>;expires=120"
    ]
    assert answer.header("Call-ID") == user_agent.call_id
    assert answer.header("CSeq") == "1 REGISTER"
    assert f"tag={user_agent.tag}" in (answer.header("From") or "")
    assert "tag=" in (answer.header("To") or "")
    assert f"received={layout.addresses.asterisk_host}" in (answer.header("Via") or "")

    refresh = user_agent.register("5001", expires=120, compact=True)
    assert (answer := user_agent.exchange(refresh)) is not None and answer.status_code == 200
    retransmitted = user_agent.exchange(refresh)  # same branch: answered from the transaction
    assert retransmitted is not None and retransmitted.header("To") == answer.header("To")

    moved = user_agent.exchange(user_agent.register("5001", expires=120, contact_port=5999))
    assert moved is not None and moved.status_code == 200
    removed = user_agent.exchange(user_agent.register("5001", expires=0, contact_port=5999))
    assert removed is not None and removed.status_code == 200
    eventually(lambda: "5001" not in in_service(layout))
    again = user_agent.exchange(user_agent.register("5001", expires=0, contact_port=5999))
    assert again is not None and again.status_code == 200

    short = user_agent.exchange(user_agent.register("5001", expires=1))
    assert short is not None and short.header_values("Contact")[0].endswith(";expires=1")
    eventually(lambda: "5001" in in_service(layout))
    eventually(lambda: "5001" not in in_service(layout), timeout=3)

    entries = read_log(layout)

    def lines_of(cseq: int) -> list[str]:
        return handling_lines(transaction(entries, user_agent.call_id, f"{cseq} REGISTER"))

    assert "SIPTS: handle registration event 0" in lines_of(1)
    assert "SIPTS: handle registration event 3" in lines_of(2)
    assert lines_of(2).count("SIPTS: handle registration event 3") == 1  # not the retransmission
    moved_lines = lines_of(3)
    assert any(
        re.fullmatch(r"REGISTRAR:DN\[5001\]:OBSOLETE REGISTRATION FOUND: TERM >> DLG\[\d+\]", x)
        for x in moved_lines
    )
    assert any(x.startswith("$*:SIP:CTI:DN_CONTACT_CHANGE:") for x in moved_lines)
    unregister_lines = lines_of(4)
    assert unregister_lines[-4:-2] == [
        "SIPTS: handle registration event 2",
        "REGISTRAR: TERMINATED:5001",
    ]
    assert unregister_lines[-1].startswith("$+CTI:PRM:AGENT_LOGGED_OUT:")
    assert lines_of(5) == []  # nothing bound: 200 OK and no handling at all
    text = "\n".join(s.read_text() for s in sorted(layout.log_dir.glob("*.log")))
    asterisk = layout.addresses.asterisk_host
    assert re.search(
        r"\d\d:\d\d:\d\d\.\d{3}: SIPTS: handle registration event 1\n"
        r"\d\d:\d\d:\d\d\.\d{3}: REGISTRAR: EXPIRED:\n"
        rf"\tAOR: sip:5001@[\d.]+:\d+\n"
        rf"\tContact: <sip:5001@{re.escape(asterisk)}:{port}>\n",
        text,
    ), text[-2000:]


def test_unknown_dn_options_and_bad_requests(genesys: HostFactory, user_agent: UserAgent) -> None:
    genesys("binding-expired")
    assert user_agent.exchange(user_agent.register("5003", expires=0), timeout=0.5) is None
    not_found = user_agent.exchange(user_agent.register("5003", expires=60))
    assert not_found is not None and not_found.start_line == "SIP/2.0 404 Not Found"
    answer = user_agent.exchange(user_agent.options())
    assert answer is not None and answer.status_code == 200 and answer.method == "OPTIONS"
    assert "REGISTER" in (answer.header("Allow") or "")
    user_agent.sock.sendto(b"this is not SIP\r\n\r\n", user_agent.registrar)
    wildcard_without_zero = user_agent.register("5001", expires=60).replace(
        b"Contact: <sip:5001@", b"Contact: *\r\nX-Old: <sip:5001@"
    )
    bad = user_agent.exchange(wildcard_without_zero)
    assert bad is not None and bad.status_code == 400
    negative = user_agent.register("5001", expires=60).replace(b"Expires: 60", b"Expires: -1")
    bad = user_agent.exchange(negative)
    assert bad is not None and bad.status_code == 400


def test_service_states_and_the_sip_port(genesys: HostFactory, user_agent: UserAgent) -> None:
    host = genesys("service-stopped", start_service=False)
    layout = host.layout
    assert host.service_status("TSrvSIP64") == "Stopped"
    assert host.service_status("NoSuchService") is None
    assert not layout.log_dir.exists() or not list(layout.log_dir.glob("*.log"))
    assert user_agent.exchange(user_agent.options(), timeout=0.3) is None
    ports = {(x.protocol, x.local_port, x.process_name) for x in host.listeners()}
    assert ("UDP", 5060, "sip_server") not in ports
    assert ("UDP", 5090, "GenesysSoftphone") in ports
    assert {("TCP", 8080, "java"), ("TCP", 8443, "java")} <= ports

    assert host.start_service("TSrvSIP64", timeout=5) == "Running"
    assert ("UDP", 5060, "sip_server") in {
        (x.protocol, x.local_port, x.process_name) for x in host.listeners()
    }
    assert user_agent.exchange(user_agent.options()) is not None
    eventually(lambda: in_service(layout) == ["1002", "1003"], timeout=2)
    assert status(layout)["service"] == "Running"

    set_fault(layout, "service-hang", True)
    with pytest.raises(ServiceError):
        host.stop_service("TSrvSIP64", timeout=0.3)
    assert host.service_status("TSrvSIP64") == "StopPending"
    assert user_agent.exchange(user_agent.options(), timeout=0.3) is None
    eventually(lambda: status(layout)["service"] == "StopPending")
    set_fault(layout, "service-hang", False)
    set_fault(layout, "service-1053", True)
    with pytest.raises(ServiceError) as failed:
        host.restart_service("TSrvSIP64", timeout=3)
    assert failed.value.win32_code == 1053
    assert host.service_status("TSrvSIP64") == "Stopped"
    set_fault(layout, "service-1053", False)
    with pytest.raises(ServiceError) as unknown:
        host.start_service("Spooler", timeout=1)
    assert unknown.value.win32_code == 1060

    assert host.windows_to_local(r"D:\gcti_logs\SIP_P\x.log") == layout.log_dir / "x.log"
    assert host.windows_to_local("relative.txt") is None
    assert host.local_now().utcoffset().total_seconds() == 19800  # type: ignore[union-attr]


def test_registrar_silent_fault(genesys: HostFactory, user_agent: UserAgent) -> None:
    host = genesys("binding-expired")
    set_fault(host.layout, "registrar-silent", True)
    before = "".join(s.read_text() for s in host.layout.log_dir.glob("*.log"))
    assert user_agent.exchange(user_agent.options(), timeout=0.3) is None
    assert user_agent.exchange(user_agent.register("5001", expires=60), timeout=0.3) is None
    after = "".join(s.read_text() for s in host.layout.log_dir.glob("*.log"))
    assert after == before
    set_fault(host.layout, "registrar-silent", False)
    assert user_agent.exchange(user_agent.options()) is not None


def test_trunk_oos_check_probes_the_contact(genesys: HostFactory) -> None:
    host = genesys("untrusted-gateway")
    layout = host.layout
    gateway = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gateway.bind((layout.addresses.asterisk_host, 0))
    gateway.settimeout(3)
    contact = f"{layout.addresses.asterisk_host}:{gateway.getsockname()[1]}"
    session, base = gax_session(layout)
    created = session.post(
        f"{base}/cfg/objects",
        json={
            "type": "CfgDN",
            "name": "ProbeTrunk",
            "dntype": "CFGTrunk",
            "switchdbid": 101,
            "userproperties": {
                "property": [
                    {"section": "TServer", "key": "contact", "value": contact},
                    {"section": "TServer", "key": "oos-check", "value": "1"},
                ]
            },
        },
        timeout=5,
    )
    assert created.status_code == 201, created.text
    host.restart_service("TSrvSIP64", timeout=5)
    try:
        data, source = gateway.recvfrom(65535)
        probe = parse_message(data)
        assert probe.method == "OPTIONS"
        assert source == (layout.addresses.genesys_host, layout.addresses.sip_port)
        gateway.sendto(build_response(probe, 200, "OK", to_tag=new_tag()), source)
        trunks = lambda: status(layout).get("trunks", {})  # noqa: E731
        eventually(lambda: trunks()["ProbeTrunk"]["state"] == "in-service")  # type: ignore[index]
        # the next probe goes unanswered
        gateway.recvfrom(65535)
        eventually(
            lambda: trunks()["ProbeTrunk"]["state"] == "out-of-service",  # type: ignore[index]
            timeout=3,
        )
    finally:
        gateway.close()
    lines = [e for e in read_log(layout) if isinstance(e, str)]
    assert f"TRUNK[ProbeTrunk]: OOS check: 200 OK from {contact}: in service" in lines
    assert f"TRUNK[ProbeTrunk]: OOS check: no response from {contact} in 1 s: out of service" in (
        lines
    )


# GAX ----------------------------------------------------------------------------------------


def test_gax_session_and_errors(genesys: HostFactory) -> None:
    host = genesys("untrusted-gateway", start_service=False)
    layout = host.layout
    addresses = layout.addresses
    base = f"http://{addresses.genesys_host}:{addresses.gax_http_port}/gax/api"
    wrong = requests.post(
        f"{base}/session/login",
        json={"username": "default", "password": "nope", "isPasswordEncrypted": False},
        timeout=5,
    )
    assert wrong.status_code == 401 and wrong.json()["status"] == 401
    assert "Set-Cookie" not in wrong.headers
    malformed = requests.post(f"{base}/session/login", data=b"{not json", timeout=5)
    assert malformed.status_code == 400
    anonymous = requests.get(f"{base}/cfg/objects?type=CfgDN&name=5002", timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "Unauthorized"

    session, base = gax_session(layout, "https")  # validated against the lab CA
    assert session.cookies.get("JSESSIONID")
    found = session.get(
        f"{base}/cfg/objects", params={"type": "CfgDN", "name": "5002", "brief": "false"}, timeout=5
    )
    assert found.status_code == 200
    (dn,) = found.json()
    assert (dn["type"], dn["name"], dn["number"], dn["dntype"]) == (
        "CfgDN",
        "5002",
        "5002",
        "CFGExtension",
    )
    assert dn["switchdbid"] == 101 and dn["userproperties"] == {"property": []}
    assert session.get(f"{base}/cfg/objects?type=CfgDN&name=9999", timeout=5).json() == []
    brief = session.get(f"{base}/cfg/objects?type=CfgSwitch&brief=true", timeout=5).json()
    assert brief == [{"dbid": 101, "type": "CfgSwitch", "name": "SIP_P"}]
    missing = session.get(f"{base}/cfg/objects/CfgDN/424242", timeout=5)
    assert missing.status_code == 404 and "424242" in missing.json()["message"]
    bad_body = session.put(
        f"{base}/cfg/objects/CfgDN/{dn['dbid']}",
        data=b"{broken",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert bad_body.status_code == 400 and bad_body.json()["error"] == "Bad Request"

    created = session.post(
        f"{base}/cfg/objects",
        json={
            "type": "CfgDN",
            "name": "AsteriskTrunk",
            "dntype": "CFGTrunk",
            "switchdbid": 101,
            "userproperties": {
                "property": [
                    {"section": "TServer", "key": "contact", "value": "127.0.0.54:5060"},
                    {"section": "TServer", "key": "prefix", "value": "50"},
                ]
            },
        },
        timeout=5,
    )
    assert created.status_code == 201, created.text
    trunk = created.json()
    assert created.headers["Location"] == f"/gax/api/cfg/objects/CfgDN/{trunk['dbid']}"
    trunk["userproperties"]["property"].append(
        {"section": "TServer", "key": "oos-check", "value": "30"}
    )
    updated = session.put(f"{base}/cfg/objects/CfgDN/{trunk['dbid']}", json=trunk, timeout=5)
    assert updated.status_code == 200 and updated.json() == trunk
    on_disk = json.loads(layout.cme_file.read_text())
    assert trunk in on_disk["objects"]
    duplicate = session.post(
        f"{base}/cfg/objects", json={k: v for k, v in trunk.items() if k != "dbid"}, timeout=5
    )
    assert duplicate.status_code == 409
    deleted = session.delete(f"{base}/cfg/objects/CfgDN/{trunk['dbid']}", timeout=5)
    assert deleted.status_code == 204
    gone = session.get(f"{base}/cfg/objects/CfgDN/{trunk['dbid']}", timeout=5)
    assert gone.status_code == 404
    assert trunk not in json.loads(layout.cme_file.read_text())["objects"]

    logout = session.post(f"{base}/session/logout", timeout=5)
    assert logout.status_code == 200
    assert session.get(f"{base}/cfg/objects?type=CfgDN", timeout=5).status_code == 401


def test_gax_faults(genesys: HostFactory) -> None:
    host = genesys("untrusted-gateway", start_service=False)
    layout = host.layout
    session, base = gax_session(layout)
    set_fault(layout, "gax-500", True)
    failing = session.get(f"{base}/cfg/objects?type=CfgDN", timeout=5)
    assert failing.status_code == 500 and failing.json()["status"] == 500
    set_fault(layout, "gax-500", False)
    set_fault(layout, "gax-timeout", True)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(f"{base}/cfg/objects?type=CfgDN", timeout=0.5)
    set_fault(layout, "gax-timeout", False)
    assert session.get(f"{base}/cfg/objects?type=CfgDN", timeout=5).status_code == 200
