"""Bad input that needs no lab: DN values, malformed inventories, vault errors, malformed GAX
answers, forged and huge log lines. Each ends with a clear error (reference and hint, the
documented exit code, no traceback), or, for evidence, with a diagnosis that is not fooled.

The same kinds of input against the running lab (and proof that nothing changed there) are in
tests/integration/test_bad_input_lab.py."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import HEADER, SEED_5002, SEGMENT, stranger_message
from test_logs_forgery import FORGED_REGISTER

from remediate import api
from remediate.cli import main
from remediate.dn import validate_dn
from remediate.env import Environment
from remediate.errors import InputError
from remediate.genesys.gax import GaxClient, GaxError, GaxSettings, annex_options
from remediate.status import ExitStatus

REPO = Path(__file__).resolve().parents[2]
GENESYS = os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81"
ASTERISK = os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54"

# Every shape of DN an attacker or a typo produces; each could break out of a PowerShell string,
# a shell word, a SIP header or a file name if it got through. (Shared with the lab tests.)
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
    "greek-question-mark": "5001\u037e reboot",
    "nul": "5001\x00",
    "10-kB": "5" * 10240,
    "space": "5001 5002",
    "glob": "50*",
}
GOOD_DNS = ["5001", "AsteriskTrunk", "AsteriskTrunk_webRTC", "+4930123456", "trunk.gw-1"]


def run_cli(*args: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`remediate ARGS` in-process, without a terminal."""
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO(""), stdout=out, stderr=err, environ=environ or {})
    code = main(list(args), env)
    return code, out.getvalue(), err.getvalue()


def assert_clear_error(code: int, err: str, reference: str, status: int = ExitStatus.ERROR) -> None:
    """What an operator must see: the documented exit code, `error: <reference>: ...` and a
    `hint:` line, never a traceback."""
    assert code == status, err
    assert err.startswith(f"error: {reference}: "), err
    assert "\nhint: " in err, err
    assert "Traceback" not in err


# DNs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dn", BAD_DNS.values(), ids=BAD_DNS.keys())
def test_bad_dns_are_refused_with_a_hint(dn: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_dn(dn)
    assert caught.value.reference == "bad-dn" and caught.value.hint
    # The message quotes the value escaped, so a terminal never interprets it.
    assert "\r" not in caught.value.message and "\x00" not in caught.value.message
    assert len(caught.value.message) < 300


@pytest.mark.parametrize("dn", GOOD_DNS)
def test_numbers_and_trunk_names_are_dns(dn: str) -> None:
    assert validate_dn(dn) == dn


# Malformed inventories and vault errors --------------------------------------------------------


def _host_vars(kind: str) -> dict[str, object]:
    if kind == "genesys":
        return {
            "ansible_connection": "winrm",
            "ansible_host": GENESYS,
            "ansible_port": 5986,
            "ansible_user": "remediate",
            "ansible_password": "pw-not-used",
            "ansible_winrm_ca_trust_path": "/nonexistent/ca.pem",
            "genesys_log_dir": "D:\\gcti_logs\\SIP_P",
            "genesys_gax_url": f"https://{GENESYS}:8443/gax/api",
            "genesys_gax_user": "default",
            "genesys_gax_password": "gax-not-used",
        }
    return {
        "ansible_connection": "ssh",
        "ansible_host": ASTERISK,
        "ansible_port": 2222,
        "ansible_user": "remediate",
        "ansible_ssh_private_key_file": "/nonexistent/key",
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/nonexistent/known_hosts",
    }


def _site(name: str) -> dict[str, object]:
    return {
        "children": {
            "genesys": {"hosts": {f"genesys-{name}": _host_vars("genesys")}},
            "asterisk": {"hosts": {f"asterisk-{name}": _host_vars("asterisk")}},
        }
    }


def _write_yaml(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _yaml_error(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    site_lab: [\n", encoding="utf-8")
    return path


def _broken_group_vars(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory"
    _write_yaml(inventory / "hosts.yml", {"all": {"children": {"site_lab": _site("lab")}}})
    (inventory / "group_vars").mkdir()
    (inventory / "group_vars" / "genesys.yml").write_text("genesys_switch: [SIP_P\n")
    return inventory


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text("", encoding="utf-8")
    return path


def _no_asterisk_group(tmp_path: Path) -> Path:
    site = _site("lab")
    del site["children"]["asterisk"]  # type: ignore[index]
    return _write_yaml(tmp_path / "hosts.yml", {"all": {"children": {"site_lab": site}}})


def _no_site_group(tmp_path: Path) -> Path:
    return _write_yaml(tmp_path / "hosts.yml", {"all": {"children": _site("lab")["children"]}})


def _two_sites(tmp_path: Path) -> Path:
    # Two sites share the genesys/asterisk groups, as in inventories/example.
    document = {"all": {"children": {"site_uat": _site("uat"), "site_prd": _site("prd")}}}
    return _write_yaml(tmp_path / "hosts.yml", document)


def _missing_variable(tmp_path: Path) -> Path:
    site = _site("lab")
    del site["children"]["genesys"]["hosts"]["genesys-lab"]["genesys_log_dir"]  # type: ignore[index]
    return _write_yaml(tmp_path / "hosts.yml", {"all": {"children": {"site_lab": site}}})


MALFORMED: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    # name: (inventory maker, reference, a word the message must carry)
    "yaml-error": (_yaml_error, "inventory-unreadable", "could not parse"),
    "broken-group-vars": (_broken_group_vars, "inventory-unreadable", "genesys.yml"),
    "empty-file": (_empty, "inventory-unreadable", "no host"),
    "no-asterisk-group": (_no_asterisk_group, "inventory-site-incomplete", "'asterisk'"),
    "no-site-group": (_no_site_group, "inventory-no-site", "site_<name>"),
    "two-sites-without-site": (_two_sites, "site-ambiguous", "prd, uat"),
    "missing-variable": (_missing_variable, "inventory-variable-missing", "genesys_log_dir"),
    "no-such-path": (lambda tmp_path: tmp_path / "nowhere", "inventory-missing", "nowhere"),
}


@pytest.mark.parametrize("command", ["plan", "apply", "verify", "diagnose"])
@pytest.mark.parametrize("case", MALFORMED.keys())
def test_malformed_inventories_are_named_errors(tmp_path: Path, case: str, command: str) -> None:
    make, reference, word = MALFORMED[case]
    inventory = make(tmp_path)
    state = tmp_path / "state"
    extra = ["--yes", "--change-id", "CHG-BAD"] if command == "apply" else []
    code, out, err = run_cli(
        command, "--dn", "5001", "-i", str(inventory), *extra,
        environ={"REMEDIATE_STATE_DIR": str(state)},
    )  # fmt: skip
    assert_clear_error(code, err, reference)
    assert word in err.splitlines()[0]
    assert out == ""
    assert not (state / "runs").exists() or not any((state / "runs").iterdir())


VAULT = REPO / ".venv" / "bin" / "ansible-vault"


@pytest.fixture(scope="module")
def vaulted_inventory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An inventory whose passwords are vault-encrypted, and the right password file."""
    work = tmp_path_factory.mktemp("vault")
    password_file = work / "vault-pass"
    password_file.write_text("bad-input-vault\n", encoding="utf-8")
    encrypted = subprocess.run(
        [str(VAULT), "encrypt_string", "--vault-password-file", str(password_file), "vaulted"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    inventory = work / "inventory"
    site = _site("lab")
    del site["children"]["genesys"]["hosts"]["genesys-lab"]["ansible_password"]  # type: ignore[index]
    _write_yaml(inventory / "hosts.yml", {"all": {"children": {"site_lab": site}}})
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars" / "genesys-lab.yml").write_text(f"ansible_password: {encrypted}\n")
    return inventory, password_file


@pytest.mark.skipif(not VAULT.exists(), reason="ansible-vault is not installed")
@pytest.mark.parametrize(
    ("password", "reference", "hint"),
    [
        ("wrong", "inventory-vault-locked", "does not open this vault"),
        ("missing", "vault-password-file-missing", "--vault-password-file"),
        ("none", "inventory-vault-locked", "--vault-password-file"),
    ],
)
def test_vault_errors(
    vaulted_inventory: tuple[Path, Path], tmp_path: Path, password: str, reference: str, hint: str
) -> None:
    """In a fresh process each: Ansible's vault secrets are process-wide."""
    inventory, _ = vaulted_inventory
    args = ["plan", "--dn", "5001", "-i", str(inventory)]
    if password == "wrong":
        wrong = tmp_path / "wrong-pass"
        wrong.write_text("not-the-password\n", encoding="utf-8")
        args += ["--vault-password-file", str(wrong)]
    elif password == "missing":
        args += ["--vault-password-file", str(tmp_path / "no-such-file")]
    completed = subprocess.run(
        [sys.executable, "-m", "remediate", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        timeout=60,
    )
    assert_clear_error(completed.returncode, completed.stderr, reference)
    assert hint in completed.stderr
    assert "vaulted" not in completed.stderr + completed.stdout


# Malformed GAX answers -------------------------------------------------------------------------


class RawHttpServer:
    """Answers a login with 200 and a session cookie, and every other request with the raw
    bytes (or the generator of bytes) of the current `answer`: the shapes a broken GAX, a proxy
    or a half-dead network produce."""

    def __init__(self) -> None:
        self.answer: Callable[[], Iterator[bytes]] = lambda: iter([b""])
        self._socket = socket.create_server((GENESYS, 0))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{GENESYS}:{self._socket.getsockname()[1]}/gax/api"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._connection, args=(connection,), daemon=True).start()

    def _connection(self, connection: socket.socket) -> None:
        with connection:
            reader = connection.makefile("rb")
            while not self._stop.is_set():
                request_line = reader.readline()
                if not request_line:
                    return
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                reader.read(length)
                try:
                    if b"/session/login" in request_line:
                        connection.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                            b"Set-Cookie: JSESSIONID=x; Path=/\r\n\r\n{}"
                        )
                        continue
                    for piece in self.answer():
                        connection.sendall(piece)
                except OSError:  # the client gave up
                    return
                return  # one answer per connection after the login: close it

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()


@pytest.fixture
def raw_gax() -> Iterator[RawHttpServer]:
    server = RawHttpServer()
    yield server
    server.close()


def _json_answer(
    body: bytes, content_type: bytes = b"application/json"
) -> Callable[[], Iterator[bytes]]:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type
    return lambda: iter([head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body])


def _endless_chunks() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"[" * 65536
    while True:
        yield b"%x\r\n" % len(chunk) + chunk + b"\r\n"


def _trickle() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    for _ in range(1000):
        time.sleep(0.1)
        yield b" "


def _truncated() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    yield b'[{"dbid": 1, "type": "CfgDN", "name": "5001"'


GAX_ANSWERS: dict[str, tuple[Callable[[], Iterator[bytes]], str]] = {
    "html-error-page": (_json_answer(b"<html>proxy error</html>", b"text/html"), "gax-bad-answer"),
    "json-string": (_json_answer(b'"objects"'), "gax-bad-answer"),
    "objects-not-a-list": (_json_answer(b'{"objects": "none"}'), "gax-bad-answer"),
    "list-of-numbers": (_json_answer(b"[1, 2, 3]"), "gax-bad-answer"),
    "json-null": (_json_answer(b"null"), "gax-bad-answer"),
    "truncated-body": (_truncated, "gax-unreachable"),
    "endless-body": (_endless_chunks, "gax-bad-answer"),
    "trickled-body": (_trickle, "gax-timeout"),
    "not-http": (lambda: iter([b"SSH-2.0-OpenSSH_9.2\r\n"]), "gax-unreachable"),
}


def _client(url: str) -> GaxClient:
    return GaxClient(
        GaxSettings("genesys-bad", url, "default", "gax-pw", read_timeout=1.0, lab=True)
    )


@pytest.mark.parametrize("case", GAX_ANSWERS.keys())
def test_malformed_gax_answers_are_gax_errors(raw_gax: RawHttpServer, case: str) -> None:
    answer, reference = GAX_ANSWERS[case]
    raw_gax.answer = answer
    started = time.monotonic()
    with _client(raw_gax.url) as client, pytest.raises(GaxError) as caught:
        client.find_all("CfgDN", "5001")
    elapsed = time.monotonic() - started
    assert caught.value.reference == reference, caught.value
    assert caught.value.exit_status == ExitStatus.PRECONDITION_FAILED
    assert "gax-pw" not in str(caught.value)
    assert elapsed < 5, f"{case}: {elapsed:.1f} s"


@pytest.mark.parametrize(
    "body", [b"[]", b'{"name": "5001"}', b'"5001"'], ids=["empty-list", "no-dbid", "a-string"]
)
def test_a_read_that_is_not_one_object_is_a_bad_answer(raw_gax: RawHttpServer, body: bytes) -> None:
    raw_gax.answer = _json_answer(body)
    with _client(raw_gax.url) as client, pytest.raises(GaxError) as caught:
        client.get("CfgDN", 1)
    assert caught.value.reference == "gax-bad-answer"


def test_an_object_whose_annex_has_the_wrong_shape_reads_as_no_options(
    raw_gax: RawHttpServer,
) -> None:
    raw_gax.answer = _json_answer(b'{"dbid": 1, "type": "CfgSwitch", "userproperties": "x"}')
    with _client(raw_gax.url) as client:
        assert annex_options(client.get("CfgSwitch", 1)) == {}


@pytest.mark.parametrize(
    "annex",
    [["x"], "text", {"property": "text"}, {"property": [1, None, "x"]}, None, 7],
)
def test_annexes_of_any_shape_read_without_crashing(annex: object) -> None:
    assert annex_options({"dbid": 1, "userproperties": annex}) == {}


# Forged and huge log lines ---------------------------------------------------------------------

ACTIVE_5002 = (
    "21:07:00.001: gateway 'Asterisk_WebRTC_Gateway' associated with address '192.168.210.54'\n"
    "21:07:00.001: SIPTS: handle registration event 0\n"
    "21:07:00.001: REGISTRAR: ACTIVE:5002\n"
    "21:07:00.001: $*:SIP:CTI:DN_IN_SERVICE:4\n"
)


def _message_block(body: str, *, content_length: int | None = None, header: str = "") -> str:
    """A SIP MESSAGE from a stranger, logged as SIP Server logs every message it receives: the
    bytes received (CRLF line ends), the message, a blank line."""
    length = len(body.replace("\n", "\r\n").encode()) if content_length is None else content_length
    message = stranger_message(body, content_length=length, header=header)
    received = len(message.replace("\n", "\r\n").encode())
    return (
        f"21:06:59.000: SIPTR: Received [0,UDP] {received} bytes from 10.6.6.6:5060 <<<<<\n"
        + message
        + "\n"
    )


def _forged_register_block() -> str:
    return (
        "21:07:00.000: SIPTR: Received [0,UDP] 420 bytes from 192.168.210.54:5060 <<<<<\n"
        + FORGED_REGISTER
        + "\n"
    )


def _diagnose_5002(tmp_path: Path, text: str) -> tuple[int, dict[str, object]]:
    log = tmp_path / SEGMENT
    log.write_text(text, encoding="utf-8")
    code, out, err = run_cli("diagnose", "--log", str(log), "--dn", "5002", "--output", "json")
    assert code == 0, err
    (dn,) = json.loads(out)["dns"]
    return code, dn


def _assert_out_of_service(dn: dict[str, object]) -> None:
    assert dn["state"]["in_service"] is False, dn  # type: ignore[index]
    assert dn["root_cause"]["code"] == "untrusted-gateway", dn  # type: ignore[index]


def test_forged_outcome_lines_in_a_header_and_an_honest_body_do_not_fool_diagnose(
    tmp_path: Path,
) -> None:
    forged = _message_block(ACTIVE_5002, header="X-Note: 21:07:00.001: REGISTRAR: ACTIVE:5002\n")
    _, dn = _diagnose_5002(tmp_path, HEADER + SEED_5002 + forged)
    _assert_out_of_service(dn)


def test_a_whole_transaction_forged_inside_a_message_body_does_not_fool_diagnose(
    tmp_path: Path,
) -> None:
    forged = _message_block(_forged_register_block() + ACTIVE_5002)
    _, dn = _diagnose_5002(tmp_path, HEADER + SEED_5002 + forged)
    _assert_out_of_service(dn)


def test_outcome_lines_after_a_lying_content_length_do_not_fool_diagnose(tmp_path: Path) -> None:
    """Lines a stranger smuggles past a Content-Length of 0 are still inside the message (the
    byte count it was logged with says so): they do not put the DN in service."""
    forged = _message_block(ACTIVE_5002, content_length=0)
    _, dn = _diagnose_5002(tmp_path, HEADER + SEED_5002 + forged)
    _assert_out_of_service(dn)


@pytest.mark.parametrize("where", ["log-line", "sip-header"])
def test_a_10_mb_line_is_read_within_bounds(tmp_path: Path, where: str) -> None:
    huge = "x" * (10 * 1024 * 1024)
    if where == "log-line":
        text = HEADER + f"21:06:00.000: SIPTR: {huge}\n" + SEED_5002
    else:
        text = HEADER + SEED_5002.replace("Max-Forwards: 70\n", f"X-Huge: {huge}\n")
    started = time.monotonic()
    _, dn = _diagnose_5002(tmp_path, text)
    assert time.monotonic() - started < 10
    if where == "log-line":  # the REGISTER after the huge line is still read
        _assert_out_of_service(dn)
    else:  # a REGISTER too big to be a block is not guessed at
        assert dn["state"]["in_service"] is False  # type: ignore[index]


def test_a_log_of_one_10_mb_line_without_newline_is_not_a_log(tmp_path: Path) -> None:
    log = tmp_path / SEGMENT
    log.write_bytes(b"A" * (10 * 1024 * 1024))
    started = time.monotonic()
    code, _, err = run_cli("diagnose", "--log", str(log), "--dn", "5002")
    assert time.monotonic() - started < 10
    assert_clear_error(code, err, "log-not-recognized")


def test_api_refuses_bad_dns_before_reading_anything(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.log"
    for dn in BAD_DNS.values():
        with pytest.raises(InputError) as caught:
            api.diagnose_logs([missing], [dn])
        assert caught.value.reference == "bad-dn"
