"""A test double of the simulated Genesys host for the WinRM endpoint's tests: `TempDirWindowsHost`.

It implements `remediate.lab.windows.WindowsHost` over a temporary directory (drive D: is
`root/D`), with one service whose stop can hang and whose start can fail with error 1053, so the
endpoint can be tested before (and apart from) the real Genesys host process.
"""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path, PureWindowsPath

from remediate.lab.windows import Listener, ServiceError

IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30), "India Standard Time")
ERROR_1053 = "The service did not respond to the start or control request in a timely fashion."


class TempDirWindowsHost:
    def __init__(
        self, root: Path, service: str = "TSrvSIP64", transition_seconds: float = 0.05
    ) -> None:
        self.root = root
        self.service = service
        self.state = "Running"
        self.transition_seconds = transition_seconds
        self.hang_on_stop = False
        self.fail_start_1053 = False
        self.lock = threading.Lock()

    def service_status(self, name: str) -> str | None:
        return self.state if name.lower() == self.service.lower() else None

    def service_display_name(self, name: str) -> str | None:
        return "Genesys SIP Server" if name.lower() == self.service.lower() else None

    def _wait(self, wanted: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while self.state != wanted and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.state != wanted:
            raise ServiceError(f"service {self.service} did not reach {wanted}", win32_code=1053)
        return self.state

    def start_service(self, name: str, timeout: float) -> str:
        with self.lock:
            if self.state == "Running":
                return self.state
            self.state = "StartPending"
        time.sleep(self.transition_seconds)
        if self.fail_start_1053:
            self.state = "Stopped"
            raise ServiceError(ERROR_1053, win32_code=1053)
        self.state = "Running"
        return self.state

    def stop_service(self, name: str, timeout: float) -> str:
        with self.lock:
            if self.state == "Stopped":
                return self.state
            self.state = "StopPending"
        if self.hang_on_stop:
            return self._wait("Stopped", timeout)
        time.sleep(self.transition_seconds)
        self.state = "Stopped"
        return self.state

    def restart_service(self, name: str, timeout: float) -> str:
        self.stop_service(name, timeout)
        return self.start_service(name, timeout)

    def local_now(self) -> datetime.datetime:
        return datetime.datetime.now(IST)

    def windows_to_local(self, path: str) -> Path | None:
        windows = PureWindowsPath(path)
        if not windows.drive or not windows.is_absolute():
            return None
        return self.root.joinpath(windows.drive.rstrip(":").upper(), *windows.parts[1:])

    def listeners(self) -> list[Listener]:
        return [
            Listener("UDP", "127.0.0.81", 5060, "", 4242, "sip_server"),
            Listener("UDP", "127.0.0.81", 5090, "", 5150, "GenesysSoftphone"),
            Listener("TCP", "127.0.0.81", 5985, "Listen", 4, "System"),
        ]
