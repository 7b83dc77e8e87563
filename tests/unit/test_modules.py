"""The Genesys tasks (action plugins, documented in library/) without a lab: their documented
interface matches their argument spec, Ansible finds them, and every error reaches Ansible as a
failure with a reference and a hint and no secret."""

from __future__ import annotations

import importlib.util
import json
import shlex
import socket
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import get_docstring

from remediate.actions import ARGUMENT_SPECS, TaskHost, host_connection, run_task

ROOT = Path(__file__).resolve().parents[2]
MODULES = (
    "genesys_annex_option",
    "genesys_dn",
    "genesys_object_restore",
    "genesys_service",
    "genesys_trusted_gateway",
    "remediate_site_gateway",
    "remediate_send_register",
)
GAX_PASSWORD = "Unit-GAX-secret-9x!"
WINRM_PASSWORD = "Unit-WinRM-secret-4q!"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return run_task(name, args, check_mode=False)


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


def spec_of_documented(options: dict[str, Any]) -> dict[str, Any]:
    """The argument spec that documented `options` describe (type, required, default, choices,
    elements, suboptions)."""
    spec: dict[str, Any] = {}
    for option, documented in options.items():
        entry = {
            key: documented[key] for key in ("type", "choices", "elements") if key in documented
        }
        if documented.get("required"):
            entry["required"] = True
        if "default" in documented:
            entry["default"] = documented["default"]
        if "suboptions" in documented:
            entry["options"] = spec_of_documented(documented["suboptions"])
        spec[option] = entry
    return spec


def spec_without_no_log(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        option: {
            key: spec_without_no_log(value) if key == "options" else value
            for key, value in entry.items()
            if key != "no_log"
        }
        for option, entry in spec.items()
    }


@pytest.mark.parametrize("name", MODULES)
def test_each_task_documents_exactly_the_options_it_takes(name: str) -> None:
    # As ansible-doc reads it: with the shared fragments of doc_fragments/ merged in.
    fragment_loader.add_directory(str(ROOT / "doc_fragments"))
    documented, examples, returned, _ = get_docstring(
        str(ROOT / "library" / f"{name}.py"), fragment_loader
    )
    assert documented["module"] == name
    assert "Runs inside ansible-playbook" in " ".join(documented["notes"])
    assert yaml.safe_load(examples)
    assert returned
    taken = spec_without_no_log(ARGUMENT_SPECS[name])
    if "connection" in taken:
        # Its keys are the inventory's variables; the action plugin reads them from the task's
        # host unless the task passes them.
        taken["connection"] = {"type": "dict"}
    assert spec_of_documented(documented["options"]) == taken


@pytest.mark.parametrize("name", MODULES)
def test_each_task_is_an_action_plugin_of_its_name(name: str) -> None:
    plugin = load(ROOT / "action_plugins" / f"{name}.py").ActionModule
    assert issubclass(plugin, ActionBase)
    assert plugin._supports_check_mode is True
    assert "action_plugins = ./action_plugins" in (ROOT / "ansible.cfg").read_text()


def test_arguments_it_does_not_take_are_refused_without_showing_a_secret() -> None:
    result = run(
        "genesys_service",
        {"connection": connection(), "name": "TSrvSIP64", "state": "bounced", "colour": "red"},
    )
    assert result["failed"] is True
    assert result["reference"] == "task-arguments-invalid"
    assert "colour" in result["msg"]
    assert "bounced" in result["msg"]
    assert "ansible-doc" in result["hint"]
    assert WINRM_PASSWORD not in json.dumps(result)
    assert GAX_PASSWORD not in json.dumps(result)


@pytest.mark.parametrize(
    ("method", "missing"),
    [("annex", "section, option, auth_option, auth_value"), ("trunk-dn", "trunk_name")],
)
def test_trusted_gateway_needs_the_options_of_its_method(method: str, missing: str) -> None:
    result = run(
        "genesys_trusted_gateway",
        {"connection": connection(), "method": method, "switch": "SIP_P", "address": "192.0.2.54"},
    )
    assert result["reference"] == "task-arguments-invalid"
    assert f"method is {method} but all of the following are missing: {missing}" in result["msg"]


def test_trusted_gateway_refuses_a_method_it_does_not_know() -> None:
    result = run(
        "genesys_trusted_gateway",
        {
            "connection": connection(),
            "method": "hosts-allow",
            "switch": "SIP_P",
            "address": "192.0.2.54",
            "trunk_name": "AsteriskTrunk_webRTC",
        },
    )
    assert result["reference"] == "task-arguments-invalid"
    assert "annex, trunk-dn" in result["msg"] and "hosts-allow" in result["msg"]


def test_an_unreachable_gax_fails_with_its_reference_and_hint() -> None:
    result = run(
        "genesys_annex_option",
        {
            "connection": connection(),
            "cfg_type": "CfgSwitch",
            "name": "SIP_P",
            "options": [{"section": "sip", "key": "trusted-gateways", "value": "127.0.0.54"}],
        },
    )
    assert result["failed"] is True
    assert result["reference"] == "gax-unreachable"
    assert result["msg"].startswith("gax-unreachable: GAX at http://127.0.0.1:")
    assert "genesys_gax_url" in result["hint"]
    assert GAX_PASSWORD not in json.dumps(result)


def test_an_unusable_inventory_value_is_refused_before_anything_is_sent() -> None:
    result = run(
        "genesys_dn",
        {
            "connection": connection(genesys_gax_url="https://gax.example'; rm -rf /"),
            "name": "AsteriskTrunk_webRTC",
            "switch": "SIP_P",
        },
    )
    assert result["failed"] is True
    assert result["reference"] == "inventory-variable-invalid"
    assert "genesys_gax_url" in result["msg"]


def test_plain_http_winrm_with_a_password_is_refused_outside_the_lab() -> None:
    result = run(
        "genesys_service",
        {
            "connection": connection(remediate_lab=False, ansible_winrm_transport="basic"),
            "name": "TSrvSIP64",
            "state": "queried",
        },
    )
    assert result["reference"] == "winrm-insecure"
    assert WINRM_PASSWORD not in json.dumps(result)


def test_mlcmd_cannot_leave_the_service_stopped() -> None:
    result = run(
        "genesys_service",
        {"connection": connection(), "name": "TSrvSIP64", "state": "stopped", "method": "mlcmd"},
    )
    assert result["reference"] == "mlcmd-unsupported"


def test_a_before_state_of_another_object_is_refused_before_gax_is_asked() -> None:
    result = run(
        "genesys_object_restore",
        {
            "connection": connection(),
            "cfg_type": "CfgSwitch",
            "name": "SIP_P",
            "before": {"dbid": 7, "type": "CfgDN", "name": "5001"},
        },
    )
    assert result["reference"] == "rollback-bad-before-state"


def test_the_connection_is_the_hosts_own_variables_each_templated() -> None:
    variables = {
        "inventory_hostname": "genesys-a",
        "ansible_host": "127.0.0.81",
        "ansible_password": "{{ vault_winrm_password }}",
        "ansible_connection": "local",  # the task's own, not a Genesys setting
        "genesys_gax_url": "http://127.0.0.81:8080/gax/api",
        "unrelated": "x",
    }
    rendered = {"{{ vault_winrm_password }}": WINRM_PASSWORD}

    def template(value: Any) -> Any:
        return rendered.get(value, value)

    assert host_connection(TaskHost(variables, template)) == {
        "inventory_host": "genesys-a",
        "ansible_host": "127.0.0.81",
        "ansible_password": WINRM_PASSWORD,
        "genesys_gax_url": "http://127.0.0.81:8080/gax/api",
    }


def site_host(gateway: dict[str, Any], **changes: Any) -> TaskHost:
    """genesys-a in site_a with gateway asterisk-a (its variables: `gateway`)."""
    variables: dict[str, Any] = {
        "inventory_hostname": "genesys-a",
        "group_names": ["genesys", "site_a"],
        "groups": {
            "all": ["genesys-a", "asterisk-a", "genesys-b", "asterisk-b"],
            "genesys": ["genesys-a", "genesys-b"],
            "asterisk": ["asterisk-a", "asterisk-b"],
            "site_a": ["genesys-a", "asterisk-a"],
            "site_b": ["genesys-b", "asterisk-b"],
        },
        "hostvars": {"asterisk-a": gateway, "asterisk-b": {"asterisk_sip_address": "192.0.2.9"}},
    }
    variables.update(changes)
    return TaskHost(variables, lambda value: value)


GATEWAY = {
    "ansible_host": "127.0.0.54",
    "asterisk_sip_address": "127.0.0.54",
    "asterisk_dn_registrations": {5001: "genesys_reg_5001", "5002": "genesys_reg_5002"},
}


def test_the_site_gateway_and_the_registrations_of_the_dns() -> None:
    result = run_task(
        "remediate_site_gateway",
        {"dns": ["5002", "5009", "5001"]},
        check_mode=True,
        host=site_host(GATEWAY),
    )
    assert result == {
        "changed": False,
        "site": "a",
        "gateway": "asterisk-a",
        "address": "127.0.0.54",
        "port": 5060,
        "command": "asterisk",
        "registrations": ["genesys_reg_5002", "genesys_reg_5001"],  # 5009: not registered
    }


def test_the_gateway_address_falls_back_to_its_ansible_host() -> None:
    gateway = {"ansible_host": "127.0.0.55", "asterisk_sip_port": "5070"}
    result = run_task("remediate_site_gateway", {}, check_mode=False, host=site_host(gateway))
    assert (result["address"], result["port"], result["registrations"]) == ("127.0.0.55", 5070, [])


@pytest.mark.parametrize(
    ("gateway", "changes", "message"),
    [
        (GATEWAY, {"group_names": ["genesys"]}, "exactly one site_<name> group (it is in none)"),
        (GATEWAY, {"group_names": ["site_a", "site_b"]}, "(it is in site_a, site_b)"),
        (
            GATEWAY,
            {"groups": {"asterisk": [], "site_a": ["genesys-a"]}},
            "exactly one host of group asterisk (found 0)",
        ),
        (
            dict(GATEWAY, asterisk_sip_address="127.0.0.54; reboot"),
            {},
            "of asterisk-a cannot be used: 127.0.0.54; reboot:5060",
        ),
        (dict(GATEWAY, asterisk_sip_port=70000), {}, "cannot be used: 127.0.0.54:70000"),
        (dict(GATEWAY, asterisk_sip_port="50x"), {}, "cannot be used: 127.0.0.54:50x"),
        (
            dict(GATEWAY, asterisk_dn_registrations={"5001": "reg'; reboot; '"}),
            {},
            "asterisk_dn_registrations of asterisk-a holds a name Asterisk cannot take",
        ),
    ],
    ids=["no-site", "two-sites", "no-gateway", "address", "port", "port-text", "registration"],
)
def test_a_site_without_one_usable_gateway_fails_with_the_reason(
    gateway: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    result = run_task(
        "remediate_site_gateway",
        {"dns": ["5001"]},
        check_mode=False,
        host=site_host(gateway, **changes),
    )
    assert result["failed"] is True
    assert message in result["msg"]
    assert result["hint"]


def test_trusted_gateway_without_an_address_refuses_a_site_without_a_usable_gateway() -> None:
    # Refused before GAX is asked (nothing listens on the connection's GAX port anyway).
    result = run_task(
        "genesys_trusted_gateway",
        {
            "connection": connection(),
            "switch": "SIP_P",
            "section": "sip",
            "option": "trusted-gateways",
            "auth_option": "gateway-ip-auth-mode",
            "auth_value": "enabled",
        },
        check_mode=True,
        host=site_host(dict(GATEWAY, asterisk_sip_address="127.0.0.54; reboot")),
    )
    assert (result["failed"], result["reference"]) == (True, "inventory-variable-invalid")
    assert "asterisk_sip_address / asterisk_sip_port of asterisk-a" in result["msg"]


def test_a_dn_that_cannot_be_one_is_refused_before_the_gateway_is_looked_for() -> None:
    result = run_task(
        "remediate_site_gateway", {"dns": ["5001\n"]}, check_mode=False, host=site_host(GATEWAY)
    )
    assert (result["failed"], result["reference"]) == (True, "bad-dn")
    assert "cannot be a DN" in result["msg"]


class GatewayShell:
    """What Ansible's connection does on the gateway, done here: each command run by a local
    shell; its `asterisk` records its arguments and prints `prints`."""

    def __init__(self, tmp_path: Path, prints: str = "") -> None:
        self.record = tmp_path / "asterisk.args"
        self.asterisk = tmp_path / "asterisk"
        self.asterisk.write_text(
            f'#!/bin/sh\necho "$*" >> {self.record}\nprintf %s {shlex.quote(prints)}\n'
        )
        self.asterisk.chmod(0o755)
        self.commands: list[str] = []

    def execute(self, command: str) -> dict[str, Any]:
        self.commands.append(command)
        # A shell command line is what the task sends: run it as sshd would.
        done = subprocess.run(  # noqa: S602
            command, shell=True, capture_output=True, text=True, check=False
        )
        return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}

    def send(self, registrations: list[str], *, check_mode: bool = False) -> dict[str, Any]:
        host = TaskHost({"inventory_hostname": "genesys-unit"}, lambda value: value, self.execute)
        arguments = {"command": str(self.asterisk), "registrations": registrations}
        return run_task("remediate_send_register", arguments, check_mode=check_mode, host=host)

    def told(self) -> list[str]:
        return self.record.read_text().splitlines() if self.record.exists() else []


def test_send_register_sends_each_registration_in_one_command(tmp_path: Path) -> None:
    gateway = GatewayShell(tmp_path)
    result = gateway.send(["genesys_reg_5001", "genesys_reg_5002"])
    assert (result["changed"], result.get("failed")) == (True, None)
    assert len(gateway.commands) == 1
    assert gateway.told() == [
        "-rx pjsip send register genesys_reg_5001",
        "-rx pjsip send register genesys_reg_5002",
    ]


def test_send_register_sends_nothing_in_check_mode_or_without_registrations(
    tmp_path: Path,
) -> None:
    gateway = GatewayShell(tmp_path)
    checked = gateway.send(["genesys_reg_5001"], check_mode=True)
    assert (checked["changed"], checked["registrations"]) == (True, ["genesys_reg_5001"])
    assert gateway.send([])["skipped"] is True
    assert gateway.commands == []


def test_send_register_refuses_a_name_that_is_not_one_before_running_anything(
    tmp_path: Path,
) -> None:
    gateway = GatewayShell(tmp_path)
    result = gateway.send(["genesys_reg_5001", "x; touch owned"])
    assert (result["failed"], result["reference"]) == (True, "inventory-variable-invalid")
    assert gateway.commands == []


def test_send_register_fails_when_asterisk_refuses(tmp_path: Path) -> None:
    gateway = GatewayShell(tmp_path, prints="No such command 'pjsip send register'\n")
    result = gateway.send(["genesys_reg_5001"])
    assert (result["failed"], result["reference"]) == (True, "asterisk-command-failed")
    assert "No such command" in result["msg"]
