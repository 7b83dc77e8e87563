"""The run journal: what it records, what survives a crash, and what it refuses."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.journal import (
    JOURNAL_FILE,
    BackupCorruptError,
    EventType,
    Journal,
    JournalError,
    OwnerState,
    RunStatus,
    StepOutcome,
    list_runs,
    open_runs,
    read_backup,
    read_json_backup,
    read_run,
)
from remediate.scrub import MASK
from remediate.state import StateDir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return StateDir.open(tmp_path / "state")


@pytest.fixture
def journal(state: StateDir) -> Iterator[Journal]:
    with Journal.start(
        state, site="lab", dns=["5001", "5002"], fix="trusted-gateway", change_id="CHG0042"
    ) as opened:
        yield opened


def lines(journal: Journal) -> list[dict[str, object]]:
    text = (journal.path / JOURNAL_FILE).read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_a_run_records_its_metadata_steps_and_end(journal: Journal, state: StateDir) -> None:
    journal.step_started("preflight")
    journal.step_finished("preflight", {"in_service": ["1002", "1003"]})
    journal.step_started("apply", {"playbook": "trusted_gateway.yml"})
    journal.step_failed("apply", "GAX answered 500")
    journal.finish(RunStatus.ROLLED_BACK, {"exit_status": 3})

    record = read_run(state, journal.run_id)
    meta = record.metadata
    assert (meta.site, meta.dns, meta.fix, meta.change_id) == (
        "lab",
        ("5001", "5002"),
        "trusted-gateway",
        "CHG0042",
    )
    assert meta.owner.pid == os.getpid()
    assert meta.owner.host == socket.gethostname()
    assert meta.started.endswith("Z") and "T" in meta.started
    assert record.status is RunStatus.ROLLED_BACK
    assert record.result["exit_status"] == 3
    assert [(step.name, step.outcome) for step in record.steps] == [
        ("preflight", StepOutcome.FINISHED),
        ("apply", StepOutcome.FAILED),
    ]
    assert record.steps[0].data["in_service"] == ["1002", "1003"]
    assert record.steps[1].error == "GAX answered 500"
    assert record.steps[1].data["playbook"] == "trusted_gateway.yml"
    assert record.unfinished_steps == []
    assert [entry.seq for entry in record.entries] == list(range(1, 7))
    assert not record.needs_recovery


def test_every_line_is_fsynced_before_the_call_returns(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_disk_at_fsync: list[bytes] = []
    real_fsync = os.fsync

    def spying_fsync(descriptor: int) -> None:
        real_fsync(descriptor)
        on_disk_at_fsync.append((journal.path / JOURNAL_FILE).read_bytes())

    monkeypatch.setattr(os, "fsync", spying_fsync)
    journal.step_started("restart")
    assert on_disk_at_fsync, "step_started returned without an fsync"
    assert on_disk_at_fsync[-1].endswith(b'"step":"restart","data":{}}\n')


def test_the_files_are_private(journal: Journal) -> None:
    journal.store_backup("extensions.conf", b"[ctx]\n", source="asterisk:/etc/x", kind="file")
    assert stat.S_IMODE((journal.path / JOURNAL_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((journal.path / "backups" / "extensions.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((journal.path / "backups").stat().st_mode) == 0o700


def test_step_context_records_failure_and_reraises(journal: Journal) -> None:
    with journal.step("verify") as results:
        results["accepted"] = ["5001"]
    with pytest.raises(TimeoutError), journal.step("restart") as results:
        results["waited"] = 120
        raise TimeoutError("TSrvSIP64 stuck in StopPending")
    steps = {step.name: step for step in journal.record().steps}
    assert steps["verify"].outcome is StepOutcome.FINISHED
    assert steps["verify"].data["accepted"] == ["5001"]
    assert steps["restart"].outcome is StepOutcome.FAILED
    assert steps["restart"].error == "TSrvSIP64 stuck in StopPending"
    assert steps["restart"].data["waited"] == 120


def test_misuse_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="has not started"):
        journal.step_finished("apply")
    journal.step_started("apply")
    with pytest.raises(JournalError, match="already started"):
        journal.step_started("apply")
    journal.step_finished("apply")
    journal.finish(RunStatus.COMMITTED)
    with pytest.raises(JournalError, match="has ended"):
        journal.step_started("verify")
    with pytest.raises(ValueError):
        journal.finish(RunStatus.RUNNING)


def test_secrets_never_reach_the_journal(journal: Journal) -> None:
    journal.add_secrets("Lab-GAX-2b81d4!", 'quo"te\\pass')
    journal.step_started(
        "preflight",
        {
            "gax": {"user": "default", "password": "not-known-as-a-secret"},
            "ansible_password": "also-unknown",
            "api_token": 1234,
            "password_set": True,
            "message": "login with Lab-GAX-2b81d4! refused",
            "argv": ["winrm", 'quo"te\\pass'],
        },
    )
    journal.step_failed("preflight", "401 for default:Lab-GAX-2b81d4!")
    raw = (journal.path / JOURNAL_FILE).read_text()
    for leaked in ("Lab-GAX", "not-known-as-a-secret", "also-unknown", "1234", "quo"):
        assert leaked not in raw
    step = journal.record().steps[0]
    assert step.data["gax"] == {"user": "default", "password": MASK}
    assert step.data["api_token"] == MASK
    assert step.data["password_set"] is True  # a flag says nothing about the secret
    assert step.data["message"] == f"login with {MASK} refused"
    assert step.data["argv"] == ["winrm", MASK]
    assert step.error == f"401 for default:{MASK}"


def test_backups_restore_byte_for_byte(journal: Journal, state: StateDir) -> None:
    content = b"[from-genesys]\r\nexten => _5XXX,1,Dial(PJSIP/${EXTEN})\n\xff\xfe no utf-8\n"
    stored = journal.store_backup(
        "extensions.conf", content, source="asterisk:/etc/asterisk/extensions.conf", kind="file"
    )
    annex = {"userproperties": {"property": [{"section": "sip", "key": "k", "value": "é"}]}}
    journal.store_json_backup("switch-SIP_P.json", annex, source="gax:CfgSwitch/101", kind="cfg")

    record = read_run(state, journal.run_id)
    assert read_backup(record, "extensions.conf") == content
    assert read_json_backup(record, "switch-SIP_P.json") == annex
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert record.backups["extensions.conf"].sha256 == stored.sha256
    assert record.backups["extensions.conf"].source == "asterisk:/etc/asterisk/extensions.conf"
    assert record.backups["switch-SIP_P.json"].kind == "cfg"


def test_a_tampered_backup_is_refused(journal: Journal, state: StateDir) -> None:
    journal.store_backup("pjsip.conf", b"[global]\nuser_agent=x\n", source="a", kind="file")
    path = journal.path / "backups" / "pjsip.conf"
    path.write_bytes(b"[global]\nuser_agent=y\n")
    with pytest.raises(BackupCorruptError, match="does not match its checksum") as error:
        read_backup(read_run(state, journal.run_id), "pjsip.conf")
    assert error.value.reference == "backup-corrupt"
    path.unlink()
    with pytest.raises(JournalError, match="is gone") as gone:
        read_backup(read_run(state, journal.run_id), "pjsip.conf")
    assert gone.value.reference == "backup-missing"
    with pytest.raises(JournalError, match="no backup named") as unknown:
        read_backup(read_run(state, journal.run_id), "never-stored")
    assert unknown.value.reference == "backup-missing"


def test_backup_names_are_checked_and_unique(journal: Journal) -> None:
    journal.store_backup("a.conf", b"1", source="s", kind="file")
    with pytest.raises(JournalError, match="already stored"):
        journal.store_backup("a.conf", b"2", source="s", kind="file")
    for bad in ("../escape", ".hidden", "a/b", ""):
        with pytest.raises(ValueError):
            journal.store_backup(bad, b"x", source="s", kind="file")


def test_history_lists_runs_newest_first_with_their_status(state: StateDir) -> None:
    statuses = [RunStatus.COMMITTED, RunStatus.ROLLBACK_FAILED, RunStatus.NO_CHANGE]
    ids = []
    for status in statuses:
        with Journal.start(state, site="lab", dns=["5001"], fix="dialplan") as journal:
            journal.finish(status)
            ids.append(journal.run_id)
    # A run directory whose process died before its first line: it changed nothing.
    state.new_run()
    runs = list_runs(state)
    assert [run.run_id for run in runs] == ids[::-1]
    assert [run.status for run in runs] == statuses[::-1]
    assert open_runs(state) == []


def test_a_damaged_line_in_the_middle_is_an_error_not_a_guess(journal: Journal) -> None:
    journal.step_started("apply")
    path = journal.path / JOURNAL_FILE
    first, *rest = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(first + b'{"seq": 2, "ti\n' + b"".join(rest))
    with pytest.raises(JournalError, match="line 2 is damaged") as error:
        journal.record()
    assert error.value.reference == "journal-corrupt"


CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from remediate.journal import Journal
    from remediate.state import StateDir

    journal = Journal.start(StateDir.open(Path(sys.argv[1])), site="lab", dns=["5001"],
                            fix="trusted-gateway")
    journal.store_backup("annex.json", b'{"before": true}', source="gax", kind="cfg")
    journal.step_started("backup")
    journal.step_finished("backup")
    journal.step_started("apply", {"playbook": "trusted_gateway.yml"})
    print(journal.run_id, flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()  # alive until the test closes our stdin
    """
)


def start_run_process(state: StateDir, mode: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN, str(state.path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    run_id = process.stdout.readline().strip()
    return process, run_id


def test_sigkill_leaves_a_journal_that_says_which_steps_ran(state: StateDir) -> None:
    process, run_id = start_run_process(state, "die")
    assert process.wait(timeout=10) == -signal.SIGKILL

    record = read_run(state, run_id)
    assert record.status is RunStatus.RUNNING
    assert [(step.name, step.outcome) for step in record.steps] == [
        ("backup", StepOutcome.FINISHED),
        ("apply", StepOutcome.RUNNING),
    ]
    assert record.unfinished_steps == ["apply"]
    assert read_backup(record, "annex.json") == b'{"before": true}'
    assert record.owner_state is OwnerState.GONE
    assert [run.run_id for run in open_runs(state)] == [run_id]


def test_a_torn_last_line_is_ignored_reported_and_cut_on_resume(state: StateDir) -> None:
    process, run_id = start_run_process(state, "die")
    process.wait(timeout=10)
    path = state.runs / run_id / JOURNAL_FILE
    complete = path.read_bytes()
    fragment = b'{"seq":7,"time":"2026-11-28T14:35:02.1'
    with path.open("ab") as torn:  # what a power cut in the middle of a write leaves
        torn.write(fragment)

    record = read_run(state, run_id)
    assert record.torn_tail_bytes == len(fragment)
    assert record.unfinished_steps == ["apply"]

    with Journal.resume(state, run_id) as journal:
        journal.step_failed("apply", "interrupted: the controller died")
        journal.finish(RunStatus.ROLLED_BACK)
    content = path.read_bytes()
    assert content.startswith(complete)
    record = read_run(state, run_id)
    assert record.torn_tail_bytes == 0
    resumed = [entry for entry in record.entries if entry.event is EventType.RUN_RESUMED]
    assert resumed[0].data["discarded_torn_bytes"] == len(fragment)
    assert resumed[0].data["unfinished_steps"] == ["apply"]
    assert record.owner.pid == os.getpid()
    assert record.status is RunStatus.ROLLED_BACK
    assert open_runs(state) == []


def test_a_run_whose_process_lives_is_not_open_for_recovery(state: StateDir) -> None:
    process, run_id = start_run_process(state, "live")
    try:
        record = read_run(state, run_id)
        assert record.owner_state is OwnerState.ALIVE
        assert open_runs(state) == []
        with pytest.raises(JournalError) as error:
            Journal.resume(state, run_id)
        assert error.value.reference == "run-owned"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)
    assert [run.run_id for run in open_runs(state)] == [run_id]


def test_a_run_of_this_very_process_is_not_open(journal: Journal, state: StateDir) -> None:
    journal.step_started("apply")
    assert journal.record().owner_state is OwnerState.ALIVE
    assert open_runs(state) == []


def test_a_run_owned_on_another_host_is_not_open_here(
    state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "controller-b")
    with Journal.start(state, site="lab", dns=["5001"], fix="trunk") as journal:
        journal.step_started("apply")
    monkeypatch.undo()
    record = read_run(state, journal.run_id)
    assert record.owner.host == "controller-b"
    assert record.owner_state is OwnerState.UNKNOWN
    assert open_runs(state) == []
    with pytest.raises(JournalError, match="which is unknown") as refused:
        Journal.resume(state, journal.run_id)
    assert "force the takeover" in refused.value.hint
    with Journal.resume(state, journal.run_id, force=True) as taken_over:
        assert taken_over.record().owner.host == socket.gethostname()


def test_a_finished_run_cannot_be_resumed(journal: Journal, state: StateDir) -> None:
    journal.finish(RunStatus.COMMITTED)
    journal.close()
    with pytest.raises(JournalError) as error:
        Journal.resume(state, journal.run_id)
    assert error.value.reference == "run-finished"
