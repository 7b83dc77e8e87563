"""Evidence -> findings -> root cause and recommended fix, per DN.

The evidence today is the SIP Server log (registration transactions and DN timelines from
`remediate.genesys.logs`). Live evidence (the service's state, Trunk DNs from configuration,
Asterisk's registrations) is added by other modules as `Observation`s on a `DnDiagnosis` or on the
whole `Diagnosis`; the root-cause codes and fix codes below are stable: JSON output, scripts and
later issues depend on them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from remediate.genesys.logs import (
    EVENT_MEANINGS,
    BindingExpiry,
    CtiLine,
    DnNotConfigured,
    GatewayLookup,
    LogEvent,
    RegistrarOutcome,
    RegistrationEvent,
    RegistrationHistory,
    RegistrationTracker,
    RegistrationTransaction,
    SourceStats,
    TimelineEntry,
    UnresolvedNumber,
    Verdict,
)

SCHEMA_VERSION = 1
LATEST_TRANSACTIONS = 5
"""How many of a DN's latest registration transactions a diagnosis reports."""


class RootCause(enum.Enum):
    IN_SERVICE = "in-service"
    UNTRUSTED_GATEWAY = "untrusted-gateway"
    UNREGISTERED_BY_GATEWAY = "unregistered-by-gateway"
    DN_NOT_CONFIGURED = "dn-not-configured"
    BINDING_EXPIRED = "binding-expired"
    NO_REGISTER_SEEN = "no-register-seen"
    REGISTRATION_REFUSED = "registration-refused"
    NO_RESPONSE = "no-response"
    # Found only by live diagnosis (remediate.live), from the estate rather than the log:
    SERVICE_STOPPED = "service-stopped"
    NO_REVERSE_ROUTE = "no-reverse-route"


class Fix(enum.Enum):
    TRUSTED_GATEWAY = "trusted-gateway"
    """Genesys: make the gateway's address trusted by SIP Server (Trunk DN contact or annex)."""
    TRUNK = "trunk"
    """Genesys: route the DN range over an IP trunk DN instead of per-DN registration."""
    DIALPLAN = "dialplan"
    """Asterisk: a dialplan context for calls from Genesys."""
    ASTERISK_REREGISTER = "asterisk-reregister"
    """Asterisk: find why it stopped registering the DN, and make it register again."""
    NONE = "none"


@dataclass(frozen=True)
class EvidenceLine:
    """One log line that supports a finding."""

    file: str
    line: int
    time: datetime | None
    text: str

    @classmethod
    def of(cls, event: LogEvent) -> EvidenceLine:
        return cls(event.file, event.line, event.time, event.text)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "time": _iso(self.time),
            "text": self.text,
        }


@dataclass(frozen=True)
class Finding:
    code: RootCause
    summary: str
    evidence: tuple[EvidenceLine, ...]


@dataclass(frozen=True)
class Recommendation:
    fix: Fix
    reason: str
    action: str
    alternatives: tuple[Fix, ...] = ()


@dataclass(frozen=True)
class Observation:
    """A fact from another source (service state, configuration, Asterisk), added by the module
    that gathered it. `source` names that source, e.g. "service", "gax", "asterisk"."""

    source: str
    code: str
    summary: str
    details: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "code": self.code,
            "summary": self.summary,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class TransactionSummary:
    """One registration transaction (or binding expiry) as a diagnosis reports it."""

    kind: str  # "register" or "expiry"
    time: datetime | None
    where: str
    source_address: str | None
    source_port: int | None
    user_agent: str | None
    contact: str | None
    expires: int | None
    call_id: str | None
    cseq: int | None
    retransmissions: int
    events: tuple[int, ...]
    gateway: str | None  # the gateway's name, "none found", or None (no lookup line)
    outcome: str
    response_code: int | None
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "time": _iso(self.time),
            "where": self.where,
            "source": {"address": self.source_address, "port": self.source_port},
            "user_agent": self.user_agent,
            "contact": self.contact,
            "expires": self.expires,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "retransmissions": self.retransmissions,
            "events": list(self.events),
            "gateway": self.gateway,
            "outcome": self.outcome,
            "response_code": self.response_code,
            "verdict": self.verdict,
        }


@dataclass
class DnDiagnosis:
    dn: str
    in_service: bool | None  # None: nothing in the evidence says
    since: datetime | None
    root_cause: Finding
    recommendation: Recommendation
    transactions: list[TransactionSummary]
    observations: list[Observation] = field(default_factory=list)

    @property
    def latest(self) -> TransactionSummary | None:
        return self.transactions[-1] if self.transactions else None

    def to_json(self) -> dict[str, Any]:
        return {
            "dn": self.dn,
            "state": {"in_service": self.in_service, "since": _iso(self.since)},
            "root_cause": {
                "code": self.root_cause.code.value,
                "summary": self.root_cause.summary,
                "evidence": [line.to_json() for line in self.root_cause.evidence],
            },
            "recommendation": {
                "fix": self.recommendation.fix.value,
                "reason": self.recommendation.reason,
                "action": self.recommendation.action,
                "alternatives": [fix.value for fix in self.recommendation.alternatives],
            },
            "transactions": [transaction.to_json() for transaction in self.transactions],
            "observations": [observation.to_json() for observation in self.observations],
        }


COMPARISON_ROWS = ("source", "port", "User-Agent", "gateway", "event", "outcome")


@dataclass
class Diagnosis:
    dns: list[DnDiagnosis]
    sources: list[str]
    since: datetime | None
    log_start: datetime | None
    log_end: datetime | None
    observations: list[Observation] = field(default_factory=list)

    def comparison(self) -> dict[str, dict[str, str]] | None:
        """The seed's side-by-side view: per DN, its latest registration's source, port,
        User-Agent, gateway, event and outcome. None with fewer than two DNs."""
        if len(self.dns) < 2:
            return None
        table: dict[str, dict[str, str]] = {}
        for diagnosis in self.dns:
            latest = diagnosis.latest
            table[diagnosis.dn] = {
                "source": (latest.source_address if latest else None) or "-",
                "port": str(latest.source_port) if latest and latest.source_port else "-",
                "User-Agent": (latest.user_agent if latest else None) or "-",
                "gateway": (latest.gateway if latest else None) or "-",
                "event": _events_text(latest.events) if latest else "-",
                "outcome": latest.outcome if latest else "no REGISTER seen",
            }
        return table

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "diagnosis",
            "sources": list(self.sources),
            "since": _iso(self.since),
            "log_window": {"start": _iso(self.log_start), "end": _iso(self.log_end)},
            "dns": [diagnosis.to_json() for diagnosis in self.dns],
            "comparison": self.comparison(),
            "observations": [observation.to_json() for observation in self.observations],
        }


# ---------------------------------------------------------------------------------------------


def diagnose_events(
    events: Iterable[LogEvent],
    dns: Sequence[str],
    *,
    since: datetime | None = None,
    sources: Sequence[str] = (),
) -> Diagnosis:
    """Diagnose `dns` from SIP Server log events (in log order, already limited to `since`)."""
    tracker = RegistrationTracker(dns)
    for event in events:
        tracker.add(event)
    return diagnose_history(tracker.finish(), dns, since=since, sources=sources)


def diagnose_history(
    history: RegistrationHistory,
    dns: Sequence[str],
    *,
    since: datetime | None = None,
    sources: Sequence[str] = (),
) -> Diagnosis:
    return Diagnosis(
        dns=[_diagnose_dn(dn, history) for dn in dns],
        sources=list(sources) or list(history.files),
        since=since,
        log_start=history.first_time,
        log_end=history.last_time,
    )


def _diagnose_dn(dn: str, history: RegistrationHistory) -> DnDiagnosis:
    timeline = history.timelines.get(dn)
    entries: list[TimelineEntry] = list(timeline.entries) if timeline else []
    summaries = [_summary(entry) for entry in entries[-LATEST_TRANSACTIONS:]]
    if not entries:
        return DnDiagnosis(dn, None, None, *_no_register_seen(dn, history), summaries)
    last = entries[-1]
    in_service = isinstance(last, RegistrationTransaction) and last.verdict is Verdict.ACCEPTED
    since = _state_since(entries, in_service)
    previous = timeline.last_accepted if timeline else None
    if isinstance(last, BindingExpiry):
        finding, recommendation = _binding_expired(dn, last, previous)
    else:
        finding, recommendation = _judge(dn, last, previous, history)
    return DnDiagnosis(dn, in_service, since, finding, recommendation, summaries)


def _judge(
    dn: str,
    last: RegistrationTransaction,
    previous: RegistrationTransaction | None,
    history: RegistrationHistory,
) -> tuple[Finding, Recommendation]:
    verdict = last.verdict
    sender = _sender(last)
    if verdict is Verdict.ACCEPTED:
        return Finding(
            RootCause.IN_SERVICE,
            f"DN {dn} is in service: its latest REGISTER, from {sender}, was accepted "
            f"({_outcome(last)}).",
            _evidence(last),
        ), Recommendation(Fix.NONE, "the DN is in service", "nothing to do")
    if verdict is Verdict.NOT_CONFIGURED:
        return Finding(
            RootCause.DN_NOT_CONFIGURED,
            f"SIP Server rejected the REGISTER for {dn} from {sender}: the DN is not configured "
            "(or disabled) in Configuration Server, and it answered 404.",
            _evidence(last),
        ), Recommendation(
            Fix.NONE,
            "no remediate fix applies: the DN itself is missing from Genesys configuration",
            f"create DN {dn} (type Extension) under the switch, or enable it, or correct the DN "
            "that the device registers; then let it register again",
        )
    if verdict is Verdict.NO_ANSWER:
        return Finding(
            RootCause.NO_RESPONSE,
            f"The latest REGISTER for {dn}, from {sender}, got no response "
            f"({len(last.retransmissions)} retransmission(s)) and nothing in the log says what "
            "SIP Server made of it.",
            _evidence(last),
        ), Recommendation(
            Fix.NONE,
            "the evidence does not point at a configuration change",
            "check that the SIP Server service is running and reachable on its SIP port, then "
            "read its log around the line above",
        )
    stats = history.sources.get(last.source_address) or SourceStats(last.source_address)
    if _untrusted(last, stats, history):
        return _untrusted_gateway(dn, last, stats)
    trusted_until = _trust_lost(last, previous, history)
    if trusted_until is not None:
        return _no_longer_trusted(dn, last, trusted_until)
    if verdict is Verdict.UNREGISTERED:
        return _unregistered_by_gateway(dn, last, previous, stats)
    return Finding(
        RootCause.REGISTRATION_REFUSED,
        f"SIP Server refused the latest REGISTER for {dn} from {sender} ({_outcome(last)}), "
        "although that address is not an unknown gateway.",
        _evidence(last),
    ), Recommendation(
        Fix.NONE,
        "the evidence does not match a fault that remediate fixes",
        "read the SIP Server log around the lines above (authentication, DN type, licence)",
    )


def _untrusted(
    last: RegistrationTransaction, stats: SourceStats, history: RegistrationHistory
) -> bool:
    """The seed's fault: an address for which no gateway is found, and from which SIP Server
    never accepted anything (its own address, where the softphone registers, is trusted)."""
    lookup = last.gateway
    no_gateway = (lookup is not None and lookup.gateway is None) or (
        lookup is None and stats.no_gateway
    )
    return (
        no_gateway
        and stats.accepted == 0
        and not stats.gateways
        and last.source_address not in history.server_addresses
    )


def _trust_lost(
    last: RegistrationTransaction,
    previous: RegistrationTransaction | None,
    history: RegistrationHistory,
) -> RegistrationTransaction | None:
    """The latest acceptance from the address of a refusal that found no gateway for it, when
    that refusal is the newest word on the address: SIP Server trusted the address then (a fix
    since rolled back, a Trunk DN or the annex edited) and does not now. Acceptances come from
    this DN's history and the timelines of the DNs diagnosed with it; any of them after the
    refusal means the address is trusted again, and the refusal is not about trust."""
    lookup = last.gateway
    refused_at = last.time
    if (
        lookup is None
        or lookup.gateway is not None
        or refused_at is None
        or last.verdict is not Verdict.REFUSED
        or last.source_address in history.server_addresses
    ):
        return None
    known = [entry for timeline in history.timelines.values() for entry in timeline.entries]
    accepted = [
        (entry.time, entry)
        for entry in (*known, *([previous] if previous else []))
        if isinstance(entry, RegistrationTransaction)
        and entry.verdict is Verdict.ACCEPTED
        and entry.source_address == last.source_address
        and entry.time is not None
    ]
    latest = max(accepted, key=lambda pair: pair[0], default=None)
    if latest is None or latest[0] >= refused_at:
        return None
    return latest[1]


def _untrusted_gateway(
    dn: str, last: RegistrationTransaction, stats: SourceStats
) -> tuple[Finding, Recommendation]:
    address = last.source_address
    refused = sum(count for verdict, count in stats.verdicts.items() if verdict != "accepted")
    finding = Finding(
        RootCause.UNTRUSTED_GATEWAY,
        f"SIP Server does not trust {address}: REGISTERs for {dn} from {_sender(last)} find no "
        f"gateway for that address and end {_outcome(last)}; none of the {refused} REGISTER(s) "
        f"from {address} in the log was accepted.",
        _evidence(last),
    )
    return finding, _trust_the_gateway(
        dn,
        address,
        f"registrations from {address} are refused because no gateway matches that address, "
        "while registrations from the SIP Server's own address are accepted",
    )


def _no_longer_trusted(
    dn: str, last: RegistrationTransaction, trusted: RegistrationTransaction
) -> tuple[Finding, Recommendation]:
    address = last.source_address
    earlier = "its" if trusted.dn == dn else f"DN {trusted.dn}'s"
    finding = Finding(
        RootCause.UNTRUSTED_GATEWAY,
        f"SIP Server no longer trusts {address}: the latest REGISTER for {dn}, from "
        f"{_sender(last)}, finds no gateway for that address and ends {_outcome(last)}; "
        f"SIP Server had accepted {earlier} REGISTER from {address} at "
        f"{_clock(trusted.time)} ({_outcome(trusted)}) and nothing from there since.",
        (*_evidence(trusted)[:1], *_evidence(last)),
    )
    return finding, _trust_the_gateway(
        dn,
        address,
        f"registrations from {address} were accepted until {_clock(trusted.time)} and are "
        "refused since, with no gateway matching that address: what trusted it is gone (a "
        "change undone, e.g. rolled back)",
    )


def _trust_the_gateway(dn: str, address: str, reason: str) -> Recommendation:
    return Recommendation(
        Fix.TRUSTED_GATEWAY,
        reason,
        f"make {address} a trusted gateway of SIP Server (remediate plan --dn {dn} --fix "
        "trusted-gateway), restart SIP Server, and have the gateway register again",
        alternatives=(Fix.TRUNK,),
    )


def _unregistered_by_gateway(
    dn: str,
    last: RegistrationTransaction,
    previous: RegistrationTransaction | None,
    stats: SourceStats,
) -> tuple[Finding, Recommendation]:
    accepted = (
        f"; SIP Server had accepted its registration at {_clock(previous.time)}"
        if previous is not None
        else f"; SIP Server accepted {stats.accepted} REGISTER(s) from that address"
    )
    finding = Finding(
        RootCause.UNREGISTERED_BY_GATEWAY,
        f"{_sender(last)} un-registered {dn} (REGISTER with Expires: 0 at {_clock(last.time)}) "
        f"and nothing registered it again{accepted}.",
        _evidence(last),
    )
    return finding, Recommendation(
        Fix.ASTERISK_REREGISTER,
        f"the gateway at {last.source_address} removed the binding itself; Genesys did what it "
        "was asked, so no Genesys change is needed",
        'on the gateway, find why it un-registered (Asterisk: asterisk -rx "pjsip show '
        'registrations" and its log), then make it register again (asterisk -rx "pjsip send '
        'register <registration>")',
    )


def _binding_expired(
    dn: str, expiry: BindingExpiry, previous: RegistrationTransaction | None
) -> tuple[Finding, Recommendation]:
    evidence = [EvidenceLine.of(line) for line in expiry.lines]
    who = "its registrar"
    if previous is not None:
        who = _sender(previous)
        evidence = [*_evidence(previous)[:2], *evidence]
    finding = Finding(
        RootCause.BINDING_EXPIRED,
        f"The binding of {dn} expired at {_clock(expiry.time)} and no REGISTER refreshed it; it "
        f"was last registered by {who}.",
        tuple(evidence),
    )
    return finding, Recommendation(
        Fix.ASTERISK_REREGISTER,
        "the registering side stopped refreshing the binding; SIP Server only let it expire",
        "on the gateway, check the registration's state and its expiration/retry settings "
        '(Asterisk: asterisk -rx "pjsip show registrations"), then make it register again',
    )


def _no_register_seen(dn: str, history: RegistrationHistory) -> tuple[Finding, Recommendation]:
    window = (
        f"between {_clock(history.first_time)} and {_clock(history.last_time)}"
        if history.first_time
        else "in the log"
    )
    return Finding(
        RootCause.NO_REGISTER_SEEN,
        f"No REGISTER for {dn} {window}: nothing tried to register it.",
        (),
    ), Recommendation(
        Fix.NONE,
        "SIP Server was never asked to register the DN, so no Genesys change can help",
        'check the device or gateway that should register it (Asterisk: asterisk -rx "pjsip '
        'show registrations"), or give a log that covers its registration',
    )


# ---------------------------------------------------------------------------------------------


def _evidence(transaction: RegistrationTransaction) -> tuple[EvidenceLine, ...]:
    """The REGISTER (its marker, User-Agent and Expires lines), the server's handling lines that
    matter, and the response."""
    request = transaction.request
    lines = [EvidenceLine.of(request)]
    for header in ("User-Agent", "Expires"):
        number = request.header_line(header)
        value = request.header(header)
        if number is not None and value is not None:
            lines.append(EvidenceLine(request.file, number, request.time, f"{header}: {value}"))
    for line in transaction.lines:
        if isinstance(
            line,
            GatewayLookup
            | RegistrationEvent
            | RegistrarOutcome
            | DnNotConfigured
            | UnresolvedNumber
            | CtiLine,
        ):
            lines.append(EvidenceLine.of(line))
    if transaction.response is not None:
        response = transaction.response
        lines.append(
            EvidenceLine(response.file, response.line + 1, response.time, response.start_line)
        )
    order = {name: index for index, name in enumerate(dict.fromkeys(x.file for x in lines))}
    return tuple(sorted(lines, key=lambda line: (order[line.file], line.line)))


def _summary(entry: TimelineEntry) -> TransactionSummary:
    if isinstance(entry, BindingExpiry):
        last = entry.lines[-1]
        return TransactionSummary(
            kind="expiry",
            time=entry.time,
            where=last.where,
            source_address=None,
            source_port=None,
            user_agent=None,
            contact=last.contact if isinstance(last, RegistrarOutcome) else None,
            expires=None,
            call_id=None,
            cseq=None,
            retransmissions=0,
            events=(1,),
            gateway=None,
            outcome="EXPIRED",
            response_code=None,
            verdict="expired",
        )
    lookup = entry.gateway
    return TransactionSummary(
        kind="register",
        time=entry.time,
        where=entry.request.where,
        source_address=entry.source_address,
        source_port=entry.source_port,
        user_agent=entry.user_agent,
        contact=entry.contact,
        expires=entry.expires,
        call_id=entry.call_id,
        cseq=entry.cseq,
        retransmissions=len(entry.retransmissions),
        events=tuple(entry.server_events),
        gateway=None if lookup is None else (lookup.gateway or "none found"),
        outcome=_outcome(entry),
        response_code=entry.response_code,
        verdict=entry.verdict.value,
    )


def _outcome(transaction: RegistrationTransaction) -> str:
    """What the log says became of the binding, in the server's own words."""
    words: list[str] = []
    for line in transaction.outcomes:
        if isinstance(line, RegistrarOutcome):
            words.append(f"{line.outcome}:{line.dn}" if line.dn else line.outcome)
        elif isinstance(line, CtiLine):
            words.append(line.name)
        else:
            words.append("not configured")
    if transaction.response is not None:
        words.append(transaction.response.start_line.removeprefix("SIP/2.0 "))
    return ", ".join(words) if words else "no response"


def _sender(transaction: RegistrationTransaction) -> str:
    agent = transaction.user_agent
    where = f"{transaction.source_address}:{transaction.source_port}"
    return f"{where} (User-Agent: {agent})" if agent else where


def _state_since(entries: Sequence[TimelineEntry], in_service: bool) -> datetime | None:
    """When the current state began: the first entry of the latest run with that state."""
    since = entries[-1].time
    for entry in reversed(entries):
        accepted = isinstance(entry, RegistrationTransaction) and entry.verdict is Verdict.ACCEPTED
        if accepted != in_service:
            break
        since = entry.time or since
    return since


def _events_text(events: Sequence[int]) -> str:
    if not events:
        return "-"
    return ", ".join(f"{kind} ({EVENT_MEANINGS.get(kind, '?')})" for kind in events)


def _clock(moment: datetime | None) -> str:
    return moment.isoformat(sep=" ", timespec="milliseconds") if moment else "an unknown time"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment else None


__all__ = [
    "COMPARISON_ROWS",
    "SCHEMA_VERSION",
    "Diagnosis",
    "DnDiagnosis",
    "EvidenceLine",
    "Finding",
    "Fix",
    "Observation",
    "Recommendation",
    "RootCause",
    "TransactionSummary",
    "diagnose_events",
    "diagnose_history",
]
