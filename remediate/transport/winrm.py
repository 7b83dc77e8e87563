"""WinRM to the SIP Server host via pywinrm's `Protocol`, so one shell serves every command.

Timeouts, in the order they fire: the WS-Management operation timeout (the server answers an idle
Receive with fault 2150858793 after that long, and we simply Receive again), the HTTP read timeout
(just above it: a server that says nothing at all), and a wall-clock cap per command, checked
between Receives. Only transport errors are retried (connection refused or reset before the command
was accepted, a lost shell); a command that ran and failed is reported, never re-run.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from remediate.transport import CommandResult, TransportError
from remediate.transport.settings import WinRMSettings, check_settings

log = logging.getLogger(__name__)

# MS-WSMV fault codes
WSMAN_SHELL_NOT_FOUND = 2150858843
RETRY_BACKOFF_SECONDS = (0.2, 0.5, 1.0)


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        pending.extend([current.__cause__, current.__context__])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
    return False


class _ShellLost(Exception):
    """The server no longer knows our shell (it was idle too long or the service restarted)."""


class WinRMTransport:
    """One WinRM connection and one reused cmd shell to a Windows host.

    `bytes_received` counts every HTTP response body byte, so callers can prove how much crossed
    the wire.
    """

    def __init__(self, settings: WinRMSettings) -> None:
        check_settings(settings)
        self.settings = settings
        self.bytes_received = 0
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None

    # Connection -------------------------------------------------------------------------------

    def _new_protocol(self) -> Protocol:
        s = self.settings
        options: dict[str, Any] = dict(s.auth_options)
        if s.auth == "basic" and s.scheme == "http":
            options["message_encryption"] = "never"
        protocol = Protocol(
            endpoint=s.endpoint,
            transport=cast(Any, s.auth),
            username=s.user,
            password=s.password,
            server_cert_validation="validate" if s.validate_certificate else "ignore",
            # None: the system CA store (pywinrm's annotation omits it)
            ca_trust_path=cast(str, s.ca_trust_path),
            read_timeout_sec=s.read_timeout,
            operation_timeout_sec=s.operation_timeout,
            proxy=None,
            **options,
        )
        return protocol

    def _count_response(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        self.bytes_received += len(response.content)

    def _connected(self) -> tuple[Protocol, str]:
        if self._protocol is None:
            protocol = self._new_protocol()
            # NTLM over HTTP sends its first (empty, authenticated) message here.
            session = protocol.transport.build_session()
            session.hooks["response"].append(self._count_response)
            self._protocol = protocol
        if self._shell_id is None:
            self._shell_id = self._protocol.open_shell(
                noprofile=True, codepage=self.settings.codepage
            )
        return self._protocol, self._shell_id

    def close(self) -> None:
        """Delete the shell and close the HTTP session; errors on the way out are not news."""
        protocol, shell_id = self._protocol, self._shell_id
        self._protocol = None
        self._shell_id = None
        if protocol is None:
            return
        try:
            if shell_id is not None:
                protocol.close_shell(shell_id)
            else:
                protocol.transport.close_session()
        except (WinRMError, WinRMTransportError, requests.RequestException) as error:
            log.debug("closing the WinRM shell on %s: %s", self.settings.inventory_host, error)

    def _forget_connection(self) -> None:
        if self._protocol is not None:
            self._protocol.transport.close_session()
        self._protocol = None
        self._shell_id = None

    def __enter__(self) -> WinRMTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Commands -----------------------------------------------------------------------------------

    def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        """Run a cmd.exe command line in the shared shell and return what it did.

        Raises `TransportError` (exit status 7) when the host cannot be reached, refuses us, or
        does not finish within `timeout` (default: the host's command timeout).
        """
        cap = self.settings.command_timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + cap
        attempt = 0
        while True:
            accepted = False
            try:
                protocol, shell_id = self._connected()
                command_id = protocol.run_command(shell_id, command)
                accepted = True
                stdout, stderr, exit_code = self._receive_all(
                    protocol, shell_id, command_id, deadline, cap
                )
                return CommandResult(
                    command=command,
                    exit_code=exit_code,
                    stdout=stdout,
                    stderr=stderr,
                    duration=time.monotonic() - started,
                )
            except _ShellLost:
                self._shell_id = None
                if accepted or attempt >= self.settings.connect_retries:
                    raise self._error("winrm-server-error", "the server lost our shell") from None
            except WSManFaultError as fault:
                if fault.wsman_fault_code == WSMAN_SHELL_NOT_FOUND and not accepted:
                    self._shell_id = None
                    if attempt < self.settings.connect_retries:
                        attempt += 1
                        continue
                raise self._map_error(fault) from None
            except (requests.ConnectionError, ConnectionError) as error:
                self._forget_connection()
                retryable = not accepted and not isinstance(error, requests.exceptions.SSLError)
                if not retryable or attempt >= self.settings.connect_retries:
                    raise self._map_error(error) from None
                pause = RETRY_BACKOFF_SECONDS[min(attempt, len(RETRY_BACKOFF_SECONDS) - 1)]
                if time.monotonic() + pause >= deadline:
                    raise self._map_error(error) from None
                log.info(
                    "WinRM to %s: %s; retrying", self.settings.inventory_host, type(error).__name__
                )
                time.sleep(pause)
            except (WinRMError, WinRMTransportError, requests.RequestException) as error:
                self._forget_connection()
                raise self._map_error(error) from None
            attempt += 1

    def _receive_all(
        self,
        protocol: Protocol,
        shell_id: str,
        command_id: str,
        deadline: float,
        cap: float,
    ) -> tuple[bytes, bytes, int]:
        stdout_parts: list[bytes] = []
        stderr_parts: list[bytes] = []
        while True:
            if time.monotonic() > deadline:
                self._abandon(protocol, shell_id, command_id)
                raise self._error(
                    "winrm-timeout",
                    f"the command did not finish within {cap:g} s",
                    hint="raise remediate_winrm_command_timeout for this host if the host is "
                    "merely slow",
                )
            try:
                stdout, stderr, exit_code, done = protocol.get_command_output_raw(
                    shell_id, command_id
                )
            except WinRMOperationTimeoutError:
                continue  # the server's "nothing yet": Receive again
            except WSManFaultError as fault:
                if fault.wsman_fault_code == WSMAN_SHELL_NOT_FOUND:
                    raise _ShellLost() from None
                raise
            stdout_parts.append(stdout)
            stderr_parts.append(stderr)
            if done:
                protocol.cleanup_command(shell_id, command_id)
                return b"".join(stdout_parts), b"".join(stderr_parts), exit_code

    def _abandon(self, protocol: Protocol, shell_id: str, command_id: str) -> None:
        try:
            protocol.cleanup_command(shell_id, command_id)
        except (WinRMError, WinRMTransportError, requests.RequestException):
            self._forget_connection()

    # Errors -------------------------------------------------------------------------------------

    def _error(self, reference: str, message: str, *, hint: str = "") -> TransportError:
        s = self.settings
        where = f"{s.inventory_host} ({s.endpoint})"
        return TransportError(f"WinRM to {where}: {message}", reference=reference, hint=hint)

    def _map_error(self, error: BaseException) -> TransportError:
        s = self.settings
        if isinstance(error, InvalidCredentialsError) or (
            isinstance(error, WinRMTransportError) and error.code == 401
        ):
            return self._error(
                "winrm-auth-failed",
                "the credentials were refused (HTTP 401)",
                hint=f"check ansible_user and ansible_password for {s.inventory_host}, and "
                f"ansible_winrm_transport (now {s.auth})",
            )
        if isinstance(error, requests.exceptions.SSLError):
            return self._error(
                "winrm-tls-failed",
                "the TLS handshake failed (the server certificate could not be validated)",
                hint=f"check ansible_winrm_ca_trust_path for {s.inventory_host} "
                f"(now {s.ca_trust_path or 'the system CA store'})",
            )
        if isinstance(error, requests.exceptions.Timeout):
            return self._error(
                "winrm-timeout",
                f"no answer within {s.read_timeout} s",
                hint=f"check that WinRM answers on {s.endpoint}; "
                f"ansible_winrm_read_timeout_sec sets this bound",
            )
        if isinstance(error, requests.ConnectionError | ConnectionError):
            if _caused_by(error, ConnectionRefusedError):
                message = "the connection was refused"
            else:
                message = "the connection failed or was closed without an answer"
            return self._error(
                "winrm-unreachable",
                message,
                hint=f"check ansible_host and ansible_port for {s.inventory_host}, and that the "
                "WinRM service listens there",
            )
        if isinstance(error, WSManFaultError):
            return self._error(
                "winrm-server-error",
                f"WS-Management fault {error.wsman_fault_code}: {error.reason}",
            )
        if isinstance(error, WinRMTransportError):
            return self._error(
                "winrm-server-error",
                f"the server answered HTTP {error.code}",
                hint="look at the WinRM service's event log on the host",
            )
        if isinstance(error, WinRMError):
            return self._error(
                "winrm-error",
                str(error),
                hint=f"check ansible_winrm_transport for {s.inventory_host} (now {s.auth})",
            )
        return self._error("winrm-error", f"{type(error).__name__}: {error}")
