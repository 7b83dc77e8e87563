"""The Asterisk side alone: a managed block in extensions.conf that routes calls from Genesys to
the DNs (context from the inventory), a dialplan reload, and the proof by `dialplan show` (a
reload says `Dialplan reloaded.` even when the file is broken). Genesys is not touched: no
restart."""

from __future__ import annotations

from remediate.diagnose import Fix
from remediate.fixes import FileTarget, FixSpec
from remediate.inventory import Site

PLAYBOOK = "dialplan.yml"


def build(site: Site) -> FixSpec:
    return FixSpec(
        name=Fix.DIALPLAN.value,
        summary=(
            f"route calls from Genesys to the DNs in [{site.fixes.dialplan_context}] of "
            f"{site.asterisk.extensions_conf} (managed block), reload the dialplan"
        ),
        playbook=PLAYBOOK,
        targets=(FileTarget(site.asterisk.extensions_conf),),
        needs_restart=False,
        proves_route=True,
        extravars={},
    )
