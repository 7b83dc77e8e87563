"""The lab's WinRM endpoint against real clients (pywinrm, requests + pyspnego, testinfra),
served by the real simulated Genesys host process (`python -m remediate.lab.genesys`) on this
suite's own loopback address (REMEDIATE_TEST_GENESYS_HOST, default 127.0.0.81)."""

from __future__ import annotations

import base64
import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
import spnego
import testinfra
import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError

from remediate.genesys import powershell as ps
from remediate.lab.layout import WINDOWS_LOG_DIR, LabAddresses, LabLayout, save_layout, set_fault

pytestmark = pytest.mark.lab

GENESYS_HOST = os.environ.get("REMEDIATE_TEST_GENESYS_HOST", "127.0.0.81")
LOG_DIR = str(WINDOWS_LOG_DIR)
SERVICE = "TSrvSIP64"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabLayout]:
    root = tmp_path_factory.mktemp("winrm-lab")
    prefix = GENESYS_HOST.rsplit(".", 1)[0]
    lab = LabLayout(root, LabAddresses(genesys_host=GENESYS_HOST, asterisk_host=f"{prefix}.54"))
    save_layout(lab, "untrusted-gateway")
    output = lab.root / "genesys.out"
    with output.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remediate.lab.genesys",
                "--dir",
                str(root),
                "--start-delay",
                "0.1",
                "--stop-delay",
                "0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while not lab.ready_file("genesys").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Genesys host did not start: {output.read_text(errors='replace')}")
            time.sleep(0.05)
        yield lab
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def faults(layout: LabLayout) -> Iterator[list[str]]:
    switched: list[str] = []
    yield switched
    for name in switched:
        set_fault(layout, name, False)


def http_url(layout: LabLayout) -> str:
    return f"http://{GENESYS_HOST}:{layout.addresses.winrm_http_port}/wsman"


def https_url(layout: LabLayout) -> str:
    return f"https://{GENESYS_HOST}:{layout.addresses.winrm_https_port}/wsman"


def credentials(layout: LabLayout) -> tuple[str, str]:
    return layout.credentials.winrm_user, layout.credentials.winrm_password


def session(layout: LabLayout, transport: str = "ntlm", **options: object) -> winrm.Session:
    return winrm.Session(http_url(layout), auth=credentials(layout), transport=transport, **options)


def run(layout: LabLayout, command: ps.PowerShellCommand) -> winrm.Response:
    return session(layout).run_cmd(command.command_line)


def test_run_ps_over_http_with_basic(layout: LabLayout) -> None:
    response = session(layout, "basic").run_ps(ps.service_state(SERVICE).script)
    assert response.status_code == 0, response.std_err
    state = ps.parse_service_state(response.std_out.decode("cp437"))
    assert (state.name, state.status) == (SERVICE, "Running")


def test_run_ps_over_http_with_ntlm_encrypts_the_messages(layout: LabLayout) -> None:
    client = session(layout, "ntlm")
    response = client.run_ps("Get-Date -Format 'o'")
    assert response.status_code == 0, response.std_err
    assert client.protocol.transport.encryption is not None  # multipart/encrypted was spoken
    clock = ps.parse_host_clock(response.std_out.decode())
    assert clock.utcoffset() == datetime.timedelta(hours=5, minutes=30)


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_run_ps_over_https_validates_the_lab_certificate(layout: LabLayout, transport: str) -> None:
    client = winrm.Session(
        https_url(layout),
        auth=credentials(layout),
        transport=transport,
        server_cert_validation="validate",
        ca_trust_path=str(layout.ca_cert),
    )
    response = client.run_ps(ps.port_listeners(layout.addresses.softphone_port).script)
    assert response.status_code == 0, response.std_err
    listeners = ps.parse_port_listeners(response.std_out.decode())
    assert [(item.protocol, item.local_port) for item in listeners] == [
        ("UDP", layout.addresses.softphone_port)
    ]


def test_https_without_the_lab_ca_is_refused_by_the_client(layout: LabLayout) -> None:
    client = winrm.Session(
        https_url(layout), auth=credentials(layout), transport="ntlm", ca_trust_path=None
    )
    with pytest.raises(requests.exceptions.SSLError):
        client.run_cmd("hostname")


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_wrong_password_is_refused(layout: LabLayout, transport: str) -> None:
    client = winrm.Session(
        http_url(layout), auth=(layout.credentials.winrm_user, "wrong"), transport=transport
    )
    with pytest.raises(InvalidCredentialsError):
        client.run_cmd("hostname")


def test_negotiate_as_pypsrp_sends_it_gets_the_final_token_on_the_200(layout: LabLayout) -> None:
    user, password = credentials(layout)
    context = spnego.client(
        user, password, hostname=GENESYS_HOST, service="http", protocol="negotiate"
    )
    with requests.Session() as http:
        first = http.post(
            http_url(layout),
            headers={"Authorization": "Negotiate " + base64.b64encode(context.step()).decode()},
        )
        assert first.status_code == 401
        assert first.headers["Content-Length"] == "0"
        challenge = base64.b64decode(first.headers["WWW-Authenticate"].split(" ", 1)[1])
        final = http.post(
            http_url(layout),
            headers={
                "Authorization": "Negotiate " + base64.b64encode(context.step(challenge)).decode()
            },
        )
        assert final.status_code == 200
        context.step(base64.b64decode(final.headers["WWW-Authenticate"].split(" ", 1)[1]))
        assert context.complete


def test_one_shell_serves_many_commands_and_is_gone_after_delete(layout: LabLayout) -> None:
    protocol = winrm.Protocol(
        http_url(layout),
        transport="ntlm",
        username=credentials(layout)[0],
        password=credentials(layout)[1],
    )
    shell = protocol.open_shell()
    for _ in range(10):
        command = protocol.run_command(shell, ps.host_clock().command_line)
        stdout, stderr, code = protocol.get_command_output(shell, command)
        protocol.cleanup_command(shell, command)
        assert code == 0, stderr
        ps.parse_host_clock(stdout.decode())
    command = protocol.run_command(shell, "powershell -NoProfile -Command -")
    protocol.send_command_input(
        shell, command, "Get-Service -Name 'TSrvSIP64' | ForEach-Object { $_.Status }", end=True
    )
    assert protocol.get_command_output(shell, command) == (b"Running\r\n", b"", 0)
    protocol.close_shell(shell, close_session=False)
    with pytest.raises(WSManFaultError) as raised:
        protocol.run_command(shell, "hostname")
    assert raised.value.wsman_fault_code == 2150858843


def test_receive_answers_operation_timeout_until_the_command_ends(layout: LabLayout) -> None:
    user, password = credentials(layout)
    protocol = winrm.Protocol(
        http_url(layout),
        transport="ntlm",
        username=user,
        password=password,
        operation_timeout_sec=1,
        read_timeout_sec=3,
    )
    shell = protocol.open_shell()
    command = protocol.run_command(
        shell, ps.wait_service_status(SERVICE, "Stopped", 2).command_line
    )
    started = time.monotonic()
    with pytest.raises(WinRMOperationTimeoutError):
        protocol.get_command_output_raw(shell, command)
    assert 0.9 < time.monotonic() - started < 2
    # get_command_output retries the timeouts, as clients do.
    _, stderr, code = protocol.get_command_output(shell, command)
    assert code == 1
    assert stderr.startswith(b"#< CLIXML\r\n")
    assert b"Time out has expired and the operation has not been completed." in stderr
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)


def test_testinfra_winrm_backend_runs_raw_commands(layout: LabLayout) -> None:
    user, password = credentials(layout)
    host = testinfra.get_host(
        f"winrm://{user}:{password}@{GENESYS_HOST}:{layout.addresses.winrm_http_port}?no_ssl=true"
    )
    assert host.run("echo hello").stdout == "hello\r\n"
    assert host.run("hostname").stdout.strip() == "GenUAT02"
    clock = host.run(ps.host_clock().command_line)
    assert clock.rc == 0
    ps.parse_host_clock(clock.stdout)
    unknown = host.run("ipconfig /all")
    assert unknown.rc == 1
    assert "'ipconfig' is not recognized as an internal or external command" in unknown.stderr


def test_testinfra_winrm_backend_over_https_trusts_the_lab_ca(
    layout: LabLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    # testinfra has no CA option; pywinrm's default ca_trust_path reads REQUESTS_CA_BUNDLE.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(layout.ca_cert))
    user, password = credentials(layout)
    host = testinfra.get_host(
        f"winrm://{user}:{password}@{GENESYS_HOST}:{layout.addresses.winrm_https_port}"
    )
    assert host.run("whoami").stdout.strip() == f"genuat02\\{user}"


def test_unknown_powershell_fails_as_on_windows(layout: LabLayout) -> None:
    response = session(layout).run_ps("Get-ItemProperty -Path 'HKLM:\\Software'")
    assert response.status_code == 1
    assert response.std_err.startswith(
        b"Get-ItemProperty : The term 'Get-ItemProperty' is not recognized as the name of a "
        b"cmdlet, function, "
        b"script file, or operable program."
    )


def test_cmd_refuses_command_lines_over_8191_characters(layout: LabLayout) -> None:
    accepted = session(layout).run_cmd("echo " + "x" * (8191 - 5))
    assert accepted.status_code == 0
    refused = session(layout).run_cmd("echo " + "x" * (8192 - 5))
    assert (refused.status_code, refused.std_err) == (1, b"The command line is too long.\r\n")


def test_fault_401_refuses_every_credential(layout: LabLayout, faults: list[str]) -> None:
    set_fault(layout, "winrm-401", True)
    faults.append("winrm-401")
    for transport in ("basic", "ntlm"):
        with pytest.raises(InvalidCredentialsError):
            session(layout, transport).run_cmd("hostname")


def test_fault_500_answers_a_wsman_fault(layout: LabLayout, faults: list[str]) -> None:
    set_fault(layout, "winrm-500", True)
    faults.append("winrm-500")
    with pytest.raises(WSManFaultError) as raised:
        session(layout).run_cmd("hostname")
    assert raised.value.code == 500
    assert raised.value.wsman_fault_code == 2147500037


def test_fault_drop_closes_without_an_answer(layout: LabLayout, faults: list[str]) -> None:
    set_fault(layout, "winrm-drop", True)
    faults.append("winrm-drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        session(layout, "basic").run_cmd("hostname")


def test_fault_stall_holds_until_the_client_gives_up(layout: LabLayout, faults: list[str]) -> None:
    set_fault(layout, "winrm-stall", True)
    faults.append("winrm-stall")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        session(layout, "basic", read_timeout_sec=2, operation_timeout_sec=1).run_cmd("hostname")
    assert 1.9 < time.monotonic() - started < 4
    set_fault(layout, "winrm-stall", False)
    assert session(layout, "basic").run_cmd("hostname").status_code == 0


def test_start_failing_with_1053_is_a_failed_command(layout: LabLayout, faults: list[str]) -> None:
    set_fault(layout, "service-1053", True)
    faults.append("service-1053")
    response = run(layout, ps.restart_service(SERVICE, 10, 10))
    assert response.status_code == 1
    assert (
        b"did not respond to the start or control request in a timely fashion" in response.std_err
    )
    set_fault(layout, "service-1053", False)
    started = run(layout, ps.start_service(SERVICE, 10))
    assert started.status_code == 0, started.std_err
    assert ps.parse_service_state(started.std_out.decode()).status == "Running"


def test_stop_hanging_in_stop_pending_fails_within_its_bound(
    layout: LabLayout, faults: list[str]
) -> None:
    set_fault(layout, "service-hang", True)
    faults.append("service-hang")
    started = time.monotonic()
    response = run(layout, ps.stop_service(SERVICE, 1))
    assert time.monotonic() - started < 4
    assert response.status_code == 1
    assert b"Time out has expired" in response.std_err
    set_fault(layout, "service-hang", False)
    assert run(layout, ps.wait_service_status(SERVICE, "Stopped", 10)).status_code == 0
    assert run(layout, ps.start_service(SERVICE, 10)).status_code == 0


def test_every_command_the_product_emits_runs_on_the_lab(layout: LabLayout) -> None:
    """The contract: each builder's command exits 0 on the lab and its output parses."""
    clock = run(layout, ps.host_clock())
    now = ps.parse_host_clock(clock.std_out.decode())
    segments = ps.parse_log_segments(
        run(layout, ps.list_log_segments(LOG_DIR, "SIP_P-001.*.log")).std_out.decode()
    )
    assert segments, "the Genesys host writes at least one segment"
    newest = max(segments, key=lambda segment: segment.last_write)
    recent = run(
        layout,
        ps.list_log_segments(
            LOG_DIR, "SIP_P-001.*.log", newest.last_write - datetime.timedelta(seconds=1)
        ),
    )
    assert newest.name in [
        segment.name for segment in ps.parse_log_segments(recent.std_out.decode())
    ]
    assert not ps.parse_log_segments(
        run(
            layout, ps.list_log_segments(LOG_DIR, "*.log", now + datetime.timedelta(hours=1))
        ).std_out.decode()
    )

    lines = ps.parse_log_lines(
        run(layout, ps.read_log_lines(LOG_DIR, newest.name, 0, 3)).std_out.decode("cp437")
    )
    assert lines[0].startswith("Application name:")
    assert len(lines) == 3

    filtered = run(
        layout, ps.read_log_filtered(LOG_DIR, newest.name, ["DN_IN_SERVICE", "no gateway is found"])
    )
    assert filtered.status_code == 0, filtered.std_err
    text = "\n".join(ps.parse_filtered_log(filtered.std_out.decode("cp437")))
    assert "Application name: SIP_P" in text
    assert "User-Agent: Genesys-Softphone/9.0.014.13" in text
    of_1003 = run(layout, ps.read_log_filtered(LOG_DIR, newest.name, ["REGISTRAR"], dns=["1003"]))
    assert of_1003.status_code == 0, of_1003.std_err
    assert "sip:1003@" in of_1003.std_out.decode("cp437")

    state = ps.parse_service_state(run(layout, ps.service_state(SERVICE)).std_out.decode())
    assert state.status == "Running"
    for command in (
        ps.restart_service(SERVICE, 10, 10),
        ps.stop_service(SERVICE, 10),
        ps.start_service(SERVICE, 10),
    ):
        response = run(layout, command)
        assert response.status_code == 0, response.std_err
        ps.parse_service_state(response.std_out.decode())
    for action, status in (("stop", "Stopped"), ("start", "Running")):
        response = run(layout, ps.mlcmd("mlcmd.exe", "cfg01", 2020, "SIP_P", action))
        assert response.status_code == 0, response.std_err
        waited = run(layout, ps.wait_service_status(SERVICE, status, 10))
        assert ps.parse_service_state(waited.std_out.decode()).status == status
    listeners = ps.parse_port_listeners(
        run(layout, ps.port_listeners(layout.addresses.winrm_http_port)).std_out.decode()
    )
    assert [(item.protocol, item.process_name) for item in listeners] == [("TCP", "System")]


def test_filtered_read_sends_only_the_relevant_lines(layout: LabLayout) -> None:
    segments = ps.parse_log_segments(
        run(layout, ps.list_log_segments(LOG_DIR, "SIP_P-001.*.log")).std_out.decode()
    )
    newest = max(segments, key=lambda segment: segment.last_write)
    whole = (
        session(layout).run_ps(f"Get-Content -LiteralPath '{LOG_DIR}\\{newest.name}' -Raw").std_out
    )
    filtered = run(
        layout, ps.read_log_filtered(LOG_DIR, newest.name, ["no gateway is found"])
    ).std_out
    assert len(filtered) < len(whole)
    blocks = filtered.decode("cp437").split("\r\n\r\n")
    register_blocks = [block for block in blocks if "<<<<<" in block or ">>>>>" in block]
    assert register_blocks
    assert all("REGISTER" in block for block in register_blocks)
    assert b"OPTIONS sip:" not in filtered and b"SUBSCRIBE sip:" not in filtered
