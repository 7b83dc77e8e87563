"""Ansible module: annex options of a Genesys configuration object, through GAX.

Documentation only: the task is an action plugin (action_plugins/genesys_annex_option.py, code in
remediate/actions.py), run by ansible-playbook itself on the controller.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: genesys_annex_option
short_description: Ensure annex options of a Genesys switch or DN, through GAX
description:
  - Ensures options C([section] key = value) are present in (or absent from) the annex of a
    configuration object (a CfgSwitch by name, or a CfgDN by number) through the Genesys
    Administrator Extension REST API. Every other option is kept, in its place.
  - An option with C(list=true) is one entry of a comma-separated list option (such as the
    trusted gateways); the entry is added after those already listed (or removed), never in
    their place.
  - Supports check mode and diff mode.
options:
  cfg_type:
    description: The object type.
    type: str
    choices: [CfgSwitch, CfgDN]
    required: true
  name:
    description: The object's name (a switch name, or a DN number).
    type: str
    required: true
  options:
    description: The annex options.
    type: list
    elements: dict
    required: true
    suboptions:
      section: {type: str, required: true, description: The annex section.}
      key: {type: str, required: true, description: The option name.}
      value: {type: str, default: "", description: The value (ignored when absent unless list).}
      list: {type: bool, default: false, description: The value is one entry of a list option.}
  state:
    description: Whether the options must be present or absent.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - remediate
  - remediate.genesys
author: remediate
"""

EXAMPLES = r"""
- name: Trust the Asterisk gateway in the switch annex
  genesys_annex_option:
    cfg_type: CfgSwitch
    name: SIP_P
    options:
      - {section: sip, key: trusted-gateways, value: 192.0.2.54, list: true}
      - {section: sip, key: gateway-ip-auth-mode, value: enabled}
  delegate_to: localhost
"""

RETURN = r"""
before:
  description: The object as GAX returned it before the change.
  type: dict
  returned: always
after:
  description: The object after the change (in check mode, as it would be).
  type: dict
  returned: always
dbid:
  description: The object's DBID.
  type: int
  returned: always
"""
