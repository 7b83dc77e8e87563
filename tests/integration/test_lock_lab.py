"""Site locks on the lab's Asterisk host, over real SSH/SFTP: two controllers (two processes, two
state directories) contending for one site, expiry, a dead holder, breaking, release safety."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediate.inventory import Site, load_site
from remediate.journal import Owner
from remediate.lab.layout import LabLayout
from remediate.lock import LockedError, LockHolder, SiteLock, TargetLock, break_lock
from remediate.state import StateDir
from remediate.status import ExitStatus
from remediate.transport import TransportError
from remediate.transport.settings import SSHSettings

pytestmark = pytest.mark.lab

TTL = timedelta(minutes=30)
CONTEXT = multiprocessing.get_context("fork")  # the children open their own SSH connections


@pytest.fixture(scope="module")
def site(lab: LabLayout) -> Site:
    return load_site(lab.inventory_dir)


@pytest.fixture
def lock_path(tmp_path: Path) -> str:
    # The lab's Asterisk host is this machine: a path of this test's own, so that concurrent runs
    # of the suite (other checkouts) never share the lab's default /tmp/remediate-lab.lock.
    return str(tmp_path / "target" / "remediate-lab.lock")


def make_lock(
    state_dir: Path, settings: SSHSettings, path: str, run_id: str, change_id: str | None = None
) -> SiteLock:
    Path(path).parent.mkdir(exist_ok=True)
    return SiteLock(
        StateDir.open(state_dir),
        "lab",
        run_id=run_id,
        change_id=change_id,
        ttl=TTL,
        target=TargetLock(settings, path),
    )


def controller(
    state_dir: Path, settings: SSHSettings, path: str, run_id: str, results: Any, done: Any
) -> None:
    """A controller process: take the site's locks, report, hold them until told to stop."""
    lock = make_lock(state_dir, settings, path, run_id, change_id=f"CHG-{run_id[-4:]}")
    try:
        lock.acquire()
    except LockedError as error:
        results.put(("locked", int(error.exit_status), error.message, error.hint))
        return
    results.put(("acquired", os.getpid(), "", ""))
    done.wait(30)
    lock.release()


def foreign_holder(expires: datetime, host: str = "ctl2.example") -> LockHolder:
    expires = expires.replace(microsecond=0)  # as a lock body writes it
    owner = Owner(host=host, pid=4242, operator="ops", boot_id=None, pid_start=None)
    return LockHolder(
        "lab", "20261205T160000Z-f00d", "CHG0007", owner, expires - TTL, expires, "/srv/state"
    )


def test_two_controllers_one_gets_exit_5_naming_the_holder(
    site: Site, lock_path: str, tmp_path: Path
) -> None:
    results, done = CONTEXT.Queue(), CONTEXT.Event()
    settings = site.asterisk.ssh
    first = CONTEXT.Process(
        target=controller,
        args=(tmp_path / "ctl1", settings, lock_path, "20261205T163000Z-0001", results, done),
    )
    first.start()
    try:
        assert results.get(timeout=30)[0] == "acquired"
        on_target = json.loads(Path(lock_path).read_text())  # what a person on the host sees
        assert on_target["run_id"] == "20261205T163000Z-0001"
        assert on_target["change_id"] == "CHG-0001"
        assert on_target["owner"].endswith(f"@{socket.gethostname()}")
        assert on_target["pid"] == first.pid and on_target["expires"] > on_target["acquired"]
        second = CONTEXT.Process(
            target=controller,
            args=(tmp_path / "ctl2", settings, lock_path, "20261205T163001Z-0002", results, done),
        )
        second.start()
        outcome, status, message, hint = results.get(timeout=30)
        second.join(30)
        assert outcome == "locked" and status == ExitStatus.LOCKED == 5
        assert "site lab is locked by run 20261205T163000Z-0001 (change CHG-0001)" in message
        assert f"pid {first.pid}" in message and "since " in message and "expires " in message
        assert f"lock file {lock_path} on asterisk-lab" in message
        assert f"--state-dir {tmp_path / 'ctl1'}" in hint
        # Both or neither: the refused controller let its own local lock go.
        with SiteLock(
            StateDir.open(tmp_path / "ctl2"),
            "lab",
            run_id="20261205T163002Z-0003",
            change_id=None,
            ttl=TTL,
            target=None,
        ) as local_only:
            assert local_only.takeovers == []
    finally:
        done.set()
        first.join(30)
    assert not Path(lock_path).exists()  # released by its holder


def test_an_expired_lock_of_another_controller_is_taken_over(
    site: Site, lock_path: str, tmp_path: Path
) -> None:
    Path(lock_path).parent.mkdir()
    live = foreign_holder(datetime.now(UTC) + timedelta(minutes=5))
    Path(lock_path).write_bytes(live.body())
    lock = make_lock(tmp_path / "state", site.asterisk.ssh, lock_path, "20261205T163000Z-0001")
    with pytest.raises(LockedError) as caught:
        lock.acquire()
    assert "run 20261205T160000Z-f00d (change CHG0007) of ops@ctl2.example" in caught.value.message
    assert caught.value.holder == live

    expired = foreign_holder(datetime.now(UTC) - timedelta(seconds=1))
    Path(lock_path).write_bytes(expired.body())
    with lock:
        (takeover,) = lock.takeovers
        assert takeover.previous == expired
        assert "expired at" in takeover.reason and "another host" in takeover.reason
        assert json.loads(Path(lock_path).read_text())["run_id"] == "20261205T163000Z-0001"
    assert not Path(lock_path).exists()
    assert list(Path(lock_path).parent.iterdir()) == []  # nothing moved aside is left behind


def take_target_and_die(settings: SSHSettings, path: str) -> None:
    owner = Owner.current()
    now = datetime.now(UTC).replace(microsecond=0)
    holder = LockHolder("lab", "20261205T160000Z-dead", None, owner, now, now + TTL, "/s")
    TargetLock(settings, path).acquire(holder, now)
    os._exit(0)


def test_a_lock_whose_holder_died_on_this_host_is_taken_over_at_once(
    site: Site, lock_path: str, tmp_path: Path
) -> None:
    Path(lock_path).parent.mkdir()
    child = CONTEXT.Process(target=take_target_and_die, args=(site.asterisk.ssh, lock_path))
    child.start()
    child.join(30)
    assert json.loads(Path(lock_path).read_text())["run_id"] == "20261205T160000Z-dead"
    with make_lock(tmp_path / "s", site.asterisk.ssh, lock_path, "20261205T163000Z-0001") as lock:
        (takeover,) = lock.takeovers
        assert f"pid {child.pid} on {socket.gethostname()}" in takeover.reason
        assert "no longer running" in takeover.reason


def test_break_removes_a_foreign_lock_and_refuses_a_live_local_one(
    site: Site, lock_path: str, tmp_path: Path
) -> None:
    Path(lock_path).parent.mkdir()
    foreign = foreign_holder(datetime.now(UTC) + timedelta(hours=1))
    Path(lock_path).write_bytes(foreign.body())
    state = StateDir.open(tmp_path / "state")
    target = TargetLock(site.asterisk.ssh, lock_path)
    broken = break_lock(state, "lab", "ctl2 lost its disk", target=target)
    assert broken.target == foreign and broken.target_existed
    assert broken.to_json()["target"]["run_id"] == "20261205T160000Z-f00d"
    assert broken.reason == "ctl2 lost its disk" and "@" in broken.by
    assert not Path(lock_path).exists()

    with make_lock(tmp_path / "other", site.asterisk.ssh, lock_path, "20261205T163000Z-0001"):
        with pytest.raises(LockedError, match="refusing to break"):
            break_lock(state, "lab", "impatience", target=target)
        assert Path(lock_path).exists()


def test_release_never_removes_another_runs_lock(
    site: Site, lock_path: str, tmp_path: Path
) -> None:
    lock = make_lock(tmp_path / "state", site.asterisk.ssh, lock_path, "20261205T163000Z-0001")
    lock.acquire()
    # Someone broke this run's lock and another controller took the site.
    other = foreign_holder(datetime.now(UTC) + timedelta(hours=1))
    Path(lock_path).write_bytes(other.body())
    with pytest.raises(LockedError, match="no longer belongs to run 20261205T163000Z-0001"):
        lock.refresh()
    warning = lock.release()
    assert warning is not None and "not this run's" in warning
    assert LockHolder.parse(Path(lock_path).read_bytes()) == other


def test_refresh_pushes_the_expiry_on_the_target(
    site: Site, lock_path: str, tmp_path: Path
) -> None:
    with make_lock(tmp_path / "s", site.asterisk.ssh, lock_path, "20261205T163000Z-0001") as lock:
        before = json.loads(Path(lock_path).read_text())["expires"]
        refreshed = lock.refresh(timedelta(hours=4))
        after = json.loads(Path(lock_path).read_text())["expires"]
        assert after > before
        assert datetime.fromisoformat(after) == refreshed.expires


def test_an_unreachable_target_holds_nothing(site: Site, lock_path: str, tmp_path: Path) -> None:
    unreachable = dataclasses.replace(site.asterisk.ssh, port=1, connect_timeout=2.0)
    lock = make_lock(tmp_path / "s", unreachable, lock_path, "20261205T163000Z-0001")
    with pytest.raises(TransportError) as caught:
        lock.acquire()
    assert caught.value.reference == "ssh-unreachable"
    assert caught.value.exit_status == ExitStatus.PRECONDITION_FAILED
    with SiteLock(
        StateDir.open(tmp_path / "s"),
        "lab",
        run_id="20261205T163001Z-0002",
        change_id=None,
        ttl=TTL,
        target=None,
    ):
        pass  # the local lock was let go
