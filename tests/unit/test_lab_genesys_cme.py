"""The lab's configuration objects: scenario seeds, trust rule inputs, validation, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediate.lab.genesys.cme import (
    CFG_DN,
    CFG_SWITCH,
    ConfigError,
    ConfigStore,
    TrustOptions,
    load_trust_options,
    parse_contact,
    seed_document,
)
from remediate.lab.layout import SCENARIOS, LabAddresses, LabLayout, save_layout

ADDRESSES = LabAddresses(genesys_host="127.0.0.81", asterisk_host="127.0.0.54")


def _store(tmp_path: Path, scenario: str, trust: TrustOptions | None = None) -> ConfigStore:
    layout = LabLayout(tmp_path, ADDRESSES)
    return ConfigStore(layout.cme_file, seed_document(layout, scenario, trust or TrustOptions()))


def test_every_scenario_seeds_switch_and_dns(tmp_path: Path) -> None:
    for scenario in SCENARIOS:
        store = _store(tmp_path / scenario, scenario)
        assert [s["name"] for s in store.find(CFG_SWITCH)] == ["SIP_P"]
        numbers = {dn["number"] for dn in store.find(CFG_DN) if dn["dntype"] == "CFGExtension"}
        expected = {"1002", "1003", "5001"} | (
            set() if scenario == "dn-not-configured" else {"5002"}
        )
        assert numbers == expected, scenario


def test_untrusted_seed_trusts_nobody(tmp_path: Path) -> None:
    config = _store(tmp_path, "untrusted-gateway").registrar_config(TrustOptions())
    assert config.trusted_addresses == frozenset()
    assert config.trunks == ()
    assert config.registrable_dns == frozenset({"1002", "1003", "5001", "5002"})


@pytest.mark.parametrize("scenario", ["gateway-unregisters", "binding-expired"])
def test_trusted_seeds_list_the_asterisk_address(tmp_path: Path, scenario: str) -> None:
    store = _store(tmp_path, scenario)
    switch = store.find(CFG_SWITCH, "SIP_P")[0]
    annex = {(p["section"], p["key"]): p["value"] for p in switch["userproperties"]["property"]}
    assert annex[("sip", "trusted-gateways")] == "127.0.0.54"
    assert annex[("sip", "gateway-ip-auth-mode")] == "enabled"
    assert store.registrar_config(TrustOptions()).trusted_addresses == {"127.0.0.54"}


def test_trunk_seed(tmp_path: Path) -> None:
    config = _store(tmp_path, "trunk-no-reverse-route").registrar_config(TrustOptions())
    (trunk,) = config.trunks
    assert (trunk.name, trunk.contact_host, trunk.contact_port) == (
        "AsteriskTrunk_webRTC",
        "127.0.0.54",
        5060,
    )
    assert (trunk.prefix, trunk.oos_check) == ("50", 30)
    assert config.trunk_for_address("127.0.0.54") == trunk
    assert config.trunk_for_address("127.0.0.81") is None
    assert config.trusted_addresses == frozenset()


def test_trust_option_names_are_data(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, ADDRESSES)
    save_layout(layout, "binding-expired")
    document = json.loads(layout.lab_file.read_text())
    document["genesys"] = {
        "trusted_gateway_options": {
            "section": "gateways",
            "list_option": "allowed",
            "mode_option": "",
        }
    }
    layout.lab_file.write_text(json.dumps(document))
    trust = load_trust_options(layout)
    assert trust == TrustOptions(section="gateways", list_option="allowed", mode_option="")
    store = ConfigStore(layout.cme_file, seed_document(layout, "binding-expired", trust))
    switch = store.find(CFG_SWITCH, "SIP_P")[0]
    switch["userproperties"]["property"] = [
        {"section": "gateways", "key": "allowed", "value": "127.0.0.54, 127.0.0.60"}
    ]
    store.update(CFG_SWITCH, switch["dbid"], switch)
    assert store.registrar_config(trust).trusted_addresses == {"127.0.0.54", "127.0.0.60"}
    # under the seed's names the same annex trusts nobody
    assert store.registrar_config(TrustOptions()).trusted_addresses == frozenset()


def test_trusted_list_needs_the_auth_mode(tmp_path: Path) -> None:
    store = _store(tmp_path, "untrusted-gateway")
    switch = store.find(CFG_SWITCH, "SIP_P")[0]
    switch["userproperties"]["property"].append(
        {"section": "sip", "key": "trusted-gateways", "value": "127.0.0.54"}
    )
    store.update(CFG_SWITCH, switch["dbid"], switch)
    assert store.registrar_config(TrustOptions()).trusted_addresses == frozenset()
    switch["userproperties"]["property"].append(
        {"section": "sip", "key": "gateway-ip-auth-mode", "value": "enabled"}
    )
    store.update(CFG_SWITCH, switch["dbid"], switch)
    assert store.registrar_config(TrustOptions()).trusted_addresses == {"127.0.0.54"}


def test_disabled_dn_is_not_registrable(tmp_path: Path) -> None:
    store = _store(tmp_path, "untrusted-gateway")
    dn = store.find(CFG_DN, "5001")[0]
    dn["state"] = "CFGDisabled"
    store.update(CFG_DN, dn["dbid"], dn)
    assert "5001" not in store.registrar_config(TrustOptions()).registrable_dns


def test_changes_persist_and_survive_a_reload(tmp_path: Path) -> None:
    store = _store(tmp_path, "untrusted-gateway")
    switch_dbid = store.find(CFG_SWITCH, "SIP_P")[0]["dbid"]
    created = store.create(
        {
            "type": CFG_DN,
            "name": "GW",
            "dntype": "CFGTrunk",
            "switchdbid": switch_dbid,
            "userproperties": {
                "property": [{"section": "TServer", "key": "contact", "value": "sip:127.0.0.54"}]
            },
        }
    )
    assert created["dbid"] >= 1000 and created["number"] == "GW"
    path = LabLayout(tmp_path, ADDRESSES).cme_file
    reloaded = ConfigStore(path, {"next_dbid": 1, "objects": []})  # the file wins over the seed
    assert reloaded.get(CFG_DN, created["dbid"]) == created
    assert reloaded.registrar_config(TrustOptions()).trunk_for_address("127.0.0.54") is not None
    reloaded.delete(CFG_DN, created["dbid"])
    with pytest.raises(ConfigError) as missing:
        ConfigStore(path, {}).get(CFG_DN, created["dbid"])
    assert missing.value.status == 404
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ([], 400),
        ({"type": "CfgGateway", "name": "x"}, 400),
        ({"type": CFG_DN, "name": "", "dntype": "CFGExtension", "switchdbid": 101}, 400),
        ({"type": CFG_DN, "name": "6001", "dntype": "CFGPhone", "switchdbid": 101}, 400),
        ({"type": CFG_DN, "name": "6001", "dntype": "CFGExtension", "switchdbid": 999}, 400),
        (
            {"type": CFG_DN, "name": "6001", "dntype": "CFGExtension", "switchdbid": 101, "x": 1},
            400,
        ),
        (
            {
                "type": CFG_DN,
                "name": "6001",
                "dbid": 5,
                "dntype": "CFGExtension",
                "switchdbid": 101,
            },
            400,
        ),
        (
            {
                "type": CFG_DN,
                "name": "6001",
                "dntype": "CFGExtension",
                "switchdbid": 101,
                "userproperties": {"property": [{"section": "TServer", "key": "a"}]},
            },
            400,
        ),
        ({"type": CFG_DN, "name": "5002", "dntype": "CFGExtension", "switchdbid": 101}, 409),
        ({"type": CFG_SWITCH, "name": "SIP_P"}, 409),
    ],
)
def test_create_refuses_bad_objects(tmp_path: Path, body: object, status: int) -> None:
    store = _store(tmp_path, "untrusted-gateway")
    with pytest.raises(ConfigError) as refused:
        store.create(body)
    assert refused.value.status == status


def test_update_checks_type_and_dbid_and_delete_keeps_switch_with_dns(tmp_path: Path) -> None:
    store = _store(tmp_path, "untrusted-gateway")
    dn = store.find(CFG_DN, "5002")[0]
    with pytest.raises(ConfigError, match="dbid"):
        store.update(CFG_DN, dn["dbid"] + 1, dn)
    with pytest.raises(ConfigError) as unknown:
        store.update(CFG_DN, 999, {k: v for k, v in dn.items() if k != "dbid"})
    assert unknown.value.status == 404
    with pytest.raises(ConfigError) as busy:
        store.delete(CFG_SWITCH, 101)
    assert busy.value.status == 409


def test_parse_contact_forms() -> None:
    assert parse_contact("127.0.0.54:5061") == ("127.0.0.54", 5061)
    assert parse_contact("127.0.0.54") == ("127.0.0.54", 5060)
    assert parse_contact("sip:gw@127.0.0.54:5062;transport=udp") == ("127.0.0.54", 5062)
    assert parse_contact("127.0.0.54:abc") is None
