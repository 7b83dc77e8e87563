"""Ansible module: put a Genesys configuration object back to a recorded before-state.

Documentation only: the task is an action plugin (action_plugins/genesys_object_restore.py, code in
remediate/actions.py), run by ansible-playbook itself on the controller.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: genesys_object_restore
short_description: Put a Genesys configuration object back exactly to a recorded before-state
description:
  - Used by rollback. C(before) is the object as GAX returned it before a change (the journal's
    backup), or null when the object did not exist.
  - null before-state and the object exists now = delete it; before-state and no object now =
    re-create it (Configuration Server assigns a new DBID, reported as C(dbid_changed));
    both = update it to the before-state unless it already is. Idempotent.
  - Supports check mode and diff mode.
options:
  cfg_type:
    description: The object type.
    type: str
    choices: [CfgSwitch, CfgDN]
    required: true
  name:
    description: The object's name.
    type: str
    required: true
  switch:
    description: For a CfgDN, the switch it belongs to (needed when the before-state is null).
    type: str
  before:
    description: The before-state (GAX JSON), or null.
    type: raw
    required: true
extends_documentation_fragment:
  - remediate
  - remediate.genesys
author: remediate
"""

EXAMPLES = r"""
- name: Restore the switch annex
  genesys_object_restore:
    cfg_type: CfgSwitch
    name: SIP_P
    before: "{{ recorded_switch }}"
  delegate_to: localhost
"""

RETURN = r"""
action:
  description: What was (or in check mode, would be) done, one of none, update, create, delete.
  type: str
  returned: always
before:
  description: The object as it was when the module started (null when absent).
  type: dict
  returned: always
after:
  description: The object as it is now (null when absent).
  type: dict
  returned: always
dbid_changed:
  description: The object was re-created and Configuration Server gave it a new DBID.
  type: bool
  returned: always
"""
