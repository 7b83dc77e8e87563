"""Ansible module: the site's Asterisk gateway of a Genesys host, checked.

Documentation only: the task is an action plugin (action_plugins/remediate_site_gateway.py, code in
remediate/actions.py), run by ansible-playbook itself on the controller.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: remediate_site_gateway
short_description: Find the Asterisk gateway of a Genesys host's site, and check its settings
description:
  - Each of C(dns) must be a DN name (letters, digits, C(_ - .), a leading C(+)).
  - The task's host must be in exactly one C(site_<name>) group, holding exactly one host of group
    C(asterisk) (the gateway); its C(asterisk_sip_address) (or C(ansible_host)) and
    C(asterisk_sip_port) (default 5060) are where its REGISTERs come from and must be usable.
  - The registrations of C(dns) are read from the gateway's C(asterisk_dn_registrations) (DNs it
    does not register are left out) and must be names Asterisk takes.
  - Changes nothing; runs in check mode too. Fails with the reason when a check does not hold.
options:
  dns:
    description: The DNs whose registrations to return.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - remediate
author: remediate
"""

EXAMPLES = r"""
- name: Find the site's Asterisk gateway and check its settings
  remediate_site_gateway:
    dns: "{{ remediate_dns }}"
  register: remediate_site
"""

RETURN = r"""
site:
  description: The site's name (its group without C(site_)).
  type: str
  returned: success
gateway:
  description: The gateway's inventory name.
  type: str
  returned: success
address:
  description: The address the gateway's REGISTERs come from.
  type: str
  returned: success
port:
  description: The port they come from.
  type: int
  returned: success
command:
  description: The gateway's C(asterisk) command (C(asterisk_command), default asterisk).
  type: str
  returned: success
registrations:
  description: The registrations that send the REGISTERs of C(dns), in their order.
  type: list
  elements: str
  returned: success
"""
