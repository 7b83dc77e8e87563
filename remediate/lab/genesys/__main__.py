"""`python -m remediate.lab.genesys --dir DIR [--scenario NAME]`: run the simulated Genesys host.

Addresses come from DIR/lab.json (written by `remediate lab up`; defaults when absent). When every
component listens, DIR/run/genesys.ready holds {"pid", "scenario", and each component's address}.
SIGTERM or SIGINT closes every socket and exits. A port that cannot be bound is reported on stderr
with its address, and the process exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from remediate.lab.genesys.host import SYSTEM_PROCESS, GenesysHost
from remediate.lab.genesys.logwriter import CHECKPOINT_INTERVAL_SECONDS, DEFAULT_SEGMENT_BYTES
from remediate.lab.genesys.registrar import ListenError
from remediate.lab.genesys.service import DEFAULT_START_DELAY, DEFAULT_STOP_DELAY, RUNNING
from remediate.lab.layout import SCENARIOS, LabLayout, load_layout
from remediate.lab.tls import ensure_certificates
from remediate.lab.windows import Listener, ServiceError
from remediate.lab.winrm.server import WinRMEndpoint

SOFTPHONE_FIRST_ROUND_SECONDS = 3.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m remediate.lab.genesys", description="the lab's simulated Genesys host"
    )
    parser.add_argument("--dir", type=Path, required=True, help="the lab directory")
    parser.add_argument(
        "--scenario", choices=sorted(SCENARIOS), help="default: the one in DIR/lab.json"
    )
    parser.add_argument("--start-delay", type=float, default=DEFAULT_START_DELAY, metavar="S")
    parser.add_argument("--stop-delay", type=float, default=DEFAULT_STOP_DELAY, metavar="S")
    parser.add_argument("--log-segment-bytes", type=int, default=DEFAULT_SEGMENT_BYTES, metavar="N")
    parser.add_argument(
        "--checkpoint-interval", type=float, default=CHECKPOINT_INTERVAL_SECONDS, metavar="S"
    )
    return parser


def _write_ready(layout: LabLayout, scenario: str) -> None:
    addresses = layout.addresses
    host = addresses.genesys_host
    document = {
        "pid": os.getpid(),
        "scenario": scenario,
        "sip": f"{host}:{addresses.sip_port}",
        "softphone": f"{host}:{addresses.softphone_port}",
        "gax_http": f"http://{host}:{addresses.gax_http_port}",
        "gax_https": f"https://{host}:{addresses.gax_https_port}",
        "winrm_http": f"http://{host}:{addresses.winrm_http_port}/wsman",
        "winrm_https": f"https://{host}:{addresses.winrm_https_port}/wsman",
    }
    path = layout.ready_file("genesys")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.replace(temporary, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    layout, recorded_scenario = load_layout(args.dir)
    scenario = args.scenario or recorded_scenario
    if scenario not in SCENARIOS:
        print(f"error: unknown scenario {scenario!r} in {layout.lab_file}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    ensure_certificates(layout)
    host = GenesysHost(
        layout,
        scenario,
        start_delay=args.start_delay,
        stop_delay=args.stop_delay,
        segment_bytes=args.log_segment_bytes,
        checkpoint_interval=args.checkpoint_interval,
    )
    endpoint: WinRMEndpoint | None = None
    try:
        try:
            host.start(start_service=scenario != "service-stopped")
        except ServiceError as error:
            if isinstance(error.__cause__, ListenError):
                raise error.__cause__ from None
            # a fault (service-1053) keeps the service stopped; the host still serves
            print(f"warning: {error}", file=sys.stderr)
        endpoint = WinRMEndpoint(host, layout)
        endpoint.start()
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        if endpoint is not None:
            endpoint.close()
        host.close()
        return 1
    addresses = layout.addresses
    name, pid = SYSTEM_PROCESS
    host.add_listeners(
        [
            Listener("TCP", addresses.genesys_host, port, "Listen", pid, name)
            for port in (addresses.winrm_http_port, addresses.winrm_https_port)
        ]
    )
    if host.service.state == RUNNING:  # the baseline DNs are in service when `lab up` returns
        host.softphone.wait_first_attempts(SOFTPHONE_FIRST_ROUND_SECONDS)
    _write_ready(layout, scenario)
    while not stop.wait(0.2):
        pass
    layout.ready_file("genesys").unlink(missing_ok=True)
    endpoint.close()
    host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
