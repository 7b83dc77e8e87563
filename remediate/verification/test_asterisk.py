"""The Asterisk gateway host, through testinfra's `ssh://` backend: the managed dialplan block is in
extensions.conf and loaded, each DN's outbound registration is Registered, SIP listens on UDP."""

from __future__ import annotations

from typing import Any

import pytest

from remediate.asterisk import cli
from remediate.changes import managed_markers
from remediate.verification import judge, remote
from remediate.verification.context import DIALPLAN, TRUNK


@pytest.mark.remediate_fix(DIALPLAN, TRUNK, what="the managed dialplan block")
def test_dialplan_block_present(asterisk_host: Any, site: Any) -> None:
    path = site.asterisk.extensions_conf
    begin, end = managed_markers(site.fixes.dialplan_context)
    with remote.reaching(f"{site.asterisk.name} (SSH)"):
        conf = asterisk_host.file(path)
        assert conf.exists, f"{path} does not exist on {site.asterisk.name}"
        missing = [m for m in (begin, end) if not conf.contains(remote.basic_regex(m))]
    assert not missing, f"{path} on {site.asterisk.name} lacks {' and '.join(map(repr, missing))}"


@pytest.mark.remediate_fix(DIALPLAN, TRUNK, what="the route from Genesys to the DNs")
def test_dialplan_loaded(dn: str, asterisk_host: Any, site: Any) -> None:
    context = site.fixes.dialplan_context
    command = cli.dialplan_show(context, dn)
    output = remote.asterisk_rx(asterisk_host, site, command)
    shown = cli.parse_dialplan_show(output)
    if not shown.found and not shown.missing:
        cli.check_output(command, output)  # an error of Asterisk's, not an answer
    assert shown.found, (
        f"the running Asterisk does not route {dn}@{context}: no {shown.missing or 'extension'} "
        f"(dialplan show {dn}@{context})"
    )


def test_asterisk_registration(dn: str, site: Any, asterisk_registrations: dict[str, Any]) -> None:
    name = site.registration_for(dn)
    if name is None:
        pytest.skip(f"no Asterisk registration registers {dn} (asterisk_dn_registrations)")
    verdict = judge.asterisk_registration(dn, name, asterisk_registrations)
    assert verdict.ok, verdict.detail


def test_sip_port_listening(asterisk_host: Any, site: Any) -> None:
    address, port = site.asterisk.sip_address, site.asterisk.sip_port
    with remote.reaching(f"{site.asterisk.name} (SSH)"):
        listening = asterisk_host.socket(f"udp://{address}:{port}").is_listening
    assert listening, f"nothing listens on UDP {address}:{port} on {site.asterisk.name}"
