"""The TSrvSIP64 service state machine: states, hooks, restart, the hang and 1053 faults."""

from __future__ import annotations

import threading
import time

import pytest

from remediate.lab.genesys.service import WindowsService
from remediate.lab.windows import ServiceError


class Recorder:
    def __init__(self) -> None:
        self.faults: set[str] = set()
        self.events: list[str] = []
        self.states: list[str] = []
        self.fail_start: OSError | None = None

    def service(self) -> WindowsService:
        return WindowsService(
            "TSrvSIP64",
            "Genesys SIP Server - SIP_P",
            on_start=self.start,
            on_stop=lambda: self.events.append("stop"),
            on_state=self.states.append,
            faults=lambda: frozenset(self.faults),
            start_delay=0.05,
            stop_delay=0.02,
        )

    def start(self) -> None:
        if self.fail_start is not None:
            raise self.fail_start
        self.events.append("start")


def test_start_stop_restart_run_the_hooks_through_pending_states() -> None:
    recorder = Recorder()
    service = recorder.service()
    assert service.state == "Stopped"
    assert service.start(timeout=2) == "Running"
    assert service.start(timeout=2) == "Running"  # already running: nothing happens
    assert service.restart(timeout=2) == "Running"
    assert service.stop(timeout=2) == "Stopped"
    assert service.stop(timeout=2) == "Stopped"
    assert recorder.events == ["start", "stop", "start", "stop"]
    assert recorder.states == [
        "StartPending",
        "Running",
        "StopPending",
        "Stopped",
        "StartPending",
        "Running",
        "StopPending",
        "Stopped",
    ]


def test_pending_state_is_visible_while_starting() -> None:
    recorder = Recorder()
    service = recorder.service()
    seen: list[str] = []
    starter = threading.Thread(target=service.start, args=(2,))
    starter.start()
    time.sleep(0.02)
    seen.append(service.state)
    starter.join()
    assert seen == ["StartPending"] and service.state == "Running"


def test_error_1053_leaves_the_service_stopped() -> None:
    recorder = Recorder()
    recorder.faults.add("service-1053")
    service = recorder.service()
    with pytest.raises(ServiceError) as failed:
        service.start(timeout=2)
    assert failed.value.win32_code == 1053
    assert "did not respond to the start or control request in a timely fashion" in str(
        failed.value
    )
    assert service.state == "Stopped" and recorder.events == []
    recorder.faults.clear()
    assert service.start(timeout=2) == "Running"


def test_a_hook_that_cannot_bind_fails_the_start() -> None:
    recorder = Recorder()
    recorder.fail_start = OSError(98, "Address already in use")
    service = recorder.service()
    with pytest.raises(ServiceError) as failed:
        service.start(timeout=2)
    assert isinstance(failed.value.__cause__, OSError)
    assert service.state == "Stopped"


def test_hung_stop_stays_stop_pending_until_the_fault_clears() -> None:
    recorder = Recorder()
    service = recorder.service()
    service.start(timeout=2)
    recorder.faults.add("service-hang")
    began = time.monotonic()
    with pytest.raises(ServiceError) as hung:
        service.stop(timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 1.0
    assert "StopPending" in str(hung.value)
    assert service.state == "StopPending"
    assert recorder.events == ["start", "stop"]  # it no longer serves SIP
    with pytest.raises(ServiceError) as refused:
        service.start(timeout=0.2)
    assert refused.value.win32_code == 1061
    with pytest.raises(ServiceError):
        service.restart(timeout=0.2)
    recorder.faults.clear()
    assert service.stop(timeout=2) == "Stopped"
    assert service.start(timeout=2) == "Running"
