"""The fixes as data (what each touches, its playbook, restart, proof) and the change sets built
from what Ansible modules return."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_engine_support import SWITCH_BEFORE, TRUSTED, load

from remediate.ansible import TaskChange
from remediate.errors import InputError
from remediate.fixes import FileTarget, ObjectTarget, build_fix
from remediate.fixes.changes import Change, UnmappedChangeError, change_set, render_changes

EXTENSIONS = "/etc/asterisk/extensions.conf"


def test_each_fix_targets_what_its_playbook_changes(tmp_path: Path) -> None:
    site = load(tmp_path)
    trusted = build_fix("trusted-gateway", site)
    assert trusted.playbook == "trusted_gateway.yml" and trusted.needs_restart
    assert trusted.targets == (ObjectTarget("CfgSwitch", "SIP_P"),)
    assert "127.0.9.54" in trusted.summary and "[sip] trusted-gateways" in trusted.summary
    trunk = build_fix("trunk", site)
    assert trunk.targets == (ObjectTarget("CfgDN", "AsteriskTrunk_webRTC"), FileTarget(EXTENSIONS))
    assert trunk.needs_restart and trunk.proves_route
    dialplan = build_fix("dialplan", site)
    assert dialplan.targets == (FileTarget(EXTENSIONS),)
    assert not dialplan.needs_restart and dialplan.proves_route
    with pytest.raises(InputError, match="no fix 'reboot'"):
        build_fix("reboot", site)


def test_the_trunk_dn_method_targets_the_trunk(tmp_path: Path) -> None:
    site = load(tmp_path, genesys_trusted_gateway_method="trunk-dn")
    fix = build_fix("trusted-gateway", site)
    assert fix.targets == (ObjectTarget("CfgDN", "AsteriskTrunk_webRTC"),)
    assert fix.extravars == {"genesys_trusted_gateway_method": "trunk-dn"}


def _task(before: object, after: object, *diffs: dict[str, object], host: str = "h") -> TaskChange:
    return TaskChange(host, "task", "module", tuple(diffs), before, after, {})


def test_an_annex_change() -> None:
    after = {
        **SWITCH_BEFORE,
        "userproperties": {"property": [*SWITCH_BEFORE["userproperties"]["property"], *TRUSTED]},
    }  # type: ignore[index]
    (change,) = change_set([_task(SWITCH_BEFORE, after, {"before": "x", "after": "y"})])
    assert change == Change(
        "h",
        "object",
        "CfgSwitch/SIP_P",
        "update",
        ("+ [sip] trusted-gateways = 127.0.9.54", "+ [sip] gateway-ip-auth-mode = enabled"),
    )
    rendered = "\n".join(render_changes([change]))
    assert "~ CfgSwitch/SIP_P  (configuration object on h, update)" in rendered


def test_a_created_object_ignores_the_dbid_the_server_gives() -> None:
    planned = {
        "type": "CfgDN",
        "name": "T",
        "dntype": "CFGTrunk",
        "userproperties": {
            "property": [{"section": "TServer", "key": "contact", "value": "127.0.9.54:5060"}]
        },
    }
    created = {**planned, "dbid": 1000}
    (plan,) = change_set([_task(None, planned)])
    (applied,) = change_set([_task(None, created)])
    assert plan == applied and plan.action == "create"
    assert plan.lines == (
        "+ dntype: CFGTrunk",
        "+ name: T",
        "+ type: CfgDN",
        "+ [TServer] contact = 127.0.9.54:5060",
    )
    (deleted,) = change_set([_task(created, None)])
    assert deleted.action == "delete" and "- [TServer] contact = 127.0.9.54:5060" in deleted.lines
    (changed,) = change_set([_task({**created, "state": "A"}, {**created, "state": "B"})])
    assert changed.lines == ("~ state: A -> B",)


def test_a_file_change_from_blockinfile() -> None:
    before = "[general]\nstatic=yes\n"
    after = before + "; BEGIN remediate\n[from-genesys]\n; END remediate\n"
    diffs = (
        {
            "before": before,
            "after": after,
            "before_header": f"{EXTENSIONS} (content)",
            "after_header": f"{EXTENSIONS} (content)",
        },
        {"before_header": f"{EXTENSIONS} (file attributes)", "after_header": "x"},
        {"before": {"mode": "0644"}, "after": {"mode": "0600"}},
    )
    (change,) = change_set([_task(None, None, *diffs)])
    assert change.kind == "file" and change.target == EXTENSIONS
    assert change.lines == (
        "@@ -2 +2,4 @@",
        " static=yes",
        "+; BEGIN remediate",
        "+[from-genesys]",
        "+; END remediate",
    )


def test_diffs_of_one_target_merge_and_no_op_diffs_vanish() -> None:
    first = {"before": "a\n", "after": "b\n", "before_header": EXTENSIONS}
    second = {"before": "b\n", "after": "c\n", "before_header": EXTENSIONS}
    (change,) = change_set([_task(None, None, first), _task(None, None, second)])
    assert change.lines == ("@@ -1 +1 @@", "-a", "+c")
    back = {"before": "c\n", "after": "a\n", "before_header": EXTENSIONS}
    assert change_set([_task(None, None, first), _task(None, None, second, back)]) == []
    assert change_set([_task(SWITCH_BEFORE, SWITCH_BEFORE)]) == []
    assert Change.from_json(change.to_json()) == change


def test_a_diff_that_names_nothing_is_refused() -> None:
    with pytest.raises(UnmappedChangeError, match="names no configuration object and no file"):
        change_set([_task(None, None, {"before": "a", "after": "b", "before_header": "somewhere"})])
