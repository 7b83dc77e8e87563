"""remediate.changes: desired annex states, DNs, restore plans, dialplan coverage (no network)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from remediate.actions import connection_argument_spec, failure
from remediate.changes import (
    AnnexOption,
    annex_text,
    annex_with,
    check_before_state,
    dialplan_coverage,
    new_dn,
    pattern_misses,
    restore_plan,
    with_list_entry,
    without_list_entry,
    without_managed_block,
)
from remediate.errors import InputError, RemediateError
from remediate.genesys.gax import annex_value

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "asterisk"

SWITCH = {
    "dbid": 101,
    "type": "CfgSwitch",
    "name": "SIP_P",
    "state": "CFGEnabled",
    "tenantdbid": 1,
    "userproperties": {
        "property": [
            {"section": "TServer", "key": "sip-port", "value": "5060"},
            {"section": "sip", "key": "trusted-gateways", "value": "192.0.2.10"},
            {"section": "TServer", "key": "dial-plan", "value": "dp"},
        ]
    },
}
TRUST = [
    AnnexOption("sip", "trusted-gateways", "192.0.2.54", list_entry=True),
    AnnexOption("sip", "gateway-ip-auth-mode", "enabled"),
]


def keys(obj: dict) -> list[tuple[str, str, str]]:
    return [(p["section"], p["key"], p["value"]) for p in obj["userproperties"]["property"]]


def test_a_trusted_address_is_appended_and_every_other_option_keeps_its_place() -> None:
    before = copy.deepcopy(SWITCH)
    after = annex_with(SWITCH, TRUST, present=True)
    assert before == SWITCH  # the input is not touched
    assert keys(after) == [
        ("TServer", "sip-port", "5060"),
        ("sip", "trusted-gateways", "192.0.2.10,192.0.2.54"),
        ("TServer", "dial-plan", "dp"),
        ("sip", "gateway-ip-auth-mode", "enabled"),
    ]
    assert {k: v for k, v in after.items() if k != "userproperties"} == {
        k: v for k, v in SWITCH.items() if k != "userproperties"
    }


def test_applying_the_desired_state_twice_changes_nothing_the_second_time() -> None:
    once = annex_with(SWITCH, TRUST, present=True)
    assert annex_with(once, TRUST, present=True) == once


def test_an_address_already_listed_among_others_leaves_the_option_text_untouched() -> None:
    assert with_list_entry("192.0.2.1, 192.0.2.54", "192.0.2.54") == "192.0.2.1, 192.0.2.54"
    assert with_list_entry(None, "192.0.2.54") == "192.0.2.54"
    assert with_list_entry("", "192.0.2.54") == "192.0.2.54"


def test_absent_removes_only_that_list_entry_and_the_option_once_empty() -> None:
    assert without_list_entry("192.0.2.10,192.0.2.54", "192.0.2.54") == "192.0.2.10"
    assert without_list_entry("192.0.2.54", "192.0.2.54") is None
    assert without_list_entry("192.0.2.10", "192.0.2.54") == "192.0.2.10"
    trusted = annex_with(SWITCH, TRUST, present=True)
    removed = annex_with(trusted, TRUST, present=False)
    assert annex_value(removed, "sip", "trusted-gateways") == "192.0.2.10"
    assert annex_value(removed, "sip", "gateway-ip-auth-mode") is None


def test_the_annex_text_reads_like_the_annex_tab() -> None:
    assert annex_text(SWITCH) == (
        "[TServer]\nsip-port = 5060\ndial-plan = dp\n[sip]\ntrusted-gateways = 192.0.2.10\n"
    )
    assert annex_text(None) == ""


def test_a_new_trunk_dn_belongs_to_the_switch_and_its_tenant() -> None:
    options = [
        AnnexOption("TServer", "contact", "192.0.2.54:5060"),
        AnnexOption("TServer", "prefix", "50"),
    ]
    dn = new_dn("AsteriskTrunk_webRTC", SWITCH, "CFGTrunk", options)
    assert dn == {
        "type": "CfgDN",
        "name": "AsteriskTrunk_webRTC",
        "number": "AsteriskTrunk_webRTC",
        "dntype": "CFGTrunk",
        "switchdbid": 101,
        "state": "CFGEnabled",
        "tenantdbid": 1,
        "userproperties": {
            "property": [
                {"section": "TServer", "key": "contact", "value": "192.0.2.54:5060"},
                {"section": "TServer", "key": "prefix", "value": "50"},
            ]
        },
    }


@pytest.mark.parametrize(
    ("current", "before", "action"),
    [
        (SWITCH, SWITCH, "none"),
        (None, None, "none"),
        (SWITCH, None, "delete"),
        (None, SWITCH, "create"),
    ],
)
def test_restore_plans(current: dict | None, before: dict | None, action: str) -> None:
    plan = restore_plan(current, before)
    assert plan.action == action
    if action == "create":
        assert plan.document == {k: v for k, v in SWITCH.items() if k != "dbid"}


def test_restoring_a_changed_object_sends_the_before_state_exactly() -> None:
    changed = annex_with(SWITCH, TRUST, present=True)
    plan = restore_plan(changed, SWITCH)
    assert plan.action == "update"
    assert plan.document == SWITCH


def test_an_object_recreated_since_is_restored_at_its_new_dbid() -> None:
    recreated = dict(annex_with(SWITCH, TRUST, present=True), dbid=555)
    plan = restore_plan(recreated, SWITCH)
    assert plan.action == "update"
    assert plan.document == dict(SWITCH, dbid=555)
    assert restore_plan(dict(SWITCH, dbid=555), SWITCH).action == "none"


def test_a_before_state_of_another_object_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        check_before_state("CfgSwitch", "OTHER", SWITCH)
    assert caught.value.reference == "rollback-bad-before-state"
    with pytest.raises(InputError):
        check_before_state("CfgSwitch", "SIP_P", "not an object")
    assert check_before_state("CfgSwitch", "SIP_P", None) is None
    assert check_before_state("CfgSwitch", "SIP_P", SWITCH) == SWITCH


# Dialplan ----------------------------------------------------------------------------------------


def reader(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    def read(path: str) -> bytes:
        try:
            return files[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    return read


def fixture_files() -> dict[str, bytes]:
    return {
        f"/etc/asterisk/{name}": (FIXTURES / name).read_bytes()
        for name in ("extensions.conf", "extensions-sip-endpoint.conf")
    }


def test_a_context_in_an_included_file_that_already_routes_the_dns_needs_no_block() -> None:
    coverage = dialplan_coverage(
        reader(fixture_files()), "/etc/asterisk/extensions.conf", "from-genesys", ["5001", "5002"]
    )
    assert coverage.uncovered == []
    assert coverage.routes["5001"] == [
        "'_5XXX' at /etc/asterisk/extensions-sip-endpoint.conf:95",
        "'_X.' at /etc/asterisk/extensions-sip-endpoint.conf:117",
    ]
    assert coverage.files == [
        "/etc/asterisk/extensions.conf",
        "/etc/asterisk/extensions-sip-endpoint.conf",
    ]


LAB_MAIN = b"[general]\nstatic=yes\n\n#include extensions-sip-endpoint.conf\n"
LAB_INCLUDED = (
    b"[from-genesys]\nexten => _1XXX,1,NoOp(agent ${EXTEN})\n same => n,Dial(PJSIP/${EXTEN})\n"
    b"exten => h,1,NoOp(Call ended)\n"
)
BLOCK = (
    b"; BEGIN remediate managed: from-genesys\n[from-genesys]\n"
    b"exten => _5XXX,1,NoOp(Call from Genesys to ${EXTEN})\nsame => n,Dial(PJSIP/${EXTEN})\n"
    b"; END remediate managed: from-genesys\n"
)


def test_unrouted_dns_are_uncovered_and_the_managed_block_does_not_count() -> None:
    files = {
        "/etc/asterisk/extensions.conf": LAB_MAIN + BLOCK,
        "/etc/asterisk/extensions-sip-endpoint.conf": LAB_INCLUDED,
    }
    coverage = dialplan_coverage(
        reader(files), "/etc/asterisk/extensions.conf", "from-genesys", ["1003", "5001"]
    )
    assert coverage.routes == {
        "1003": ["'_1XXX' at /etc/asterisk/extensions-sip-endpoint.conf:2"],
        "5001": [],
    }
    assert coverage.uncovered == ["5001"]


def test_a_context_reached_through_include_counts_and_a_missing_include_is_a_problem() -> None:
    files = {
        "/a/extensions.conf": b"[from-genesys]\ninclude => agents\n#include gone.conf\n"
        b"[agents]\nexten => 5001,1,Dial(PJSIP/5001)\n",
    }
    coverage = dialplan_coverage(reader(files), "/a/extensions.conf", "from-genesys", ["5001"])
    assert coverage.routes == {"5001": ["'5001' at /a/extensions.conf:5"]}
    assert coverage.problems == ["/a/gone.conf: included but missing"]


def test_blanking_the_managed_block_keeps_every_other_byte_and_the_line_count() -> None:
    data = b"a\r\n" + BLOCK + b"b"
    blanked = without_managed_block(data, "from-genesys")
    assert blanked == b"a\r\n" + b"\n" * 5 + b"b"
    assert without_managed_block(data, "other-context") == data


def test_the_pattern_must_match_each_dn_it_should_route() -> None:
    assert pattern_misses("_5XXX", ["5001", "5002", "1003", "50011"]) == ["1003", "50011"]
    assert pattern_misses("_50XX", ["5001"]) == []


# Module plumbing ---------------------------------------------------------------------------------


def test_only_the_passwords_of_the_connection_are_hidden() -> None:
    options = connection_argument_spec()["options"]
    hidden = sorted(name for name, spec in options.items() if spec.get("no_log"))
    assert hidden == ["ansible_password", "genesys_gax_password"]
    assert options["inventory_host"]["required"] is True


def test_a_product_error_becomes_a_failure_with_reference_message_and_hint() -> None:
    error = RemediateError("no answer", reference="gax-timeout", hint="check GAX")
    assert failure(error) == {
        "failed": True,
        "msg": "gax-timeout: no answer (hint: check GAX)",
        "reference": "gax-timeout",
        "hint": "check GAX",
    }
