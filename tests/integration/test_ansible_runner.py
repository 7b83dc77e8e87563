"""Real playbooks through ansible-runner against the controller itself (ansible_connection: local).

No lab needed. The host `nowhere` in the inventory is loopback port 1, where nothing listens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from remediate.ansible import (
    EventKind,
    PlaybookEvent,
    PlaybookResult,
    PlaybookStatus,
    kill_run_processes,
    run_playbook,
)

PLAYBOOKS = Path(__file__).resolve().parents[1] / "data" / "playbooks"
INVENTORY = PLAYBOOKS / "inventory.yml"


def run(name: str, private_dir: Path, **options: Any) -> PlaybookResult:
    options.setdefault("timeout", 60)
    return run_playbook(PLAYBOOKS / name, inventory=INVENTORY, private_dir=private_dir, **options)


def processes_of_run(private_dir: Path) -> list[int]:
    """Live processes started for this run (they carry its marker in their environment)."""
    marker = f"REMEDIATE_PLAYBOOK_RUN={private_dir}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(name))
    return found


def test_a_change_is_reported_with_its_diff_and_events_stream_in_order(tmp_path: Path) -> None:
    target = tmp_path / "target.conf"
    events: list[PlaybookEvent] = []
    result = run(
        "changes.yml",
        tmp_path / "pd",
        extravars={"target_path": str(target), "target_content": "contact=127.0.0.54:5060\n"},
        diff=True,
        on_event=events.append,
    )
    assert result.status is PlaybookStatus.SUCCESSFUL
    assert result.rc == 0
    assert target.read_text() == "contact=127.0.0.54:5060\n"
    stats = result.hosts["controller"]
    assert (stats.ok, stats.changed, stats.failed) == (3, 1, 0)
    [change] = result.changes
    assert (change.host, change.task, change.action) == (
        "controller",
        "Write the target file",
        "ansible.builtin.copy",
    )
    assert change.diff[0]["before"] == ""
    assert change.diff[0]["after"] == "contact=127.0.0.54:5060\n"
    assert change.result["dest"] == str(target)

    assert [(event.kind, event.task) for event in events] == [
        (EventKind.PLAY_STARTED, None),
        (EventKind.TASK_STARTED, "Show where control sockets go"),
        (EventKind.OK, "Show where control sockets go"),
        (EventKind.TASK_STARTED, "Write the target file"),
        (EventKind.CHANGED, "Write the target file"),
        (EventKind.TASK_STARTED, "Read the target file"),
        (EventKind.OK, "Read the target file"),
    ]
    assert {event.host for event in events[1:]} == {"controller"}
    assert all(event.play == "Changes" for event in events)
    assert [event.counter for event in events] == sorted(event.counter for event in events)
    # Control sockets go inside the private directory's tmp (gone after); host keys are checked
    # (ansible-runner would turn that off, overriding StrictHostKeyChecking=yes in inventories).
    assert events[2].message == (
        f"control sockets in {tmp_path / 'pd' / 'tmp' / 'cp'}, host keys checked: True"
    )
    assert sorted(path.name for path in (tmp_path / "pd").iterdir()) == ["artifacts"]


def test_check_mode_reports_the_change_but_leaves_the_file_alone(tmp_path: Path) -> None:
    target = tmp_path / "target.conf"
    target.write_bytes(b"before\n")
    # A private directory too deep for a Unix socket path: control sockets go elsewhere.
    deep = tmp_path / ("d" * 60) / "pd"
    events: list[PlaybookEvent] = []
    result = run(
        "changes.yml",
        deep,
        extravars={"target_path": str(target), "target_content": "after\n"},
        check=True,
        diff=True,
        on_event=events.append,
    )
    assert result.status is PlaybookStatus.SUCCESSFUL
    assert target.read_bytes() == b"before\n"
    assert result.check and result.changed
    assert result.changes[0].diff[0]["before"] == "before\n"
    assert result.changes[0].diff[0]["after"] == "after\n"

    [message] = [event.message for event in events if event.kind is EventKind.OK][:1]
    assert message is not None
    control_dir = Path(message.removeprefix("control sockets in ").split(",")[0])
    assert control_dir.name.startswith("rmd-cp-")
    assert len(str(control_dir)) <= 79
    assert not control_dir.exists()


def test_a_failed_task_stops_the_play_and_says_why(tmp_path: Path) -> None:
    events: list[PlaybookEvent] = []
    result = run("fails.yml", tmp_path / "pd", limit="controller", on_event=events.append)
    assert result.status is PlaybookStatus.FAILED
    assert set(result.hosts) == {"controller"}  # the limit kept `nowhere` out
    assert result.rc == 2
    [failure] = result.failures
    assert (failure.task, failure.message, failure.unreachable) == (
        "Fail for real",
        "the step broke on purpose",
        False,
    )
    assert result.hosts["controller"].failed == 1
    assert result.hosts["controller"].ignored == 1
    failed = [event for event in events if event.kind is EventKind.FAILED]
    assert [(event.task, event.ignored) for event in failed] == [
        ("Fail but carry on", True),
        ("Fail for real", False),
    ]
    assert "Never reached" not in {event.task for event in events}


def test_an_unreachable_host_is_its_own_status_and_visible_per_host(tmp_path: Path) -> None:
    result = run("ping.yml", tmp_path / "pd")
    assert result.status is PlaybookStatus.UNREACHABLE
    assert result.unreachable_hosts == ("nowhere",)
    assert result.hosts["controller"].ok == 1
    assert result.failures[0].unreachable
    assert "Connection refused" in result.failures[0].message


def test_vaulted_variables_are_read_with_the_password_file(tmp_path: Path) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    password_file = tmp_path / "vault-password"
    password_file.write_text("correct horse\n")
    vaulted = tmp_path / "vaulted-vars.yml"
    vault = VaultLib([("default", VaultSecret(b"correct horse"))])
    vaulted.write_bytes(vault.encrypt("gax_password: Lab-GAX-2b81d4!\n"))
    events: list[PlaybookEvent] = []
    result = run(
        "vaulted.yml",
        tmp_path / "pd",
        extravars={"vaulted_vars_file": str(vaulted)},
        vault_password_file=password_file,
        on_event=events.append,
    )
    assert result.status is PlaybookStatus.SUCCESSFUL
    assert "decrypted 15 characters" in {event.message for event in events}


def test_a_run_past_its_bound_is_killed_and_reported_as_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run("sleeps.yml", tmp_path / "pd", extravars={"sleep_seconds": 60}, timeout=2)
    elapsed = time.monotonic() - started
    assert result.status is PlaybookStatus.TIMEOUT
    assert 2 <= elapsed < 5
    assert processes_of_run(tmp_path / "pd") == []  # the sleep died with the run


def test_a_cancel_stops_the_run_at_once(tmp_path: Path) -> None:
    cancel = threading.Event()
    canceled_at: list[float] = []

    def cancel_when_sleeping(event: PlaybookEvent) -> None:
        if event.kind is EventKind.TASK_STARTED and event.task == "Sleep":
            canceled_at.append(time.monotonic())
            cancel.set()

    result = run(
        "sleeps.yml",
        tmp_path / "pd",
        extravars={"sleep_seconds": 60},
        on_event=cancel_when_sleeping,
        cancel=cancel,
    )
    assert result.status is PlaybookStatus.CANCELED
    assert time.monotonic() - canceled_at[0] < 2.5
    assert processes_of_run(tmp_path / "pd") == []


def test_an_error_in_the_event_hook_stops_the_run_and_propagates(tmp_path: Path) -> None:
    def broken_renderer(event: PlaybookEvent) -> None:
        if event.kind is EventKind.TASK_STARTED:
            raise RuntimeError("terminal went away")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="terminal went away"):
        run(
            "sleeps.yml",
            tmp_path / "pd",
            extravars={"sleep_seconds": 60, "gax_password": "Lab-GAX-2b81d4!"},
            secrets=["Lab-GAX-2b81d4!"],
            on_event=broken_renderer,
        )
    assert time.monotonic() - started < 10
    assert processes_of_run(tmp_path / "pd") == []
    assert sorted(path.name for path in (tmp_path / "pd").iterdir()) == ["artifacts"]


def test_secrets_leave_no_trace_even_under_vvv(tmp_path: Path) -> None:
    # Quotes, non-ASCII, and what Jinja would eat if Ansible templated it.
    secret = 'Lab-GAX-"2b81d4"!é{{ 7*7 }}{#'
    private_dir = tmp_path / "pd"
    target = tmp_path / "secret.conf"
    seen: list[PlaybookEvent] = []
    extravars_gone_before_first_task: list[bool] = []

    def watch(event: PlaybookEvent) -> None:
        seen.append(event)
        if event.kind is EventKind.TASK_STARTED and not extravars_gone_before_first_task:
            extravars_gone_before_first_task.append(
                not (private_dir / "tmp" / "extravars.yml").exists()
            )

    result = run(
        "secrets.yml",
        private_dir,
        extravars={"gax_password": secret, "target_path": str(target)},
        secrets=[secret],
        verbosity=3,
        diff=True,
        on_event=watch,
        # Not among the known secrets, but its name says what it is.
        environment={"GAX_PASSWORD": "from-the-operators-shell"},
    )
    assert result.status is PlaybookStatus.FAILED
    assert target.read_text() == f"password={secret}\n"  # used as given, never templated
    assert extravars_gone_before_first_task == [True]

    # Zero hits in the whole private directory, in any form a file could hold it.
    shapes = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    files = [path for path in private_dir.rglob("*") if path.is_file()]
    assert len(files) > 10  # stdout, command, job events...
    for path in files:
        content = path.read_bytes().decode("utf-8", "surrogateescape")
        assert not any(shape in content for shape in shapes), path
        assert "2b81d4" not in content, path
        assert "from-the-operators-shell" not in content, path
    command = json.loads((result.artifact_dir / "command").read_text())
    assert command["env"]["GAX_PASSWORD"] == "********"
    stdout = (result.artifact_dir / "stdout").read_text()
    assert "the password is ********" in stdout
    assert not (private_dir / "env").exists()
    assert not (private_dir / "tmp").exists()

    # Nor in what the caller saw.
    assert not any("2b81d4" in repr(event) for event in seen)
    assert result.failures[0].message == "refused ********"
    assert "2b81d4" not in repr(result)


CONTROLLER_THAT_DIES = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from remediate.ansible import run_playbook

    def die_when_sleeping(event):
        if event.task == "Sleep" and event.kind.value == "task-started":
            os.kill(os.getpid(), signal.SIGKILL)

    playbooks = Path(sys.argv[1])
    run_playbook(playbooks / "sleeps.yml", inventory=playbooks / "inventory.yml",
                 private_dir=Path(sys.argv[2]), timeout=60, on_event=die_when_sleeping,
                 extravars={"sleep_seconds": 60, "gax_password": "Lab-GAX-2b81d4!"})
    """
)


def test_after_the_controller_dies_its_playbook_processes_can_be_found_and_killed(
    tmp_path: Path,
) -> None:
    private_dir = tmp_path / "pd"
    controller = subprocess.run(
        [sys.executable, "-c", CONTROLLER_THAT_DIES, str(PLAYBOOKS), str(private_dir)],
        timeout=60,
        check=False,
    )
    assert controller.returncode == -signal.SIGKILL
    # ansible-playbook outlives its controller: what `recover` must stop before anything else.
    assert processes_of_run(private_dir)
    assert not (private_dir / "tmp" / "extravars.yml").exists()
    assert kill_run_processes(private_dir) >= 1
    assert processes_of_run(private_dir) == []
