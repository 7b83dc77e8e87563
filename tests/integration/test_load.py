"""`apply` under load: while the lab's registrar takes a REGISTER storm (sipp, 300 per second,
from another address on the gateway's network) and call traffic makes the SIP Server log grow
by tens of MB (INVITEs with SDP bodies, which SIP Server logs in full; the log rolls over to new
10 MB segments meanwhile), the trusted-gateway fix still commits, verification reads the right
DNs' registrations out of the flood, and the run stays within its bounds."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import ip_address
from pathlib import Path

import pytest
from test_apply_support import cli, in_service, inventory_with_short_bounds

from remediate.lab.genesys.sipp import SIPP, run_register, sipp_available
from remediate.lab.layout import LabLayout

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not sipp_available(), reason="sipp (Debian package sip-tester) is missing"),
]

REGISTER_RATE = 300
INVITE_RATE = 300
SDP_PADDING_LINES = 40  # about 3 KB of SDP per INVITE, logged in full
VERIFY_TIMEOUT_SECONDS = 60
APPLY_BOUND_SECONDS = 90


def _invite_scenario() -> str:
    padding = "\n".join(
        f"      a=x-load:{index:03d}-" + "x" * 60 for index in range(SDP_PADDING_LINES)
    )
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="invite-load">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:caller@[local_ip]>;tag=[pid]L[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=load
      c=IN IP4 [local_ip]
      t=0 0
      m=audio 40000 RTP/AVP 0 8
{padding}

    ]]>
  </send>
  <recv response="501" timeout="8000"/>
</scenario>
"""


@contextmanager
def _call_traffic(workdir: Path, target: tuple[str, int], local: str) -> Iterator[None]:
    """INVITEs at INVITE_RATE until the block ends (the lab answers 501, logging both)."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "invite.xml"
    scenario.write_text(_invite_scenario(), encoding="ascii")
    command = [SIPP, f"{target[0]}:{target[1]}", "-sf", str(scenario), "-i", local, "-p", "0"]
    command += ["-s", "2001", "-r", str(INVITE_RATE), "-l", str(INVITE_RATE * 10)]
    process = subprocess.Popen(
        [*command, "-nostdin", "-timeout", "300s"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGUSR1)  # sipp's "stop now"
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RegisterStorm:
    """REGISTERs for an unconfigured DN at REGISTER_RATE from `local`, one-second batches of
    sipp (remediate.lab.genesys.sipp) until stopped; sipp's own counts summed."""

    def __init__(self, workdir: Path, target: tuple[str, int], local: str) -> None:
        self.workdir, self.target, self.local = workdir, target, local
        self.sent = self.answered = self.failed = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            result = run_register(
                self.workdir,
                target=self.target,
                local=(self.local, 0),
                dn="5003",  # not configured: 404, with the lookup lines in the log
                expected_status=404,
                calls=REGISTER_RATE,
                rate=REGISTER_RATE,
                timeout=20,
            )
            self.sent += result.calls
            self.answered += result.successful
            self.failed += result.failed
        self.seconds = time.monotonic() - started

    def __enter__(self) -> RegisterStorm:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


LOG_GROWTH = 20 * 1024 * 1024


def _log_bytes(layout: LabLayout) -> int:
    return sum(path.stat().st_size for path in layout.log_dir.glob("SIP_P-001.*.log"))


def test_apply_verifies_within_its_bound_under_a_register_storm_and_a_growing_log(
    lab_factory: Callable[[str], LabLayout], tmp_path: Path
) -> None:
    layout = lab_factory("untrusted-gateway")
    inventory = inventory_with_short_bounds(layout, tmp_path / "inventory")
    addresses = layout.addresses
    target = (addresses.genesys_host, addresses.sip_port)
    storm_address = str(ip_address(addresses.asterisk_host) + 1)
    log_before = _log_bytes(layout)
    segments_before = set(layout.log_dir.glob("SIP_P-001.*.log"))
    with (
        RegisterStorm(tmp_path / "storm", target, storm_address) as storm,
        _call_traffic(tmp_path / "calls", target, storm_address),
    ):
        time.sleep(3)  # the load is on before the run starts
        started = time.monotonic()
        applied = cli(
            "apply", "--dn", "5001", "--dn", "5002", "--fix", "trusted-gateway", "--yes",
            "--change-id", "CHG-LOAD", "--verify-timeout", f"{VERIFY_TIMEOUT_SECONDS}s",
            "--output", "json", state_dir=tmp_path / "state", inventory=inventory,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        # The storm goes on after the run, until the log has grown by 20 MiB (a faster run saw
        # less of it): the estate stays as verified through the rollovers.
        deadline = time.monotonic() + 30
        while _log_bytes(layout) - log_before < LOG_GROWTH and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)
        serving = in_service(layout)
    grown = _log_bytes(layout) - log_before
    new_segments = set(layout.log_dir.glob("SIP_P-001.*.log")) - segments_before
    print(
        f"apply {elapsed:.1f} s under load; REGISTER storm {storm.sent} sent in "
        f"{storm.seconds:.1f} s ({storm.sent / max(storm.seconds, 0.1):.0f}/s), "
        f"{storm.answered} answered, {storm.failed} failed; log grew {grown / 1e6:.1f} MB "
        f"in {len(new_segments)} new segment(s)"
    )
    assert applied.code == 0, applied.err[-3000:]
    report = applied.json()
    assert report["status"] == "committed"
    assert set(report["in_service"]) >= {"5001", "5002", "1002", "1003"}
    assert serving >= {"5001", "5002", "1002", "1003"}
    assert elapsed < APPLY_BOUND_SECONDS
    # The load was what the test says it was.
    assert storm.sent >= REGISTER_RATE * elapsed * 0.7
    assert storm.answered >= storm.sent * 0.95
    assert grown >= LOG_GROWTH
    assert len(new_segments) >= 2  # the restart's segment, and at least one 10 MB rollover
