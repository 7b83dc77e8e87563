"""Ansible module: a Genesys DN (e.g. a Trunk DN) and its annex, through GAX.

Documentation only: the task is an action plugin (action_plugins/genesys_dn.py, code in
remediate/actions.py), run by ansible-playbook itself on the controller.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: genesys_dn
short_description: Ensure a Genesys DN exists on a switch with given annex options, or not
description:
  - Ensures the DN C(name) exists on switch C(switch), of type C(dn_type), with the annex options
    C(options) (other options of an existing DN are kept), or that it does not exist.
  - A DN of that name on the switch with another type is refused, never converted.
  - Supports check mode and diff mode.
options:
  name:
    description: The DN's number (for a Trunk DN, its name such as AsteriskTrunk_webRTC).
    type: str
    required: true
  switch:
    description: The switch the DN belongs to.
    type: str
    required: true
  dn_type:
    description: The DN type, as Configuration Server names it.
    type: str
    default: CFGTrunk
  options:
    description: Annex options the DN must have (section TServer for a trunk).
    type: list
    elements: dict
    default: []
    suboptions:
      section: {type: str, required: true, description: The annex section.}
      key: {type: str, required: true, description: The option name.}
      value: {type: str, required: true, description: The value.}
  state:
    description: Whether the DN must exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - remediate
  - remediate.genesys
author: remediate
"""

EXAMPLES = r"""
- name: The gateway's Trunk DN
  genesys_dn:
    name: AsteriskTrunk_webRTC
    switch: SIP_P
    options:
      - {section: TServer, key: contact, value: "192.0.2.54:5060"}
      - {section: TServer, key: prefix, value: "50"}
      - {section: TServer, key: oos-check, value: "30"}
  delegate_to: localhost
"""

RETURN = r"""
before:
  description: The DN before the change (null when it did not exist).
  type: dict
  returned: always
after:
  description: The DN after the change (null when removed; in check mode, as it would be).
  type: dict
  returned: always
"""
