"""The change transaction's logic on a paper estate (see test_engine_support): each way a run
ends, what the journal records, what the estate looks like afterwards."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_engine_support import (
    SWITCH_BEFORE,
    PaperEstate,
    diagnosis,
    dn_diagnosis,
    hold_site_lock,
    install,
    journal_lines,
    load,
    options,
)

from remediate import engine
from remediate.diagnose import Fix, RootCause
from remediate.errors import PreconditionError
from remediate.journal import RunStatus, read_run
from remediate.state import StateDir
from remediate.status import ExitStatus

NO_HOOKS = engine.Hooks()


@pytest.fixture
def estate(monkeypatch: pytest.MonkeyPatch) -> PaperEstate:
    paper = PaperEstate()
    install(monkeypatch, paper)
    return paper


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return StateDir.open(tmp_path / "state")


def _apply(
    tmp_path: Path, state: StateDir, hooks: engine.Hooks = NO_HOOKS, **kw: object
) -> engine.RunReport:
    return engine.apply_fix(load(tmp_path), state, options(**kw), hooks)


def test_commit_records_every_step_and_changes_once(
    tmp_path: Path, state: StateDir, estate: PaperEstate
) -> None:
    steps: list[tuple[str, str]] = []
    report = _apply(tmp_path, state, engine.Hooks(on_step=lambda s, p: steps.append((s, p))))
    assert report.status is RunStatus.COMMITTED and report.exit_status is ExitStatus.SUCCESS
    assert estate.trusted and estate.restarts == 1
    assert estate.playbooks == ["trusted_gateway.yml --check", "trusted_gateway.yml", "restart.yml"]
    assert [c.lines for c in report.plan] == [c.lines for c in report.applied]
    assert report.applied[0].lines == (
        "+ [sip] trusted-gateways = 127.0.9.54",
        "+ [sip] gateway-ip-auth-mode = enabled",
    )
    started = [s for s, p in steps if p == "started"]
    assert started == [
        "guards",
        "preflight",
        "plan",
        "backup",
        "apply",
        "restart",
        "verify",
        "commit",
    ]
    record = read_run(state, report.run_id)
    assert record.status is RunStatus.COMMITTED and record.metadata.change_id == "CHG-UNIT"
    assert record.backups["01-CfgSwitch_SIP_P.json"].kind == "object"
    events = [(line["event"], line["step"]) for line in journal_lines(record.path)]
    # each step recorded before and after it runs
    assert events.index(("step-started", "apply")) < events.index(("step-finished", "apply"))
    assert "Paper-Secret-1!" not in (record.path / "journal.jsonl").read_text()


def test_nothing_to_do_when_the_fix_is_in_place(
    tmp_path: Path, state: StateDir, estate: PaperEstate
) -> None:
    assert _apply(tmp_path, state).status is RunStatus.COMMITTED
    estate.diagnosis = diagnosis(dn_diagnosis("5001", RootCause.IN_SERVICE, Fix.NONE))
    estate.playbooks.clear()
    for fix in ("auto", "trusted-gateway"):
        report = _apply(tmp_path, state, fix=fix)
        assert report.status is RunStatus.NO_CHANGE and report.exit_status is ExitStatus.SUCCESS
        assert "nothing to do" in report.message
    assert estate.playbooks == ["trusted_gateway.yml --check"]  # auto needs no dry run
    assert estate.restarts == 1


def test_restart_only_when_the_configuration_already_holds_the_fix(
    tmp_path: Path, state: StateDir, estate: PaperEstate
) -> None:
    estate.objects["CfgSwitch/SIP_P"] = {
        **SWITCH_BEFORE,
        "userproperties": {
            "property": SWITCH_BEFORE["userproperties"]["property"]
            + [  # type: ignore[index]
                {"section": "sip", "key": "trusted-gateways", "value": "127.0.9.54"}
            ]
        },
    }
    report = _apply(tmp_path, state)
    assert report.status is RunStatus.COMMITTED and not report.applied and report.restarted
    assert "trusted_gateway.yml" not in estate.playbooks and estate.restarts == 1


@pytest.mark.parametrize(
    ("failing", "restarts"),
    [("trusted_gateway.yml", 0), ("restart.yml", 1), ("verify", 2)],
)
def test_a_failure_rolls_back_byte_for_byte(
    tmp_path: Path, state: StateDir, estate: PaperEstate, failing: str, restarts: int
) -> None:
    if failing == "verify":
        estate.registers = False
    else:
        estate.failing[failing] = f"{failing} broke"
    report = _apply(tmp_path, state)
    assert report.exit_status is ExitStatus.VERIFICATION_FAILED
    assert report.status is RunStatus.ROLLED_BACK
    assert estate.objects["CfgSwitch/SIP_P"] == SWITCH_BEFORE
    # the rollback restarts only when the change had restarted SIP Server
    assert estate.restarts == restarts
    outcomes = {s.name: s.outcome.value for s in read_run(state, report.run_id).steps}
    assert outcomes["rollback"] == outcomes["rollback-verify"] == "finished"


def test_a_failed_rollback_names_each_backup_and_rollback_finishes_it(
    tmp_path: Path, state: StateDir, estate: PaperEstate
) -> None:
    estate.registers = False
    estate.failing["rollback.yml"] = "GAX answers 500"
    report = _apply(tmp_path, state)
    assert report.exit_status is ExitStatus.ROLLBACK_FAILED
    assert report.status is RunStatus.ROLLBACK_FAILED
    (item,) = report.restore
    assert item["target"] == "CfgSwitch/SIP_P" and item["state"] == "NOT restored"
    assert Path(item["path"]).is_file() and item["path"] in item["how"]
    assert "restart TSrvSIP64" in item["how"]
    assert report.to_json()["restore"][0]["sha256"] == item["sha256"]
    # once GAX answers again, `rollback RUN_ID` restores and verifies
    original = read_run(state, report.run_id)
    again = engine.rollback_run(load(tmp_path), state, original, options(), engine.Hooks())
    assert again.exit_status is ExitStatus.SUCCESS and again.status is RunStatus.ROLLED_BACK
    assert again.rolls_back == report.run_id
    assert estate.objects["CfgSwitch/SIP_P"] == SWITCH_BEFORE


def test_rollback_command_of_a_committed_run(
    tmp_path: Path, state: StateDir, estate: PaperEstate
) -> None:
    committed = _apply(tmp_path, state)
    original = read_run(state, committed.run_id)
    # refused while a target differs from what the run left (someone changed it since)
    estate.objects["CfgSwitch/SIP_P"]["state"] = "CFGDisabled"
    refused = engine.rollback_run(load(tmp_path), state, original, options(), engine.Hooks())
    assert refused.exit_status is ExitStatus.PRECONDITION_FAILED
    assert "CfgSwitch/SIP_P" in refused.message and estate.restarts == 1
    forced = engine.rollback_run(
        load(tmp_path), state, original, options(force=True), engine.Hooks()
    )
    assert forced.exit_status is ExitStatus.SUCCESS
    assert estate.objects["CfgSwitch/SIP_P"] == SWITCH_BEFORE and estate.restarts == 2
    # a rollback of a run that changed nothing is refused
    estate.diagnosis = diagnosis(dn_diagnosis("5001", RootCause.IN_SERVICE, Fix.NONE))
    nothing = _apply(tmp_path, state)
    with pytest.raises(PreconditionError, match="nothing to roll back"):
        engine.rollback_run(
            load(tmp_path), state, read_run(state, nothing.run_id), options(), engine.Hooks()
        )


def test_a_failed_rollback_when_the_targets_cannot_be_read(
    tmp_path: Path, state: StateDir, estate: PaperEstate
) -> None:
    estate.registers = False
    report = _apply(
        tmp_path,
        state,
        engine.Hooks(
            on_step=lambda s, p: setattr(
                estate, "unreadable", s == "rollback-verify" or estate.unreadable
            )
        ),
    )
    assert report.exit_status is ExitStatus.ROLLBACK_FAILED
    assert report.restore[0]["state"].startswith("unknown")


def test_guards(tmp_path: Path, state: StateDir, estate: PaperEstate) -> None:
    no_ticket = _apply(tmp_path, state, change_id=None)
    assert no_ticket.exit_status is ExitStatus.ERROR
    assert no_ticket.error is not None and no_ticket.error.reference == "change-id-required"
    no_yes = _apply(tmp_path, state, yes=False)
    assert no_yes.error is not None and no_yes.error.reference == "confirmation-required"
    assert no_yes.status is RunStatus.FAILED_BEFORE_CHANGE
    # on a terminal: no change id needed, the question decides
    declined = _apply(
        tmp_path,
        state,
        engine.Hooks(confirm=lambda q: False),
        yes=False,
        interactive=True,
        change_id=None,
    )
    assert declined.status is RunStatus.ABORTED and declined.exit_status is ExitStatus.ERROR
    assert not estate.trusted and estate.playbooks == ["trusted_gateway.yml --check"] * 1
    asked: list[str] = []
    confirmed = _apply(
        tmp_path,
        state,
        engine.Hooks(confirm=lambda q: asked.append(q) or True),
        yes=False,
        interactive=True,
    )
    assert confirmed.status is RunStatus.COMMITTED and asked == ["Apply these changes?"]


def test_the_site_lock(tmp_path: Path, state: StateDir, estate: PaperEstate) -> None:
    holder = hold_site_lock(state.path, "20261128T000000Z-abcd")
    try:
        report = _apply(tmp_path, state)
    finally:
        holder.release()
    assert report.exit_status is ExitStatus.LOCKED
    assert "20261128T000000Z-abcd" in report.message
    assert not estate.playbooks
    assert _apply(tmp_path, state).exit_status is ExitStatus.SUCCESS  # released


def test_the_lock_is_held_for_the_whole_run(
    tmp_path: Path, state: StateDir, estate: PaperEstate
) -> None:
    seen: list[engine.RunReport] = []

    def second_run(step: str, phase: str) -> None:
        if step == "apply" and phase == "started" and not seen:
            thread = threading.Thread(target=lambda: seen.append(_apply(tmp_path, state)))
            thread.start()
            thread.join()

    first = _apply(tmp_path, state, engine.Hooks(on_step=second_run))
    assert first.exit_status is ExitStatus.SUCCESS
    assert seen[0].exit_status is ExitStatus.LOCKED and first.run_id in seen[0].message


def test_interrupted(
    tmp_path: Path, state: StateDir, estate: PaperEstate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(step: str, phase: str) -> None:
        if step == "plan" and phase == "started":
            raise KeyboardInterrupt

    before_change = _apply(tmp_path, state, engine.Hooks(on_step=interrupt))
    assert before_change.exit_status is ExitStatus.INTERRUPTED
    assert before_change.status is RunStatus.ABORTED and not estate.trusted

    def interrupt_restart(step: str, phase: str) -> None:
        if step == "restart" and phase == "started":
            raise KeyboardInterrupt

    during = _apply(tmp_path, state, engine.Hooks(on_step=interrupt_restart))
    assert during.exit_status is ExitStatus.INTERRUPTED
    assert during.status is RunStatus.ROLLED_BACK
    assert estate.objects["CfgSwitch/SIP_P"] == SWITCH_BEFORE


def test_a_plan_that_touches_what_the_fix_does_not_back_up_is_refused(
    tmp_path: Path, state: StateDir, estate: PaperEstate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        engine,
        "_plan_changes",
        lambda ctx, plan, private_dir, run_id: [
            engine.Change("asterisk-paper", "file", "/etc/asterisk/pjsip.conf", "update", ("+x",))
        ],
    )
    report = _apply(tmp_path, state)
    assert report.exit_status is ExitStatus.PRECONDITION_FAILED
    assert report.error is not None and report.error.reference == "plan-outside-targets"
    assert not estate.trusted


# choose_fix --------------------------------------------------------------------------------------

UNTRUSTED = dn_diagnosis("5001", RootCause.UNTRUSTED_GATEWAY, Fix.TRUSTED_GATEWAY, Fix.TRUNK)
REVERSE = dn_diagnosis("5002", RootCause.NO_REVERSE_ROUTE, Fix.DIALPLAN)
FINE = dn_diagnosis("1003", RootCause.IN_SERVICE, Fix.NONE)


def test_choose_fix_auto() -> None:
    assert (
        engine.choose_fix(diagnosis(UNTRUSTED, FINE), ["5001", "1003"], "auto", False)
        == "trusted-gateway"
    )
    assert engine.choose_fix(diagnosis(FINE), ["1003"], "auto", False) is None
    with pytest.raises(PreconditionError, match="different fixes"):
        engine.choose_fix(diagnosis(UNTRUSTED, REVERSE), ["5001", "5002"], "auto", False)
    rereg = dn_diagnosis("5002", RootCause.UNREGISTERED_BY_GATEWAY, Fix.ASTERISK_REREGISTER)
    with pytest.raises(PreconditionError, match="no change that remediate makes") as refused:
        engine.choose_fix(diagnosis(rereg), ["5002"], "auto", False)
    assert refused.value.exit_status is ExitStatus.PRECONDITION_FAILED
    assert "do something about 5002" in refused.value.hint
    missing = dn_diagnosis("5003", RootCause.DN_NOT_CONFIGURED, Fix.NONE)
    with pytest.raises(PreconditionError, match="dn-not-configured"):
        engine.choose_fix(diagnosis(missing), ["5003"], "auto", False)


def test_choose_a_named_fix() -> None:
    assert (
        engine.choose_fix(diagnosis(UNTRUSTED), ["5001"], "trunk", False) == "trunk"
    )  # an alternative
    with pytest.raises(PreconditionError, match="contradicts the dialplan fix") as refused:
        engine.choose_fix(diagnosis(UNTRUSTED), ["5001"], "dialplan", False)
    assert "--force" in refused.value.hint
    assert engine.choose_fix(diagnosis(UNTRUSTED), ["5001"], "dialplan", True) == "dialplan"
    assert engine.choose_fix(diagnosis(FINE), ["1003"], "dialplan", False) == "dialplan"
