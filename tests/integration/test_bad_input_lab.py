"""Bad input against the running lab: every bad DN through every command that takes one, one bad
inventory value at a time, and bad extra vars given to the playbooks directly (as AWX would).
Each ends with a clear error (reference, hint, exit code 1, no traceback) and NOTHING changed: the
lab's configuration store (cme.json), its Asterisk files and its service are byte-identical, and
no run is recorded."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediate.cli import main
from remediate.env import Environment
from remediate.lab import control
from remediate.lab.layout import LabLayout, set_fault

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]

BAD_DNS = {
    "empty": "",
    "powershell": "5001'; Stop-Service TSrvSIP64; '",
    "subshell": "$(reboot)",
    "backticks": "`reboot`",
    "sip-header": "5001\r\nVia: x",
    "newline-at-end": "5001\n",
    "path": "../../etc/passwd",
    "fullwidth-digits": "\uff15\uff10\uff10\uff11",
    "cyrillic-a": "\u0410steriskTrunk",
    "nul": "5001\x00",
    "10-kB": "5" * 10240,
}


def _estate(layout: LabLayout) -> dict[str, bytes | str]:
    """What a change would touch, as bytes, and the service state."""
    etc = layout.asterisk_etc
    return {
        "cme.json": layout.cme_file.read_bytes(),
        "extensions.conf": (etc / "extensions.conf").read_bytes(),
        "pjsip.conf": (etc / "pjsip.conf").read_bytes(),
        "service": control.status(layout).service_state,
    }


def _cli(*args: str, state: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdin=io.StringIO(""),
        stdout=out,
        stderr=err,
        environ={"REMEDIATE_STATE_DIR": str(state)},
    )
    return main(list(args), env), out.getvalue(), err.getvalue()


def _assert_refused(code: int, out: str, err: str, reference: str) -> None:
    assert code == 1, err
    assert err.startswith(f"error: {reference}: "), err
    assert "\nhint: " in err and "Traceback" not in err
    assert out == ""


def _assert_nothing_recorded(state: Path) -> None:
    runs = state / "runs"
    assert not runs.exists() or not any(runs.iterdir())


COMMANDS = {
    "diagnose-live": ["diagnose"],
    "diagnose-log": ["diagnose", "--log", "LOG"],
    "plan": ["plan"],
    "apply": ["apply", "--yes", "--change-id", "CHG-BAD"],
    "verify": ["verify"],
}


@pytest.mark.parametrize("command", COMMANDS.keys())
def test_bad_dns_change_nothing(lab: LabLayout, tmp_path: Path, command: str) -> None:
    inventory = str(lab.inventory_dir)
    log = str(control.newest_log_segment(lab))
    before = _estate(lab)
    for name, dn in BAD_DNS.items():
        args = [log if arg == "LOG" else arg for arg in COMMANDS[command]]
        code, out, err = _cli(*args, "--dn", "5002", "--dn", dn, "-i", inventory, state=tmp_path)
        _assert_refused(code, out, err, "bad-dn")
        assert "\r" not in err and "\x00" not in err, name  # escaped, never echoed raw
    assert _estate(lab) == before
    _assert_nothing_recorded(tmp_path)


def test_a_trunk_name_of_letters_is_a_dn(lab: LabLayout, tmp_path: Path) -> None:
    code, out, err = _cli(
        "diagnose", "--dn", "AsteriskTrunk", "--dn", "5002", "-i", str(lab.inventory_dir),
        "--output", "json", state=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert [dn["dn"] for dn in json.loads(out)["dns"]] == ["AsteriskTrunk", "5002"]


# One bad inventory value at a time -------------------------------------------------------------

LONG = "x" * 5000
BAD_VALUES: list[tuple[str, str, Any]] = [
    # (host, variable, value): each reaches PowerShell, a shell, a SIP header, GAX or a file
    ("genesys", "genesys_trusted_gateway_section", "sip]\n[evil"),
    ("genesys", "genesys_trusted_gateway_section", "sip]"),
    ("genesys", "genesys_trusted_gateway_option", "trusted-gateways'; Stop-Service TSrvSIP64; '"),
    ("genesys", "genesys_trusted_gateway_option", 'trusted "gateways"'),
    ("genesys", "genesys_trusted_gateway_option", LONG),
    ("genesys", "genesys_gateway_auth_option", "mode\r\nVia: x"),
    ("genesys", "genesys_gateway_auth_value", "enabled; reboot"),
    ("genesys", "genesys_trunk_name", "Trunk$(reboot)"),
    ("genesys", "genesys_trunk_name", "../../etc/passwd"),
    ("genesys", "genesys_trunk_prefix", "50\n"),
    ("genesys", "genesys_trunk_prefix", "{{"),
    ("genesys", "genesys_service_name", "TSrvSIP64'; Restart-Computer; '"),
    ("genesys", "genesys_switch", "SIP_P`n"),
    ("genesys", "genesys_log_dir", "D:\\gcti_logs\\SIP_P'; Remove-Item C:\\ -Recurse; '"),
    ("genesys", "genesys_log_prefix", "SIP_P-001*"),
    ("genesys", "genesys_sip_address", "127.0.0.1\r\nVia: x"),
    ("genesys", "genesys_gax_url", "https://gax.example/gax/api?x='y'"),
    ("genesys", "ansible_user", "remediate\nadmin"),
    ("asterisk", "asterisk_genesys_context", "from-genesys]\nexten => _X.,1,System(reboot)\n["),
    ("asterisk", "asterisk_genesys_context", "from genesys"),
    ("asterisk", "asterisk_extensions_conf", "/etc/asterisk/extensions.conf; reboot"),
    ("asterisk", "asterisk_extensions_conf", "extensions.conf"),
    ("asterisk", "asterisk_pjsip_conf", "/etc/asterisk/pjsip.conf\n"),
    ("asterisk", "asterisk_command", "asterisk -rx 'core stop now'"),
    ("asterisk", "asterisk_dn_registrations", {"5001": "reg'; reboot; '"}),
    ("asterisk", "asterisk_dn_registrations", {"5001\n": "genesys_reg_5001"}),
    ("asterisk", "asterisk_dn_registrations", {"5001": LONG}),
    ("asterisk", "asterisk_sip_address", "127.0.0.1 ; reboot"),
    ("asterisk", "ansible_ssh_private_key_file", "/tmp/key\n"),
]


def _inventory_with(lab: LabLayout, directory: Path, host: str, variable: str, value: Any) -> Path:
    document = yaml.safe_load((lab.inventory_dir / "hosts.yml").read_text(encoding="utf-8"))
    hosts = document["all"]["children"]["site_lab"]["children"][host]["hosts"]
    (variables,) = hosts.values()
    variables[variable] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(document, width=10000), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("host", "variable", "value"),
    BAD_VALUES,
    ids=[f"{variable}-{index}" for index, (_, variable, _) in enumerate(BAD_VALUES)],
)
def test_bad_inventory_values_change_nothing(
    lab: LabLayout, tmp_path: Path, host: str, variable: str, value: Any
) -> None:
    inventory = _inventory_with(lab, tmp_path / "inventory", host, variable, value)
    before = _estate(lab)
    code, out, err = _cli("plan", "--dn", "5001", "-i", str(inventory), state=tmp_path)
    _assert_refused(code, out, err, "inventory-variable-invalid")
    first = err.splitlines()[0]
    assert variable in first and f"{host}-lab" in first
    assert len(first) < 400  # a 5000-character value is cut, not echoed
    assert _estate(lab) == before


@pytest.mark.parametrize("command", ["apply", "verify", "diagnose-live"])
def test_a_bad_inventory_value_stops_every_command(
    lab: LabLayout, tmp_path: Path, command: str
) -> None:
    inventory = _inventory_with(
        lab, tmp_path / "inventory", "genesys", "genesys_service_name", "TSrvSIP64'; reboot; '"
    )
    before = _estate(lab)
    args = COMMANDS[command]
    code, out, err = _cli(*args, "--dn", "5001", "-i", str(inventory), state=tmp_path)
    _assert_refused(code, out, err, "inventory-variable-invalid")
    assert "genesys_service_name" in err
    assert _estate(lab) == before
    _assert_nothing_recorded(tmp_path)


# The playbooks without the CLI (AWX) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("playbook", "extra_vars", "message"),
    [
        ("dialplan.yml", {"remediate_dns": ["5001\n"]}, "remediate_dns must be a list of DN names"),
        (
            "dialplan.yml",
            {"remediate_dns": ["5001"], "asterisk_genesys_context": "from-genesys\n"},
            "the dialplan fix needs",
        ),
        (
            "trusted_gateway.yml",
            {"remediate_dns": ["5001"], "asterisk_sip_address": "127.0.0.1 ; reboot"},
            "asterisk_sip_address / asterisk_sip_port of asterisk-lab cannot be used: 127.0.0.1 ;",
        ),
        (
            "restart.yml",
            {"remediate_dns": ["5001"], "asterisk_sip_port": 70000},
            "asterisk_sip_address / asterisk_sip_port of asterisk-lab cannot be used",
        ),
    ],
    ids=["dn-with-newline", "context-with-newline", "gateway-address", "gateway-port-on-restart"],
)
def test_playbooks_refuse_bad_extra_vars(
    lab: LabLayout, tmp_path: Path, playbook: str, extra_vars: dict[str, Any], message: str
) -> None:
    """`$` in a Jinja `match` test accepts a trailing newline; the roles must not."""
    before = _estate(lab)
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    command = [
        str(ansible_playbook),
        "-i",
        str(lab.inventory_dir),
        str(REPO / "playbooks" / playbook),
    ]
    completed = subprocess.run(
        [*command, "-e", json.dumps(extra_vars)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        timeout=120,
    )
    assert completed.returncode != 0
    assert message in completed.stdout, completed.stdout[-2000:]
    assert "changed=0" in completed.stdout
    assert _estate(lab) == before


@pytest.mark.parametrize("fault", ["ssh-drop", "winrm-drop", "gax-500"])
def test_a_dropping_host_is_an_error_line_never_a_traceback(
    lab: LabLayout, tmp_path: Path, fault: str
) -> None:
    """As the operator's terminal shows it (a process of its own: library loggers included)."""
    set_fault(lab, fault, True)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "remediate",
            "diagnose",
            "--dn",
            "5002",
            "-i",
            str(lab.inventory_dir),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "REMEDIATE_STATE_DIR": str(tmp_path / "state")},
        timeout=120,
    )
    assert completed.returncode == 7, completed.stderr
    assert completed.stderr.startswith("error: "), completed.stderr
    assert "Traceback" not in completed.stderr and "\nhint: " in completed.stderr
