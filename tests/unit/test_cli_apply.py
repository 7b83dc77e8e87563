"""plan, apply, rollback, history and show through `main(...)` with an Environment, as a person
at a terminal or a scheduler without one runs them: every exit code these commands return without
a lab (the lab's own tests cover 3 and 4 against real hosts too)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from test_engine_support import (
    PaperEstate,
    diagnosis,
    dn_diagnosis,
    hold_site_lock,
    install,
    write_inventory,
)

from remediate import engine
from remediate.cli import main
from remediate.diagnose import Fix, RootCause
from remediate.env import Environment
from remediate.status import ExitStatus


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.inventory = write_inventory(tmp_path / "inventory")
        self.state = tmp_path / "state"

    def __call__(self, *args: str, stdin: io.StringIO | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        env = Environment(
            stdin=stdin or io.StringIO(""),
            stdout=out,
            stderr=err,
            environ={"REMEDIATE_STATE_DIR": str(self.state)},
        )
        arguments = list(args)
        if args and args[0] in ("plan", "apply", "rollback"):
            arguments += ["-i", str(self.inventory)]
        return main(arguments, env), out.getvalue(), err.getvalue()


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


@pytest.fixture
def estate(monkeypatch: pytest.MonkeyPatch) -> PaperEstate:
    paper = PaperEstate()
    install(monkeypatch, paper)
    return paper


APPLY = ("apply", "--dn", "5001", "--verify-timeout", "0.3")
UNATTENDED = (*APPLY, "--yes", "--change-id", "CHG0042")


@pytest.mark.parametrize("command", ["plan", "apply", "rollback", "history", "show"])
def test_help_has_examples(run: Run, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(command, "--help")
    out = capsys.readouterr().out
    assert code == 0 and "examples:" in out and f"remediate {command}" in out


def test_apply_commits_and_says_so(run: Run, estate: PaperEstate) -> None:
    code, out, err = run(*UNATTENDED)
    assert code == ExitStatus.SUCCESS, err
    assert "COMMITTED" in out and "in service   1002, 1003, 5001" in out
    assert "+ [sip] trusted-gateways = 127.0.9.54" in out  # the plan, shown before the change
    assert "s] verify" in out  # progress with elapsed time
    code, out, _ = run(*UNATTENDED, "--output", "json")
    document = json.loads(out)
    assert code == 0 and document["schema_version"] == 1 and document["kind"] == "apply-run"
    assert document["status"] == "no-change" or document["status"] == "committed"


def test_apply_json_keeps_stdout_for_the_document(run: Run, estate: PaperEstate) -> None:
    code, out, err = run(*UNATTENDED, "--output", "json")
    document = json.loads(out)
    assert code == 0 and document["status"] == "committed" and document["exit_code"] == 0
    assert document["changes"][0]["target"] == "CfgSwitch/SIP_P"
    assert document["backups"][0]["sha256"] and "] plan" in err


def test_apply_rolled_back_exits_3(run: Run, estate: PaperEstate) -> None:
    estate.registers = False
    code, out, err = run(*UNATTENDED)
    assert code == ExitStatus.VERIFICATION_FAILED
    assert "ROLLED-BACK" in out and "error: verification-failed" in err


def test_apply_rollback_failed_exits_4_and_says_what_to_restore(
    run: Run, estate: PaperEstate
) -> None:
    estate.registers = False
    estate.failing["rollback.yml"] = "GAX answers 500"
    code, out, _ = run(*UNATTENDED)
    assert code == ExitStatus.ROLLBACK_FAILED
    assert "RESTORE BY HAND" in out and "CfgSwitch/SIP_P: NOT restored" in out
    assert "/backups/01-CfgSwitch_SIP_P.json" in out
    run_id = out.split("Record: remediate show ")[1].split()[0]
    # `rollback RUN_ID` finishes it (the fault is gone: the failure was one-shot)
    code, out, err = run("rollback", run_id, "--yes", "--change-id", "CHG0043")
    assert code == 0, err
    assert "ROLLED-BACK" in out
    code, out, _ = run("show", run_id)
    assert code == 0 and "RESTORE BY HAND" in out and "ROLLBACK-FAILED" in out


def test_rollback_itself_failing_exits_4(run: Run, estate: PaperEstate) -> None:
    code, out, _ = run(*UNATTENDED)
    run_id = out.split("Record: remediate show ")[1].split()[0]
    estate.failing["rollback.yml"] = "GAX answers 500"
    code, out, _ = run("rollback", run_id, "--yes", "--change-id", "CHG0043")
    assert code == ExitStatus.ROLLBACK_FAILED
    assert f"remediate rollback {run_id}" in out


def test_without_a_terminal_a_change_id_and_yes_are_required(run: Run, estate: PaperEstate) -> None:
    code, _, err = run(*APPLY, "--yes")
    assert code == ExitStatus.ERROR and "error: change-id-required" in err
    code, _, err = run(*APPLY, "--change-id", "CHG0042")
    assert code == ExitStatus.ERROR and "error: confirmation-required" in err
    assert not estate.playbooks
    code, out, _ = run("history")
    assert code == 0 and out.count("failed-before-change") == 2


def test_at_a_terminal_the_plan_is_shown_and_a_question_asked(
    run: Run, estate: PaperEstate
) -> None:
    code, out, err = run(*APPLY, stdin=Terminal("n\n"))
    assert code == ExitStatus.ERROR and "Apply these changes? [y/N]" in err
    assert "+ [sip] trusted-gateways" in out and "ABORTED" in out and not estate.trusted
    code, out, _ = run(*APPLY, stdin=Terminal("y\n"))
    assert code == 0 and estate.trusted


def test_another_run_holds_the_lock(run: Run, estate: PaperEstate) -> None:
    lock = hold_site_lock(run.state, "20261128T101010Z-beef")
    try:
        code, _, err = run(*UNATTENDED)
    finally:
        lock.release()
    assert code == ExitStatus.LOCKED and "20261128T101010Z-beef" in err


def test_a_contradicted_fix_exits_7_and_force_goes_on(run: Run, estate: PaperEstate) -> None:
    code, _, err = run(*UNATTENDED, "--fix", "dialplan")
    assert code == ExitStatus.PRECONDITION_FAILED and "fix-contradicted" in err
    assert not estate.playbooks
    estate.diagnosis = diagnosis(
        dn_diagnosis("5001", RootCause.UNREGISTERED_BY_GATEWAY, Fix.ASTERISK_REREGISTER)
    )
    code, _, err = run(*UNATTENDED)
    assert code == ExitStatus.PRECONDITION_FAILED and "no-applicable-fix" in err
    assert "do something about 5001" in err  # what to do instead


def test_unreachable_hosts_exit_7(run: Run) -> None:
    # apply reaches the Asterisk host first, for the site's lock (a guard), then WinRM and GAX
    code, _, err = run(*UNATTENDED)
    assert code == ExitStatus.PRECONDITION_FAILED and "ssh-unreachable" in err
    code, _, err = run("plan", "--dn", "5001")
    assert code == ExitStatus.PRECONDITION_FAILED and "gax-unreachable" in err


def test_interrupted_exits_130(
    run: Run, estate: PaperEstate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_preflight", interrupted)
    code, out, _ = run(*UNATTENDED)
    assert code == ExitStatus.INTERRUPTED and "ABORTED" in out


def test_plan(run: Run, estate: PaperEstate) -> None:
    code, out, _ = run("plan", "--dn", "5001")
    assert code == 0
    assert "~ CfgSwitch/SIP_P  (configuration object on genesys-paper, update)" in out
    assert "restart SIP Server once" in out
    assert "Plan: 1 configuration object(s) and 0 file(s) to change." in out
    code, out, _ = run("plan", "--dn", "5001", "--detailed-exitcode", "--output", "json")
    assert code == ExitStatus.PLAN_HAS_CHANGES
    document = json.loads(out)
    assert document["schema_version"] == 1 and document["kind"] == "plan"
    assert document["fix"]["name"] == "trusted-gateway" and document["restart"] is True
    assert not estate.trusted  # a plan changes nothing
    estate.diagnosis = diagnosis(dn_diagnosis("5001", RootCause.IN_SERVICE, Fix.NONE))
    code, out, _ = run("plan", "--dn", "5001", "--detailed-exitcode")
    assert code == 0 and "nothing to do" in out
    code, _, err = run("plan", "--dn", "5001", "--fix", "reboot")
    assert code == ExitStatus.ERROR and "usage-error" in err
    code, _, err = run("plan", "--dn", "50 01")
    assert code == ExitStatus.ERROR


def test_rollback_refusals(run: Run, estate: PaperEstate) -> None:
    code, _, err = run("rollback", "20261128T101010Z-beef", "--yes", "--change-id", "C")
    assert code == ExitStatus.ERROR and "run-not-found" in err
    run(*APPLY, "--yes")  # ends failed-before-change: no change id
    run_id = json.loads(run("history", "--output", "json")[1])["runs"][0]["run_id"]
    code, _, err = run("rollback", run_id, "--yes", "--change-id", "C")
    assert code == ExitStatus.PRECONDITION_FAILED and "nothing-to-roll-back" in err


def test_history_and_show(run: Run, estate: PaperEstate) -> None:
    code, out, _ = run("history")
    assert code == 0 and out == "no runs recorded\n"
    run(*UNATTENDED)
    code, out, _ = run("history")
    assert code == 0 and "committed" in out and "CHG0042" in out and "trusted-gateway" in out
    history = json.loads(run("history", "--output", "json")[1])
    assert history["schema_version"] == 1
    (entry,) = history["runs"]
    code, out, _ = run("show", entry["run_id"][:12])  # a unique prefix
    assert code == 0 and f"Run {entry['run_id']}: COMMITTED" in out
    assert "backups" in out and "sha256" in out and "restart" in out
    shown = json.loads(run("show", entry["run_id"], "--output", "json")[1])
    assert shown["kind"] == "run" and shown["status"] == "committed"
    assert [s["name"] for s in shown["steps"]][:3] == ["guards", "preflight", "plan"]
    code, _, err = run("show", "nonsense")
    assert (code == ExitStatus.ERROR and "bad-run-id" in err) or "run-not-found" in err
