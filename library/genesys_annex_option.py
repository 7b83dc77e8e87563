#!/usr/bin/python
"""Ansible module: annex options of a Genesys configuration object, through GAX."""

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
author: remediate
"""

EXAMPLES = r"""
- name: Trust the Asterisk gateway in the switch annex
  genesys_annex_option:
    connection: "{{ remediate_genesys_connection }}"
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

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (after the documentation, as Ansible wants)

try:
    from remediate.changes import (
        AnnexOption,
        annex_text,
        annex_with,
        connection_argument_spec,
        failure,
        object_label,
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
            "cfg_type": {"type": "str", "required": True, "choices": ["CfgSwitch", "CfgDN"]},
            "name": {"type": "str", "required": True},
            "options": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "section": {"type": "str", "required": True},
                    "key": {"type": "str", "required": True, "no_log": False},
                    "value": {"type": "str", "default": ""},
                    "list": {"type": "bool", "default": False},
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
        AnnexOption(item["section"], item["key"], item["value"], item["list"])
        for item in params["options"]
    ]
    label = object_label(params["cfg_type"], params["name"])
    try:
        connection = params["connection"]
        genesys = genesys_host_from_variables(
            connection["inventory_host"], connection, source="its inventory variables"
        )
        with GaxClient(genesys.gax) as gax:
            before = gax.find(params["cfg_type"], params["name"])
            if before is None:
                module.fail_json(
                    msg=f"gax-not-found: there is no {label}",
                    reference="gax-not-found",
                    hint="check the name in the inventory (genesys_switch, the DN number)",
                )
            desired = annex_with(before, options, present=params["state"] == "present")
            changed = desired != before
            after = desired
            if changed and not module.check_mode:
                after = gax.update(desired)
    except RemediateError as error:
        module.fail_json(**failure(error))
    module.exit_json(
        changed=changed,
        before=before,
        after=after,
        dbid=before["dbid"],
        diff={
            "before": annex_text(before),
            "after": annex_text(after),
            "before_header": f"{label} (annex)",
            "after_header": f"{label} (annex)",
        },
    )


if __name__ == "__main__":
    main()
