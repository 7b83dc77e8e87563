"""Make the Asterisk address a trusted gateway of SIP Server (the seed's Solution 1).

Two methods, chosen per site by `genesys_trusted_gateway_method`:
- `annex`: the trust options (names and section are site data) in the switch's annex;
- `trunk-dn`: a gateway Trunk DN whose TServer `contact` is the Asterisk address, the one mechanism
  Genesys documents for recognising a gateway.
SIP Server reads either at start: the fix needs the restart.
"""

from __future__ import annotations

from remediate.diagnose import Fix
from remediate.fixes import FixSpec, ObjectTarget
from remediate.inventory import Site

PLAYBOOK = "trusted_gateway.yml"


def build(site: Site) -> FixSpec:
    options = site.fixes.trusted_gateway
    address = site.asterisk.sip_address
    if options.method == "trunk-dn":
        target = ObjectTarget("CfgDN", site.fixes.trunk_name)
        summary = (
            f"create or update Trunk DN {site.fixes.trunk_name} with [TServer] contact = "
            f"{address}:{site.asterisk.sip_port} so SIP Server knows the gateway"
        )
    else:
        target = ObjectTarget("CfgSwitch", site.genesys.switch)
        summary = (
            f"list {address} in [{options.section}] {options.list_option} of switch "
            f"{site.genesys.switch} ({options.mode_option} = {options.mode_value})"
        )
    return FixSpec(
        name=Fix.TRUSTED_GATEWAY.value,
        summary=summary,
        playbook=PLAYBOOK,
        targets=(target,),
        needs_restart=True,
        proves_route=False,
        extravars={"genesys_trusted_gateway_method": options.method},
    )
