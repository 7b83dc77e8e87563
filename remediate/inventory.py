"""The site model, loaded from an ordinary Ansible inventory through Ansible's own machinery.

Ansible, AWX, testinfra and remediate read the same inventory (DESIGN section 3): group `genesys`
(the SIP Server host, reached over WinRM), group `asterisk` (the gateway, over SSH), and one parent
group per site, `site_<name>`, holding one of each. Loading goes through Ansible's DataLoader,
InventoryManager and VariableManager so group_vars, host_vars and vault behave as operators expect,
and every value is rendered with Ansible's Templar (`{{ lookup('env', ...) }}` works).

Every value that later reaches PowerShell, a shell, a SIP header or a file is validated here: an
error names the variable, the host and the file it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from remediate.errors import InputError
from remediate.genesys.gax import GaxSettings
from remediate.genesys.service import MlcmdSettings
from remediate.transport.settings import (
    AUTH_METHODS,
    SSHSettings,
    WinRMSettings,
    check_settings,
    ssh_options,
)
from remediate.window import WINDOWS_VARIABLE, RecurringWindow, parse_recurring_windows

INVENTORY_ENV = "REMEDIATE_INVENTORY"
VAULT_PASSWORD_FILE_ENV = "ANSIBLE_VAULT_PASSWORD_FILE"  # noqa: S105 (a variable name)
SITE_GROUP_PREFIX = "site_"
DEFAULT_INVENTORY = Path("inventories/lab")

T = TypeVar("T")

_UNREADABLE_HINT = "see what Ansible reads with: ansible-inventory -i INVENTORY --list"


# The model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedGatewayOptions:
    """Where the switch annex says which addresses are trusted gateways. These names appear in no
    Genesys documentation (DESIGN section 2.2): site data, the seed's names as defaults."""

    method: str  # "annex" or "trunk-dn"
    section: str
    list_option: str
    mode_option: str
    mode_value: str


@dataclass(frozen=True)
class FixOptions:
    trusted_gateway: TrustedGatewayOptions
    trunk_name: str
    trunk_prefix: str
    trunk_oos_check: int
    dialplan_context: str  # the Asterisk context calls from Genesys arrive in


@dataclass(frozen=True)
class GenesysHost:
    name: str
    winrm: WinRMSettings
    gax: GaxSettings
    application: str
    service_name: str
    service_control: str  # "service" or "mlcmd"
    log_dir: str
    log_prefix: str
    switch: str
    sip_address: str
    sip_port: int
    softphone_port: int
    mlcmd: MlcmdSettings | None  # set when service_control is "mlcmd"


@dataclass(frozen=True)
class AsteriskHost:
    name: str
    ssh: SSHSettings
    sip_address: str
    sip_port: int
    etc_dir: str
    pjsip_conf: str
    extensions_conf: str
    log_file: str
    command: str
    dn_registrations: dict[str, str]
    capture_record: str | None


@dataclass(frozen=True)
class Site:
    name: str
    genesys: GenesysHost
    asterisk: AsteriskHost
    fixes: FixOptions
    lab: bool
    inventory: Path
    change_windows: tuple[RecurringWindow, ...] = ()
    """`remediate_change_windows`: when changes may run (none: any time)."""
    lock_path: str = ""
    """`remediate_lock_path`: the site's lock file on the Asterisk host."""

    def registration_for(self, dn: str) -> str | None:
        """The Asterisk outbound registration that registers `dn` with Genesys, if any."""
        return self.asterisk.dn_registrations.get(dn)


# Validation --------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_.+\-]{1,64}")
_HOST = re.compile(r"[A-Za-z0-9.\-:]{1,253}")
_WINDOWS_PATH = re.compile(r"[A-Za-z]:\\[A-Za-z0-9_.\- \\()]{0,240}")
_WINDOWS_EXECUTABLE = re.compile(
    r"(?:[A-Za-z]:\\[A-Za-z0-9_.\- \\()]{0,200}\\)?[A-Za-z0-9_.\-]{1,64}\.exe"
)
_POSIX_PATH = re.compile(r"(?:/|~/)[A-Za-z0-9_.\-+@/~]{0,1023}")
_URL = re.compile(r"https?://[A-Za-z0-9.\-:\[\]]+(?::\d{1,5})?(?:/[A-Za-z0-9_.\-/~]*)?")
_COMMAND = re.compile(r"/?[A-Za-z0-9_.\-+@/~]{1,1023}")
_USER = re.compile(r"[A-Za-z0-9_.@\-\\]{1,256}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Host:
    """One inventory host's rendered variables, with typed and validated accessors."""

    def __init__(self, name: str, variables: Mapping[str, Any], origin: Callable[[str], str]):
        self.name = name
        self.variables = variables
        self._origin = origin

    def where(self, key: str) -> str:
        return f"for host {self.name} ({self._origin(key)})"

    def _missing(self, key: str, hint: str = "") -> InputError:
        return InputError(
            f"{key} is not set {self.where(key)}",
            reference="inventory-variable-missing",
            hint=hint or f"set {key} in the host's host_vars or its group's group_vars",
        )

    def _invalid(self, key: str, why: str, hint: str = "") -> InputError:
        return InputError(
            f"{key} {why} {self.where(key)}",
            reference="inventory-variable-invalid",
            hint=hint
            or f"correct {key} where it is set ({self._origin(key)}); "
            "inventories/example shows the expected form of every variable",
        )

    def raw(self, key: str, default: T) -> Any | T:
        value = self.variables.get(key)
        return default if value is None else value

    def text(self, key: str, pattern: re.Pattern[str] | None, default: str | None = None) -> str:
        value = self.variables.get(key, default)
        if value is None or value == "":
            raise self._missing(key)
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise self._invalid(key, f"must be a string, not {type(value).__name__}")
        value = str(value)
        if _CONTROL.search(value):
            raise self._invalid(key, "contains a newline or another control character")
        if pattern is not None and pattern.fullmatch(value) is None:
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise self._invalid(
                key,
                f"has a value that cannot be used safely ({shown!r}): quotes, brackets, "
                "spaces or other special characters, or too long",
            )
        return value

    def optional_text(self, key: str, pattern: re.Pattern[str]) -> str | None:
        if self.variables.get(key) in (None, ""):
            return None
        return self.text(key, pattern)

    def secret(self, key: str) -> str:
        value = self.variables.get(key)
        if value is None or value == "":
            raise self._missing(key, hint=f"set {key} (from Ansible Vault or the environment)")
        value = str(value)
        if "\x00" in value or "\n" in value or "\r" in value or len(value) > 1024:
            raise self._invalid(key, "contains a newline or is too long")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.variables.get(key, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise self._invalid(key, f"must be a whole number, not {value!r}") from None
        if isinstance(value, bool) or not low <= number <= high:
            raise self._invalid(key, f"must be between {low} and {high}, not {value!r}")
        return number

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.variables.get(key, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self._invalid(key, f"must be a number of seconds, not {value!r}") from None
        if isinstance(value, bool) or not low <= number <= high:
            raise self._invalid(key, f"must be between {low:g} and {high:g}, not {value!r}")
        return number

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.variables.get(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "yes",
            "true",
            "on",
            "1",
            "no",
            "false",
            "off",
            "0",
        ):
            return value.lower() in ("yes", "true", "on", "1")
        raise self._invalid(key, f"must be true or false, not {value!r}")

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, None, default)
        if value not in choices:
            raise self._invalid(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value


def _genesys(host: _Host, lab: bool, inventory: Path) -> GenesysHost:
    address = host.text("ansible_host", _HOST)
    port = host.integer("ansible_port", 5986, 1, 65535)
    scheme = host.choice(
        "ansible_winrm_scheme", "http" if port == 5985 else "https", ("http", "https")
    )
    auth_value = host.raw("ansible_winrm_transport", "ntlm")
    if isinstance(auth_value, list):
        auth_value = auth_value[0] if auth_value else "ntlm"
    auth = str(auth_value)
    if auth not in AUTH_METHODS:
        raise host._invalid(
            "ansible_winrm_transport",
            f"is {auth!r}",
            hint=f"use one of {', '.join(sorted(AUTH_METHODS))}",
        )
    validation = host.choice(
        "ansible_winrm_server_cert_validation", "validate", ("validate", "ignore")
    )
    ca_path = host.optional_text("ansible_winrm_ca_trust_path", _POSIX_PATH)
    operation_timeout = host.integer("ansible_winrm_operation_timeout_sec", 20, 1, 3600)
    read_timeout = host.integer("ansible_winrm_read_timeout_sec", operation_timeout + 10, 2, 3610)
    auth_options: dict[str, Any] = {}
    if auth == "kerberos":
        auth_options["kerberos_delegation"] = host.flag("ansible_winrm_kerberos_delegation")
        override = host.optional_text("ansible_winrm_kerberos_hostname_override", _HOST)
        if override:
            auth_options["kerberos_hostname_override"] = override
    if auth == "credssp":
        auth_options["credssp_disable_tlsv1_2"] = host.flag("ansible_winrm_credssp_disable_tlsv1_2")
    winrm_settings = WinRMSettings(
        inventory_host=host.name,
        address=address,
        port=port,
        scheme=scheme,
        user=host.text("ansible_user", _USER),
        password=host.secret("ansible_password"),
        auth=auth,
        ca_trust_path=ca_path,
        validate_certificate=validation == "validate",
        operation_timeout=operation_timeout,
        read_timeout=read_timeout,
        command_timeout=host.number("remediate_winrm_command_timeout", 120.0, 1.0, 3600.0),
        connect_retries=host.integer("remediate_winrm_retries", 2, 0, 10),
        lab=lab,
        allow_insecure=host.flag("remediate_allow_insecure_winrm"),
        auth_options=auth_options,
        source=str(inventory),
    )
    if operation_timeout >= read_timeout:
        raise host._invalid(
            "ansible_winrm_operation_timeout_sec",
            f"({operation_timeout}) must be below ansible_winrm_read_timeout_sec ({read_timeout})",
        )
    check_settings(winrm_settings)
    gax_timeout = host.number("genesys_gax_timeout", 15.0, 0.5, 600.0)
    gax_url = host.text("genesys_gax_url", _URL)
    gax_ca = host.optional_text("genesys_gax_ca_path", _POSIX_PATH)
    gax = GaxSettings(
        inventory_host=host.name,
        url=gax_url,
        user=host.text("genesys_gax_user", _USER),
        password=host.secret("genesys_gax_password"),
        ca_trust_path=gax_ca,
        validate_certificate=host.choice(
            "genesys_gax_cert_validation", "validate", ("validate", "ignore")
        )
        == "validate",
        connect_timeout=min(gax_timeout, 5.0),
        read_timeout=gax_timeout,
        lab=lab,
        allow_insecure=host.flag("remediate_allow_insecure_gax"),
        source=str(inventory),
    )
    application = host.text("genesys_application", _NAME, "SIP_P")
    control = host.choice("genesys_service_control", "service", ("service", "mlcmd"))
    mlcmd = None
    if control == "mlcmd":  # the Management Layer restarts the application, not the SCM
        mlcmd = MlcmdSettings(
            executable=host.text("genesys_mlcmd_executable", _WINDOWS_EXECUTABLE, "mlcmd.exe"),
            cs_host=host.text("genesys_config_server_host", _HOST),
            cs_port=host.integer("genesys_config_server_port", 2020, 1, 65535),
            application=application,
        )
    return GenesysHost(
        name=host.name,
        winrm=winrm_settings,
        gax=gax,
        application=application,
        service_name=host.text("genesys_service_name", _NAME, "TSrvSIP64"),
        service_control=control,
        log_dir=host.text("genesys_log_dir", _WINDOWS_PATH),
        log_prefix=host.text("genesys_log_prefix", _NAME, application),
        switch=host.text("genesys_switch", _NAME, "SIP_P"),
        sip_address=host.text("genesys_sip_address", _HOST, address),
        sip_port=host.integer("genesys_sip_port", 5060, 1, 65535),
        softphone_port=host.integer("genesys_softphone_port", 5090, 1, 65535),
        mlcmd=mlcmd,
    )


def genesys_host_from_variables(
    name: str, variables: Mapping[str, Any], *, source: str
) -> GenesysHost:
    """The Genesys host from one host's rendered inventory variables, as a controller-side task
    (remediate.actions) reads them from its host (unset ones as None), validated exactly as
    `load_site` does."""
    values = {key: value for key, value in variables.items() if value is not None}
    host = _Host(name, values, lambda key: source)
    return _genesys(host, host.flag("remediate_lab"), Path(source))


def _asterisk(host: _Host) -> AsteriskHost:
    common_args = host.text("ansible_ssh_common_args", None, "")
    options = ssh_options(common_args)
    known_hosts = options.get("userknownhostsfile", "")
    if not known_hosts:
        raise host._missing(
            "ansible_ssh_common_args",
            hint="add '-o UserKnownHostsFile=/path/to/known_hosts' so the host key can be checked",
        )
    if _POSIX_PATH.fullmatch(known_hosts) is None:
        raise host._invalid("ansible_ssh_common_args", "names an unusable UserKnownHostsFile")
    # Ansible's ssh connection reads these too: none of them may relax the host key check.
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args"):
        arguments = host.raw(key, "")
        strict = ssh_options(str(arguments)).get("stricthostkeychecking", "yes")
        if strict.lower() in ("no", "off", "accept-new"):
            raise host._invalid(
                key,
                "relaxes StrictHostKeyChecking; remediate checks host keys always",
                hint="remove StrictHostKeyChecking=no (or set it to yes)",
            )
    for key in ("ansible_host_key_checking", "ansible_ssh_host_key_checking"):
        if not host.flag(key, True):
            raise host._invalid(
                key,
                "turns Ansible's host key check off; remediate checks host keys always",
                hint=f"remove {key}",
            )
    ssh = SSHSettings(
        inventory_host=host.name,
        address=host.text("ansible_host", _HOST),
        port=host.integer("ansible_port", 22, 1, 65535),
        user=host.text("ansible_user", _USER),
        private_key_file=os.path.expanduser(host.text("ansible_ssh_private_key_file", _POSIX_PATH)),
        known_hosts_file=os.path.expanduser(known_hosts),
        connect_timeout=host.number("ansible_ssh_timeout", 10.0, 0.5, 600.0),
        command_timeout=host.number("remediate_ssh_command_timeout", 60.0, 1.0, 3600.0),
    )
    registrations: Any = host.raw("asterisk_dn_registrations", {})
    if not isinstance(registrations, Mapping):
        raise host._invalid(
            "asterisk_dn_registrations", "must map DN numbers to registration names"
        )
    dn_registrations: dict[str, str] = {}
    for dn, registration in registrations.items():
        if _NAME.fullmatch(str(dn)) is None or _NAME.fullmatch(str(registration)) is None:
            raise host._invalid(
                "asterisk_dn_registrations", f"has an unusable entry {str(dn)[:40]!r}"
            )
        dn_registrations[str(dn)] = str(registration)
    etc_dir = host.text("asterisk_etc_dir", _POSIX_PATH, "/etc/asterisk")
    return AsteriskHost(
        name=host.name,
        ssh=ssh,
        sip_address=host.text("asterisk_sip_address", _HOST, ssh.address),
        sip_port=host.integer("asterisk_sip_port", 5060, 1, 65535),
        etc_dir=etc_dir,
        pjsip_conf=host.text("asterisk_pjsip_conf", _POSIX_PATH, f"{etc_dir}/pjsip.conf"),
        extensions_conf=host.text(
            "asterisk_extensions_conf", _POSIX_PATH, f"{etc_dir}/extensions.conf"
        ),
        log_file=host.text("asterisk_log_file", _POSIX_PATH, "/var/log/asterisk/messages"),
        command=host.text("asterisk_command", _COMMAND, "asterisk"),
        dn_registrations=dn_registrations,
        capture_record=host.optional_text("asterisk_capture_record", _POSIX_PATH),
    )


def _fix_options(genesys: _Host, asterisk: _Host) -> FixOptions:
    return FixOptions(
        trusted_gateway=TrustedGatewayOptions(
            method=genesys.choice("genesys_trusted_gateway_method", "annex", ("annex", "trunk-dn")),
            section=genesys.text("genesys_trusted_gateway_section", _NAME, "sip"),
            list_option=genesys.text("genesys_trusted_gateway_option", _NAME, "trusted-gateways"),
            mode_option=genesys.text("genesys_gateway_auth_option", _NAME, "gateway-ip-auth-mode"),
            mode_value=genesys.text("genesys_gateway_auth_value", _NAME, "enabled"),
        ),
        trunk_name=genesys.text("genesys_trunk_name", _NAME, "AsteriskTrunk_webRTC"),
        trunk_prefix=genesys.text("genesys_trunk_prefix", _NAME, "50"),
        trunk_oos_check=genesys.integer("genesys_trunk_oos_check", 30, 0, 300),
        dialplan_context=asterisk.text("asterisk_genesys_context", _NAME, "from-genesys"),
    )


# Loading -----------------------------------------------------------------------------------------


def default_inventory(environ: Mapping[str, str]) -> Path | None:
    """`$REMEDIATE_INVENTORY`, else `inventories/lab` when it exists here."""
    if environ.get(INVENTORY_ENV):
        return Path(environ[INVENTORY_ENV])
    return DEFAULT_INVENTORY if DEFAULT_INVENTORY.exists() else None


def _plain(value: Any) -> Any:
    """Ansible's tagged values as plain Python ones (str subclasses would leak Ansible types)."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return "".join([value])
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value)


def _origin_of(value: Any) -> str | None:
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # ansible-core before 2.19 has no origin tags
        return None
    tag = Origin.get_tag(value)
    return None if tag is None else str(tag)


def _vault_secrets(loader: Any, password_file: Path | None) -> None:
    from ansible.parsing.vault import get_file_vault_secret

    if password_file is None:
        return
    if not password_file.is_file():
        raise InputError(
            f"the vault password file {password_file} does not exist",
            reference="vault-password-file-missing",
            hint=f"pass --vault-password-file or set {VAULT_PASSWORD_FILE_ENV}",
        )
    secret = get_file_vault_secret(filename=str(password_file), loader=loader)
    secret.load()
    secrets = [("default", secret)]
    loader.set_vault_secrets(secrets)
    try:
        from ansible.parsing.vault import VaultSecretsContext
    except ImportError:  # before 2.19 the loader's secrets are all there is
        return
    current = VaultSecretsContext.current(optional=True)
    if current is None:
        VaultSecretsContext.initialize(VaultSecretsContext(secrets))
    else:  # one process-wide context: add ours to it
        current.secrets.extend(secrets)


def load_site(
    inventory: Path | None,
    site: str | None = None,
    *,
    vault_password_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Site:
    """Load `site` (the only one when None) from the inventory at `inventory` (a file or a
    directory; by default `$REMEDIATE_INVENTORY` or `inventories/lab`)."""
    parsed = read_inventory(inventory, vault_password_file=vault_password_file, environ=environ)
    return parsed.site(site)


def read_inventory(
    inventory: Path | None,
    *,
    vault_password_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ParsedInventory:
    """The inventory at `inventory` (by default `$REMEDIATE_INVENTORY` or `inventories/lab`),
    parsed once by Ansible's own machinery; its sites are loaded from it on demand."""
    environ = os.environ if environ is None else environ
    if inventory is None:
        inventory = default_inventory(environ)
    if inventory is None:
        raise InputError(
            "no inventory given",
            reference="inventory-missing",
            hint=f"pass -i INVENTORY or set {INVENTORY_ENV}",
        )
    if not inventory.exists():
        raise InputError(
            f"the inventory {inventory} does not exist",
            reference="inventory-missing",
            hint=f"pass -i INVENTORY or set {INVENTORY_ENV}",
        )
    if vault_password_file is None and environ.get(VAULT_PASSWORD_FILE_ENV):
        vault_password_file = Path(environ[VAULT_PASSWORD_FILE_ENV])

    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    try:
        loader = DataLoader()
        _vault_secrets(loader, vault_password_file)
        manager = InventoryManager(loader=loader, sources=[str(inventory)])
        variables = VariableManager(loader=loader, inventory=manager)
    except AnsibleError as error:
        raise InputError(
            f"the inventory {inventory} cannot be read: {error.message}",
            reference="inventory-unreadable",
            hint=_UNREADABLE_HINT,
        ) from None
    if not manager.hosts:  # Ansible only warns when it cannot parse a source
        raise InputError(
            f"the inventory {inventory} holds no host: Ansible could not parse it (its warnings "
            "above say where) or it is empty",
            reference="inventory-unreadable",
            hint=_UNREADABLE_HINT,
        )
    return ParsedInventory(inventory, loader, manager, variables, vault_password_file)


class ParsedInventory:
    """An inventory as Ansible read it: its site names, and each site built from it (a fleet
    reads its inventory once, not once per site)."""

    def __init__(
        self,
        path: Path,
        loader: Any,
        manager: Any,
        variables: Any,
        vault_password_file: Path | None,
    ) -> None:
        self.path = path
        self._loader = loader
        self._manager = manager
        self._variables = variables
        self._vault_password_file = vault_password_file

    @property
    def site_names(self) -> list[str]:
        """Every `site_<name>` group's name, sorted."""
        return sorted(
            name[len(SITE_GROUP_PREFIX) :]
            for name in self._manager.groups
            if name.startswith(SITE_GROUP_PREFIX)
        )

    def site(self, site: str | None = None) -> Site:
        """Site `site` (the only one when None), its variables rendered and validated."""
        from ansible.errors import AnsibleError
        from ansible.template import Templar

        inventory, manager, site_names = self.path, self._manager, self.site_names
        loader, variables = self._loader, self._variables
        vault_password_file = self._vault_password_file

        if not site_names:
            raise InputError(
                f"the inventory {inventory} has no site_<name> group",
                reference="inventory-no-site",
                hint="put the genesys and asterisk hosts of a site under a parent group "
                "site_<name>",
            )
        if site is None:
            if len(site_names) > 1:
                raise InputError(
                    f"the inventory {inventory} holds several sites: {', '.join(site_names)}",
                    reference="site-ambiguous",
                    hint="pick one with --site NAME",
                )
            site = site_names[0]
        if site not in site_names:
            raise InputError(
                f"no site {site!r} in {inventory} (sites: {', '.join(site_names)})",
                reference="site-unknown",
                hint="pick one with --site NAME",
            )
        group = manager.groups[SITE_GROUP_PREFIX + site]
        hosts = {host.name: host for host in group.get_hosts()}

        def one_host(role: str) -> Any:
            members = [h for h in hosts.values() if role in {g.name for g in h.get_groups()}]
            if len(members) != 1:
                found = ", ".join(h.name for h in members) or "none"
                raise InputError(
                    f"site {site} must have exactly one host in group {role!r} (found: {found}) in "
                    f"{inventory}",
                    reference="inventory-site-incomplete",
                    hint=f"put one host of group {role} under the group site_{site}",
                )
            return members[0]

        def rendered(ansible_host: Any) -> _Host:
            try:
                raw_vars = variables.get_vars(host=ansible_host, include_hostvars=False)
            except AnsibleError as error:  # a broken group_vars or host_vars file
                cause = error.__cause__ or error.__context__
                where = getattr(error, "obj", None) or getattr(cause, "obj", None) or inventory
                raise InputError(
                    f"the variables of host {ansible_host.name} cannot be read ({where}): "
                    f"{str(error.message).splitlines()[0]}",
                    reference="inventory-unreadable",
                    hint=_UNREADABLE_HINT,
                ) from None
            templar = Templar(loader=loader, variables=raw_vars)
            values: dict[str, Any] = {}
            origins: dict[str, str] = {}
            for key in raw_vars:
                if not key.startswith(("ansible_", "genesys_", "asterisk_", "remediate_")):
                    continue
                source = _origin_of(raw_vars[key])
                if source:
                    origins[key] = source
                try:
                    values[key] = _plain(templar.template(raw_vars[key]))
                except AnsibleError as error:
                    text = str(getattr(error, "message", "") or error)
                    where = origins.get(key, str(inventory))
                    if "vault" in text.lower() or "decrypt" in text.lower():
                        raise InputError(
                            f"{key} for host {ansible_host.name} is vault-encrypted and cannot be "
                            f"decrypted ({where})",
                            reference="inventory-vault-locked",
                            hint=f"pass --vault-password-file or set {VAULT_PASSWORD_FILE_ENV}"
                            if vault_password_file is None
                            else f"the password in {vault_password_file} does not open this vault: "
                            "check that it is the inventory's",
                        ) from None
                    raise InputError(
                        f"{key} for host {ansible_host.name} cannot be rendered ({where}): "
                        f"{text.splitlines()[0] if text else type(error).__name__}",
                        reference="inventory-variable-invalid",
                        hint=f"correct the Jinja expression of {key} (ansible-inventory -i "
                        "INVENTORY --list shows what Ansible reads)",
                    ) from None

            def origin(key: str) -> str:
                return origins.get(key, str(inventory))

            return _Host(ansible_host.name, values, origin)

        genesys = rendered(one_host("genesys"))
        asterisk = rendered(one_host("asterisk"))
        for host in (genesys, asterisk):
            connection = host.raw("ansible_connection", "")
            expected = "winrm" if host is genesys else "ssh"
            if connection not in (expected, "paramiko") or (
                host is genesys and connection != "winrm"
            ):
                raise host._invalid("ansible_connection", f"must be {expected}, not {connection!r}")
        lab = genesys.flag("remediate_lab")
        # Imported here: the lock's SSH transport pulls in paramiko, which the controller-side tasks
        # that read a Genesys host's settings never need (remediate/transport/settings.py).
        from remediate.lock import LOCK_PATH_VARIABLE, target_lock_path

        return Site(
            name=site,
            genesys=_genesys(genesys, lab, inventory),
            asterisk=_asterisk(asterisk),
            fixes=_fix_options(genesys, asterisk),
            lab=lab,
            inventory=inventory,
            change_windows=parse_recurring_windows(
                genesys.raw(WINDOWS_VARIABLE, None), where=genesys.where(WINDOWS_VARIABLE)
            ),
            lock_path=target_lock_path(
                site, asterisk.optional_text(LOCK_PATH_VARIABLE, _POSIX_PATH), lab=lab
            ),
        )
