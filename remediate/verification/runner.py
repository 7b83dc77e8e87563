"""Run the verification suite in a pytest subprocess and read its JUnit XML back: the API behind
`remediate verify` and `remediate apply --verify`.

The subprocess is `python -m pytest --pyargs remediate.verification ...`, exactly what an operator
runs by hand, so the report a change board reads is the one pytest wrote. It runs in the directory
that receives the XML (the run's record, or `<state dir>/verify/`), with the plugin found through
its entry point, under a wall-clock bound; the XML is scrubbed of the site's secrets and kept 0600.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from remediate.errors import InputError, PreconditionError, RemediateError
from remediate.scrub import Scrubber
from remediate.state import FILE_MODE, StateDir, make_private_dir, resolve_state_dir
from remediate.status import ExitStatus
from remediate.verification.context import VerificationTarget, resolve_target

SCHEMA_VERSION = 1
DEFAULT_TIMEOUT_SECONDS = 300.0
SUITE = "remediate.verification"
VERIFY_DIR = "verify"
# pytest's own exit codes
_PYTEST_OK, _PYTEST_TESTS_FAILED, _PYTEST_USAGE_ERROR = 0, 1, 4
# Environment that would change what the subprocess runs or how it reports.
_DROPPED_ENVIRONMENT = ("PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_PLUGINS")


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"
    """The check could not run to its end (a bug, an unreadable answer): counts as failed."""
    UNREACHABLE = "unreachable"
    """The host (or GAX) it needs cannot be reached or refuses us."""


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    outcome: Outcome
    message: str
    test: str  # the pytest node: file::function[param]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "outcome": self.outcome.value,
            "message": self.message,
            "test": self.test,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class VerificationResult:
    site: str
    dns: tuple[str, ...]
    fix: str | None
    run_id: str | None
    scope: str  # what was verified, and from when log events count
    checks: tuple[Check, ...]
    junit_path: Path
    seconds: float

    def _with(self, *outcomes: Outcome) -> list[Check]:
        return [check for check in self.checks if check.outcome in outcomes]

    @property
    def unreachable(self) -> list[Check]:
        return self._with(Outcome.UNREACHABLE)

    @property
    def failed(self) -> list[Check]:
        return self._with(Outcome.FAILED, Outcome.ERROR)

    @property
    def passed(self) -> bool:
        """Every check that applies passed (and at least one applied)."""
        return not self.failed and not self.unreachable and bool(self._with(Outcome.PASSED))

    @property
    def exit_status(self) -> ExitStatus:
        if self.unreachable:
            return ExitStatus.PRECONDITION_FAILED
        return ExitStatus.SUCCESS if self.passed else ExitStatus.VERIFICATION_FAILED

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "site": self.site,
            "dns": list(self.dns),
            "fix": self.fix,
            "run_id": self.run_id,
            "scope": self.scope,
            "passed": self.passed,
            "exit_code": int(self.exit_status),
            "junit": str(self.junit_path),
            "seconds": round(self.seconds, 3),
            "checks": [check.to_json() for check in self.checks],
        }


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _message(element: ElementTree.Element, outcome: Outcome) -> str:
    text = element.get("message") or element.text or ""
    if outcome is Outcome.FAILED:
        return _first_line(text).removeprefix("AssertionError: ")
    return _first_line(text)


def parse_junit(path: Path) -> list[Check]:
    """The checks of a JUnit XML file that the suite wrote (its `check`/`target` properties)."""
    root = ElementTree.parse(path).getroot()  # noqa: S314 (written by our own pytest run)
    checks: list[Check] = []
    for case in root.iter("testcase"):
        properties = {item.get("name", ""): item.get("value", "") for item in case.iter("property")}
        failure, error, skipped = (case.find(tag) for tag in ("failure", "error", "skipped"))
        if "unreachable" in properties:
            outcome, message = Outcome.UNREACHABLE, properties["unreachable"]
        elif failure is not None:
            outcome = Outcome.FAILED
            message = _message(failure, outcome)
        elif error is not None:
            outcome = Outcome.ERROR
            message = _message(error, outcome)
        elif skipped is not None:
            outcome = Outcome.SKIPPED
            message = _message(skipped, outcome)
        else:
            outcome, message = Outcome.PASSED, ""
        name = case.get("name", "")
        module = case.get("classname", "").rsplit(".", 1)[-1]
        checks.append(
            Check(
                name=properties.get("check") or name.split("[", 1)[0].removeprefix("test_"),
                target=properties.get("target", ""),
                outcome=outcome,
                message=message,
                test=f"{module}::{name}" if module else name,
                seconds=float(case.get("time") or 0),
            )
        )
    return checks


def _junit_path(state: StateDir, target: VerificationTarget) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = target.run.path if target.run else make_private_dir(state.path / VERIFY_DIR)
    return directory / f"verify-{stamp}-{secrets.token_hex(2)}.xml"


def suite_command(
    target: VerificationTarget,
    junit_path: Path,
    state_dir: Path,
    fix: str | None,
    vault_password_file: Path | None,
) -> list[str]:
    """The pytest command line: the same suite an operator runs by hand."""
    command = [sys.executable, "-m", "pytest", "--pyargs", SUITE]
    command += ["--inventory", str(target.site.inventory.absolute()), "--site", target.site.name]
    for dn in target.dns:
        command += ["--dn", dn]
    if target.run is not None:
        command += ["--run", target.run.run_id, "--state-dir", str(state_dir)]
    if fix is not None:
        command += ["--fix", fix]
    if vault_password_file is not None:
        command += ["--vault-password-file", str(vault_password_file.absolute())]
    command += [f"--junitxml={junit_path}", "-p", "no:cacheprovider", "-q", "--tb=short"]
    return command


def _run(
    command: Sequence[str], cwd: Path, environ: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run the suite in its own session, so that a timeout kills it and whatever it started."""
    environment = {k: v for k, v in environ.items() if k not in _DROPPED_ENVIRONMENT}
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise PreconditionError(
                f"the verification did not finish within {timeout:g} s",
                reference="verification-timeout",
                hint="a host may be stalling: 'remediate diagnose --dn ...' names which",
            ) from None
    return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_verification(
    inventory: Path | None,
    site: str | None,
    dns: Sequence[str],
    *,
    run_id: str | None = None,
    state_dir: Path | None = None,
    fix: str | None = None,
    vault_password_file: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    environ: Mapping[str, str] | None = None,
) -> VerificationResult:
    """Run the suite for `dns` of one site (after run `run_id`, if given) and return its checks.

    Bad input (an inventory, a DN, a run id) raises before pytest starts; a suite that cannot
    finish within `timeout` raises PreconditionError. Otherwise the result says how it went:
    `passed`, `exit_status` (0, 3 when a check failed, 7 when a host could not be reached), the
    checks, and the JUnit XML's path.
    """
    environ = os.environ if environ is None else environ
    if not 0 < timeout <= 3600:
        raise InputError(
            f"the verification timeout must be between 0 and 3600 s, not {timeout:g}",
            reference="bad-timeout",
        )
    state = StateDir.open(resolve_state_dir(state_dir, environ))
    target = resolve_target(
        inventory,
        site,
        dns,
        run_id=run_id,
        state_dir=state.path,
        fix=fix,
        vault_password_file=vault_password_file,
        environ=environ,
    )
    junit_path = _junit_path(state, target)
    command = suite_command(target, junit_path, state.path, fix, vault_password_file)
    started = time.monotonic()
    completed = _run(command, junit_path.parent, environ, timeout)
    seconds = time.monotonic() - started
    if completed.returncode == _PYTEST_USAGE_ERROR:
        raise InputError(
            f"the verification suite refused its input: {_tail(completed.stderr, 3)}",
            reference="verification-usage",
        )
    if completed.returncode not in (_PYTEST_OK, _PYTEST_TESTS_FAILED) or not junit_path.exists():
        raise RemediateError(
            f"the verification suite ended with pytest exit code {completed.returncode}: "
            f"{_tail(completed.stdout + completed.stderr)}",
            reference="verification-crashed",
            hint=f"run it by hand to see why: {' '.join(command[1:])}",
        )
    scrubber = Scrubber([target.site.genesys.winrm.password, target.site.genesys.gax.password])
    report = junit_path.read_text(encoding="utf-8")
    if scrubber.contains_secret(report):
        junit_path.write_text(scrubber.text(report), encoding="utf-8")
    junit_path.chmod(FILE_MODE)
    return VerificationResult(
        site=target.site.name,
        dns=target.dns,
        fix=target.fix,
        run_id=target.run.run_id if target.run else None,
        scope=target.describe(),
        checks=tuple(parse_junit(junit_path)),
        junit_path=junit_path,
        seconds=seconds,
    )
