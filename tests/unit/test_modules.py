"""The Genesys modules in library/ without a lab: their documented interface matches their
argument spec, and every error reaches Ansible as a failure with a reference and a hint and no
secret."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

LIBRARY = Path(__file__).resolve().parents[2] / "library"
MODULES = ("genesys_annex_option", "genesys_dn", "genesys_object_restore", "genesys_service")
GAX_PASSWORD = "Unit-GAX-secret-9x!"
WINRM_PASSWORD = "Unit-WinRM-secret-4q!"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"library_{name}", LIBRARY / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        load(name).main()
    return json.loads(capsys.readouterr().out)


def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connection(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "inventory_host": "genesys-unit",
        "ansible_host": "127.0.0.1",
        "ansible_port": closed_port(),
        "ansible_user": "remediate",
        "ansible_password": WINRM_PASSWORD,
        "ansible_winrm_scheme": "http",
        "ansible_winrm_transport": "ntlm",
        "genesys_log_dir": "D:\\gcti_logs\\SIP_P",
        "genesys_gax_url": f"http://127.0.0.1:{closed_port()}/gax/api",
        "genesys_gax_user": "default",
        "genesys_gax_password": GAX_PASSWORD,
        "remediate_lab": True,
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize("name", MODULES)
def test_each_module_documents_exactly_the_options_it_takes(name: str) -> None:
    module = load(name)
    documented = yaml.safe_load(module.DOCUMENTATION)
    assert documented["module"] == name
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    source = (LIBRARY / f"{name}.py").read_text()
    for option in documented["options"]:
        assert f'"{option}":' in source, f"{name} documents {option} but does not take it"


def test_an_unreachable_gax_fails_with_its_reference_and_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(
        "genesys_annex_option",
        {
            "connection": connection(),
            "cfg_type": "CfgSwitch",
            "name": "SIP_P",
            "options": [{"section": "sip", "key": "trusted-gateways", "value": "127.0.0.54"}],
        },
        capsys,
    )
    assert result["failed"] is True
    assert result["reference"] == "gax-unreachable"
    assert result["msg"].startswith("gax-unreachable: GAX at http://127.0.0.1:")
    assert "genesys_gax_url" in result["hint"]
    assert GAX_PASSWORD not in json.dumps(result)


def test_an_unusable_inventory_value_is_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(
        "genesys_dn",
        {
            "connection": connection(genesys_gax_url="https://gax.example'; rm -rf /"),
            "name": "AsteriskTrunk_webRTC",
            "switch": "SIP_P",
        },
        capsys,
    )
    assert result["failed"] is True
    assert result["reference"] == "inventory-variable-invalid"
    assert "genesys_gax_url" in result["msg"]


def test_plain_http_winrm_with_a_password_is_refused_outside_the_lab(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(
        "genesys_service",
        {
            "connection": connection(remediate_lab=False, ansible_winrm_transport="basic"),
            "name": "TSrvSIP64",
            "state": "queried",
        },
        capsys,
    )
    assert result["reference"] == "winrm-insecure"
    assert WINRM_PASSWORD not in json.dumps(result)


def test_mlcmd_cannot_leave_the_service_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(
        "genesys_service",
        {"connection": connection(), "name": "TSrvSIP64", "state": "stopped", "method": "mlcmd"},
        capsys,
    )
    assert result["reference"] == "mlcmd-unsupported"


def test_a_before_state_of_another_object_is_refused_before_gax_is_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(
        "genesys_object_restore",
        {
            "connection": connection(),
            "cfg_type": "CfgSwitch",
            "name": "SIP_P",
            "before": {"dbid": 7, "type": "CfgDN", "name": "5001"},
        },
        capsys,
    )
    assert result["reference"] == "rollback-bad-before-state"
