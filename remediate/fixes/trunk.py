"""Route the DN range over an IP trunk (the seed's Solution 3): a Trunk DN in Genesys whose
`contact` is the gateway and whose `prefix` covers the range, and the reverse route on Asterisk
(calls from Genesys to the range reach the agents). SIP Server reads the Trunk DN at start: the fix
needs the restart; the route is proven with `dialplan show`."""

from __future__ import annotations

from remediate.diagnose import Fix
from remediate.fixes import FileTarget, FixSpec, ObjectTarget
from remediate.inventory import Site

PLAYBOOK = "trunk.yml"


def build(site: Site) -> FixSpec:
    options = site.fixes
    return FixSpec(
        name=Fix.TRUNK.value,
        summary=(
            f"Trunk DN {options.trunk_name} (contact {site.asterisk.sip_address}:"
            f"{site.asterisk.sip_port}, prefix {options.trunk_prefix}, oos-check "
            f"{options.trunk_oos_check}) and the route back in [{options.dialplan_context}] of "
            f"{site.asterisk.extensions_conf}"
        ),
        playbook=PLAYBOOK,
        targets=(
            ObjectTarget("CfgDN", options.trunk_name),
            FileTarget(site.asterisk.extensions_conf),
        ),
        needs_restart=True,
        proves_route=True,
        extravars={},
    )
