"""The lab registrar under load: sipp sends REGISTERs at a fixed rate from the gateway's address.

    .venv/bin/python bench/registrar_load.py [--rate 500] [--seconds 10]

Starts `python -m remediate.lab.genesys` (scenario gateway-unregisters: the gateway is trusted) in
a temporary lab directory on REMEDIATE_TEST_GENESYS_HOST / REMEDIATE_TEST_ASTERISK_HOST (defaults
127.0.0.81 / 127.0.0.54), then has sipp send rate x seconds REGISTERs for DN 5001 from the Asterisk
address, each expecting 200 OK. Prints sipp's own figures (calls sent, successful, failed,
retransmissions), the REGISTERs the SIP Server log recorded, and the elapsed time. Target: no loss,
i.e. every call successful and no retransmission.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from remediate.lab.genesys.sipp import run_register, sipp_available
from remediate.lab.layout import LabAddresses, LabLayout, save_layout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=500, help="REGISTERs per second")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if not sipp_available():
        print("sipp is not installed (Debian package sip-tester)", file=sys.stderr)
        return 1
    addresses = LabAddresses(
        genesys_host=os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81",
        asterisk_host=os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54",
    )
    with tempfile.TemporaryDirectory(prefix="registrar-load-") as directory:
        layout = LabLayout(Path(directory) / "lab", addresses)
        save_layout(layout, "gateway-unregisters")
        host = subprocess.Popen(
            [sys.executable, "-m", "remediate.lab.genesys", "--dir", str(layout.root)],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while not layout.ready_file("genesys").exists():
                if host.poll() is not None or time.monotonic() > deadline:
                    print(f"the Genesys host did not start: {host.stderr}", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind((addresses.asterisk_host, 0))
                local_port = probe.getsockname()[1]
            calls = args.rate * args.seconds
            began = time.monotonic()
            result = run_register(
                Path(directory) / "sipp",
                target=(addresses.genesys_host, addresses.sip_port),
                local=(addresses.asterisk_host, local_port),
                dn="5001",
                expected_status=200,
                calls=calls,
                rate=args.rate,
                timeout=args.seconds * 3 + 30,
            )
            elapsed = time.monotonic() - began
            marker = f"bytes from {addresses.asterisk_host}:{local_port} <<<<<"
            logged = sum(
                segment.read_text(encoding="utf-8").count(marker)
                for segment in layout.log_dir.glob("SIP_P-001.*.log")
            )
        finally:
            host.send_signal(signal.SIGTERM)
            host.wait(timeout=10)
    print(f"target            {args.rate} REGISTER/s for {args.seconds} s = {calls} REGISTERs")
    print(f"sipp exit code    {result.returncode}")
    print(f"calls sent        {result.calls}")
    print(f"successful        {result.successful}")
    print(f"failed            {result.failed}")
    print(f"retransmissions   {result.retransmissions}")
    print(f"logged by SIP_P   {logged} REGISTERs received from sipp")
    print(f"elapsed           {elapsed:.1f} s (sipp's own: {result.elapsed})")
    lost = calls - result.successful
    verdict = "no loss" if lost == 0 and not result.retransmissions else "LOSS"
    print(
        f"result            {verdict}: {lost} unsuccessful, {result.retransmissions} retransmitted"
    )
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
