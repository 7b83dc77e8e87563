"""How the product reaches hosts: one `CommandResult` type, the transport errors, the registry.

Observation (diagnose, verify, backups) goes straight through these transports (DESIGN section 3):
WinRM to the SIP Server host, SSH to the Asterisk gateway. Inventory hosts name their transport with
`ansible_connection`; `transport_class` maps that name to the class that speaks it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from remediate.errors import InputError, PreconditionError


@dataclass(frozen=True)
class CommandResult:
    """What one remote command did. Success is its exit code; stderr alone never means failure
    (PowerShell writes progress records there as CLIXML)."""

    command: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")


class TransportError(PreconditionError):
    """A host could not be reached, refused us, or did not answer in time. Nothing was changed
    by the command that hit it, so the run stops with PRECONDITION_FAILED."""

    reference = "transport-error"


class Transport(Protocol):
    """What the rest of the product needs from a connection to a host."""

    def run(self, command: str, *, timeout: float | None = None) -> CommandResult: ...

    def close(self) -> None: ...


# ansible_connection value -> "module:Class". Imported lazily so that using SSH never loads pywinrm.
TRANSPORTS: dict[str, str] = {
    "winrm": "remediate.transport.winrm:WinRMTransport",
    "ssh": "remediate.transport.ssh:SSHTransport",
}


def transport_class(connection: str) -> type:
    """The class that speaks `connection` (an `ansible_connection` value)."""
    try:
        module_name, class_name = TRANSPORTS[connection].split(":")
    except KeyError:
        raise InputError(
            f"ansible_connection {connection!r} is not a transport remediate speaks",
            reference="transport-unknown",
            hint=f"use one of: {', '.join(sorted(TRANSPORTS))}",
        ) from None
    cls: type = getattr(importlib.import_module(module_name), class_name)
    return cls
