"""Transport pieces that need no host: results, settings checks, SSH option parsing, registry."""

from __future__ import annotations

import pytest

from remediate.errors import InputError
from remediate.status import ExitStatus
from remediate.transport import CommandResult, TransportError, transport_class
from remediate.transport.settings import WinRMSettings, check_settings, ssh_options
from remediate.transport.ssh import SSHTransport
from remediate.transport.winrm import WinRMTransport


def test_ok_is_the_exit_code_never_stderr() -> None:
    progress = b'#< CLIXML\r\n<Objs><Obj S="progress"/></Objs>'
    assert CommandResult("x", 0, b"out", progress, 0.1).ok
    assert not CommandResult("x", 1, b"", b"", 0.1).ok
    assert CommandResult("x", 0, "é".encode(), b"", 0.0).stdout_text == "é"


def test_transport_errors_are_preconditions() -> None:
    error = TransportError("down", reference="winrm-unreachable")
    assert error.exit_status == ExitStatus.PRECONDITION_FAILED
    assert str(error) == "winrm-unreachable: down"


def test_registry_maps_ansible_connection_names() -> None:
    assert transport_class("winrm") is WinRMTransport
    assert transport_class("ssh") is SSHTransport
    with pytest.raises(InputError, match="psrp"):
        transport_class("psrp")


def test_ssh_options_from_common_args() -> None:
    options = ssh_options(
        "-o UserKnownHostsFile=/lab/ssh/known_hosts -oStrictHostKeyChecking=yes "
        "-o 'ProxyCommand=ssh -W %h:%p bastion' -C"
    )
    assert options == {
        "userknownhostsfile": "/lab/ssh/known_hosts",
        "stricthostkeychecking": "yes",
        "proxycommand": "ssh -W %h:%p bastion",
    }
    assert ssh_options('-o "UserKnownHostsFile /a b/kh"')["userknownhostsfile"] == "/a b/kh"


def _winrm(**overrides: object) -> WinRMSettings:
    values: dict[str, object] = {
        "inventory_host": "genesys-prod",
        "address": "genesys.example",
        "port": 5986,
        "scheme": "https",
        "user": "svc",
        "password": "pw-never-shown",
    }
    values.update(overrides)
    return WinRMSettings(**values)  # type: ignore[arg-type]


def test_secure_defaults_pass() -> None:
    settings = _winrm()
    check_settings(settings)
    assert settings.auth == "ntlm" and settings.validate_certificate
    assert "pw-never-shown" not in repr(settings)


@pytest.mark.parametrize(
    "overrides",
    [
        {"scheme": "http", "port": 5985, "auth": "basic"},
        {"validate_certificate": False},
    ],
)
def test_insecure_settings_refused_unless_lab_or_explicit(
    overrides: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(InputError) as caught:
        check_settings(_winrm(**overrides))
    assert caught.value.reference == "winrm-insecure"
    check_settings(_winrm(lab=True, **overrides))
    check_settings(_winrm(allow_insecure=True, **overrides))
    assert "remediate_allow_insecure_winrm" in caplog.text


def test_timeouts_must_nest() -> None:
    with pytest.raises(InputError, match="operation_timeout"):
        check_settings(_winrm(operation_timeout=30, read_timeout=30))
    with pytest.raises(InputError, match="ansible_winrm_transport"):
        check_settings(_winrm(auth="digest"))
