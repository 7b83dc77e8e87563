"""The gateway's side of the lab scenarios `gateway-unregisters` and `binding-expired`, on the wire.

Each test starts its own Asterisk host in the scenario, with a stand-in registrar that accepts
every REGISTER (see test_lab_asterisk.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from test_lab_asterisk import poll, row, running_host

pytestmark = pytest.mark.lab


def expires_sent(registers: list[Any]) -> list[str]:
    return [r.headers["Expires"] for r in registers]


def test_gateway_unregisters_5002_after_start_and_stays_silent(
    lab_manager: Any, tmp_path: Path
) -> None:
    with running_host(lab_manager, tmp_path, "gateway-unregisters", frozenset()) as host:
        sent = poll(lambda: host.registrar.registers(0, "5002"), lambda r: len(r) >= 2, 6.0)
        assert expires_sent(sent) == ["3600", "0"]
        time.sleep(1.0)
        assert expires_sent(host.registrar.registers(0, "5002")) == ["3600", "0"]
        table = host.asterisk("pjsip show registrations")
        assert " Unregistered " in row(table, "genesys_reg_5002")
        assert " Registered " in row(table, "genesys_reg_5001")


def test_binding_expired_5002_is_never_refreshed_until_send_register(
    lab_manager: Any, tmp_path: Path
) -> None:
    with running_host(lab_manager, tmp_path, "binding-expired", frozenset()) as host:
        sent = poll(lambda: host.registrar.registers(0, "5002"), bool)
        assert expires_sent(sent) == ["10"]
        assert expires_sent(poll(lambda: host.registrar.registers(0, "5001"), bool)) == ["3600"]
        time.sleep(1.5)
        assert expires_sent(host.registrar.registers(0, "5002")) == ["10"]
        # Asterisk believes it is registered; its refresh time has passed without a refresh.
        assert re.search(
            r" Registered        \(exp\. \d+s ago\)$|\(exp\. 0s\)$",
            row(host.asterisk("pjsip show registrations"), "genesys_reg_5002"),
        )
        mark = time.time()
        assert host.asterisk("pjsip send register genesys_reg_5002") == "\n"
        again = poll(lambda: host.registrar.registers(mark, "5002"), lambda r: len(r) >= 2)
        assert expires_sent(again) == ["0", "3600"]
        table = poll(
            lambda: host.asterisk("pjsip show registrations"),
            lambda t: "(exp. 35" in row(t, "genesys_reg_5002"),
        )
        assert re.search(r" Registered        \(exp\. 35\d\ds\)$", row(table, "genesys_reg_5002"))
