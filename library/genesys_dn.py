#!/usr/bin/python
"""Ansible module: a Genesys DN (e.g. a Trunk DN) and its annex, through GAX."""

from __future__ import annotations

DOCUMENTATION = r"""
module: genesys_dn
short_description: Ensure a Genesys DN exists on a switch with given annex options, or not
description:
  - Ensures the DN C(name) exists on switch C(switch), of type C(dn_type), with the annex options
    C(options) (other options of an existing DN are kept), or that it does not exist.
  - A DN of that name on the switch with another type is refused, never converted.
  - Runs on the controller (delegated to localhost) with the Python that has the C(remediate)
    package. Supports check mode and diff mode.
options:
  connection:
    description: The Genesys host's inventory variables (role remediate builds it).
    type: dict
    required: true
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
author: remediate
"""

EXAMPLES = r"""
- name: The gateway's Trunk DN
  genesys_dn:
    connection: "{{ remediate_genesys_connection }}"
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

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (after the documentation, as Ansible wants)

try:
    from remediate.changes import (
        CFG_DN,
        CFG_SWITCH,
        AnnexOption,
        annex_with,
        connection_argument_spec,
        dn_on_switch,
        failure,
        new_dn,
        object_label,
        object_text,
    )
    from remediate.errors import RemediateError
    from remediate.genesys.gax import GaxClient
    from remediate.inventory import genesys_host_from_variables

    IMPORT_ERROR = None
except ImportError as error:  # reported by main(), with the fix
    IMPORT_ERROR = error


def main():
    module = AnsibleModule(
        argument_spec={
            "connection": connection_argument_spec() if IMPORT_ERROR is None else {"type": "dict"},
            "name": {"type": "str", "required": True},
            "switch": {"type": "str", "required": True},
            "dn_type": {"type": "str", "default": "CFGTrunk"},
            "options": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "section": {"type": "str", "required": True},
                    "key": {"type": "str", "required": True, "no_log": False},
                    "value": {"type": "str", "required": True},
                },
            },
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
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
    options = [
        AnnexOption(item["section"], item["key"], item["value"]) for item in params["options"]
    ]
    label = object_label(CFG_DN, params["name"])
    try:
        connection = params["connection"]
        genesys = genesys_host_from_variables(
            connection["inventory_host"], connection, source="its inventory variables"
        )
        with GaxClient(genesys.gax) as gax:
            switch = gax.find(CFG_SWITCH, params["switch"])
            if switch is None:
                module.fail_json(
                    msg=f"gax-not-found: there is no switch {params['switch']!r}",
                    reference="gax-not-found",
                    hint="check genesys_switch in the inventory",
                )
            before = dn_on_switch(gax.find_all(CFG_DN, params["name"]), switch)
            if before is not None and before.get("dntype") != params["dn_type"]:
                module.fail_json(
                    msg=f"dn-wrong-type: {label} on switch {params['switch']} is a "
                    f"{before.get('dntype')}, not a {params['dn_type']}",
                    reference="dn-wrong-type",
                    hint="pick another DN name (genesys_trunk_name) or change that DN by hand",
                    before=before,
                )
            if params["state"] == "absent":
                desired = None
            elif before is None:
                desired = new_dn(params["name"], switch, params["dn_type"], options)
            else:
                desired = annex_with(before, options, present=True)
            changed = desired != before
            after = desired
            if changed and not module.check_mode:
                if desired is None:
                    gax.delete(CFG_DN, before["dbid"])
                elif before is None:
                    after = gax.create(desired)
                else:
                    after = gax.update(desired)
    except RemediateError as error:
        module.fail_json(**failure(error))
    module.exit_json(
        changed=changed,
        before=before,
        after=after,
        diff={
            "before": object_text(before),
            "after": object_text(after),
            "before_header": label,
            "after_header": label,
        },
    )


if __name__ == "__main__":
    main()
