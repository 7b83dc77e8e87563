"""Property-based tests (hypothesis) for what earlier tests check only on examples:

- the Asterisk config editor: the dialplan fix writes its block with Ansible's own blockinfile
  module (roles/asterisk/tasks/dialplan.yml), run here in-process with the role's very marker and
  block, on any extensions.conf: every line outside the managed block is kept byte for byte, the
  block is there once, a second run changes nothing, and the product's coverage logic
  (remediate.changes) reads the same routes before and after;
- the PowerShell the product builds around values from the inventory and the command line: any
  value the product accepts stays one string token through the lab's PowerShell tokenizer;
- the lab's SIP messages: any message it builds parses back to the same start line, headers and
  body; a response built for any parsed request carries its dialog headers.

(Quoting of arbitrary text and random bytes to the SIP parser are in test_powershell.py and
test_lab_sip.py.)"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from ansible.module_utils import basic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remediate.changes import dialplan_coverage, managed_markers, without_managed_block
from remediate.dn import validate_dn
from remediate.errors import InputError
from remediate.genesys import powershell as ps
from remediate.lab.sip import build_request, build_response, parse_message
from remediate.lab.winrm import pslang
from remediate.lab.winrm.powershell import dotnet_substitution

REPO = Path(__file__).resolve().parents[2]
CONTEXT = "from-genesys"
PATTERN = "_5XXX"
DNS = ["5001", "5002"]


# The Asterisk config editor ---------------------------------------------------------------------


def _role_blockinfile_arguments(path: Path) -> dict[str, Any]:
    """The blockinfile task of the dialplan fix, its Jinja rendered with the role's defaults."""
    tasks = yaml.safe_load((REPO / "roles/asterisk/tasks/dialplan.yml").read_text("utf-8"))
    (task,) = [task for task in tasks if "ansible.builtin.blockinfile" in task]
    arguments = dict(task["ansible.builtin.blockinfile"])
    variables = {
        "asterisk_genesys_context": CONTEXT,
        "asterisk_genesys_pattern": PATTERN,
        "asterisk_extensions_conf": str(path),
    }
    rendered = {
        key: jinja2.Template(value, keep_trailing_newline=True).render(variables)
        if isinstance(value, str)
        else value
        for key, value in arguments.items()
    }
    rendered.pop("backup", None)  # a backup file beside it is not under test here
    return rendered


def _blockinfile(arguments: dict[str, Any]) -> dict[str, Any]:
    """Ansible's blockinfile module, run in-process as Ansible's own unit tests run modules."""
    from ansible.modules import blockinfile

    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": arguments}).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        blockinfile.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    assert not result.get("failed"), result
    return result


BEGIN, END = (marker.encode() for marker in managed_markers(CONTEXT))
ENDINGS = st.sampled_from([b"\n", b"\r\n"])
LINE = st.one_of(
    st.sampled_from(
        [
            b"",
            b"[general]",
            b"[from-genesys]",
            b"[from-genesys](+)",
            b"exten => _5XXX,1,NoOp()",
            b"exten => 5001,1,Dial(PJSIP/5001)",
            b" same => n,Hangup()",
            b"#include extensions_custom.conf",
            b"; BEGIN remediate managed: other-context",
            b"; END remediate managed: other-context",
            b"; BEGIN remediate managed: from-genesys ",  # not the marker: a trailing space
            b";BEGIN remediate managed: from-genesys",
            b"/* a block comment",
            b"*/",
            "exten => _X.,1,Playback(caf\u00e9)".encode(),
            b"\t\t",
        ]
    ),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
        max_size=40,
    ).map(lambda text: text.encode()),
)


@st.composite
def extensions_conf(draw: st.DrawFn) -> bytes:
    """Any extensions.conf: arbitrary lines and line ends, perhaps no newline at the end, perhaps
    an earlier managed block of this context (stale content) somewhere in the middle."""
    lines = [draw(LINE) + draw(ENDINGS) for _ in range(draw(st.integers(0, 12)))]
    if draw(st.booleans()):
        stale = [BEGIN + b"\n", b"[from-genesys]\n", b"exten => 9,1,NoOp(old)\n", END + b"\n"]
        at = draw(st.integers(0, len(lines)))
        lines[at:at] = stale
    data = b"".join(lines)
    # No newline at the end, except after an END marker: blockinfile, which wrote the marker
    # with its newline, does not recognise it without one (it would add a second block).
    if data and not data.rstrip(b"\r\n").endswith(END) and draw(st.booleans()):
        data = data.rstrip(b"\r\n")
    return data


def _outside_block(data: bytes) -> list[bytes]:
    """The lines (with their ends) outside this context's managed block, markers excluded."""
    out, inside = [], False
    for line in data.splitlines(keepends=True):
        text = line.rstrip(b"\r\n")
        if text == BEGIN:
            inside = True
        elif text == END and inside:
            inside = False
        elif not inside:
            out.append(line)
    return out


def _coverage(data: bytes) -> tuple[dict[str, list[str]], list[str]]:
    files = {"/etc/asterisk/extensions.conf": data}

    def read(name: str) -> bytes:
        if name not in files:
            raise FileNotFoundError(name)
        return files[name]

    coverage = dialplan_coverage(read, "/etc/asterisk/extensions.conf", CONTEXT, DNS)
    routes = {
        dn: [label.split(" at ")[0] for label in found] for dn, found in coverage.routes.items()
    }
    # Problems name file:line; line numbers after the block move when a stale block changes size.
    return routes, [re.sub(r":\d+:", ":", problem) for problem in coverage.problems]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(original=extensions_conf())
def test_the_dialplan_block_keeps_every_other_line(tmp_path: Path, original: bytes) -> None:
    path = tmp_path / "extensions.conf"
    path.write_bytes(original)
    arguments = _role_blockinfile_arguments(path)
    first = _blockinfile(arguments)
    after = path.read_bytes()
    # Outside the block, every line keeps its bytes; only a last line without an end gains one.
    kept, before = _outside_block(after), _outside_block(original)
    had_block = BEGIN in (line.rstrip(b"\r\n") for line in original.splitlines())
    if not had_block and before and not before[-1].endswith(b"\n"):
        before[-1] += b"\n"  # the block is appended after it
    assert kept == before
    # The block is there once, holding the role's content.
    assert after.count(BEGIN + b"\n") == 1 and after.count(END + b"\n") == 1
    block = after[after.index(BEGIN) : after.index(END)]
    assert b"[from-genesys]\nexten => _5XXX,1,NoOp(Call from Genesys to ${EXTEN})\n" in block
    # A second run changes nothing: the fix is idempotent.
    second = _blockinfile(arguments)
    assert second["changed"] is False and path.read_bytes() == after
    assert first["changed"] is (after != original)
    # The product's coverage logic never counts its own block: the same routes before and after.
    assert _coverage(after) == _coverage(original)
    # And blanking the block keeps the other lines in place (line numbers in messages hold).
    assert len(without_managed_block(after, CONTEXT).splitlines()) == len(after.splitlines())


# PowerShell around accepted values -----------------------------------------------------------

DN_TEXT = st.from_regex(r"\+?[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
WINDOWS_DIR = st.from_regex(r"[A-Za-z]:\\[A-Za-z0-9_.\- \\()]{0,40}", fullmatch=True)
NAME = st.from_regex(r"[A-Za-z0-9_.+\-]{1,30}", fullmatch=True)


def _string_tokens(script: str) -> list[str]:
    return [token.text for token in pslang.tokenize(script) if token.kind == "string"]


def _register_block(dn: str) -> str:
    message = (
        "REGISTER sip:127.0.0.81:5060 SIP/2.0\r\n"
        f"To: <sip:{dn}@127.0.0.81>\r\n"
        "CSeq: 7 REGISTER\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    )
    marker = (
        f"13:55:31.501: SIPTR: Received [0,UDP] {len(message)} bytes from 127.0.0.54:5060 <<<<<"
    )
    return f"{marker}\r\n{message}"


@given(dns=st.lists(DN_TEXT, min_size=1, max_size=3, unique=True), other=DN_TEXT)
def test_the_host_side_log_filter_selects_exactly_the_dns_blocks(
    dns: list[str], other: str
) -> None:
    """Any DN the product accepts reaches the host's regex as a literal: the filter keeps the
    REGISTER blocks of those DNs and no other DN's, whatever characters the DNs hold."""
    for dn in dns:
        assert validate_dn(dn) == dn
    command = ps.read_log_filtered("D:\\gcti_logs\\SIP_P", "SIP_P-001.log", ["REGISTRAR"], dns)
    strings = _string_tokens(command.script)
    _, regex, replacement = strings
    pattern = re.compile(regex)
    keep = dotnet_substitution(pattern, replacement)
    for dn in [*dns, other, dns[0] + "0", "x" + dns[0]]:
        block = _register_block(dn)
        selected = block in pattern.sub(keep, "Header: x\r\n\r\n" + block)
        assert selected is (dn in dns), (dn, dns)


@given(directory=WINDOWS_DIR, name=NAME)
def test_any_accepted_log_location_stays_one_string_token(directory: str, name: str) -> None:
    try:
        command = ps.read_log_lines(directory, f"{name}.log", 1, 100)
    except InputError:
        return  # refused before anything is sent: acceptable, never a broken script
    (path,) = _string_tokens(command.script)
    assert path == f"{directory.rstrip(chr(92))}\\{name}.log"


@given(service=NAME)
def test_any_accepted_service_name_stays_one_string_token(service: str) -> None:
    try:
        command = ps.restart_service(service, 30, 60)
    except InputError:
        return
    assert service in _string_tokens(command.script)


# The lab's SIP messages -----------------------------------------------------------------------

TOKEN = st.from_regex(r"[A-Za-z0-9.!%*_+`'~-]{1,12}", fullmatch=True)
VALUE = (
    st.text(
        st.characters(
            blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n\x85\u2028\u2029"
        ),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(bool)
)
EXTRA_HEADERS = st.lists(
    st.tuples(TOKEN.filter(lambda name: name.lower() not in {"content-length", "l"}), VALUE),
    max_size=6,
)


@given(
    method=st.sampled_from(["REGISTER", "OPTIONS", "INVITE", "NOTIFY", "MESSAGE"]),
    user=st.from_regex(r"[0-9]{1,6}", fullmatch=True),
    extra=EXTRA_HEADERS,
    body=st.binary(max_size=200),
    cseq=st.integers(0, 2**31 - 1),
)
def test_any_built_request_parses_back(
    method: str, user: str, extra: list[tuple[str, str]], body: bytes, cseq: int
) -> None:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.54:5060;rport;branch=z9hG4bKprop"),
        ("From", f"<sip:{user}@127.0.0.81>;tag=p1"),
        ("To", f"<sip:{user}@127.0.0.81>"),
        ("Call-ID", f"prop-{user}@127.0.0.54"),
        ("CSeq", f"{cseq} {method}"),
        *extra,
    ]
    data = build_request(method, f"sip:{user}@127.0.0.81:5060", headers, body)
    message = parse_message(data)
    assert message.start_line == f"{method} sip:{user}@127.0.0.81:5060 SIP/2.0"
    assert message.headers == [*headers, ("Content-Length", str(len(body)))]
    assert message.body == body
    assert parse_message(message.to_bytes()) == message
    response = parse_message(build_response(message, 200, "OK", to_tag="t"))
    for name in ("Call-ID", "CSeq", "From", "Via"):
        assert response.header(name) == message.header(name)
    assert response.header("To") == f"<sip:{user}@127.0.0.81>;tag=t"


@pytest.mark.parametrize("ending", [b"\r\n", b"\n"])
def test_a_built_request_survives_any_line_ending(ending: bytes) -> None:
    data = build_request(
        "REGISTER",
        "sip:127.0.0.81",
        [
            ("Via", "SIP/2.0/UDP 127.0.0.54:5060;branch=z9hG4bKx"),
            ("From", "<sip:5001@127.0.0.81>;tag=a"),
            ("To", "<sip:5001@127.0.0.81>"),
            ("Call-ID", "x@127.0.0.54"),
            ("CSeq", "1 REGISTER"),
        ],
    )
    assert parse_message(data.replace(b"\r\n", ending)).header("Call-ID") == "x@127.0.0.54"
