"""`remediate diagnose` as an operator runs it: output, exit statuses, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import HEADER, SEED_1003, SEED_5002

from remediate.cli import main
from remediate.env import Environment
from remediate.errors import InputError
from remediate.status import ExitStatus


def run(*argv: str) -> tuple[int, str, str]:
    env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    status = main(list(argv), env=env)
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    return status, env.stdout.getvalue(), env.stderr.getvalue()


@pytest.fixture
def seed_log(write_log) -> Path:  # type: ignore[no-untyped-def]
    return write_log(HEADER + SEED_1003 + SEED_5002)  # type: ignore[no-any-return]


def test_text_diagnosis_with_comparison(seed_log: Path) -> None:
    status, out, err = run("diagnose", "--log", str(seed_log), "--dn", "5002", "--dn", "1003")
    assert status == ExitStatus.SUCCESS
    assert err == ""
    assert "DN 5002: OUT OF SERVICE since 2026-02-02 21:06:21.750" in out
    assert "root cause  untrusted-gateway" in out
    assert "fix         trusted-gateway (alternatives: trunk)" in out
    assert f"{seed_log.name}:61  21:06:21.752: REGISTRAR: TERMINATED:5002" in out
    assert "DN 1003: IN SERVICE" in out
    comparison = out[out.index("Comparison") :]
    assert "User-Agent  Asterisk-Genesys-Gateway" in comparison
    assert "Genesys-Softphone/9.0.014.13" in comparison
    assert "event       2 (un-registration)" in comparison


def test_json_output(seed_log: Path) -> None:
    status, out, _ = run("diagnose", "--log", str(seed_log), "--dn", "5002", "--output", "json")
    assert status == ExitStatus.SUCCESS
    document = json.loads(out)
    assert document["schema_version"] == 1
    assert document["dns"][0]["root_cause"]["code"] == "untrusted-gateway"


def test_a_diagnosis_that_finds_nothing_still_exits_0(seed_log: Path) -> None:
    status, out, _ = run("diagnose", "--log", str(seed_log), "--dn", "AsteriskTrunk_webRTC")
    assert status == ExitStatus.SUCCESS
    assert "root cause  no-register-seen" in out


def _binary(tmp_path: Path) -> Path:
    path = tmp_path / "capture.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(range(256)))
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "SIP_P-001.20260202_135459_850.log"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "reference"),
    [
        (lambda tmp: tmp / "missing.log", "log-not-found"),
        (lambda tmp: tmp, "log-is-directory"),
        (_binary, "log-not-text"),
        (_empty, "log-empty"),
    ],
    ids=["missing", "directory", "binary", "empty"],
)
def test_bad_log_files(tmp_path: Path, make, reference: str) -> None:  # type: ignore[no-untyped-def]
    status, out, err = run("diagnose", "--log", str(make(tmp_path)), "--dn", "5002")
    assert status == ExitStatus.ERROR
    assert out == ""
    assert err.startswith(f"error: {reference}: ")
    assert "\nhint: " in err
    assert "Traceback" not in err


@pytest.mark.parametrize("dn", ["5001;rm -rf /", "5001'", "5001\r\nVia: x", ""])
def test_bad_dns(seed_log: Path, dn: str) -> None:
    status, out, err = run("diagnose", "--log", str(seed_log), "--dn", dn)
    assert status == ExitStatus.ERROR
    assert out == ""
    assert err.startswith("error: bad-dn: ")
    assert "hint: give a DN number such as --dn 5001" in err
    assert "Traceback" not in err


def test_bad_since(seed_log: Path) -> None:
    status, _, err = run("diagnose", "--log", str(seed_log), "--dn", "5002", "--since", "noon")
    assert status == ExitStatus.ERROR
    assert err.startswith("error: bad-since: ")


def test_usage_errors_go_through_the_parser(seed_log: Path) -> None:
    status, _, err = run("diagnose", "--log", str(seed_log))
    assert status == ExitStatus.ERROR
    assert err.startswith("error: usage-error: the following arguments are required: --dn")
    assert "hint: see 'remediate diagnose --help'" in err


def test_debug_re_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        run("diagnose", "--debug", "--log", str(tmp_path / "missing.log"), "--dn", "5002")


def test_help_shows_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, _ = run("--help")
    main_help = capsys.readouterr().out
    assert status == 0
    assert "remediate diagnose --log SIP_P-001.20260202_135459_850.log --dn 5002" in main_help
    assert "exit codes:" in main_help and "7 a precondition failed" in main_help
    status, _, _ = run("diagnose", "--help")
    diagnose_help = capsys.readouterr().out
    assert status == 0
    assert "examples:" in diagnose_help
    assert "--since 2026-02-02T13:55" in diagnose_help


def test_interrupted_exits_130(seed_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("remediate.api.diagnose_logs", interrupted)
    status, out, err = run("diagnose", "--log", str(seed_log), "--dn", "5002")
    assert status == ExitStatus.INTERRUPTED == 130
    assert (out, err) == ("", "interrupted\n")


def test_an_unexpected_failure_is_reported_without_a_traceback(
    seed_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr("remediate.api.diagnose_logs", broken)
    status, _, err = run("diagnose", "--log", str(seed_log), "--dn", "5002")
    assert status == ExitStatus.ERROR
    assert err.startswith("error: unexpected-error: RuntimeError: parser bug\n")
    assert "Traceback" not in err
