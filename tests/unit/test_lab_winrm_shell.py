"""The lab's cmd.exe and PowerShell (remediate.lab.winrm) against a temp-dir host double, and the
endpoint's lifecycle in-process."""

from __future__ import annotations

import base64
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import winrm

from remediate.lab.layout import LabAddresses, LabLayout
from remediate.lab.winrm.cmd import WindowsShell
from remediate.lab.winrm.powershell import PowerShell, ServiceControls
from remediate.lab.winrm.server import WinRMEndpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from winrm_host_double import TempDirWindowsHost

GENESYS_HOST = os.environ.get("REMEDIATE_TEST_GENESYS_HOST", "127.0.0.81")


@pytest.fixture
def host(tmp_path: Path) -> TempDirWindowsHost:
    logs = tmp_path / "D" / "gcti_logs" / "SIP_P"
    logs.mkdir(parents=True)
    (logs / "SIP_P-001.20260202_135459_850.log").write_bytes(
        b"Application name: SIP_P\r\n\r\nline \x82\r\n"
    )
    return TempDirWindowsHost(tmp_path)


def powershell(host: TempDirWindowsHost, script: str) -> tuple[str, str, int]:
    shell = WindowsShell(host, ServiceControls(), "remediate")
    result = PowerShell(host, ServiceControls(), shell.program).run(script)
    return result.stdout, result.stderr, result.exit_code


def test_cmd_answers_unknown_commands_as_windows(host: TempDirWindowsHost) -> None:
    output = WindowsShell(host, ServiceControls(), "remediate").run("netstat -ano")
    assert output.exit_code == 1
    assert output.stderr == (
        b"'netstat' is not recognized as an internal or external command,\r\n"
        b"operable program or batch file.\r\n"
    )


def test_output_is_encoded_in_the_shell_code_page(host: TempDirWindowsHost) -> None:
    path = r"D:\gcti_logs\SIP_P\SIP_P-001.20260202_135459_850.log"
    script = f"Get-Content -LiteralPath '{path}' -TotalCount 3"
    shell = WindowsShell(host, ServiceControls(), "remediate", codepage=437)
    line = "powershell -EncodedCommand " + base64.b64encode(script.encode("utf-16-le")).decode()
    output = shell.run(line)
    # cp1252 0x82 is a low quotation mark, which code page 437 cannot show.
    assert output.stdout == b"Application name: SIP_P\r\n\r\nline ?\r\n"
    assert (
        WindowsShell(host, ServiceControls(), "remediate", codepage=65001)
        .run(line)
        .stdout.endswith("\u201a\r\n".encode())
    )


def test_unknown_cmdlet_is_a_clixml_error_and_exit_1(host: TempDirWindowsHost) -> None:
    stdout, stderr, code = powershell(host, "Restart-Computer -Force")
    assert (stdout, code) == ("", 1)
    assert stderr.startswith(
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    )
    assert (
        "Restart-Computer : The term &apos;Restart-Computer&apos;" in stderr
        or "The term 'Restart-Computer'" in stderr
    )


def test_constructs_outside_the_subset_are_parse_errors_not_silence(
    host: TempDirWindowsHost,
) -> None:
    _, stderr, code = powershell(host, "if ($true) { Get-Date }")
    assert code == 1
    assert "outside the lab" in stderr


def test_error_action_stop_halts_the_script(host: TempDirWindowsHost) -> None:
    stdout, _, code = powershell(
        host, "Get-Service -Name 'nope' -ErrorAction Stop\nGet-Date -Format 'o'"
    )
    assert (stdout, code) == ("", 1)
    stdout, _, code = powershell(host, "Get-Service -Name 'nope'\nGet-Date -Format 'o'")
    assert code == 0 and stdout.count("\r\n") == 1


def test_wait_for_status_times_out_when_the_stop_hangs(host: TempDirWindowsHost) -> None:
    host.hang_on_stop = True
    script = (
        "$s = Get-Service -Name 'TSrvSIP64'\n"
        "Stop-Service -InputObject $s -Force -NoWait\n"
        "$s.WaitForStatus('Stopped', '00:00:01')"
    )
    started = time.monotonic()
    _, stderr, code = powershell(host, script)
    assert code == 1 and time.monotonic() - started < 2
    assert 'Exception calling "WaitForStatus" with "2" argument(s): "Time out has expired' in stderr


def test_format_operator_and_member_access(host: TempDirWindowsHost) -> None:
    stdout, _, code = powershell(
        host,
        r"Get-ChildItem -LiteralPath 'D:\gcti_logs\SIP_P' -Filter 'sip_p-*.LOG' -File | "
        "ForEach-Object { '{0}|{1}|{{x}}' -f $_.Name, $_.Length }",
    )
    assert (stdout, code) == ("SIP_P-001.20260202_135459_850.log|35|{x}\r\n", 0)


def test_endpoint_starts_and_closes_within_a_second(
    tmp_path: Path, host: TempDirWindowsHost
) -> None:
    layout = LabLayout(
        tmp_path / "lab",
        LabAddresses(genesys_host=GENESYS_HOST, winrm_http_port=15985, winrm_https_port=15986),
    )
    endpoint = WinRMEndpoint(host, layout)
    endpoint.start()
    try:
        client = winrm.Session(
            f"http://{GENESYS_HOST}:15985/wsman",
            auth=("remediate", layout.credentials.winrm_password),
            transport="ntlm",
        )
        assert client.run_cmd("hostname").std_out == b"GenUAT02\r\n"
        idle = socket.create_connection((GENESYS_HOST, 15985))  # a keep-alive connection left open
    finally:
        started = time.monotonic()
        endpoint.close()
        assert time.monotonic() - started < 1
    with pytest.raises(OSError):
        socket.create_connection((GENESYS_HOST, 15985), timeout=1)
    try:
        assert idle.recv(1) == b""
    except ConnectionResetError:
        pass  # closed before it was accepted: the kernel resets it
    finally:
        idle.close()
