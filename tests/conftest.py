"""What each test process needs of its own when the suite runs in parallel (pytest-xdist, `-n 2`).

The lab binds fixed ports on its addresses, REMEDIATE_TEST_GENESYS_HOST and
REMEDIATE_TEST_ASTERISK_HOST (defaults 127.0.0.81 and 127.0.0.54), and a fleet lab takes the
addresses after them in the same /24. So each xdist worker moves both addresses up by its number of
/24s (gw0 keeps them, gw1 gets 127.0.1.81 and 127.0.1.54 ...) and writes them back to the
environment, where the tests, their fixtures and every process they start read them. Temporary
directories are per worker already (pytest's basetemp), and so the tests' state directories.

The lab starts of every worker are printed at the end.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

ADDRESS_DEFAULTS = {
    "REMEDIATE_TEST_GENESYS_HOST": "127.0.0.81",
    "REMEDIATE_TEST_ASTERISK_HOST": "127.0.0.54",
}
SLASH_24 = 256


def worker_addresses(base: dict[str, str], worker: int, workers: int) -> dict[str, str]:
    """`base` moved up by `worker` /24s, once it is checked that no two of the `workers` workers
    share a /24 (a fleet's sites stay in their first site's /24) or leave the loopback range."""
    bases = {name: ipaddress.IPv4Address(address) for name, address in base.items()}
    owners: dict[int, int] = {}
    for index in range(workers):
        for name, address in bases.items():
            moved = address + SLASH_24 * index
            if not moved.is_loopback:
                raise pytest.UsageError(
                    f"{name}={address} leaves no room for {workers} workers in 127.0.0.0/8"
                )
            network = int(moved) // SLASH_24
            if owners.setdefault(network, index) != index:
                raise pytest.UsageError(
                    f"with {workers} workers, workers {owners[network]} and {index} would share "
                    f"{moved}/24: start the genesys and asterisk addresses in the same /24, or "
                    f"at least {workers} /24s apart"
                )
    return {name: str(address + SLASH_24 * worker) for name, address in bases.items()}


@pytest.hookimpl(tryfirst=True)  # before the tmpdir plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    base = {name: os.environ.get(name) or default for name, default in ADDRESS_DEFAULTS.items()}
    worker_input = getattr(config, "workerinput", None)  # set in xdist workers only
    if worker_input is not None:
        worker_id = worker_input["workerid"]
        worker = int(worker_id.removeprefix("gw"))
        os.environ.update(worker_addresses(base, worker, int(worker_input["workercount"])))
        # xdist gives each worker <basetemp>/popen-gwN. Lab paths under tmp_path come close to the
        # 107 bytes of a Unix socket path (a fleet site's asterisk.ctl) and to the length beyond
        # which Ansible's control sockets move out of the run's directory: keep the name short.
        if config.option.basetemp:
            config.option.basetemp = str(Path(config.option.basetemp).with_name(worker_id))
    elif config.getoption("dist", "no") != "no":  # the xdist controller: fail before any worker
        worker_addresses(base, 0, len(config.getoption("tx")))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The lab starts that tests/integration/conftest.py recorded on the tests' reports (from
    every worker under xdist)."""
    starts = [
        (report.nodeid, value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "teardown"
        for name, value in report.user_properties
        if name == "lab start"
    ]
    if not starts:
        return
    terminalreporter.section("lab starts")
    for nodeid, (scenario, directory, seconds) in starts:
        terminalreporter.write_line(f"{seconds:5.2f} s  {scenario:24} {directory:32} {nodeid}")
    total = sum(seconds for _, (_, _, seconds) in starts)
    terminalreporter.write_line(f"{len(starts)} starts, {total:.1f} s in all")
