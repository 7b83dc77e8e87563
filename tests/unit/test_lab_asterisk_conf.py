"""The lab Asterisk's own configuration reader: the deployment's real files, and edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediate.lab.asterisk.conf import ConfigError, read_config
from remediate.lab.asterisk.dialplan import (
    build_dialplan,
    extension_matches,
    extension_sort_key,
    load_dialplan,
    show_dialplan,
)
from remediate.lab.asterisk.pjsip import load_pjsip

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "asterisk"


def test_real_pjsip_conf_types_reused_names_templates_and_inline_comments() -> None:
    pjsip = load_pjsip(FIXTURES)
    assert pjsip.user_agent == "Asterisk-WebRTC-Client"
    # One section name, two objects: an endpoint and an AOR.
    assert pjsip.endpoints["genesys_sip_server"].option("context") == "from-genesys"
    assert pjsip.aors["genesys_sip_server"].contacts == ("sip:192.168.210.81:5060",)
    assert pjsip.identifies["genesys-identify"].matches == ("192.168.210.81",)
    # Commented-out registrations do not exist; the live ones do, inline comments stripped.
    assert sorted(pjsip.registrations) == [
        "genesys_reg_1002",
        "genesys_reg_1003",
        *(f"genesys_reg_500{n}" for n in range(1, 6)),
    ]
    reg = pjsip.registrations["genesys_reg_1002"]
    assert reg.transport == "transport-udp-dn"
    assert (reg.expiration, reg.retry_interval, reg.max_retries) == (3600, 0, 0)
    assert reg.auth_rejection_permanent is False
    assert reg.outbound_auth == "genesys_auth"
    # Templates are not objects; their options are inherited, the section's own ones win.
    assert "agent_dn" not in pjsip.endpoints
    agent = pjsip.endpoints["5001"]
    assert agent.option("webrtc") == "yes"
    assert agent.option("callerid") == '"Agent 5001" <5001>'
    assert pjsip.aors["1002"].max_contacts == 1
    assert pjsip.aors["1002"].qualify_frequency == 30
    assert pjsip.transports["transport-udp"].bind == "0.0.0.0:5060"


def test_real_extensions_conf_with_include_shows_from_genesys_as_asterisk_would() -> None:
    dialplan = load_dialplan(FIXTURES)
    assert set(dialplan.contexts) == {"webrtc-gateway-stasis", "genesys-agent", "from-genesys"}
    output, ok = show_dialplan(dialplan, "5001@from-genesys")
    assert ok
    lines = output.splitlines()
    assert lines[0] == "[ Context 'from-genesys' created by 'pbx_config' ]"
    assert lines[1] == (
        "  '_5XXX' =>        1. NoOp(Call from Genesys to Agent DN ${EXTEN}) "
        "[extensions-sip-endpoint.conf:95]"
    )
    # Comment lines between `same =>` lines do not count; priorities keep their file lines.
    assert lines[7] == (
        "                    7. Hangup()                                   "
        "[extensions-sip-endpoint.conf:103]"
    )
    # _X. matches 5001 too and sorts after the more specific _5XXX.
    assert lines[8] == (
        "  '_X.' =>          1. NoOp(Call from Genesys to ${EXTEN})        "
        "[extensions-sip-endpoint.conf:117]"
    )
    assert lines[-1] == "-= 2 extensions (12 priorities) in 1 context. =-"
    missing, ok = show_dialplan(dialplan, "nosuch")
    assert (missing, ok) == ("There is no existence of 'nosuch' context\n", False)


def test_contexts_merge_across_includes_and_priorities_follow_pbx_config(tmp_path: Path) -> None:
    (tmp_path / "extensions.conf").write_text(
        "[general]\nstatic=yes\n\n[from-genesys]\nexten = 1002,1,NoOp(first)\n#include more.conf\n",
        encoding="utf-8",
    )
    (tmp_path / "more.conf").write_text(
        "[from-genesys] ; again\n"
        "exten => _5XXX,1,NoOp(a\\;b)\n"
        " same => n(dial),Dial(PJSIP/${EXTEN},30)\n"
        " same => 5,Hangup\n"
        "exten => _5XXX,n,Verbose(after 5)\n"
        "exten => 5001,hint,PJSIP/5001\n",
        encoding="utf-8",
    )
    dialplan = load_dialplan(tmp_path)
    output, ok = show_dialplan(dialplan, "from-genesys")
    assert ok
    assert output.splitlines() == [
        "[ Context 'from-genesys' created by 'pbx_config' ]",
        "  '1002' =>         1. NoOp(first)                                [extensions.conf:5]",
        "  '5001' =>         hint: PJSIP/5001                              [more.conf:6]",
        "  '_5XXX' =>        1. NoOp(a;b)                                  [more.conf:2]",
        "     [dial]         2. Dial(PJSIP/${EXTEN},30)                    [more.conf:3]",
        "                    5. Hangup()                                   [more.conf:4]",
        "                    6. Verbose(after 5)                           [more.conf:5]",
        "",
        "-= 3 extensions (6 priorities) in 1 context. =-",
    ]


def test_missing_closing_bracket_rejects_the_file_with_asterisks_words(tmp_path: Path) -> None:
    (tmp_path / "extensions.conf").write_text(
        "[general]\nstatic=yes\n\n[from-genesys\nexten => _5XXX,1,NoOp()\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as raised:
        read_config(tmp_path, "extensions.conf")
    assert str(raised.value) == (
        f"parse error: no closing ']', line 4 of {tmp_path / 'extensions.conf'}"
    )
    assert raised.value.log_level == "WARNING"


def test_missing_include_and_unknown_template_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("[x]\n#include nothere.conf\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="was listed as a #include but it does not exist"):
        read_config(tmp_path, "a.conf")
    (tmp_path / "b.conf").write_text("#tryinclude nothere.conf\n[y](nosuch)\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="Inheritance requested, but category 'nosuch'"):
        read_config(tmp_path, "b.conf")


def test_category_addition_extends_the_existing_section(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text("[a]\nx=1\n[b]\ny=2\n[a](+)\nz=3\n", encoding="utf-8")
    config = read_config(tmp_path, "x.conf")
    assert [s.name for s in config.sections] == ["a", "b"]
    assert [(o.key, o.value) for o in config.named("a")[0].options] == [("x", "1"), ("z", "3")]


def test_block_comments_and_template_with_parent(tmp_path: Path) -> None:
    (tmp_path / "pjsip.conf").write_text(
        "[base](!)\ntype=registration\nexpiration=120\n;-- a block\n"
        "max_retries=99 --;\n[reg](!,base)\n[r1](reg)\nserver_uri=sip:h\nclient_uri=sip:u@h\n",
        encoding="utf-8",
    )
    pjsip = load_pjsip(tmp_path)
    assert list(pjsip.registrations) == ["r1"]
    assert pjsip.registrations["r1"].expiration == 120
    assert pjsip.registrations["r1"].max_retries == 10  # the block comment hid 99


@pytest.mark.parametrize(
    ("pattern", "number", "matches"),
    [
        ("_5XXX", "5001", True),
        ("_5XXX", "50011", False),
        ("_5XXX", "1003", False),
        ("_8[1-9]XXX", "81002", True),
        ("_8[1-9]XXX", "80002", False),
        ("_NXX", "200", True),
        ("_NXX", "100", False),
        ("_ZXX", "100", True),
        ("_ZXX", "000", False),
        ("_X.", "5001", True),
        ("_X.", "5", False),
        ("_X!", "5", True),
        ("_[15]XXX", "1003", True),
        ("_[]X", "15", False),
        ("_x.", "42", True),
        ("5001", "5001", True),
        ("5001", "5002", False),
    ],
)
def test_pattern_matching_as_asterisk(pattern: str, number: str, matches: bool) -> None:
    assert extension_matches(pattern, number) is matches


def test_extension_order_is_asterisks() -> None:
    names = ["_X.", "_5XXX", "h", "_1XXX", "_[15]XXX", "1002", "_NXXX"]
    assert sorted(names, key=extension_sort_key) == [
        "1002",
        "h",
        "_1XXX",
        "_5XXX",
        "_[15]XXX",
        "_NXXX",
        "_X.",
    ]


def test_same_without_exten_is_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "extensions.conf").write_text(
        "[c]\n same => n,NoOp()\nexten => s,1,Answer\n", encoding="utf-8"
    )
    dialplan = build_dialplan(read_config(tmp_path, "extensions.conf"))
    assert [e.name for e in dialplan.contexts["c"].ordered_extensions()] == ["s"]
    assert dialplan.warnings and "same" in dialplan.warnings[0]
