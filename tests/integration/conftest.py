"""The lab for integration tests: one shared lab for the whole session, fresh ones on demand.

The lab binds fixed ports, so only one runs at a time in a test process (each pytest-xdist worker
has addresses of its own: tests/conftest.py). Fixtures:

- `lab_addresses`: the loopback addresses of this process (REMEDIATE_TEST_GENESYS_HOST,
  REMEDIATE_TEST_ASTERISK_HOST; defaults 127.0.0.81 and 127.0.0.54).
- `lab`: the shared lab, scenario untrusted-gateway, started once. Tests must leave it as they found
  it; faults switched on in it are switched off after every test.
- `free_lab_dir`: a lab directory, the ports freed, for tests that run `up`/`down` themselves.
- `lab_manager`: the object behind these (`release()` stops whatever lab runs).
- `lab_factory(scenario)`: a fresh lab (new directory, pristine state) for tests that change the
  estate or need another scenario. It stops whatever lab runs; the lab it returns runs until the
  next start, so hold it in function or module scope only. The shared lab is started again, lazily,
  before the next test that uses `lab`.

Tests run in three groups, their order otherwise kept: those that use `lab`, then those that use
no lab fixture (the running lab is stopped before each, so that a test may start host processes of
its own on the same addresses), then those that use `lab_factory`. So the suite starts the shared
lab once and each fresh lab once.
Under pytest-xdist (`--dist loadfile`), each module runs whole on one worker, in this order, so that
a module-scoped fixture that starts a lab of its own (a fleet, a demo run, a fresh lab) starts once;
each worker starts its own shared lab, again after a module of another group.
A lab that cannot start is an error with the reason, never a skip. The time of every start is
recorded on the test that started it (user property "lab start") and printed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from remediate.lab import control
from remediate.lab.layout import LabAddresses, LabLayout, active_faults

SHARED_SCENARIO = "untrusted-gateway"

LabFactory = Callable[[str], LabLayout]


def addresses_from_environment() -> LabAddresses:
    return LabAddresses(
        genesys_host=os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81",
        asterisk_host=os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54",
    )


class LabManager:
    """Keeps at most one lab running and knows which one."""

    def __init__(self, addresses: LabAddresses, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.addresses = addresses
        self.tmp_path_factory = tmp_path_factory
        self.shared: LabLayout | None = None
        self.running: LabLayout | None = None
        # Starts not yet recorded on a test: (scenario, directory name, seconds).
        self.unrecorded_starts: list[tuple[str, str, float]] = []

    def new_layout(self, name: str) -> LabLayout:
        return LabLayout(self.tmp_path_factory.mktemp(name), self.addresses)

    def start(self, layout: LabLayout, scenario: str) -> LabLayout:
        self.release()
        started = time.monotonic()
        control.up(layout, scenario)
        self.unrecorded_starts.append((scenario, layout.root.name, time.monotonic() - started))
        self.running = layout
        return layout

    def shared_lab(self) -> LabLayout:
        if self.shared is None:
            self.shared = self.new_layout("lab-shared")
        if self.running != self.shared:
            self.start(self.shared, SHARED_SCENARIO)
        return self.shared

    def fresh_lab(self, scenario: str) -> LabLayout:
        return self.start(self.new_layout(f"lab-{scenario}"), scenario)

    def release(self) -> None:
        """Stop the running lab, if any, to free the ports."""
        if self.running is not None:
            running, self.running = self.running, None
            control.down(running)


_MANAGER = pytest.StashKey[LabManager]()


@pytest.fixture(scope="session")
def lab_addresses() -> LabAddresses:
    return addresses_from_environment()


@pytest.fixture(scope="session")
def lab_manager(
    request: pytest.FixtureRequest,
    lab_addresses: LabAddresses,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LabManager]:
    manager = LabManager(lab_addresses, tmp_path_factory)
    request.config.stash[_MANAGER] = manager
    yield manager
    manager.release()


@pytest.fixture
def free_lab_dir(lab_manager: LabManager, tmp_path: Path) -> Iterator[LabLayout]:
    """A lab directory for a test that starts and stops the lab itself: whatever lab ran is stopped
    first (its ports freed), and this one is stopped at the end."""
    lab_manager.release()
    layout = LabLayout(tmp_path / "lab", lab_manager.addresses)
    yield layout
    control.down(layout)


@pytest.fixture(scope="session")
def lab(lab_manager: LabManager) -> LabLayout:
    return lab_manager.shared_lab()


@pytest.fixture(scope="session")
def lab_factory(lab_manager: LabManager) -> LabFactory:
    return lab_manager.fresh_lab


SHARED, OWN, FRESH = range(3)


def _lab_use(item: pytest.Item) -> int:
    """SHARED: the test uses `lab`. FRESH: it uses `lab_factory`. OWN: neither, so it gets the
    ports free (it may run host processes of its own on the same addresses)."""
    names = getattr(item, "fixturenames", ())
    if "lab_factory" in names:
        return FRESH
    if "lab" in names:
        return SHARED
    return OWN


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees the whole session: reorder only this directory's tests, in their own slots.
    here = Path(__file__).parent
    slots = [index for index, item in enumerate(items) if here in item.path.parents]
    ordered = sorted((items[index] for index in slots), key=_lab_use)
    for index, item in zip(slots, ordered, strict=True):
        items[index] = item


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    manager = item.config.stash.get(_MANAGER, None)
    if manager is None:
        return
    use = _lab_use(item)
    if use == SHARED and manager.shared is not None and manager.running != manager.shared:
        manager.shared_lab()
    elif use == OWN:
        manager.release()


def pytest_runtest_teardown(item: pytest.Item) -> None:
    manager = item.config.stash.get(_MANAGER, None)
    if manager is None:
        return
    # On the test's report, which reaches the xdist controller too (tests/conftest.py prints them).
    item.user_properties.extend(("lab start", start) for start in manager.unrecorded_starts)
    manager.unrecorded_starts.clear()
    if manager.shared is None or manager.running != manager.shared:
        return
    for name in active_faults(manager.shared):
        control.fault(manager.shared, name, False)


@contextmanager
def ssh_control_dir() -> Iterator[Path]:
    """A short directory (a Unix socket path holds 107 bytes) for the ssh ControlPersist sockets of
    the ansible-playbook runs a test starts; their masters are closed at the end."""
    directory = Path(tempfile.mkdtemp(prefix="rmd-cp-"))
    try:
        yield directory
    finally:
        for socket_path in directory.iterdir():
            subprocess.run(
                ["ssh", "-O", "exit", "-o", f"ControlPath={socket_path}", "lab"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        shutil.rmtree(directory, ignore_errors=True)


def lab_asterisk(layout: LabLayout, command: str) -> str:
    """What the lab gateway's console prints for `asterisk -rx <command>`, asked on its host."""
    completed = subprocess.run(
        [str(layout.bin_dir / "asterisk"), "-rx", command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return completed.stdout
