"""Live diagnosis pieces that need no host: time windows, the host-side filter, root causes."""

from __future__ import annotations

import datetime
import sys
import tempfile
from pathlib import Path

import pytest

from remediate import live
from remediate.diagnose import Fix, RootCause
from remediate.errors import InputError
from remediate.genesys import logs, powershell
from remediate.genesys.gax import GaxSettings
from remediate.genesys.powershell import ServiceState
from remediate.inventory import (
    AsteriskHost,
    FixOptions,
    GenesysHost,
    Site,
    TrustedGatewayOptions,
)
from remediate.lab.winrm.cmd import WindowsShell
from remediate.lab.winrm.powershell import ServiceControls
from remediate.transport.settings import SSHSettings, WinRMSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from winrm_host_double import TempDirWindowsHost

IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
NOW = datetime.datetime(2026, 2, 2, 14, 0, 0, tzinfo=IST)
LOG_NAME = "SIP_P-001.20260202_135459_850.log"
LOG_DIR = "D:\\gcti_logs\\SIP_P"


def test_durations_and_since() -> None:
    assert live.parse_duration("10s") == 10 and live.parse_duration("2m") == 120
    assert live.parse_duration("1.5h") == 5400 and live.parse_duration("3") == 3
    with pytest.raises(InputError):
        live.parse_duration("ten seconds")
    assert live.resolve_since(None, NOW) == NOW - datetime.timedelta(hours=24)
    assert live.resolve_since("2h", NOW) == NOW - datetime.timedelta(hours=2)
    assert live.resolve_since("13:30", NOW) == NOW.replace(hour=13, minute=30)
    assert live.resolve_since("15:00", NOW) == NOW.replace(hour=15) - datetime.timedelta(days=1)
    # A time without an offset is the host's local time, never the controller's.
    assert live.resolve_since("2026-02-02T09:00", NOW).utcoffset() == datetime.timedelta(
        hours=5, minutes=30
    )
    with pytest.raises(InputError) as caught:
        live.resolve_since("yesterday", NOW)
    assert caught.value.reference == "bad-since"


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("127.0.0.54:5060", "127.0.0.54"),
        ("sip:127.0.0.54:5060;transport=udp", "127.0.0.54"),
        ("127.0.0.54", "127.0.0.54"),
        ("[::1]:5060", "::1"),
    ],
)
def test_contact_hosts(value: str, host: str) -> None:
    assert live._address_host(value) == host


def _logged(marker: str, message: str) -> str:
    """`message` (its last line the blank one that ends it) as SIP Server logs it: a marker line
    with its size on the wire, where every line ends with CRLF, then its lines."""
    return marker.format(size=len(message.replace("\n", "\r\n"))) + "\n" + message


def _register(dn: str, source: str, call_id: str, expires: int, clock: str) -> str:
    return _logged(
        f"{clock}: SIPTR: Received [0,UDP] {{size}} bytes from {source} <<<<<",
        "REGISTER sip:127.0.0.81:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP {source};branch=z9hG4bK{call_id}\n"
        f"From: <sip:{dn}@127.0.0.81>;tag=1\n"
        f"To: <sip:{dn}@127.0.0.81>\n"
        f"Call-ID: {call_id}\n"
        "CSeq: 1 REGISTER\n"
        f"Contact: <sip:{dn}@{source}>\n"
        f"Expires: {expires}\n"
        "User-Agent: UA\n"
        "Content-Length: 0\n\n",
    )


def _response(dn: str, source: str, call_id: str, code: str, clock: str) -> str:
    return _logged(
        f"{clock}: Sending  [0,UDP] {{size}} bytes to {source} >>>>>",
        f"SIP/2.0 {code}\n"
        f"Via: SIP/2.0/UDP {source};branch=z9hG4bK{call_id}\n"
        f"To: <sip:{dn}@127.0.0.81>;tag=2\n"
        f"Call-ID: {call_id}\n"
        "CSeq: 1 REGISTER\n"
        "Content-Length: 0\n\n",
    )


HEADER = (
    "Application name: SIP_P\n"
    "Local time: 2026-02-02T13:54:59.850\n"
    f"File: (1) D:\\gcti_logs\\SIP_P\\{LOG_NAME}\n\n"
)
# 5003 (not asked about) registers between 5002's REGISTER and its handling in no real log, but
# its handling lines do follow its own REGISTER: they must never reach 5002's transaction.
LOG = (
    HEADER
    + "2026-02-02T13:55:00.000 Trc 04120 Check point 2026-02-02T13:55:00\n"
    + _register("5002", "127.0.0.54:5060", "a1", 3600, "13:55:01.000")
    + "13:55:01.001: Unable to resolve number for DN:5002\n"
    + "13:55:01.001: no gateway is found using address '127.0.0.54' for number '5002'\n"
    + "13:55:01.001: SIPTS: handle registration event 0\n"
    + "13:55:01.001: $*:SIP:CTI:DN_IN_SERVICE:5\n"
    + "13:55:01.001: REGISTRAR: ACTIVE:5002\n"
    + _response("5002", "127.0.0.54:5060", "a1", "200 OK", "13:55:01.002")
    + _register("5003", "127.0.0.54:5060", "b1", 0, "13:55:02.000")
    + "13:55:02.001: SIPTS: handle registration event 2\n"
    + "13:55:02.001: REGISTRAR: TERMINATED:5003\n"
    + _response("5003", "127.0.0.54:5060", "b1", "200 OK", "13:55:02.002")
    + _logged(
        "13:55:03.000: SIPTR: Received [0,UDP] {size} bytes from 10.0.0.9:5060 <<<<<",
        "INVITE sip:5002@127.0.0.81 SIP/2.0\nCall-ID: x\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
    )
    + "13:55:11.000: SIPTS: handle registration event 1\n"
    + "13:55:11.000: REGISTRAR: EXPIRED:\n"
    + "\tAOR: sip:5002@127.0.0.81\n"
    + "\tContact: <sip:5002@127.0.0.54:5060>\n"
    + "13:55:11.000: $*:SIP:CTI:DN_OUT_OF_SERVICE:5\n"
)


def host_side_filter(text: str, dns: list[str]) -> bytes:
    """What the host sends back for a segment holding `text` (written with CRLF line ends, as SIP
    Server writes it): the product's command run by the lab's cmd.exe and PowerShell."""
    command = powershell.read_log_filtered(LOG_DIR, LOG_NAME, live.ANCHOR_PATTERNS, dns)
    with tempfile.TemporaryDirectory() as root:
        host = TempDirWindowsHost(Path(root))
        log = host.windows_to_local(f"{LOG_DIR}\\{LOG_NAME}")
        assert log is not None
        log.parent.mkdir(parents=True)
        log.write_bytes(text.replace("\n", "\r\n").encode())
        result = WindowsShell(host, ServiceControls(), "remediate").run(command.command_line)
    assert (result.exit_code, result.stderr) == (0, b"")
    return result.stdout


def test_host_side_filter_keeps_only_the_dns_transactions_and_expiries() -> None:
    filtered = host_side_filter(LOG, ["5002", "1003"])
    assert b"5003" not in filtered and b"INVITE" not in filtered
    assert b"Check point" in filtered and b"Application name: SIP_P" in filtered
    assert len(filtered) < len(LOG) * 0.8
    history = logs.registrations(logs.read_stream([filtered], LOG_NAME), ["5002", "1003"])
    timeline = history.timelines["5002"]
    (transaction, expiry) = list(timeline.entries)
    assert isinstance(transaction, logs.RegistrationTransaction)
    assert transaction.verdict is logs.Verdict.ACCEPTED
    assert transaction.server_events == [0]  # 5003's event 2 stayed on the host
    assert isinstance(expiry, logs.BindingExpiry)
    assert "1003" not in history.timelines


def _site() -> Site:
    winrm = WinRMSettings("genesys-lab", "127.0.0.81", 5986, "https", "u", "p", lab=True)
    gax = GaxSettings("genesys-lab", "https://127.0.0.81:8443/gax/api", "u", "p", lab=True)
    ssh = SSHSettings("asterisk-lab", "127.0.0.54", 2222, "u", "/k", "/kh")
    return Site(
        name="lab",
        genesys=GenesysHost(
            "genesys-lab",
            winrm,
            gax,
            "SIP_P",
            "TSrvSIP64",
            "service",
            "D:\\gcti_logs\\SIP_P",
            "SIP_P-001",
            "SIP_P",
            "127.0.0.81",
            5060,
            5090,
            None,
        ),
        asterisk=AsteriskHost(
            "asterisk-lab",
            ssh,
            "127.0.0.54",
            5060,
            "/etc/asterisk",
            "/etc/asterisk/pjsip.conf",
            "/etc/asterisk/extensions.conf",
            "/var/log/asterisk/messages",
            "asterisk",
            {"5002": "genesys_reg_5002"},
            None,
        ),
        fixes=FixOptions(
            TrustedGatewayOptions(
                "annex", "sip", "trusted-gateways", "gateway-ip-auth-mode", "enabled"
            ),
            "AsteriskTrunk_webRTC",
            "50",
            30,
            "from-genesys",
        ),
        lab=True,
        inventory=Path("inventories/lab"),
    )


def _evidence(
    service: str = "Running", trunk: bool = False, route: bool = True
) -> live.LiveEvidence:
    filtered = host_side_filter(LOG.split("13:55:11.000")[0], ["5002"])
    evidence = live.LiveEvidence(site="lab", dns=["5002"])
    evidence.service = ServiceState("TSrvSIP64", service, "Genesys SIP Server")
    evidence.history = logs.registrations(logs.read_stream([filtered], LOG_NAME), ["5002"])
    evidence.log_segments = [LOG_NAME]
    trunks = (
        (live.TrunkDn("AsteriskTrunk_webRTC", 301, "127.0.0.54:5060", "50", True, True),)
        if trunk
        else ()
    )
    evidence.coverage = live.GatewayCoverage(
        "127.0.0.54", trunks, "sip", "trusted-gateways", None, "gateway-ip-auth-mode", None, False
    )
    evidence.reverse_routes = {
        "5002": live.ReverseRoute(
            "5002", "from-genesys", "genesys_sip_server", route, "" if route else "extension", ()
        )
    }
    return evidence


def test_in_service_stays_in_service() -> None:
    (item,) = live.build_diagnosis(_site(), _evidence()).dns
    assert item.root_cause.code is RootCause.IN_SERVICE and item.in_service


def test_a_stopped_service_is_the_root_cause() -> None:
    diagnosis = live.build_diagnosis(_site(), _evidence(service="Stopped"))
    (item,) = diagnosis.dns
    assert item.root_cause.code is RootCause.SERVICE_STOPPED and item.in_service is False
    assert item.recommendation.fix is Fix.NONE
    assert "service-stopped" in {o.code for o in diagnosis.observations}


def test_trunk_without_reverse_route_recommends_the_dialplan() -> None:
    (item,) = live.build_diagnosis(_site(), _evidence(trunk=True, route=False)).dns
    assert item.root_cause.code is RootCause.NO_REVERSE_ROUTE
    assert item.recommendation.fix is Fix.DIALPLAN
    assert "dialplan show 5002@from-genesys" in item.recommendation.action
    # With the route in place, or without a trunk, nothing is wrong on that side.
    (routed,) = live.build_diagnosis(_site(), _evidence(trunk=True, route=True)).dns
    assert routed.root_cause.code is RootCause.IN_SERVICE
    (no_trunk,) = live.build_diagnosis(_site(), _evidence(trunk=False, route=False)).dns
    assert no_trunk.root_cause.code is RootCause.IN_SERVICE
