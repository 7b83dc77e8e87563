"""The SIP Server's Windows service (`TSrvSIP64`): its state, and a bounded restart, over WinRM.

A restart waits for `Running` within a bound; a service stuck in StopPending or failing to start
(error 1053) is a failed step, never a hang (DESIGN section 2.3). Sites under the Genesys
Management Layer restart through `mlcmd` (inventory `genesys_service_control: mlcmd`) and then wait
for the service state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remediate.errors import InputError, RemediateError
from remediate.genesys import powershell
from remediate.genesys.powershell import ServiceState
from remediate.status import ExitStatus
from remediate.transport import CommandResult

if TYPE_CHECKING:  # the transport imports pywinrm: not needed to read an inventory
    from remediate.transport.winrm import WinRMTransport

# The WinRM call outlives the script's own bounds by this much, so the script reports first.
TRANSPORT_MARGIN_SECONDS = 15.0


class ServiceControlError(RemediateError):
    """The service did not reach the state asked for within its bound."""

    reference = "service-control-failed"
    exit_status = ExitStatus.PRECONDITION_FAILED


@dataclass(frozen=True)
class MlcmdSettings:
    executable: str
    cs_host: str
    cs_port: int
    application: str


def _stderr_message(result: CommandResult) -> str:
    """The readable part of PowerShell's CLIXML error stream (first error record)."""
    text = result.stderr_text
    if text.startswith("#< CLIXML"):
        records = re.findall(r'<S S="Error">(.*?)</S>', text, flags=re.DOTALL)
        text = "".join(records).replace("_x000D__x000A_", " ")
    return " ".join(text.split())[:300] or f"exit code {result.exit_code}"


class SipServerService:
    """One Windows service on one host, reached through an open WinRM transport."""

    def __init__(self, transport: WinRMTransport, name: str) -> None:
        self.transport = transport
        self.name = name

    def _run(
        self, command: powershell.PowerShellCommand, timeout: float | None = None
    ) -> CommandResult:
        return self.transport.run(command.command_line, timeout=timeout)

    def state(self) -> ServiceState:
        result = self._run(powershell.service_state(self.name))
        if not result.ok:
            message = _stderr_message(result)
            if (
                "Cannot find any service" in message
                or "NoServiceFoundForGivenName" in result.stderr_text
            ):
                raise InputError(
                    f"there is no service {self.name!r} on "
                    f"{self.transport.settings.inventory_host}",
                    reference="service-unknown",
                    hint="check genesys_service_name in the inventory",
                )
            raise ServiceControlError(f"reading the state of {self.name} failed: {message}")
        return powershell.parse_service_state(result.stdout_text)

    def _controlled(
        self, command: powershell.PowerShellCommand, bound: int, what: str
    ) -> ServiceState:
        result = self._run(command, timeout=bound + TRANSPORT_MARGIN_SECONDS)
        if not result.ok:
            raise ServiceControlError(
                f"{what} {self.name} on {self.transport.settings.inventory_host} failed: "
                f"{_stderr_message(result)}",
                hint="look at the service in the host's Services console and the SIP Server log",
            )
        return powershell.parse_service_state(result.stdout_text)

    def stop(self, timeout_seconds: int) -> ServiceState:
        return self._controlled(
            powershell.stop_service(self.name, timeout_seconds), timeout_seconds, "stopping"
        )

    def start(self, timeout_seconds: int) -> ServiceState:
        return self._controlled(
            powershell.start_service(self.name, timeout_seconds), timeout_seconds, "starting"
        )

    def restart(self, stop_timeout_seconds: int, start_timeout_seconds: int) -> ServiceState:
        """Stop then start, each within its bound; the final state (Running) or an error."""
        return self._controlled(
            powershell.restart_service(self.name, stop_timeout_seconds, start_timeout_seconds),
            stop_timeout_seconds + start_timeout_seconds,
            "restarting",
        )

    def restart_with_mlcmd(
        self, mlcmd: MlcmdSettings, stop_timeout_seconds: int, start_timeout_seconds: int
    ) -> ServiceState:
        """The Management Layer's way: `mlcmd -stopapp`, wait Stopped, `-startapp`, wait Running."""
        for action, status, bound in (
            ("stop", "Stopped", stop_timeout_seconds),
            ("start", "Running", start_timeout_seconds),
        ):
            command = powershell.mlcmd(
                mlcmd.executable, mlcmd.cs_host, mlcmd.cs_port, mlcmd.application, action
            )
            result = self._run(command, timeout=bound + TRANSPORT_MARGIN_SECONDS)
            if not result.ok:
                raise ServiceControlError(
                    f"mlcmd -{action}app {mlcmd.application} failed: {_stderr_message(result)}",
                    hint="check the Management Layer (Solution Control Server) and the mlcmd path",
                )
            self._controlled(
                powershell.wait_service_status(self.name, status, bound),
                bound,
                f"waiting for {status}:",
            )
        return self.state()
