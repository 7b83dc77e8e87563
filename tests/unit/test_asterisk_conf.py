"""pjsip.conf and extensions.conf as diagnosis reads them: real files, includes, templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediate.asterisk import conf
from remediate.errors import InputError

# A copy of ../shared/fixtures/asterisk (MIT, see its LICENSE): the deployment's real files.
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "asterisk"


def _reader(files: dict[str, str]) -> conf.Reader:
    def read(path: str) -> bytes:
        if path not in files:
            raise FileNotFoundError(path)
        return files[path].encode()

    return read


def _fixture_reader(path: str) -> bytes:
    local = FIXTURES / Path(path).name
    if not local.exists():
        raise FileNotFoundError(path)
    return local.read_bytes()


def test_real_pjsip_conf_registrations_templates_and_repeated_names() -> None:
    config = conf.parse_config("/etc/asterisk/pjsip.conf", _fixture_reader)
    registrations = {r.name: r for r in conf.pjsip_objects(config, "registration")}
    # The commented-out [genesys_reg_*] blocks are not registrations; the live ones are.
    assert "genesys_reg_5001" in registrations
    reg = registrations["genesys_reg_5001"]
    assert reg.get("transport") == "transport-udp-dn"  # inline "; comment" stripped
    assert reg.get("client_uri") == "sip:5001@192.168.210.81"
    assert str(reg.location).startswith("/etc/asterisk/pjsip.conf:")
    line = int(str(reg.location).rsplit(":", 1)[1])
    assert (FIXTURES / "pjsip.conf").read_text().splitlines()[line - 1] == "[genesys_reg_5001]"
    # One name, two types.
    types = {o.type for o in conf.pjsip_objects(config) if o.name == "genesys_sip_server"}
    assert types == {"endpoint", "aor"}
    # Templates: [5001](agent_dn) inherits the endpoint type and context.
    endpoint_5001 = [o for o in conf.pjsip_objects(config, "endpoint") if o.name == "5001"]
    assert endpoint_5001[0].get("context") == "genesys-agent"
    assert all(o.name != "agent_dn" for o in conf.pjsip_objects(config))


def test_retry_settings_that_keep_a_registration_down() -> None:
    config = conf.parse_config("/etc/asterisk/pjsip.conf", _fixture_reader)
    reg = next(
        r for r in conf.pjsip_objects(config, "registration") if r.name == "genesys_reg_5002"
    )
    problems = {p.setting: p for p in conf.registration_retry_problems(reg)}
    assert set(problems) == {"max_retries", "retry_interval", "forbidden_retry_interval"}
    assert problems["max_retries"].value == "0"
    healthy = conf.PjsipObject(
        "r",
        "registration",
        {"type": "registration", "forbidden_retry_interval": "30"},
        conf.Location("f", 1),
    )
    assert conf.registration_retry_problems(healthy) == []


def test_real_extensions_conf_include_and_merged_context() -> None:
    config = conf.parse_config("/etc/asterisk/extensions.conf", _fixture_reader)
    assert config.files == [
        "/etc/asterisk/extensions.conf",
        "/etc/asterisk/extensions-sip-endpoint.conf",
    ]
    matches = list(conf.matching_lines(config, "from-genesys", "5002"))
    assert matches[0].pattern == "_5XXX" and matches[0].priority == "1"
    assert matches[0].location.file.endswith("extensions-sip-endpoint.conf")
    assert {m.pattern for m in matches} == {"_5XXX", "_X."}
    assert not list(conf.matching_lines(config, "no-such-context", "12"))
    # `_X.` needs at least two characters: "7" has no route, "12" has three priorities.
    assert not list(conf.matching_lines(config, "webrtc-gateway-stasis", "7"))
    assert len(list(conf.matching_lines(config, "webrtc-gateway-stasis", "12"))) == 3


def test_contexts_merge_across_files_and_includes_follow() -> None:
    files = {
        "/e/extensions.conf": "[from-genesys]\nexten => 1003,1,Dial(PJSIP/1003)\n"
        '#include "more.conf"\n[from-genesys]\ninclude => agents\n',
        "/e/more.conf": "[agents]\nexten => _50XX,1,NoOp()\n same => n,Hangup()\n",
    }
    config = conf.parse_config("/e/extensions.conf", _reader(files))
    lines = list(conf.matching_lines(config, "from-genesys", "5002"))
    assert [(line.context, line.pattern, line.priority) for line in lines] == [
        ("agents", "_50XX", "1"),
        ("agents", "_50XX", "n"),
    ]
    assert lines[1].location == conf.Location("/e/more.conf", 3)


def test_missing_include_is_noted_and_missing_main_file_refused() -> None:
    config = conf.parse_config(
        "/e/x.conf", _reader({"/e/x.conf": "#include gone.conf\n#tryinclude no.conf\n"})
    )
    assert config.problems == ["/e/gone.conf: included but missing"]
    with pytest.raises(InputError, match="does not exist"):
        conf.parse_config("/e/none.conf", _reader({}))


def test_include_loop_does_not_hang() -> None:
    files = {"/e/a.conf": "#include b.conf\n[a]\nx=1\n", "/e/b.conf": "#include a.conf\n"}
    config = conf.parse_config("/e/a.conf", _reader(files))
    assert config.files == ["/e/a.conf", "/e/b.conf"]
    assert config.named("a")[0].own("x") == "1"


def test_comments_escapes_and_block_comments() -> None:
    text = "[s]\na=1 ; c\nb=x\\;y\n;-- block\n[hidden]\n--;\nc => 3\n"
    config = conf.parse_config("/f", _reader({"/f": text}))
    (section,) = config.sections
    assert [(s.key, s.value, s.location.line) for s in section.settings] == [
        ("a", "1", 2),
        ("b", "x;y", 3),
        ("c", "3", 7),
    ]


@pytest.mark.parametrize(
    ("pattern", "number", "expected"),
    [
        ("_5XXX", "5002", True),
        ("_5XXX", "50021", False),
        ("_X.", "1", False),
        ("_X.", "12", True),
        ("_8[1-9]XXX", "81002", True),
        ("_8[1-9]XXX", "80002", False),
        ("_NXX", "199", False),
        ("1003", "1003", True),
        ("_50!", "50", True),
    ],
)
def test_extension_patterns(pattern: str, number: str, expected: bool) -> None:
    assert conf.extension_matches(pattern, number) is expected


def test_uri_parts() -> None:
    assert conf.uri_host("sip:5001@127.0.0.81:5060;transport=udp") == "127.0.0.81"
    assert conf.uri_host("sip:127.0.0.81") == "127.0.0.81"
    assert conf.uri_user("sip:5001@127.0.0.81") == "5001"
