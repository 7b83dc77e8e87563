"""Ansible module: the SIP Server's Windows service over WinRM, with bounded waits.

Documentation only: the task is an action plugin (action_plugins/genesys_service.py, code in
remediate/actions.py), run by ansible-playbook itself on the controller.
"""

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
options:
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
extends_documentation_fragment:
  - remediate
  - remediate.genesys
author: remediate
"""

EXAMPLES = r"""
- name: Restart SIP Server
  genesys_service:
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
