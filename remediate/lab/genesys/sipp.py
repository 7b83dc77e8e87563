"""Drive the lab's registrar with sipp (Debian package sip-tester): REGISTERs sent from a chosen
local address, as the Asterisk gateway would send them, and sipp's own figures read back.

A custom `-sf` scenario sends one REGISTER per call and expects exactly one final response code;
any other answer, or none, makes the call fail. sipp retransmits an unanswered REGISTER (500 ms
doubling, as RFC 3261's Timer E), so lost packets show as retransmissions.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SIPP = "sipp"
GATEWAY_USER_AGENT = "Asterisk-Genesys-Gateway"


def register_scenario(
    expected_status: int, *, expires: int = 3600, user_agent: str = GATEWAY_USER_AGENT
) -> str:
    """A sipp scenario: REGISTER `[service]` (sipp's -s) and expect `expected_status`."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register-{expected_status}">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Expires: {expires}
      User-Agent: {user_agent}
      Content-Length: [len]

    ]]>
  </send>
  <recv response="{expected_status}" timeout="8000"/>
</scenario>
"""


@dataclass(frozen=True)
class SippResult:
    returncode: int  # 0: every call succeeded
    calls: int
    successful: int
    failed: int
    retransmissions: int
    elapsed: str
    output: str


def sipp_available() -> bool:
    return shutil.which(SIPP) is not None


def run_register(
    workdir: Path,
    *,
    target: tuple[str, int],
    local: tuple[str, int],
    dn: str,
    expected_status: int,
    expires: int = 3600,
    calls: int = 1,
    rate: int = 10,
    timeout: float = 60.0,
) -> SippResult:
    """Send `calls` REGISTERs for `dn` at `rate` per second from `local`; return sipp's counts."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / f"register-{expected_status}.xml"
    scenario.write_text(register_scenario(expected_status, expires=expires), encoding="ascii")
    stats = workdir / "stats.csv"
    stats.unlink(missing_ok=True)
    command = [
        SIPP,
        f"{target[0]}:{target[1]}",
        "-sf",
        str(scenario),
        "-i",
        local[0],
        "-p",
        str(local[1]),
        "-s",
        dn,
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-l",
        str(max(calls, 1)),
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stats),
        "-fd",
        "1",
        "-timeout",
        f"{int(timeout)}s",
    ]
    completed = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout + 10,
        check=False,
    )
    counters = _last_counters(stats)
    return SippResult(
        returncode=completed.returncode,
        calls=int(counters.get("OutgoingCall(C)", 0)),
        successful=int(counters.get("SuccessfulCall(C)", 0)),
        failed=int(counters.get("FailedCall(C)", 0)),
        retransmissions=int(counters.get("Retransmissions(C)", 0)),
        elapsed=counters.get("ElapsedTime(C)", ""),
        output=completed.stdout + completed.stderr,
    )


def _last_counters(stats: Path) -> dict[str, str]:
    """The cumulative counters of the last row of sipp's `-trace_stat` file (`;`-separated)."""
    try:
        lines = [line for line in stats.read_text(encoding="ascii").splitlines() if line]
    except FileNotFoundError:
        return {}
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
