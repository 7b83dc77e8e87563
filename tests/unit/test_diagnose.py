"""Root causes and recommended fixes, from hand-written logs in the real format."""

from __future__ import annotations

from datetime import datetime

import pytest
from conftest import HEADER, SEED_1003, SEED_5002, accepted, register, response

from remediate.api import diagnose_logs, parse_since
from remediate.diagnose import SCHEMA_VERSION, Fix, RootCause
from remediate.errors import InputError


def test_the_seed_untrusted_gateway_against_the_working_softphone(write_log) -> None:  # type: ignore[no-untyped-def]
    log = write_log(HEADER + SEED_1003 + SEED_5002)
    diagnosis = diagnose_logs([log], ["5002", "1003"])
    failing, working = diagnosis.dns
    assert failing.in_service is False
    assert failing.since == datetime(2026, 2, 2, 21, 6, 21, 750000)
    assert failing.root_cause.code is RootCause.UNTRUSTED_GATEWAY
    assert "192.168.210.54" in failing.root_cause.summary
    assert failing.recommendation.fix is Fix.TRUSTED_GATEWAY
    assert Fix.TRUNK in failing.recommendation.alternatives
    evidence = {line.text for line in failing.root_cause.evidence}
    assert (
        "21:06:21.751: no gateway is found using address '192.168.210.54' for number '5002'"
        in evidence
    )
    assert "21:06:21.752: REGISTRAR: TERMINATED:5002" in evidence
    assert "User-Agent: Asterisk-Genesys-Gateway" in evidence
    assert all(line.file == str(log) and line.line > 0 for line in failing.root_cause.evidence)
    assert working.in_service is True
    assert working.root_cause.code is RootCause.IN_SERVICE
    assert working.recommendation.fix is Fix.NONE
    assert diagnosis.comparison() == {
        "5002": {
            "source": "192.168.210.54",
            "port": "5060",
            "User-Agent": "Asterisk-Genesys-Gateway",
            "gateway": "none found",
            "event": "2 (un-registration)",
            "outcome": "TERMINATED:5002, 200 OK",
        },
        "1003": {
            "source": "192.168.210.81",
            "port": "5090",
            "User-Agent": "Genesys-Softphone/9.0.014.13",
            "gateway": "none found",
            "event": "0 (new binding)",
            "outcome": "DN_IN_SERVICE, 200 OK",
        },
    }


def test_unregistered_by_the_gateway_names_the_sender_and_never_blames_genesys(write_log) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEADER
        + accepted("14:00:00.000", "5002", cseq=1)
        + register("14:30:00.000", "5002", cseq=2, expires=0)
        + "14:30:00.001: gateway 'Asterisk_WebRTC_Gateway' associated with address "
        "'192.168.210.54'\n"
        "14:30:00.001: SIPTS: handle registration event 2\n"
        "14:30:00.001: REGISTRAR: TERMINATED:5002\n" + response("14:30:00.002", "5002", cseq=2)
    )
    (diagnosis,) = diagnose_logs([write_log(text)], ["5002"]).dns
    assert diagnosis.in_service is False
    assert diagnosis.since == datetime(2026, 2, 2, 14, 30)
    assert diagnosis.root_cause.code is RootCause.UNREGISTERED_BY_GATEWAY
    assert "192.168.210.54:5060" in diagnosis.root_cause.summary
    assert "Asterisk-Genesys-Gateway" in diagnosis.root_cause.summary
    assert diagnosis.recommendation.fix is Fix.ASTERISK_REREGISTER
    assert "Expires: 0" in {line.text for line in diagnosis.root_cause.evidence}


def test_a_terminated_binding_followed_by_an_accepted_register_is_healthy(write_log) -> None:  # type: ignore[no-untyped-def]
    """Asterisk's re-register sends Expires: 0 first."""
    text = (
        HEADER
        + register("14:30:00.000", "5002", cseq=2, expires=0)
        + "14:30:00.001: SIPTS: handle registration event 2\n"
        "14:30:00.001: REGISTRAR: TERMINATED:5002\n"
        + response("14:30:00.002", "5002", cseq=2)
        + accepted("14:30:00.100", "5002", cseq=3)
    )
    (diagnosis,) = diagnose_logs([write_log(text)], ["5002"]).dns
    assert diagnosis.in_service is True
    assert diagnosis.root_cause.code is RootCause.IN_SERVICE
    assert [entry.verdict for entry in diagnosis.transactions] == ["unregistered", "accepted"]


def accepted_by_annex(clock: str, dn: str, cseq: int) -> str:
    """Accepted from an address the switch annex trusts: no gateway matches it, as after a
    trusted-gateway fix."""
    return (
        register(clock, dn, cseq=cseq)
        + f"{clock}: no gateway is found using address '192.168.210.54' for number '{dn}'\n"
        f"{clock}: SIPTS: handle registration event 0\n"
        f"{clock}: $*:SIP:CTI:DN_IN_SERVICE:4\n"
        f"{clock}: REGISTRAR: ACTIVE:{dn}\n" + response(clock, dn, cseq=cseq)
    )


def refused_untrusted(clock: str, dn: str, cseq: int) -> str:
    """Refused from an address no gateway matches and nothing trusts (the seed's refusal)."""
    return (
        register(clock, dn, cseq=cseq)
        + f"{clock}: no gateway is found using address '192.168.210.54' for number '{dn}'\n"
        f"{clock}: SIPTS: handle registration event 2\n"
        f"{clock}: REGISTRAR: TERMINATED:{dn}\n"
        + response(clock, dn, cseq=cseq, status="403 Forbidden")
    )


@pytest.mark.parametrize(
    "trusted",
    [accepted_by_annex, lambda clock, dn, cseq: accepted(clock, dn, cseq=cseq)],
    ids=["annex", "trunk-dn"],
)
def test_a_refusal_after_an_acceptance_is_an_untrusted_gateway_again(
    write_log,  # type: ignore[no-untyped-def]
    trusted,
) -> None:
    """A trusted-gateway fix applied, then rolled back: the latest REGISTERs are refused for want
    of a gateway, so the fix that auto picks is trusted-gateway again (no --force needed)."""
    text = (
        HEADER
        + refused_untrusted("14:00:00.000", "5001", 1)
        + refused_untrusted("14:00:00.100", "5002", 1)
        + trusted("14:10:00.000", "5001", 2)
        + trusted("14:10:00.100", "5002", 2)
        + refused_untrusted("14:20:00.000", "5001", 3)
        + refused_untrusted("14:20:00.100", "5002", 3)
    )
    diagnosis = diagnose_logs([write_log(text)], ["5001", "5002"])
    for item in diagnosis.dns:
        assert item.in_service is False
        assert item.root_cause.code is RootCause.UNTRUSTED_GATEWAY
        assert item.recommendation.fix is Fix.TRUSTED_GATEWAY
        assert Fix.TRUNK in item.recommendation.alternatives
        assert "SIP Server no longer trusts 192.168.210.54" in item.root_cause.summary
        whose = "its" if item.dn == "5002" else "DN 5002's"  # the latest acceptance from there
        assert f"accepted {whose} REGISTER from 192.168.210.54 at 2026-02-02 14:10:00.100" in (
            item.root_cause.summary
        )
        evidence = [line.text for line in item.root_cause.evidence]
        assert "14:10:00.100: SIPTR: Received [0,UDP] 420 bytes from 192.168.210.54:5060 <<<<<" in (
            evidence
        )
        assert "SIP/2.0 403 Forbidden" in evidence
        assert "were accepted until 2026-02-02 14:10:00.100" in item.recommendation.reason
    # Diagnosed alone, a DN's own earlier acceptance is enough.
    (alone,) = diagnose_logs([write_log(text)], ["5001"]).dns
    assert alone.root_cause.code is RootCause.UNTRUSTED_GATEWAY
    assert "accepted its REGISTER from 192.168.210.54 at 2026-02-02 14:10:00.000" in (
        alone.root_cause.summary
    )


def test_a_refusal_older_than_an_acceptance_from_the_same_address_is_not_about_trust(
    write_log,  # type: ignore[no-untyped-def]
) -> None:
    """5002 was accepted from the gateway's address after 5001's refusal: that address is trusted
    now, so trusting it cannot be what 5001 needs."""
    text = (
        HEADER
        + refused_untrusted("14:00:00.000", "5001", 1)
        + accepted_by_annex("14:00:00.100", "5002", 1)
        + refused_untrusted("14:20:00.000", "5001", 2)
        + accepted_by_annex("14:20:00.100", "5002", 2)
    )
    failing, working = diagnose_logs([write_log(text)], ["5001", "5002"]).dns
    assert failing.root_cause.code is RootCause.REGISTRATION_REFUSED
    assert failing.recommendation.fix is Fix.NONE
    assert working.root_cause.code is RootCause.IN_SERVICE


def test_dn_not_configured(write_log) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEADER
        + register("14:00:00.000", "5003")
        + "14:00:00.001: GetRegistration::Unable to resolve number for DN:5003\n"
        "14:00:00.001: DN 5003 is not configured or disabled in CME. "
        "Registration attempt rejected\n" + response("14:00:00.002", "5003", status="404 Not Found")
    )
    (diagnosis,) = diagnose_logs([write_log(text)], ["5003"]).dns
    assert diagnosis.root_cause.code is RootCause.DN_NOT_CONFIGURED
    assert diagnosis.recommendation.fix is Fix.NONE
    assert "SIP/2.0 404 Not Found" in {line.text for line in diagnosis.root_cause.evidence}


def test_binding_expired_points_at_the_registering_side(write_log) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEADER
        + accepted("14:00:00.000", "5002")
        + "15:00:00.100: SIPTS: handle registration event 1\n"
        "15:00:00.100: REGISTRAR: EXPIRED:\n"
        "\tAOR: sip:5002@192.168.210.81\n"
        "\tContact: <sip:5002@192.168.210.54:5060>\n"
    )
    (diagnosis,) = diagnose_logs([write_log(text)], ["5002"]).dns
    assert diagnosis.in_service is False
    assert diagnosis.root_cause.code is RootCause.BINDING_EXPIRED
    assert diagnosis.recommendation.fix is Fix.ASTERISK_REREGISTER
    assert "Asterisk-Genesys-Gateway" in diagnosis.root_cause.summary
    assert "15:00:00.100: REGISTRAR: EXPIRED:" in {
        line.text for line in diagnosis.root_cause.evidence
    }


def test_no_register_seen(write_log) -> None:  # type: ignore[no-untyped-def]
    (diagnosis,) = diagnose_logs([write_log(HEADER + SEED_1003)], ["5001"]).dns
    assert diagnosis.in_service is None
    assert diagnosis.root_cause.code is RootCause.NO_REGISTER_SEEN
    assert diagnosis.recommendation.fix is Fix.NONE
    assert diagnosis.transactions == []


def test_no_response_to_retransmitted_registers(write_log) -> None:  # type: ignore[no-untyped-def]
    text = HEADER + "".join(
        register(clock, "5002", call_id="r", cseq=5)
        for clock in ("14:00:00.000", "14:00:00.500", "14:00:01.500")
    )
    (diagnosis,) = diagnose_logs([write_log(text)], ["5002"]).dns
    assert diagnosis.root_cause.code is RootCause.NO_RESPONSE
    assert diagnosis.transactions[0].retransmissions == 2


def test_since_ignores_earlier_lines_in_the_hosts_local_time(write_log) -> None:  # type: ignore[no-untyped-def]
    text = HEADER + SEED_1003 + SEED_5002
    log = write_log(text)
    (before,) = diagnose_logs([log], ["1003"], since=parse_since("2026-02-02T18:00")).dns
    (after,) = diagnose_logs([log], ["1003"], since=parse_since("2026-02-02T19:00")).dns
    assert before.root_cause.code is RootCause.IN_SERVICE
    assert after.root_cause.code is RootCause.NO_REGISTER_SEEN
    (later,) = diagnose_logs([log], ["1003"], since=parse_since("2026-02-03T00:00")).dns
    assert later.root_cause.code is RootCause.NO_REGISTER_SEEN


def test_json_has_a_schema_version_and_stable_codes(write_log) -> None:  # type: ignore[no-untyped-def]
    document = diagnose_logs([write_log(HEADER + SEED_5002)], ["5002"]).to_json()
    assert document["schema_version"] == SCHEMA_VERSION == 1
    (dn,) = document["dns"]
    assert dn["root_cause"]["code"] == "untrusted-gateway"
    assert dn["recommendation"]["fix"] == "trusted-gateway"
    assert dn["state"] == {"in_service": False, "since": "2026-02-02T21:06:21.750"}
    assert dn["transactions"][0]["source"] == {"address": "192.168.210.54", "port": 5060}
    assert document["comparison"] is None


@pytest.mark.parametrize("text", ["2026-02-02 13:55+05:30", "yesterday", ""])
def test_bad_since_is_refused(text: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_since(text)
    assert raised.value.reference == "bad-since"


def test_a_text_file_that_is_not_a_sip_server_log_is_refused(write_log) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as raised:
        diagnose_logs([write_log("\n\n\n", "notes.txt")], ["5002"])
    assert raised.value.reference == "log-not-recognized"
