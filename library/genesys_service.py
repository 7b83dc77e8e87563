#!/usr/bin/python
"""Ansible module: the SIP Server's Windows service over WinRM, with bounded waits."""

from __future__ import annotations

DOCUMENTATION = r"""
module: genesys_service
short_description: Restart, start, stop or query the Genesys SIP Server service over WinRM
description:
  - Controls the Windows service (C(TSrvSIP64)) of the Genesys host over WinRM, with the
    product's own PowerShell (Ansible's Windows modules need a real PowerShell).
  - Each wait is bounded; a service stuck in StopPending, or failing to start (error 1053), fails
    the task instead of hanging it.
  - C(method=mlcmd) asks the Genesys Management Layer (C(mlcmd -stopapp/-startapp)) and waits for
    the service state; it supports C(restarted) and C(queried).
  - Check mode reads the state and reports what would be done without doing it.
  - Runs on the controller (delegated to localhost) with the Python that has the C(remediate)
    package.
options:
  connection:
    description: The Genesys host's inventory variables (role remediate builds it).
    type: dict
    required: true
  name:
    description: The Windows service name.
    type: str
    required: true
  state:
    description: What to do.
    type: str
    choices: [restarted, started, stopped, queried]
    default: queried
  method:
    description: service (the Service Control Manager) or mlcmd (the Management Layer).
    type: str
    choices: [service, mlcmd]
    default: service
  stop_timeout:
    description: Seconds to wait for Stopped.
    type: int
    default: 60
  start_timeout:
    description: Seconds to wait for Running.
    type: int
    default: 120
author: remediate
"""

EXAMPLES = r"""
- name: Restart SIP Server
  genesys_service:
    connection: "{{ remediate_genesys_connection }}"
    name: TSrvSIP64
    state: restarted
    method: service
  delegate_to: localhost
"""

RETURN = r"""
before:
  description: The service's state before, {name, status, display_name}.
  type: dict
  returned: always
after:
  description: The state after (in check mode, the state it would reach).
  type: dict
  returned: always
"""

import dataclasses  # noqa: E402 (after the documentation, as Ansible wants)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (after the documentation, as Ansible wants)

try:
    from remediate.changes import connection_argument_spec, failure
    from remediate.errors import RemediateError
    from remediate.genesys.service import SipServerService
    from remediate.inventory import genesys_host_from_variables
    from remediate.transport.winrm import WinRMTransport

    IMPORT_ERROR = None
except ImportError as error:  # reported by main(), with the fix
    IMPORT_ERROR = error

STATUS_AFTER = {"restarted": "Running", "started": "Running", "stopped": "Stopped"}


def state_text(state):
    return "" if state is None else f"{state['name']}: {state['status']}\n"


def main():
    module = AnsibleModule(
        argument_spec={
            "connection": connection_argument_spec() if IMPORT_ERROR is None else {"type": "dict"},
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
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(
            msg=f"the remediate package cannot be imported: {IMPORT_ERROR}",
            reference="module-python-without-remediate",
            hint="run the task on the controller with ansible_python_interpreter: "
            '"{{ ansible_playbook_python }}"',
        )
    params = module.params
    wanted = params["state"]
    if params["method"] == "mlcmd" and wanted in ("started", "stopped"):
        module.fail_json(
            msg=f"mlcmd-unsupported: method mlcmd restarts or queries, it does not leave the "
            f"service {wanted}",
            reference="mlcmd-unsupported",
            hint="use method service for started/stopped",
        )
    before = None
    try:
        connection = dict(params["connection"], genesys_service_control=params["method"])
        genesys = genesys_host_from_variables(
            connection["inventory_host"], connection, source="its inventory variables"
        )
        with WinRMTransport(genesys.winrm) as transport:
            service = SipServerService(transport, params["name"])
            before = dataclasses.asdict(service.state())
            if wanted == "queried":
                changed, after = False, before
            elif wanted == "restarted":
                changed = True
            else:
                changed = before["status"] != STATUS_AFTER[wanted]
            if wanted != "queried":
                after = dict(before, status=STATUS_AFTER[wanted]) if changed else before
            if changed and not module.check_mode:
                stop, start = params["stop_timeout"], params["start_timeout"]
                if wanted == "restarted" and params["method"] == "mlcmd":
                    final = service.restart_with_mlcmd(genesys.mlcmd, stop, start)
                elif wanted == "restarted":
                    final = service.restart(stop, start)
                elif wanted == "started":
                    final = service.start(start)
                else:
                    final = service.stop(stop)
                after = dataclasses.asdict(final)
                if after["status"] != STATUS_AFTER[wanted]:
                    module.fail_json(
                        msg=f"service-control-failed: {params['name']} is {after['status']} "
                        f"after being {wanted}",
                        reference="service-control-failed",
                        hint="look at the service and the SIP Server log on the host",
                        before=before,
                        after=after,
                    )
    except RemediateError as error:
        module.fail_json(before=before, **failure(error))
    module.exit_json(
        changed=changed,
        before=before,
        after=after,
        method=params["method"],
        diff={
            "before": state_text(before),
            "after": state_text(after),
            "before_header": f"service {params['name']}",
            "after_header": f"service {params['name']}",
        },
    )


if __name__ == "__main__":
    main()
