"""The network between the controller and the SIP Server: a SIP OPTIONS request is answered."""

from __future__ import annotations

from remediate.verification.sip import options_probe

OPTIONS_TIMEOUT_SECONDS = 4.0


def test_sip_options_answered(sip_server: tuple[str, int]) -> None:
    result = options_probe(*sip_server, timeout=OPTIONS_TIMEOUT_SECONDS)
    answer = f"{result.status} {result.reason}" if result.status else result.reason
    assert result.answered_ok, f"OPTIONS to {result.target}: {answer}"
