"""What the checks conclude from what they read: pure functions, each returning a `Judgement`
whose `detail` is the sentence an operator reads in the report, pass or fail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from remediate.asterisk.cli import Registration
from remediate.genesys.logs import RegistrationHistory, RegistrationTransaction, Verdict
from remediate.inventory import Site
from remediate.live import GatewayCoverage, TrunkDn


@dataclass(frozen=True)
class Judgement:
    ok: bool
    detail: str


def _stamp(moment: datetime | None) -> str:
    return moment.isoformat(sep=" ", timespec="milliseconds") if moment else "?"


def host_local(moment: datetime, host_now: datetime) -> datetime:
    """`moment` (aware) as the SIP Server host's local wall time, the way its log writes times."""
    return moment.astimezone(host_now.tzinfo).replace(tzinfo=None)


def latest_registration(
    history: RegistrationHistory, dn: str, since: datetime, *, after_restart: bool
) -> Judgement:
    """The DN's latest registration must be accepted: a refusal, a TERMINATED or a binding
    expiry that nothing followed is a DN out of service. Only events at or after `since` (host
    local time) count; with none there, a binding accepted before still holds, unless `since` is
    a restart (after which only a fresh REGISTER brings the DN back)."""
    timeline = history.timelines.get(dn)
    entries = [entry for entry in (timeline.entries if timeline else ()) if entry.time is not None]
    recent = [entry for entry in entries if entry.time is not None and entry.time >= since]
    note = ""
    if not recent and entries and not after_restart:
        recent, note = entries, f" (before {_stamp(since)}; nothing since changed it)"
    if not recent:
        return Judgement(
            False, f"{dn}: no registration in the SIP Server log since {_stamp(since)}"
        )
    last = recent[-1]
    if not isinstance(last, RegistrationTransaction):
        return Judgement(False, f"{dn}: the binding expired at {_stamp(last.time)}{note}")
    source = f"{last.source_address}:{last.source_port}"
    if last.verdict is Verdict.ACCEPTED:
        return Judgement(True, f"{dn}: accepted at {_stamp(last.time)} from {source}{note}")
    response = f", answered {last.response_code}" if last.response_code else ""
    return Judgement(
        False,
        f"{dn}: latest registration {last.verdict.value} at {_stamp(last.time)} from {source}"
        f"{response} ({last.request.where}){note}",
    )


def annex_trust(site: Site, coverage: GatewayCoverage) -> Judgement:
    """The trusted-gateway fix, annex method: the Asterisk address listed, the mode set."""
    options = site.fixes.trusted_gateway
    listed = (
        f"[{options.section}] {options.list_option} = {coverage.annex_list_value or '(not set)'}, "
        f"{options.mode_option} = {coverage.annex_mode_value or '(not set)'}"
    )
    ok = coverage.annex_trusts_gateway and coverage.annex_mode_value == options.mode_value
    verb = "trusts" if ok else "does not trust"
    return Judgement(
        ok,
        f"switch {site.genesys.switch} {verb} {coverage.gateway_address} "
        f"({options.mode_option} must be {options.mode_value}): {listed}",
    )


def _trunk(coverage: GatewayCoverage, name: str) -> TrunkDn | None:
    return next((trunk for trunk in coverage.trunks if trunk.name == name), None)


def trunk_dn(site: Site, coverage: GatewayCoverage, *, prefix: str | None) -> Judgement:
    """The gateway Trunk DN: enabled, its TServer contact the Asterisk address (and port), and,
    for the trunk fix, its prefix."""
    name = site.fixes.trunk_name
    contact = f"{site.asterisk.sip_address}:{site.asterisk.sip_port}"
    trunk = _trunk(coverage, name)
    if trunk is None:
        return Judgement(False, f"no Trunk DN {name} in Genesys configuration")
    shown = f"Trunk DN {name}: contact {trunk.contact or '(not set)'}, prefix {trunk.prefix or '-'}"
    problems = []
    if not trunk.enabled:
        problems.append("it is disabled")
    if not trunk.covers_gateway or trunk.contact.rsplit(":", 1)[-1] != str(site.asterisk.sip_port):
        problems.append(f"contact must be {contact}")
    if prefix is not None and trunk.prefix != prefix:
        problems.append(f"prefix must be {prefix}")
    if problems:
        return Judgement(False, f"{shown}: {'; '.join(problems)}")
    return Judgement(True, shown)


def dn_configured(dn: str, exists: bool, enabled: bool, dn_type: str) -> Judgement:
    if not exists:
        return Judgement(False, f"DN {dn} does not exist in Genesys configuration")
    if not enabled:
        return Judgement(False, f"DN {dn} exists ({dn_type}) but is disabled")
    return Judgement(True, f"DN {dn} is configured ({dn_type}, enabled)")


def asterisk_registration(dn: str, name: str, registrations: dict[str, Registration]) -> Judgement:
    row = registrations.get(name)
    if row is None:
        return Judgement(
            False, f"{dn}: Asterisk has no registration {name} (pjsip show registrations)"
        )
    return Judgement(row.registered, f"{dn}: {name} to {row.server_uri} is {row.status}")
