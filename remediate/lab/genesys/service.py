"""The `TSrvSIP64` Windows service: its states, its transitions and the faults that break them.

States are Windows' own: Stopped, StartPending, Running, StopPending. Transitions run in a
background thread after a small delay, so a caller sees the pending states as a real service
controller would, and waits for the end state with a bound:

- start: StartPending, then (unless `service-1053` is on) the start hook runs: re-read the
  configuration, open a new log segment, bind the SIP port; then Running. With `service-1053` the
  service falls back to Stopped and the caller gets ServiceError(win32_code=1053).
- stop: StopPending, the stop hook closes the SIP port and drops every binding, then Stopped. With
  `service-hang` the service stays in StopPending for as long as the fault is on; the caller's wait
  ends with ServiceError when its timeout passes.

Faults are read (`active_faults`) at each operation: switching one on or off acts at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from remediate.lab.windows import ServiceError

STOPPED = "Stopped"
START_PENDING = "StartPending"
RUNNING = "Running"
STOP_PENDING = "StopPending"
DEFAULT_START_DELAY = 0.2
DEFAULT_STOP_DELAY = 0.1
FAULT_POLL_SECONDS = 0.05

# Win32 error codes as Windows reports them for service control.
ERROR_SERVICE_REQUEST_TIMEOUT = 1053
ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061
MESSAGE_1053 = "The service did not respond to the start or control request in a timely fashion."
MESSAGE_1061 = "The service cannot accept control messages at this time."


class WindowsService:
    """One Windows service whose start and stop run the given hooks."""

    def __init__(
        self,
        name: str,
        display_name: str,
        *,
        on_start: Callable[[], None],
        on_stop: Callable[[], None],
        on_state: Callable[[str], None],
        faults: Callable[[], frozenset[str]],
        start_delay: float = DEFAULT_START_DELAY,
        stop_delay: float = DEFAULT_STOP_DELAY,
    ) -> None:
        self.name = name
        self.display_name = display_name
        self._on_start = on_start
        self._on_stop = on_stop
        self._on_state = on_state
        self._faults = faults
        self._start_delay = start_delay
        self._stop_delay = stop_delay
        self._state = STOPPED
        self._condition = threading.Condition()
        self._last_start_error: ServiceError | None = None
        self._closing = threading.Event()

    @property
    def state(self) -> str:
        with self._condition:
            return self._state

    def _set_state(self, state: str) -> None:
        with self._condition:
            self._state = state
            self._condition.notify_all()
        self._on_state(state)

    def _wait_for(self, states: tuple[str, ...], deadline: float) -> str:
        with self._condition:
            while self._state not in states:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._state
                self._condition.wait(remaining)
            return self._state

    def start(self, timeout: float) -> str:
        """Start and wait for Running; raise ServiceError if it fails or the wait runs out."""
        deadline = time.monotonic() + timeout
        with self._condition:
            state = self._state
            if state == STOP_PENDING:
                raise ServiceError(
                    f"Service '{self.display_name} ({self.name})' cannot be started: "
                    f"{MESSAGE_1061}",
                    win32_code=ERROR_SERVICE_CANNOT_ACCEPT_CTRL,
                )
            if state == STOPPED:
                self._last_start_error = None
                self._state = START_PENDING
                self._condition.notify_all()
                self._on_state(START_PENDING)
                threading.Thread(target=self._run_start, name="service-start", daemon=True).start()
        final = self._wait_for((RUNNING, STOPPED), deadline)
        if final == RUNNING:
            return final
        with self._condition:
            error = self._last_start_error
        if error is not None:
            raise error
        raise ServiceError(
            f"Service '{self.display_name} ({self.name})' did not reach Running within "
            f"{timeout:g} s (state {final})",
            win32_code=ERROR_SERVICE_REQUEST_TIMEOUT,
        )

    def _run_start(self) -> None:
        time.sleep(self._start_delay)
        failure: ServiceError | None = None
        if "service-1053" in self._faults():
            failure = ServiceError(
                f"Service '{self.display_name} ({self.name})' cannot be started due to the "
                f"following error: {MESSAGE_1053}",
                win32_code=ERROR_SERVICE_REQUEST_TIMEOUT,
            )
        else:
            try:
                self._on_start()
            except OSError as error:
                failure = ServiceError(
                    f"Service '{self.display_name} ({self.name})' cannot be started due to the "
                    f"following error: {error}",
                    win32_code=ERROR_SERVICE_REQUEST_TIMEOUT,
                )
                failure.__cause__ = error
        with self._condition:
            self._last_start_error = failure
        self._set_state(STOPPED if failure else RUNNING)

    def stop(self, timeout: float) -> str:
        """Stop and wait for Stopped; raise ServiceError when the wait runs out (a hung stop)."""
        deadline = time.monotonic() + timeout
        if self._wait_for((RUNNING, STOPPED, STOP_PENDING), deadline) == START_PENDING:
            raise ServiceError(MESSAGE_1061, win32_code=ERROR_SERVICE_CANNOT_ACCEPT_CTRL)
        with self._condition:
            if self._state == RUNNING:
                self._state = STOP_PENDING
                self._condition.notify_all()
                self._on_state(STOP_PENDING)
                threading.Thread(target=self._run_stop, name="service-stop", daemon=True).start()
        final = self._wait_for((STOPPED,), deadline)
        if final != STOPPED:
            raise ServiceError(
                f"Service '{self.display_name} ({self.name})' did not stop within {timeout:g} s "
                f"(state {final}): time out has expired and the operation has not been completed.",
                win32_code=ERROR_SERVICE_REQUEST_TIMEOUT,
            )
        return final

    def _run_stop(self) -> None:
        # A hung service has stopped answering its control requests: it keeps no SIP port.
        self._on_stop()
        time.sleep(self._stop_delay)
        while "service-hang" in self._faults() and not self._closing.is_set():
            time.sleep(FAULT_POLL_SECONDS)
        self._set_state(STOPPED)

    def restart(self, timeout: float) -> str:
        """Stop then start, both within one `timeout`."""
        deadline = time.monotonic() + timeout
        self.stop(timeout)
        return self.start(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """At process exit: stop now, whatever the faults say."""
        self._closing.set()
        if self.state == RUNNING:
            self._set_state(STOP_PENDING)
            self._on_stop()
            self._set_state(STOPPED)
