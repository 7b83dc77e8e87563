"""Ansible module: an Asterisk gateway told to register DNs now (`pjsip send register`).

Documentation only: the task is an action plugin (action_plugins/remediate_send_register.py, code
in remediate/actions.py), run by ansible-playbook itself; the command goes to the task's host
through Ansible's connection, as with ansible.builtin.raw.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: remediate_send_register
short_description: Make an Asterisk gateway send a REGISTER for each of its registrations now
description:
  - Runs C(<command> -rx "pjsip send register <name>") for each of C(registrations) on the task's
    host (the gateway, by C(delegate_to)), in one shell command through Ansible's connection, like
    ansible.builtin.raw (no Python is started there), stopping at the first that fails. Each
    command is shell-quoted, and the names must be names Asterisk takes (letters, digits,
    C(_ . + -)), checked before anything is sent.
  - After a SIP Server restart a DN is in service only once a fresh REGISTER arrives; this
    triggers it instead of waiting for the refresh interval.
  - Fails when Asterisk refuses a command (C(asterisk -rx) exits 0 whatever happens, so its
    output tells) and when the gateway cannot be reached (a failure, not an unreachable host, so
    that a play's C(rescue) sees it).
  - No registrations, nothing to do (skipped). Check mode sends nothing.
options:
  command:
    description: The gateway's Asterisk command (its C(asterisk_command)).
    type: str
    default: asterisk
  registrations:
    description: The outbound registrations (pjsip.conf section names) to send.
    type: list
    elements: str
    required: true
extends_documentation_fragment:
  - remediate
author: remediate
"""

EXAMPLES = r"""
- name: Send a REGISTER for each DN now
  remediate_send_register:
    command: "{{ remediate_site.command }}"
    registrations: "{{ remediate_site.registrations }}"
  delegate_to: "{{ remediate_site.gateway }}"
"""

RETURN = r"""
registrations:
  description: The registrations sent (or, in check mode, that would be).
  type: list
  returned: when not skipped
stdout:
  description: What Asterisk printed (nothing when every registration was sent).
  type: str
  returned: when sent
"""
