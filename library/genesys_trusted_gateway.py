"""Ansible module: Genesys SIP Server made to trust an Asterisk gateway, through GAX.

Documentation only: the task is an action plugin (action_plugins/genesys_trusted_gateway.py, code
in remediate/actions.py), run by ansible-playbook itself on the controller.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: genesys_trusted_gateway
short_description: Make Genesys SIP Server trust a gateway, in the switch annex or by a Trunk DN
description:
  - Makes SIP Server accept the REGISTERs a gateway forwards, by one of two methods.
  - C(method=annex) lists C(address) in the list option C([section] option) of switch C(switch)
    (after the addresses already listed, which are kept) and sets C([section] auth_option =
    auth_value), as M(genesys_annex_option) would.
  - C(method=trunk-dn) makes C(trunk_name) on switch C(switch) a Trunk DN whose C([TServer]
    contact) is C(address:port) (other options kept), as M(genesys_dn) would. A DN of that name
    with another type is refused.
  - One task for either method, so that a playbook needs no task per method.
  - Supports check mode and diff mode.
options:
  method:
    description: How SIP Server is made to trust the gateway.
    type: str
    choices: [annex, trunk-dn]
    default: annex
  switch:
    description: The switch (its annex, or the switch of the Trunk DN).
    type: str
    required: true
  address:
    description:
      - The gateway's SIP address, as its REGISTERs come from it.
      - By default, the gateway of the task's host's site, found and checked as
        M(remediate_site_gateway) does (the one host of group C(asterisk) in the host's one
        C(site_<name>) group; its C(asterisk_sip_address), or C(ansible_host)).
    type: str
  port:
    description:
      - The gateway's SIP port (C(method=trunk-dn)).
      - By default, the site's gateway's C(asterisk_sip_port) when C(address) is not given, else
        5060.
    type: int
  section:
    description: The annex section of the trust options (C(method=annex), required there).
    type: str
  option:
    description: The list option of trusted addresses (C(method=annex), required there).
    type: str
  auth_option:
    description: The option that turns the gateway's IP authentication on (C(method=annex)).
    type: str
  auth_value:
    description: Its value (C(method=annex), required there).
    type: str
  trunk_name:
    description: The Trunk DN's name (C(method=trunk-dn), required there).
    type: str
extends_documentation_fragment:
  - remediate
  - remediate.genesys
author: remediate
"""

EXAMPLES = r"""
- name: Trust the site's Asterisk gateway in the switch annex
  genesys_trusted_gateway:
    switch: SIP_P
    section: sip
    option: trusted-gateways
    auth_option: gateway-ip-auth-mode
    auth_value: enabled
  delegate_to: localhost

- name: Trust it by a Trunk DN instead
  genesys_trusted_gateway:
    method: trunk-dn
    switch: SIP_P
    address: 192.0.2.54
    port: 5060
    trunk_name: AsteriskTrunk_webRTC
  delegate_to: localhost
"""

RETURN = r"""
method:
  description: The method used.
  type: str
  returned: always
address:
  description: The address trusted.
  type: str
  returned: always
port:
  description: The port (in the Trunk DN's contact with C(method=trunk-dn)).
  type: int
  returned: always
before:
  description: The switch (annex) or the Trunk DN (trunk-dn) before the change (the DN is null
    when it did not exist).
  type: dict
  returned: always
after:
  description: The object after the change (in check mode, as it would be).
  type: dict
  returned: always
"""
