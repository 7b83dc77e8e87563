"""What the inventory says about reaching a host: WinRM and SSH settings, checked.

Kept apart from the transports so that reading an inventory (the CLI, and the controller-side
tasks of remediate.actions) imports neither pywinrm nor paramiko: whoever reads the settings
imports only the transport it uses.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from typing import Any

from remediate.errors import InputError

log = logging.getLogger(__name__)

AUTH_METHODS = frozenset({"ntlm", "kerberos", "credssp", "basic", "certificate"})


@dataclass(frozen=True)
class WinRMSettings:
    """Everything needed to reach one Windows host. `inventory_host` and `source` only make error
    hints point at the right inventory entry."""

    inventory_host: str
    address: str
    port: int
    scheme: str
    user: str
    password: str = field(repr=False)
    auth: str = "ntlm"
    ca_trust_path: str | None = None
    validate_certificate: bool = True
    operation_timeout: int = 20
    read_timeout: int = 30
    command_timeout: float = 120.0
    connect_retries: int = 2
    codepage: int = 65001
    lab: bool = False
    allow_insecure: bool = False
    auth_options: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}/wsman"


def check_settings(settings: WinRMSettings) -> None:
    """Refuse settings that would send credentials or commands where anyone can read them."""
    where = f"host {settings.inventory_host}" + (f" ({settings.source})" if settings.source else "")
    if settings.scheme not in ("http", "https"):
        raise InputError(
            f"ansible_winrm_scheme must be http or https, not {settings.scheme!r} for {where}",
            reference="inventory-variable-invalid",
        )
    if settings.auth not in AUTH_METHODS:
        raise InputError(
            f"ansible_winrm_transport {settings.auth!r} is not supported for {where}",
            reference="inventory-variable-invalid",
            hint=f"use one of: {', '.join(sorted(AUTH_METHODS))} (ntlm is the default)",
        )
    if not 0 < settings.operation_timeout < settings.read_timeout:
        raise InputError(
            f"ansible_winrm_operation_timeout_sec ({settings.operation_timeout}) must be above 0 "
            f"and below ansible_winrm_read_timeout_sec ({settings.read_timeout}) for {where}",
            reference="inventory-variable-invalid",
        )
    insecure: list[str] = []
    if settings.auth == "basic" and settings.scheme == "http":
        insecure.append("Basic authentication over plain HTTP sends the password in clear")
    if settings.scheme == "https" and not settings.validate_certificate:
        insecure.append("the server certificate is not validated")
    if not insecure:
        return
    if settings.lab or settings.allow_insecure:
        allowed_by = "remediate_lab" if settings.lab else "remediate_allow_insecure_winrm"
        for reason in insecure:
            log.warning(
                "WinRM to %s is insecure (%s): allowed by %s",
                settings.inventory_host,
                reason,
                allowed_by,
            )
        return
    raise InputError(
        f"refusing WinRM to {where}: {'; '.join(insecure)}",
        reference="winrm-insecure",
        hint="use ansible_winrm_transport: ntlm (or kerberos) over https with "
        "ansible_winrm_ca_trust_path; only a lab host (remediate_lab: true) or an explicit "
        "remediate_allow_insecure_winrm: true may relax this",
    )


@dataclass(frozen=True)
class SSHSettings:
    inventory_host: str
    address: str
    port: int
    user: str
    private_key_file: str
    known_hosts_file: str
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    source: str = ""


def ssh_options(common_args: str) -> dict[str, str]:
    """The `-o Name=value` options of an `ansible_ssh_common_args` string, names lower-cased;
    the first value of an option given twice, as OpenSSH takes it."""
    try:
        words = shlex.split(common_args)
    except ValueError as error:
        raise InputError(
            f"the ssh arguments {common_args[:80]!r} cannot be split into words ({error})",
            reference="inventory-variable-invalid",
            hint="balance the quotes in ansible_ssh_common_args",
        ) from None
    options: dict[str, str] = {}
    for index, word in enumerate(words):
        if word == "-o" and index + 1 < len(words):
            option = words[index + 1]
        elif word.startswith("-o") and len(word) > 2:
            option = word[2:]
        else:
            continue
        name, _, value = option.replace("=", " ", 1).partition(" ")
        options.setdefault(name.strip().lower(), value.strip())
    return options
