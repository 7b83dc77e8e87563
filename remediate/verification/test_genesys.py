"""The SIP Server host, through testinfra's `winrm://` backend, and its configuration through GAX:
the service runs, each DN's latest registration is accepted, each DN is configured, and the
configuration the applied fix writes is there."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from remediate.verification import judge, remote
from remediate.verification.context import TRUNK, TRUSTED_GATEWAY, Since


def test_service_running(genesys_host: Any, site: Any) -> None:
    state = remote.service_state(genesys_host, site)
    assert state.status == "Running", (
        f"{state.name} ({state.display_name}) on {site.genesys.name} is {state.status}"
    )


def test_registration_accepted(
    dn: str, registrations: Any, since: Since, genesys_clock: datetime
) -> None:
    local_since = judge.host_local(since.moment, genesys_clock)
    verdict = judge.latest_registration(
        registrations, dn, local_since, after_restart=since.after_restart
    )
    assert verdict.ok, verdict.detail


def test_dn_configured(dn: str, gateway_configuration: dict[str, Any]) -> None:
    found = gateway_configuration["dn_configuration"][dn]
    verdict = judge.dn_configured(dn, found.exists, found.enabled, found.dn_type)
    assert verdict.ok, verdict.detail


@pytest.mark.remediate_fix(TRUSTED_GATEWAY, TRUNK, what="Genesys configuration")
def test_fix_configuration(fix: str, site: Any, gateway_configuration: dict[str, Any]) -> None:
    coverage = gateway_configuration["coverage"]
    if fix == TRUNK:
        verdict = judge.trunk_dn(site, coverage, prefix=site.fixes.trunk_prefix)
    elif site.fixes.trusted_gateway.method == "trunk-dn":
        verdict = judge.trunk_dn(site, coverage, prefix=None)
    else:
        verdict = judge.annex_trust(site, coverage)
    assert verdict.ok, verdict.detail
