"""The tasks remediate's roles run on the controller: genesys_service, genesys_annex_option,
genesys_dn, genesys_trusted_gateway and genesys_object_restore (the Genesys side), and
remediate_site_gateway (a site's Asterisk gateway, found and checked) and remediate_send_register
(the gateway told to register DNs now, through Ansible's connection to it).

They are action plugins, the way Ansible runs its own controller-side modules (`debug`,
`set_fact`): each task runs inside ansible-playbook's worker, with no interpreter started, no
AnsiballZ payload and no module_utils imported per host and task (the Genesys side reaches its
target over WinRM and GAX itself: Ansible's Windows modules need a real PowerShell).
action_plugins/<name>.py is one line (`ActionModule = action_module(<name>)`); library/<name>.py
holds the documentation (`ansible-doc -M library genesys_service`).

`run_task(name, args, check_mode=..., host=...)` is the whole task without Ansible's executor: the
arguments are validated by Ansible's own ArgumentSpecValidator, a product error becomes a failure
with its reference and hint, and the values of no_log options never reach the result.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remediate.asterisk import cli
from remediate.changes import (
    CFG_DN,
    CFG_SWITCH,
    AnnexOption,
    annex_text,
    annex_with,
    check_before_state,
    dn_on_switch,
    new_dn,
    object_label,
    object_text,
    restore_plan,
)
from remediate.dn import validate_dn
from remediate.errors import RemediateError
from remediate.genesys.gax import CfgObject, GaxClient
from remediate.genesys.service import SipServerService
from remediate.inventory import SITE_GROUP_PREFIX, GenesysHost, genesys_host_from_variables
from remediate.transport.winrm import WinRMTransport

GENESYS_SECRET_VARIABLES = ("ansible_password", "genesys_gax_password")
"""Passed to the tasks with no_log."""

GENESYS_CONNECTION_VARIABLES = (
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_password",
    "ansible_winrm_scheme",
    "ansible_winrm_transport",
    "ansible_winrm_server_cert_validation",
    "ansible_winrm_ca_trust_path",
    "ansible_winrm_operation_timeout_sec",
    "ansible_winrm_read_timeout_sec",
    "ansible_winrm_kerberos_delegation",
    "ansible_winrm_kerberos_hostname_override",
    "ansible_winrm_credssp_disable_tlsv1_2",
    "genesys_application",
    "genesys_service_name",
    "genesys_service_control",
    "genesys_mlcmd_executable",
    "genesys_config_server_host",
    "genesys_config_server_port",
    "genesys_log_dir",
    "genesys_log_prefix",
    "genesys_switch",
    "genesys_sip_address",
    "genesys_sip_port",
    "genesys_softphone_port",
    "genesys_gax_url",
    "genesys_gax_user",
    "genesys_gax_password",
    "genesys_gax_ca_path",
    "genesys_gax_cert_validation",
    "genesys_gax_timeout",
    "remediate_lab",
    "remediate_allow_insecure_winrm",
    "remediate_allow_insecure_gax",
    "remediate_winrm_command_timeout",
    "remediate_winrm_retries",
)
"""The Genesys host's inventory variables a task builds its settings from (as
`remediate.inventory` does): its `connection`, read by the action plugin from the host's own
variables unless the task passes it."""


def connection_argument_spec() -> dict[str, Any]:
    """The argument spec of a task's `connection` option: the inventory variables above plus
    `inventory_host`, values as the inventory gives them (validated by the product)."""
    options: dict[str, Any] = {"inventory_host": {"type": "str", "required": True}}
    for name in GENESYS_CONNECTION_VARIABLES:
        options[name] = {"type": "raw", "no_log": name in GENESYS_SECRET_VARIABLES}
    return {"type": "dict", "required": True, "options": options}


@dataclass(frozen=True)
class TaskHost:
    """The task's host as Ansible hands it to an action plugin: its variables (each templated when
    read: a vaulted password, a value made of other variables) and, through `hostvars`, the other
    hosts' variables; `execute` runs a shell command on it through Ansible's connection (what
    `raw` does), returning rc, stdout and stderr."""

    variables: Mapping[str, Any]
    template: Callable[[Any], Any]
    execute: Callable[[str], Mapping[str, Any]] | None = None

    @property
    def name(self) -> str:
        return str(self.variables.get("inventory_hostname", ""))

    def get(self, name: str, default: Any = None) -> Any:
        return self.template(self.variables[name]) if name in self.variables else default

    def of(self, host: str, name: str, default: Any = None) -> Any:
        """Variable `name` of another host (`hostvars[host][name]`)."""
        hostvars = self.variables.get("hostvars") or {}
        if host not in hostvars or name not in hostvars[host]:
            return default
        return self.template(hostvars[host][name])


def host_connection(host: TaskHost) -> dict[str, Any]:
    """A Genesys task's `connection`: the variables of GENESYS_CONNECTION_VARIABLES its host sets.
    Read here rather than passed as a dict of templates in the task, which Ansible would compile
    (each of them, in every worker) for every task and host."""
    connection: dict[str, Any] = {"inventory_host": host.name}
    for name in GENESYS_CONNECTION_VARIABLES:
        if name in host.variables:
            connection[name] = host.get(name)
    return connection


def _annex_option_spec(*, value_required: bool, with_list: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "section": {"type": "str", "required": True},
        "key": {"type": "str", "required": True, "no_log": False},
        "value": {"type": "str", "required": True}
        if value_required
        else {"type": "str", "default": ""},
    }
    if with_list:
        options["list"] = {"type": "bool", "default": False}
    return options


_OBJECT_TYPE = {"type": "str", "required": True, "choices": [CFG_SWITCH, CFG_DN]}
_PRESENCE = {"type": "str", "default": "present", "choices": ["present", "absent"]}

ARGUMENT_SPECS: dict[str, dict[str, Any]] = {
    "genesys_annex_option": {
        "connection": connection_argument_spec(),
        "cfg_type": _OBJECT_TYPE,
        "name": {"type": "str", "required": True},
        "options": {
            "type": "list",
            "elements": "dict",
            "required": True,
            "options": _annex_option_spec(value_required=False, with_list=True),
        },
        "state": _PRESENCE,
    },
    "genesys_dn": {
        "connection": connection_argument_spec(),
        "name": {"type": "str", "required": True},
        "switch": {"type": "str", "required": True},
        "dn_type": {"type": "str", "default": "CFGTrunk"},
        "options": {
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": _annex_option_spec(value_required=True, with_list=False),
        },
        "state": _PRESENCE,
    },
    "genesys_trusted_gateway": {
        "connection": connection_argument_spec(),
        "method": {"type": "str", "default": "annex", "choices": ["annex", "trunk-dn"]},
        "switch": {"type": "str", "required": True},
        "address": {"type": "str"},
        "port": {"type": "int"},
        "section": {"type": "str"},
        "option": {"type": "str"},
        "auth_option": {"type": "str"},
        "auth_value": {"type": "str"},
        "trunk_name": {"type": "str"},
    },
    "genesys_object_restore": {
        "connection": connection_argument_spec(),
        "cfg_type": _OBJECT_TYPE,
        "name": {"type": "str", "required": True},
        "switch": {"type": "str"},
        "before": {"type": "raw", "required": True},
    },
    "remediate_site_gateway": {
        "dns": {"type": "list", "elements": "str", "default": []},
    },
    "remediate_send_register": {
        "command": {"type": "str", "default": "asterisk"},
        "registrations": {"type": "list", "elements": "str", "required": True},
    },
    "genesys_service": {
        "connection": connection_argument_spec(),
        "name": {"type": "str", "required": True},
        "state": {
            "type": "str",
            "default": "queried",
            "choices": ["restarted", "started", "stopped", "queried"],
        },
        "method": {"type": "str", "default": "service", "choices": ["service", "mlcmd"]},
        "stop_timeout": {"type": "int", "default": 60},
        "start_timeout": {"type": "int", "default": 120},
    },
}
"""Each task's options, in Ansible's argument-spec form (library/<name>.py documents them)."""

REQUIRED_IF: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "genesys_trusted_gateway": [
        ("method", "annex", ("section", "option", "auth_option", "auth_value")),
        ("method", "trunk-dn", ("trunk_name",)),
    ],
}
"""Options a task needs only for some values of another (Ansible's `required_if`)."""


class TaskFailed(RemediateError):
    """A task's refusal, with what it found (`details`: e.g. the object before)."""

    def __init__(self, message: str, *, reference: str, hint: str, **details: Any) -> None:
        super().__init__(message, reference=reference, hint=hint)
        self.details = details


def failure(error: RemediateError) -> dict[str, Any]:
    """A product error as a failed task's result: reference, message, hint."""
    message = f"{error.reference}: {error.message}"
    if error.hint:
        message += f" (hint: {error.hint})"
    details = error.details if isinstance(error, TaskFailed) else {}
    return {
        "failed": True,
        "msg": message,
        "reference": error.reference,
        "hint": error.hint,
        **details,
    }


def _genesys(params: Mapping[str, Any], **overrides: Any) -> GenesysHost:
    connection = dict(params["connection"], **overrides)
    return genesys_host_from_variables(
        connection["inventory_host"], connection, source="its inventory variables"
    )


def _diff(before: str, after: str, before_header: str, after_header: str) -> dict[str, str]:
    return {
        "before": before,
        "after": after,
        "before_header": before_header,
        "after_header": after_header,
    }


def annex_option(params: Mapping[str, Any], check_mode: bool, host: TaskHost) -> dict[str, Any]:
    """genesys_annex_option: annex options of a switch or DN present (or absent), others kept."""
    options = [
        AnnexOption(item["section"], item["key"], item["value"], item["list"])
        for item in params["options"]
    ]
    label = object_label(params["cfg_type"], params["name"])
    with GaxClient(_genesys(params).gax) as gax:
        before = gax.find(params["cfg_type"], params["name"])
        if before is None:
            raise TaskFailed(
                f"there is no {label}",
                reference="gax-not-found",
                hint="check the name in the inventory (genesys_switch, the DN number)",
            )
        after = annex_with(before, options, present=params["state"] == "present")
        changed = after != before
        if changed and not check_mode:
            after = gax.update(after)
    header = f"{label} (annex)"
    return {
        "changed": changed,
        "before": before,
        "after": after,
        "dbid": before["dbid"],
        "diff": _diff(annex_text(before), annex_text(after), header, header),
    }


def dn(params: Mapping[str, Any], check_mode: bool, host: TaskHost) -> dict[str, Any]:
    """genesys_dn: a DN of a type on a switch with annex options (others kept), or no such DN."""
    options = [
        AnnexOption(item["section"], item["key"], item["value"]) for item in params["options"]
    ]
    label = object_label(CFG_DN, params["name"])
    with GaxClient(_genesys(params).gax) as gax:
        switch = gax.find(CFG_SWITCH, params["switch"])
        if switch is None:
            raise TaskFailed(
                f"there is no switch {params['switch']!r}",
                reference="gax-not-found",
                hint="check genesys_switch in the inventory",
            )
        before = dn_on_switch(gax.find_all(CFG_DN, params["name"]), switch)
        if before is not None and before.get("dntype") != params["dn_type"]:
            raise TaskFailed(
                f"{label} on switch {params['switch']} is a {before.get('dntype')}, "
                f"not a {params['dn_type']}",
                reference="dn-wrong-type",
                hint="pick another DN name (genesys_trunk_name) or change that DN by hand",
                before=before,
            )
        after: CfgObject | None
        if params["state"] == "absent":
            after = None
        elif before is None:
            after = new_dn(params["name"], switch, params["dn_type"], options)
        else:
            after = annex_with(before, options, present=True)
        changed = after != before
        if changed and not check_mode:
            if after is None:
                assert before is not None
                gax.delete(CFG_DN, before["dbid"])
            elif before is None:
                after = gax.create(after)
            else:
                after = gax.update(after)
    return {
        "changed": changed,
        "before": before,
        "after": after,
        "diff": _diff(object_text(before), object_text(after), label, label),
    }


def trusted_gateway(params: Mapping[str, Any], check_mode: bool, host: TaskHost) -> dict[str, Any]:
    """genesys_trusted_gateway: SIP Server made to trust the gateway at `address` (by default the
    gateway of the host's site, found and checked as remediate_site_gateway does), by `method`:
    annex (the address listed in the switch annex option, other addresses kept, and the
    authentication option set) or trunk-dn (a Trunk DN whose TServer contact is address:port).
    One task for either, as genesys_annex_option or genesys_dn would do it: every task costs each
    host a worker process, and a fleet runs them all on one controller."""
    if params["address"] is None:
        gateway = site_gateway({"dns": []}, check_mode, host)
        address, port = gateway["address"], gateway["port"]
    else:
        address, port = params["address"], params["port"] or 5060
    common = {"connection": params["connection"], "state": "present"}
    if params["method"] == "annex":
        section = params["section"]
        options = [
            {"section": section, "key": params["option"], "value": address, "list": True},
            {
                "section": section,
                "key": params["auth_option"],
                "value": params["auth_value"],
                "list": False,
            },
        ]
        result = annex_option(
            dict(common, cfg_type=CFG_SWITCH, name=params["switch"], options=options),
            check_mode,
            host,
        )
    else:
        contact = f"{address}:{port}"
        options = [{"section": "TServer", "key": "contact", "value": contact}]
        result = dn(
            dict(
                common,
                name=params["trunk_name"],
                switch=params["switch"],
                dn_type="CFGTrunk",
                options=options,
            ),
            check_mode,
            host,
        )
    return {**result, "method": params["method"], "address": address, "port": port}


def _current_object(
    gax: GaxClient, cfg_type: str, name: str, switch_name: str | None, before: CfgObject | None
) -> CfgObject | None:
    """The object as it is now: for a DN, the one on the before-state's switch (or `switch`)."""
    candidates = [obj for obj in gax.find_all(cfg_type, name) if obj.get("name") == name]
    if cfg_type != CFG_DN:
        return candidates[0] if candidates else None
    if before is not None:
        return next(
            (dn for dn in candidates if dn.get("switchdbid") == before.get("switchdbid")), None
        )
    if switch_name is None:
        if len(candidates) > 1:
            raise TaskFailed(
                f"several DNs are named {name!r}",
                reference="rollback-ambiguous-object",
                hint="pass the DN's switch",
            )
        return candidates[0] if candidates else None
    switch = gax.find(CFG_SWITCH, switch_name)
    return None if switch is None else dn_on_switch(candidates, switch)


def object_restore(params: Mapping[str, Any], check_mode: bool, host: TaskHost) -> dict[str, Any]:
    """genesys_object_restore: an object put back exactly to a recorded before-state."""
    cfg_type, name = params["cfg_type"], params["name"]
    label = object_label(cfg_type, name)
    recorded = check_before_state(cfg_type, name, params["before"])
    with GaxClient(_genesys(params).gax) as gax:
        current = _current_object(gax, cfg_type, name, params["switch"], recorded)
        plan = restore_plan(current, recorded)
        after = current if plan.action == "none" else plan.document
        if plan.action != "none" and not check_mode:
            if plan.action == "delete":
                assert current is not None
                gax.delete(cfg_type, current["dbid"])
            elif plan.document is not None:
                write = gax.create if plan.action == "create" else gax.update
                after = write(plan.document)
    dbid_changed = (
        recorded is not None
        and after is not None
        and after.get("dbid", recorded.get("dbid")) != recorded.get("dbid")
    )
    return {
        "changed": plan.action != "none",
        "action": plan.action,
        "before": current,
        "after": after,
        "dbid_changed": dbid_changed,
        "diff": _diff(object_text(current), object_text(after), label, f"{label} (restored)"),
    }


SERVICE_STATUS_AFTER = {"restarted": "Running", "started": "Running", "stopped": "Stopped"}


def _service_text(state: Mapping[str, Any] | None) -> str:
    return "" if state is None else f"{state['name']}: {state['status']}\n"


def service(params: Mapping[str, Any], check_mode: bool, host: TaskHost) -> dict[str, Any]:
    """genesys_service: the SIP Server's Windows service restarted, started, stopped or queried."""
    wanted, method, name = params["state"], params["method"], params["name"]
    if method == "mlcmd" and wanted in ("started", "stopped"):
        raise TaskFailed(
            f"method mlcmd restarts or queries, it does not leave the service {wanted}",
            reference="mlcmd-unsupported",
            hint="use method service for started/stopped",
        )
    genesys = _genesys(params, genesys_service_control=method)
    before: dict[str, Any] | None = None
    try:
        with WinRMTransport(genesys.winrm) as transport:
            controlled = SipServerService(transport, name)
            before = dataclasses.asdict(controlled.state())
            if wanted == "queried":
                changed = False
            else:
                changed = wanted == "restarted" or before["status"] != SERVICE_STATUS_AFTER[wanted]
            after = dict(before, status=SERVICE_STATUS_AFTER[wanted]) if changed else before
            if changed and not check_mode:
                stop, start = params["stop_timeout"], params["start_timeout"]
                if wanted == "restarted" and genesys.mlcmd is not None:  # method mlcmd
                    final = controlled.restart_with_mlcmd(genesys.mlcmd, stop, start)
                elif wanted == "restarted":
                    final = controlled.restart(stop, start)
                elif wanted == "started":
                    final = controlled.start(start)
                else:
                    final = controlled.stop(stop)
                after = dataclasses.asdict(final)
                if after["status"] != SERVICE_STATUS_AFTER[wanted]:
                    raise TaskFailed(
                        f"{name} is {after['status']} after being {wanted}",
                        reference="service-control-failed",
                        hint="look at the service and the SIP Server log on the host",
                        before=before,
                        after=after,
                    )
    except TaskFailed:
        raise
    except RemediateError as error:
        raise TaskFailed(
            error.message, reference=error.reference, hint=error.hint, before=before
        ) from error
    header = f"service {name}"
    return {
        "changed": changed,
        "before": before,
        "after": after,
        "method": method,
        "diff": _diff(_service_text(before), _service_text(after), header, header),
    }


_GATEWAY_ADDRESS = re.compile(r"[A-Za-z0-9.:-]{1,253}")


def _check_registration_names(names: Sequence[Any], where: str) -> None:
    if not all(cli.NAME.fullmatch(str(name)) for name in names):
        raise TaskFailed(
            f"{where} holds a name Asterisk cannot take",
            reference="inventory-variable-invalid",
            hint="registration names are letters, digits and _ . + - (pjsip.conf's section names)",
        )


def site_gateway(params: Mapping[str, Any], check_mode: bool, host: TaskHost) -> dict[str, Any]:
    """remediate_site_gateway: the DNs checked, the Genesys host's site (its one site_<name>
    group), that site's one Asterisk gateway, the address and port its REGISTERs come from, and
    the registrations that send the REGISTERs of the DNs; each checked. Read-only: runs in check
    mode too."""
    for dn in params["dns"]:
        validate_dn(dn)
    groups: Mapping[str, Sequence[str]] = host.get("groups") or {}
    sites = [name for name in host.get("group_names") or () if name.startswith(SITE_GROUP_PREFIX)]
    members = groups.get(sites[0], ()) if len(sites) == 1 else ()
    gateways = [name for name in members if name in groups.get("asterisk", ())]
    if len(sites) != 1 or len(gateways) != 1:
        raise TaskFailed(
            f"{host.name} must be in exactly one site_<name> group (it is in "
            f"{', '.join(sites) or 'none'}) holding exactly one host of group asterisk (found "
            f"{len(gateways)})",
            reference="site-incomplete",
            hint="put one genesys and one asterisk host under each site_<name> group",
        )
    (gateway,) = gateways
    address = host.of(gateway, "asterisk_sip_address") or host.of(gateway, "ansible_host", gateway)
    port = host.of(gateway, "asterisk_sip_port", 5060)
    if (
        not _GATEWAY_ADDRESS.fullmatch(str(address))
        or not str(port).isdigit()
        or not 1 <= int(port) <= 65535
    ):
        raise TaskFailed(
            f"asterisk_sip_address / asterisk_sip_port of {gateway} cannot be used: "
            f"{str(address)[:80]}:{str(port)[:10]}",
            reference="inventory-variable-invalid",
            hint="set asterisk_sip_address to the gateway's SIP address and asterisk_sip_port "
            "to its port",
        )
    known = {
        str(dn): name for dn, name in (host.of(gateway, "asterisk_dn_registrations") or {}).items()
    }
    registrations = [known[dn] for dn in params["dns"] if dn in known]
    _check_registration_names(registrations, f"asterisk_dn_registrations of {gateway}")
    return {
        "changed": False,
        "site": sites[0].removeprefix(SITE_GROUP_PREFIX),
        "gateway": gateway,
        "address": str(address),
        "port": int(port),
        "command": str(host.of(gateway, "asterisk_command", "asterisk")),
        "registrations": registrations,
    }


def send_register(params: Mapping[str, Any], check_mode: bool, host: TaskHost) -> dict[str, Any]:
    """remediate_send_register: `pjsip send register <name>` for each registration, on the task's
    host (the gateway, by delegate_to) through Ansible's connection: one command, no Python
    started there. A gateway that cannot be reached fails the task, like any other failure (an
    unreachable host would leave the play, past restart.yml's rescue)."""
    registrations = list(params["registrations"])
    _check_registration_names(registrations, "registrations")
    if not registrations:
        return {"changed": False, "skipped": True, "msg": "no registration to send"}
    if check_mode:
        return {"changed": True, "registrations": registrations, "msg": "check mode: not sent"}
    if host.execute is None:
        raise TaskFailed(
            "remediate_send_register has no connection to the gateway",
            reference="task-arguments-invalid",
            hint="run it as an Ansible task, delegated to the site's asterisk host",
        )
    # One shell command line for the site: `asterisk -rx '<command>'` per registration, quoted by
    # cli.rx, stopping at the first that fails.
    sent = [cli.send_register(name) for name in registrations]
    done = host.execute(" && ".join(cli.rx(each, binary=params["command"]) for each in sent))
    output = str(done.get("stdout") or "")
    refused = done.get("rc") != 0
    if not refused:
        try:  # `asterisk -rx` exits 0 whatever Asterisk answers: what it prints tells
            cli.check_output(" / ".join(sent), output)
        except cli.AsteriskCommandError:
            refused = True
    if refused:
        said = (output + str(done.get("stderr") or "")).strip()[:300]
        raise TaskFailed(
            f"`pjsip send register` failed (exit status {done.get('rc')}): {said or 'no output'}",
            reference="asterisk-command-failed",
            hint="check asterisk_command and that Asterisk runs on the gateway",
            rc=done.get("rc"),
            stdout=output,
        )
    return {"changed": True, "registrations": registrations, "rc": 0, "stdout": output}


TASKS: dict[str, Callable[[Mapping[str, Any], bool, TaskHost], dict[str, Any]]] = {
    "genesys_annex_option": annex_option,
    "genesys_dn": dn,
    "genesys_trusted_gateway": trusted_gateway,
    "genesys_object_restore": object_restore,
    "genesys_service": service,
    "remediate_site_gateway": site_gateway,
    "remediate_send_register": send_register,
}


def run_task(
    name: str, args: Mapping[str, Any], *, check_mode: bool, host: TaskHost | None = None
) -> dict[str, Any]:
    """Task `name` with the task's arguments, on `host` (the action plugin's; a Genesys task's
    `connection` is read from it when the task does not pass one): its result, or a failed
    result with a reference and a hint; no value of a no_log option anywhere in it."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible.module_utils.common.parameters import remove_values

    host = host or TaskHost({}, lambda value: value)
    spec = ARGUMENT_SPECS[name]
    arguments = dict(args)
    if "connection" in spec and "connection" not in arguments and host.variables:
        arguments["connection"] = host_connection(host)
    connection = arguments.get("connection")
    secrets = {
        str(connection[variable])
        for variable in GENESYS_SECRET_VARIABLES
        if isinstance(connection, Mapping) and connection.get(variable)
    }
    validator = ArgumentSpecValidator(spec, required_if=REQUIRED_IF.get(name))
    validation = validator.validate(arguments)
    if validation.error_messages:
        result: dict[str, Any] = {
            "failed": True,
            "msg": f"task-arguments-invalid: {name}: {'; '.join(validation.error_messages)}",
            "reference": "task-arguments-invalid",
            "hint": f"see `ansible-doc -M library {name}` for the options it takes",
        }
    else:
        try:
            result = TASKS[name](validation.validated_parameters, check_mode, host)
        except RemediateError as error:
            result = failure(error)
    cleaned: dict[str, Any] = remove_values(result, secrets)
    return cleaned


def action_module(name: str) -> type:
    """The action plugin class of task `name` (action_plugins/<name>.py names it ActionModule)."""
    from ansible.plugins.action import ActionBase

    def run(self: Any, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> Any:
        from ansible.errors import AnsibleConnectionFailure

        def execute(command: str) -> Mapping[str, Any]:
            try:
                # executable=False, as `raw`: the command is already a /bin/sh command line.
                done: Mapping[str, Any] = self._low_level_execute_command(command, executable=False)
            except AnsibleConnectionFailure as error:
                target = self._task.delegate_to or host.name
                raise TaskFailed(
                    f"{target} could not be reached: {str(error)[:300]}",
                    reference="ssh-unreachable",
                    hint="check its ansible_host, ansible_port and ansible_user, and that sshd "
                    "runs there; nothing was sent",
                ) from None
            return done

        result = ActionBase.run(self, tmp, task_vars)
        host = TaskHost(task_vars or {}, self._templar.template, execute)
        check_mode = bool(self._task.check_mode)
        result.update(run_task(name, self._task.args, check_mode=check_mode, host=host))
        return result

    doc = f"Runs task {name} on the controller (documented in library/{name}.py)."
    return type("ActionModule", (ActionBase,), {"__doc__": doc, "run": run})
