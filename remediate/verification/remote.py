"""The verification's reach into the estate: testinfra hosts built from the inventory's settings,
and the few reads the checks make through them.

- The SIP Server host goes through testinfra's `winrm://` backend. It always speaks NTLM, opens a
  shell per command (code page 437) and sends the command string raw to cmd.exe, so every command
  is a `remediate.genesys.powershell` command line (`powershell -EncodedCommand ...`). It has no CA
  option: the inventory's `ansible_winrm_ca_trust_path` is handed to pywinrm's `Protocol` through
  the backend's connection arguments (`ca_trust_path`), with validation on. Validation is off only
  when the inventory says `ansible_winrm_server_cert_validation: ignore`, which the inventory loader
  refuses outside the lab unless the site allows insecure WinRM; the check then says so.
- The Asterisk host goes through testinfra's `ssh://` backend (OpenSSH): the inventory's key, its
  `UserKnownHostsFile`, `StrictHostKeyChecking=yes` and `BatchMode=yes`, no ControlPersist (a
  master connection would outlive the run).

A host that cannot be reached, or refuses us, raises `HostUnreachable`: the checks that need it
could not be made, which is not the same as a check that failed.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from remediate.asterisk import cli
from remediate.genesys import logs, powershell
from remediate.transport import TransportError

if TYPE_CHECKING:  # the plugin loads into every pytest session: keep its imports light
    from remediate.inventory import Site
    from remediate.transport.settings import SSHSettings, WinRMSettings

# testinfra's winrm backend opens its shells with pywinrm's default code page.
WINRM_SHELL_ENCODING = "cp437"


class HostUnreachable(Exception):
    """A host (or its GAX) cannot be reached or refuses us: its checks cannot be made."""


class RemoteCommandError(Exception):
    """A command reached the host and failed there."""


@contextmanager
def reaching(what: str) -> Iterator[None]:
    """Turn the ways a connection fails (pywinrm, requests, OpenSSH's exit 255, the product's
    transports) into `HostUnreachable` naming `what`."""
    import requests
    from testinfra.backend.base import CommandResult
    from winrm.exceptions import WinRMError, WinRMOperationTimeoutError, WinRMTransportError

    try:
        yield
    except HostUnreachable:
        raise
    except (
        requests.RequestException,
        WinRMError,
        WinRMTransportError,
        WinRMOperationTimeoutError,
        TransportError,
    ) as error:
        raise HostUnreachable(f"{what}: {type(error).__name__}: {error}") from error
    except RuntimeError as error:
        result = error.args[0] if error.args else None
        if not isinstance(result, CommandResult):
            raise
        said = " ".join(result.stderr_bytes.decode("utf-8", errors="replace").split())
        raise HostUnreachable(f"{what}: ssh failed (exit 255): {said[-300:]}") from error


def winrm_host(settings: WinRMSettings) -> Any:
    """A testinfra host for the SIP Server host (NTLM; the CA from the inventory)."""
    import testinfra

    if settings.auth != "ntlm":
        raise HostUnreachable(
            f"{settings.inventory_host}: testinfra's winrm backend speaks NTLM only, the inventory "
            f"asks for {settings.auth} (ansible_winrm_transport)"
        )
    credentials = f"{quote(settings.user, safe='')}:{quote(settings.password, safe='')}"
    address = f"[{settings.address}]" if ":" in settings.address else settings.address
    host = testinfra.get_host(
        f"winrm://{credentials}@{address}:{settings.port}",
        no_ssl=settings.scheme == "http",
        read_timeout_sec=settings.read_timeout,
        operation_timeout_sec=settings.operation_timeout,
    )
    arguments: dict[str, Any] = host.backend.conn_args
    if settings.scheme == "https" and not settings.validate_certificate:
        arguments["server_cert_validation"] = "ignore"
    elif settings.scheme == "https" and settings.ca_trust_path:
        arguments["ca_trust_path"] = settings.ca_trust_path
    return host


def ssh_host(settings: SSHSettings) -> Any:
    """A testinfra host for the Asterisk host: key, known_hosts, strict host key checking."""
    import testinfra

    options = " ".join(
        f"-o {shlex.quote(option)}"
        for option in (
            f"UserKnownHostsFile={settings.known_hosts_file}",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
        )
    )
    address = f"[{settings.address}]" if ":" in settings.address else settings.address
    return testinfra.get_host(
        f"ssh://{settings.user}@{address}:{settings.port}",
        ssh_identity_file=settings.private_key_file,
        ssh_extra_args=options,
        timeout=max(1, round(settings.connect_timeout)),
        controlpersist=0,
    )


def certificate_note(settings: WinRMSettings) -> str:
    """How the WinRM server's certificate is checked, for the report."""
    if settings.scheme == "http":
        return "WinRM over HTTP (message encryption by NTLM)"
    if not settings.validate_certificate:
        return "WinRM certificate NOT validated (ansible_winrm_server_cert_validation: ignore)"
    return f"WinRM certificate validated against {settings.ca_trust_path or 'the system CAs'}"


# The SIP Server host ------------------------------------------------------------------------


def run_powershell(host: Any, name: str, command: powershell.PowerShellCommand, what: str) -> bytes:
    """The command's output; `RemoteCommandError` when it failed on the host."""
    with reaching(f"{name} (WinRM)"):
        result = host.run(command.command_line)
    if result.rc != 0:
        said = " ".join(result.stderr_bytes.decode(WINRM_SHELL_ENCODING, errors="replace").split())
        raise RemoteCommandError(f"{what} failed on {name} (exit {result.rc}): {said[:300]}")
    output: bytes = result.stdout_bytes
    return output


def _text(output: bytes) -> str:
    return output.decode(WINRM_SHELL_ENCODING, errors="replace")


def host_clock(host: Any, site: Site) -> datetime:
    output = run_powershell(host, site.genesys.name, powershell.host_clock(), "reading the clock")
    return powershell.parse_host_clock(_text(output))


def service_state(host: Any, site: Site) -> powershell.ServiceState:
    command = powershell.service_state(site.genesys.service_name)
    output = run_powershell(host, site.genesys.name, command, "reading the service state")
    return powershell.parse_service_state(_text(output))


def registration_history(
    host: Any, site: Site, dns: Sequence[str], since: datetime
) -> logs.RegistrationHistory:
    """The DNs' registrations in the log segments written since `since` (aware), filtered on the
    host so that only their REGISTER transactions cross the wire, as the live diagnosis reads."""
    from remediate import live

    genesys = site.genesys
    listing = run_powershell(
        host,
        genesys.name,
        powershell.list_log_segments(genesys.log_dir, f"{genesys.log_prefix}.*.log", since),
        f"listing {genesys.log_dir}",
    )
    segments = powershell.parse_log_segments(_text(listing))
    names = logs.segment_order([segment.name for segment in segments])
    events: list[logs.LogEvent] = []
    for name in names:
        command = powershell.read_log_filtered(genesys.log_dir, name, live.ANCHOR_PATTERNS, dns)
        output = run_powershell(host, genesys.name, command, f"reading {name}")
        # One piece: the parser reads an expiry's AOR from the lines after it in the same buffer.
        events.extend(logs.read_stream([output], name))
    return logs.registrations(events, dns)


# The Asterisk host -------------------------------------------------------------------------


def basic_regex(text: str) -> str:
    """`text` as a grep basic regular expression matching itself (testinfra's `File.contains`
    greps)."""
    return "".join("\\" + char if char in ".[]*^$\\" else char for char in text)


def asterisk_rx(host: Any, site: Site, command: str) -> str:
    """What the running Asterisk answers to CLI `command` (`asterisk -rx` exits 0 whatever
    happens: a non-zero exit means the console itself could not run; judge the text)."""
    with reaching(f"{site.asterisk.name} (SSH)"):
        result = host.run(cli.rx(command, binary=site.asterisk.command))
    output: str = result.stdout_bytes.decode("utf-8", errors="replace")
    if result.rc != 0:
        said = result.stderr_bytes.decode("utf-8", errors="replace").strip()
        raise RemoteCommandError(
            f"{site.asterisk.command} -rx {command!r} failed on {site.asterisk.name} "
            f"(exit {result.rc}): {said[-300:]}"
        )
    return output
