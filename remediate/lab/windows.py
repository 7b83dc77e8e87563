"""What the WinRM endpoint's PowerShell interpreter needs from the simulated Windows host.

The Genesys host (remediate.lab.genesys) implements this; the WinRM endpoint (remediate.lab.winrm)
uses only this, so the two sides can be built and tested apart.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ServiceError(Exception):
    """A service control request failed as Windows reports it (error 1053, a stop that hangs)."""

    def __init__(self, message: str, *, win32_code: int = 0) -> None:
        super().__init__(message)
        self.win32_code = win32_code


@dataclass(frozen=True)
class Listener:
    protocol: str  # "UDP" or "TCP"
    local_address: str
    local_port: int
    state: str  # "Listen" for TCP, "" for UDP
    pid: int
    process_name: str


class WindowsHost(Protocol):
    def service_status(self, name: str) -> str | None:
        """`Running`, `Stopped`, `StartPending`, `StopPending`; None if no such service."""

    def service_display_name(self, name: str) -> str | None: ...

    def start_service(self, name: str, timeout: float) -> str:
        """Start and wait up to `timeout` s; return the final state or raise ServiceError."""

    def stop_service(self, name: str, timeout: float) -> str: ...

    def restart_service(self, name: str, timeout: float) -> str: ...

    def local_now(self) -> datetime.datetime:
        """The host's clock, timezone-aware, in the host's own zone (IST)."""

    def windows_to_local(self, path: str) -> Path | None:
        """Map a Windows path to a file of the simulation, or None if outside its drives."""

    def listeners(self) -> list[Listener]:
        """Every UDP endpoint and TCP listener, with the owning process."""
