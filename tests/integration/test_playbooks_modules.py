"""The Genesys tasks (remediate.actions.run_task, what the action plugins run) against the lab's
real GAX and WinRM (one fresh lab for the
file): check mode changes nothing, a change is reported with before/after/diff, a second run
changes nothing, rollback restores exactly, failures carry the product's reference."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from remediate.actions import GENESYS_CONNECTION_VARIABLES, TaskHost, run_task
from remediate.lab import control
from remediate.lab.layout import LabLayout


@pytest.fixture(scope="module")
def estate(lab_factory: Any) -> Iterator[LabLayout]:
    layout: LabLayout = lab_factory("untrusted-gateway")
    yield layout
    for name in control.status(layout).faults:
        control.fault(layout, name, False)


def connection(layout: LabLayout) -> dict[str, Any]:
    """What role `remediate` passes as `connection`: the Genesys host's inventory variables."""
    inventory = yaml.safe_load((layout.inventory_dir / "hosts.yml").read_text())
    site = inventory["all"]["children"]["site_lab"]
    host_vars = site["children"]["genesys"]["hosts"]["genesys-lab"]
    chosen = {k: v for k, v in host_vars.items() if k in GENESYS_CONNECTION_VARIABLES}
    return {"inventory_host": "genesys-lab", **chosen, "remediate_lab": True}


def run(
    name: str, layout: LabLayout, args: dict[str, Any], *, check: bool = False
) -> dict[str, Any]:
    result = run_task(name, {"connection": connection(layout), **args}, check_mode=check)
    assert result.get("reference") != "task-arguments-invalid", result["msg"]
    return result


def objects(layout: LabLayout) -> list[dict[str, Any]]:
    return list(json.loads(layout.cme_file.read_text())["objects"])


def named(layout: LabLayout, cfg_type: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objects(layout) if o["type"] == cfg_type and o["name"] == name), None)


def annex(obj: dict[str, Any] | None) -> dict[tuple[str, str], str]:
    assert obj is not None
    return {(p["section"], p["key"]): p["value"] for p in obj["userproperties"]["property"]}


def trust_args(layout: LabLayout, state: str = "present") -> dict[str, Any]:
    return {
        "cfg_type": "CfgSwitch",
        "name": "SIP_P",
        "state": state,
        "options": [
            {
                "section": "sip",
                "key": "trusted-gateways",
                "value": layout.addresses.asterisk_host,
                "list": True,
            },
            {"section": "sip", "key": "gateway-ip-auth-mode", "value": "enabled"},
        ],
    }


def test_annex_option_check_apply_again_and_restore(estate: LabLayout) -> None:
    gateway = estate.addresses.asterisk_host
    original = named(estate, "CfgSwitch", "SIP_P")
    cme_before = estate.cme_file.read_bytes()

    checked = run("genesys_annex_option", estate, trust_args(estate), check=True)
    assert checked["changed"] is True
    assert annex(checked["after"])[("sip", "trusted-gateways")] == gateway
    assert f"+trusted-gateways = {gateway}" not in checked["diff"]["before"]
    assert f"trusted-gateways = {gateway}\n" in checked["diff"]["after"]
    assert estate.cme_file.read_bytes() == cme_before

    applied = run("genesys_annex_option", estate, trust_args(estate))
    assert applied["changed"] is True
    assert applied["before"] == original
    assert annex(named(estate, "CfgSwitch", "SIP_P")) == {
        ("TServer", "sip-port"): "5060",
        ("sip", "trusted-gateways"): gateway,
        ("sip", "gateway-ip-auth-mode"): "enabled",
    }
    assert applied["after"] == named(estate, "CfgSwitch", "SIP_P")

    again = run("genesys_annex_option", estate, trust_args(estate))
    assert again["changed"] is False

    restored = run(
        "genesys_object_restore",
        estate,
        {"cfg_type": "CfgSwitch", "name": "SIP_P", "before": original},
    )
    assert (restored["changed"], restored["action"]) == (True, "update")
    assert named(estate, "CfgSwitch", "SIP_P") == original
    assert (
        run(
            "genesys_object_restore",
            estate,
            {"cfg_type": "CfgSwitch", "name": "SIP_P", "before": original},
        )["changed"]
        is False
    )


def test_a_gateway_already_listed_with_others_keeps_them(estate: LabLayout) -> None:
    original = named(estate, "CfgSwitch", "SIP_P")
    other = {
        "cfg_type": "CfgSwitch",
        "name": "SIP_P",
        "options": [{"section": "sip", "key": "trusted-gateways", "value": "192.0.2.10"}],
    }
    run("genesys_annex_option", estate, other)
    try:
        run("genesys_annex_option", estate, trust_args(estate))
        listed = annex(named(estate, "CfgSwitch", "SIP_P"))[("sip", "trusted-gateways")]
        assert listed == f"192.0.2.10,{estate.addresses.asterisk_host}"
        removed = run("genesys_annex_option", estate, trust_args(estate, "absent"))
        assert removed["changed"] is True
        assert annex(named(estate, "CfgSwitch", "SIP_P")) == {
            ("TServer", "sip-port"): "5060",
            ("sip", "trusted-gateways"): "192.0.2.10",
        }
    finally:
        run(
            "genesys_object_restore",
            estate,
            {"cfg_type": "CfgSwitch", "name": "SIP_P", "before": original},
        )
    assert named(estate, "CfgSwitch", "SIP_P") == original


def test_trunk_dn_created_updated_refused_and_rolled_back(estate: LabLayout) -> None:
    contact = f"{estate.addresses.asterisk_host}:5060"
    trunk = {
        "name": "AsteriskTrunk_webRTC",
        "switch": "SIP_P",
        "options": [{"section": "TServer", "key": "contact", "value": contact}],
    }
    objects_before = objects(estate)

    checked = run("genesys_dn", estate, trunk, check=True)
    assert (checked["changed"], checked["before"]) == (True, None)
    assert objects(estate) == objects_before

    created = run("genesys_dn", estate, trunk)
    assert created["changed"] is True
    dn = named(estate, "CfgDN", "AsteriskTrunk_webRTC")
    assert dn == created["after"]
    assert (dn["dntype"], dn["switchdbid"]) == ("CFGTrunk", 101)
    assert annex(dn) == {("TServer", "contact"): contact}
    assert run("genesys_dn", estate, trunk)["changed"] is False

    with_prefix = dict(
        trunk, options=[*trunk["options"], {"section": "TServer", "key": "prefix", "value": "50"}]
    )
    updated = run("genesys_dn", estate, with_prefix)
    assert updated["changed"] is True
    assert updated["after"]["dbid"] == dn["dbid"]
    assert annex(named(estate, "CfgDN", "AsteriskTrunk_webRTC"))[("TServer", "prefix")] == "50"

    refused = run("genesys_dn", estate, dict(trunk, name="5001"))
    assert refused["failed"] is True
    assert refused["reference"] == "dn-wrong-type"

    rollback = {"cfg_type": "CfgDN", "name": "AsteriskTrunk_webRTC", "before": None}
    deleted = run("genesys_object_restore", estate, rollback)
    assert (deleted["action"], deleted["after"]) == ("delete", None)
    assert objects(estate) == objects_before
    assert run("genesys_object_restore", estate, rollback)["changed"] is False


def test_trusted_gateway_by_either_method_changes_what_that_method_names(
    estate: LabLayout,
) -> None:
    gateway = estate.addresses.asterisk_host
    switch = named(estate, "CfgSwitch", "SIP_P")
    objects_before = objects(estate)
    by_annex = {
        "switch": "SIP_P",
        "address": gateway,
        "section": "sip",
        "option": "trusted-gateways",
        "auth_option": "gateway-ip-auth-mode",
        "auth_value": "enabled",
    }
    checked = run("genesys_trusted_gateway", estate, by_annex, check=True)
    assert (checked["changed"], checked["method"], checked["before"]) == (True, "annex", switch)
    assert objects(estate) == objects_before

    applied = run("genesys_trusted_gateway", estate, by_annex)
    assert applied["changed"] is True
    assert applied["after"] == named(estate, "CfgSwitch", "SIP_P") == checked["after"]
    assert annex(applied["after"])[("sip", "trusted-gateways")] == gateway
    assert annex(applied["after"])[("sip", "gateway-ip-auth-mode")] == "enabled"
    assert run("genesys_trusted_gateway", estate, by_annex)["changed"] is False
    run(
        "genesys_object_restore",
        estate,
        {"cfg_type": "CfgSwitch", "name": "SIP_P", "before": switch},
    )

    # Without an address: the gateway of the host's site, its SIP address and port.
    by_trunk = {"method": "trunk-dn", "switch": "SIP_P", "trunk_name": "AsteriskTrunk_webRTC"}
    site = TaskHost(
        {
            "inventory_hostname": "genesys-lab",
            "group_names": ["genesys", "site_lab"],
            "groups": {"asterisk": ["asterisk-lab"], "site_lab": ["genesys-lab", "asterisk-lab"]},
            "hostvars": {
                "asterisk-lab": {"asterisk_sip_address": gateway, "asterisk_sip_port": 5070}
            },
        },
        lambda value: value,
    )
    created = run_task(
        "genesys_trusted_gateway",
        {"connection": connection(estate), **by_trunk},
        check_mode=False,
        host=site,
    )
    assert (created["changed"], created["method"], created["before"]) == (True, "trunk-dn", None)
    assert (created["address"], created["port"]) == (gateway, 5070)
    trunk = named(estate, "CfgDN", "AsteriskTrunk_webRTC")
    assert trunk == created["after"]
    assert annex(trunk) == {("TServer", "contact"): f"{gateway}:5070"}
    assert named(estate, "CfgSwitch", "SIP_P") == switch
    run(
        "genesys_object_restore",
        estate,
        {"cfg_type": "CfgDN", "name": "AsteriskTrunk_webRTC", "before": None},
    )
    assert objects(estate) == objects_before


def test_an_object_the_change_deleted_is_recreated(estate: LabLayout) -> None:
    dn = named(estate, "CfgDN", "5002")
    assert dn is not None
    run(
        "genesys_dn",
        estate,
        {"name": "5002", "switch": "SIP_P", "dn_type": "CFGExtension", "state": "absent"},
    )
    assert named(estate, "CfgDN", "5002") is None
    recreated = run(
        "genesys_object_restore",
        estate,
        {"cfg_type": "CfgDN", "name": "5002", "before": dn},
    )
    assert (recreated["action"], recreated["dbid_changed"]) == ("create", True)
    now = named(estate, "CfgDN", "5002")
    assert now is not None
    assert {k: v for k, v in now.items() if k != "dbid"} == {
        k: v for k, v in dn.items() if k != "dbid"
    }


def test_service_query_check_restart_and_a_failed_start(estate: LabLayout) -> None:
    service = {"name": "TSrvSIP64"}
    queried = run("genesys_service", estate, dict(service, state="queried"))
    assert (queried["changed"], queried["before"]["status"]) == (False, "Running")

    segments = sorted(estate.log_dir.glob("*.log"))
    checked = run("genesys_service", estate, dict(service, state="restarted"), check=True)
    assert checked["changed"] is True
    assert sorted(estate.log_dir.glob("*.log")) == segments  # no start, no new log segment

    restarted = run("genesys_service", estate, dict(service, state="restarted"))
    assert restarted["changed"] is True
    assert restarted["after"]["status"] == "Running"
    assert len(sorted(estate.log_dir.glob("*.log"))) == len(segments) + 1

    assert run("genesys_service", estate, dict(service, state="started"))["changed"] is False

    with_management_layer = dict(
        connection(estate), genesys_config_server_host=estate.addresses.genesys_host
    )
    by_mlcmd = run(
        "genesys_service",
        estate,
        dict(service, state="restarted", method="mlcmd", connection=with_management_layer),
    )
    assert (by_mlcmd["changed"], by_mlcmd["method"]) == (True, "mlcmd")
    assert by_mlcmd["after"]["status"] == "Running"
    assert len(sorted(estate.log_dir.glob("*.log"))) == len(segments) + 2

    control.fault(estate, "service-1053", True)
    try:
        failed = run(
            "genesys_service",
            estate,
            dict(service, state="restarted", stop_timeout=5, start_timeout=5),
        )
    finally:
        control.fault(estate, "service-1053", False)
    assert failed["failed"] is True
    assert failed["reference"] == "service-control-failed"
    assert failed["before"]["status"] == "Running"
    started = run("genesys_service", estate, dict(service, state="started"))
    assert (started["changed"], started["after"]["status"]) == (True, "Running")


def test_a_refused_gax_password_fails_without_showing_it(estate: LabLayout) -> None:
    wrong = dict(connection(estate), genesys_gax_password="Not-The-Password-1!")
    result = run_task(
        "genesys_annex_option", {"connection": wrong, **trust_args(estate)}, check_mode=False
    )
    assert result["reference"] == "gax-auth-failed"
    assert "genesys_gax_password" in result["hint"]
    assert "Not-The-Password-1!" not in json.dumps(result)


def test_a_restart_stuck_in_stop_pending_fails_within_its_bound(estate: LabLayout) -> None:
    control.fault(estate, "service-hang", True)
    try:
        started = time.monotonic()
        failed = run(
            "genesys_service",
            estate,
            {"name": "TSrvSIP64", "state": "restarted", "stop_timeout": 2, "start_timeout": 2},
        )
        elapsed = time.monotonic() - started
    finally:
        control.fault(estate, "service-hang", False)
    assert failed["failed"] is True
    assert failed["reference"] == "service-control-failed"
    assert elapsed < 15
    # Once the hang clears, the pending stop completes (Windows refuses a start until then: 1061).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        queried = run("genesys_service", estate, {"name": "TSrvSIP64", "state": "queried"})
        if queried["after"]["status"] == "Stopped":
            break
        time.sleep(0.2)
    recovered = run("genesys_service", estate, {"name": "TSrvSIP64", "state": "started"})
    assert recovered["after"]["status"] == "Running"
