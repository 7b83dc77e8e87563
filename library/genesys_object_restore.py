#!/usr/bin/python
"""Ansible module: put a Genesys configuration object back to a recorded before-state."""

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
  - Runs on the controller (delegated to localhost) with the Python that has the C(remediate)
    package. Supports check mode and diff mode.
options:
  connection:
    description: The Genesys host's inventory variables (role remediate builds it).
    type: dict
    required: true
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
author: remediate
"""

EXAMPLES = r"""
- name: Restore the switch annex
  genesys_object_restore:
    connection: "{{ remediate_genesys_connection }}"
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

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (after the documentation, as Ansible wants)

try:
    from remediate.changes import (
        CFG_DN,
        CFG_SWITCH,
        check_before_state,
        connection_argument_spec,
        dn_on_switch,
        failure,
        object_label,
        object_text,
        restore_plan,
    )
    from remediate.errors import RemediateError
    from remediate.genesys.gax import GaxClient
    from remediate.inventory import genesys_host_from_variables

    IMPORT_ERROR = None
except ImportError as error:  # reported by main(), with the fix
    IMPORT_ERROR = error


def current_object(gax, cfg_type, name, switch_name, before):
    """The object as it is now: for a DN, the one on the before-state's switch (or `switch`)."""
    candidates = gax.find_all(cfg_type, name)
    candidates = [obj for obj in candidates if obj.get("name") == name]
    if cfg_type != CFG_DN:
        return candidates[0] if candidates else None
    if before is not None:
        return next(
            (dn for dn in candidates if dn.get("switchdbid") == before.get("switchdbid")), None
        )
    if switch_name is None:
        if len(candidates) > 1:
            raise RemediateError(
                f"several DNs are named {name!r}",
                reference="rollback-ambiguous-object",
                hint="pass the DN's switch",
            )
        return candidates[0] if candidates else None
    switch = gax.find(CFG_SWITCH, switch_name)
    return None if switch is None else dn_on_switch(candidates, switch)


def main():
    module = AnsibleModule(
        argument_spec={
            "connection": connection_argument_spec() if IMPORT_ERROR is None else {"type": "dict"},
            "cfg_type": {"type": "str", "required": True, "choices": ["CfgSwitch", "CfgDN"]},
            "name": {"type": "str", "required": True},
            "switch": {"type": "str"},
            "before": {"type": "raw", "required": True},
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
    cfg_type, name = params["cfg_type"], params["name"]
    label = object_label(cfg_type, name)
    try:
        recorded = check_before_state(cfg_type, name, params["before"])
        connection = params["connection"]
        genesys = genesys_host_from_variables(
            connection["inventory_host"], connection, source="its inventory variables"
        )
        with GaxClient(genesys.gax) as gax:
            current = current_object(gax, cfg_type, name, params["switch"], recorded)
            plan = restore_plan(current, recorded)
            after = current if plan.action == "none" else plan.document
            if plan.action != "none" and not module.check_mode:
                if plan.action == "delete":
                    gax.delete(cfg_type, current["dbid"])
                elif plan.action == "create":
                    after = gax.create(plan.document)
                else:
                    after = gax.update(plan.document)
    except RemediateError as error:
        module.fail_json(**failure(error))
    dbid_changed = (
        recorded is not None
        and after is not None
        and after.get("dbid", recorded.get("dbid")) != recorded.get("dbid")
    )
    module.exit_json(
        changed=plan.action != "none",
        action=plan.action,
        before=current,
        after=after,
        dbid_changed=dbid_changed,
        diff={
            "before": object_text(current),
            "after": object_text(after),
            "before_header": label,
            "after_header": f"{label} (restored)",
        },
    )


if __name__ == "__main__":
    main()
