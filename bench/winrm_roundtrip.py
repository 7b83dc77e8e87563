"""100 sequential run_ps-equivalent commands on one reused WinRM shell, against the lab's
Genesys host.

Starts `python -m remediate.lab.genesys` in a temporary lab directory on REMEDIATE_TEST_GENESYS_HOST
(default 127.0.0.81), opens one shell with winrm.Protocol (NTLM with message encryption over HTTP,
as the product's transport does), and times Command + Receive + Signal for each command.
Prints the average (target < 30 ms) and the p95.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import winrm

from remediate.genesys import powershell as ps
from remediate.lab.layout import LabAddresses, LabLayout, save_layout

COMMANDS = 100


def main() -> int:
    address = os.environ.get("REMEDIATE_TEST_GENESYS_HOST", "127.0.0.81")
    with tempfile.TemporaryDirectory() as directory:
        layout = LabLayout(
            Path(directory),
            LabAddresses(genesys_host=address, asterisk_host=address.rsplit(".", 1)[0] + ".54"),
        )
        save_layout(layout, "untrusted-gateway")
        process = subprocess.Popen(
            [sys.executable, "-m", "remediate.lab.genesys", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while not layout.ready_file("genesys").exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    print("the lab's Genesys host did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            protocol = winrm.Protocol(
                f"http://{address}:{layout.addresses.winrm_http_port}/wsman",
                transport="ntlm",
                username=layout.credentials.winrm_user,
                password=layout.credentials.winrm_password,
            )
            shell = protocol.open_shell()
            command_line = ps.service_state("TSrvSIP64").command_line
            timings = []
            for _ in range(COMMANDS):
                started = time.perf_counter()
                command = protocol.run_command(shell, command_line)
                stdout, stderr, code = protocol.get_command_output(shell, command)
                protocol.cleanup_command(shell, command)
                timings.append(time.perf_counter() - started)
                if code != 0:
                    print(f"command failed ({code}): {stderr!r}", file=sys.stderr)
                    return 1
                ps.parse_service_state(stdout.decode())
            protocol.close_shell(shell)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
    timings_ms = sorted(value * 1000 for value in timings)
    p95 = timings_ms[int(len(timings_ms) * 0.95) - 1]
    print(
        f"{COMMANDS} commands on one shell: average {statistics.fmean(timings_ms):.1f} ms, "
        f"p95 {p95:.1f} ms (target: average < 30 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
