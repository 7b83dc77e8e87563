"""The local site lock: contention between processes, a holder that died, breaking, both-or-neither.
(The lock on the target, over SSH to the lab, is in tests/integration/test_lock_lab.py.)"""

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

from remediate.errors import InputError
from remediate.journal import Journal, Owner, RunStatus
from remediate.lock import (
    LocalLock,
    LockedError,
    LockHolder,
    SiteLock,
    TargetLock,
    break_lock,
    target_lock_path,
)
from remediate.state import StateDir
from remediate.status import ExitStatus
from remediate.transport.settings import SSHSettings

TTL = timedelta(minutes=30)
CONTEXT = multiprocessing.get_context("fork")


def site_lock(state: StateDir, run_id: str, change_id: str | None = "CHG0042") -> SiteLock:
    return SiteLock(state, "lab", run_id=run_id, change_id=change_id, ttl=TTL, target=None)


def hold(state_dir: str, run_id: str, ready: Any, done: Any) -> None:
    """Child process: hold the site's lock until told to let go."""
    with site_lock(StateDir.open(Path(state_dir)), run_id):
        ready.set()
        done.wait(30)


def take_and_die(state_dir: str, run_id: str) -> None:
    """Child process: take the lock and die without releasing it (as SIGKILL would)."""
    site_lock(StateDir.open(Path(state_dir)), run_id).acquire()
    os._exit(0)


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return StateDir.open(tmp_path / "state")


def test_a_second_process_is_refused_with_exit_5_naming_the_holder(state: StateDir) -> None:
    ready, done = CONTEXT.Event(), CONTEXT.Event()
    holder = CONTEXT.Process(
        target=hold, args=(str(state.path), "20261205T163000Z-aaaa", ready, done)
    )
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockedError) as caught:
            site_lock(state, "20261205T163100Z-bbbb").acquire()
        error = caught.value
        assert error.exit_status is ExitStatus.LOCKED == 5
        assert error.reference == "site-locked"
        assert "run 20261205T163000Z-aaaa (change CHG0042)" in error.message
        assert f"@{socket.gethostname()}, pid {holder.pid}" in error.message
        assert "since 20" in error.message and "expires 20" in error.message
        assert error.holder is not None and error.holder.owner.pid == holder.pid
        assert "remediate show 20261205T163000Z-aaaa" in error.hint
    finally:
        done.set()
        holder.join(30)
    with site_lock(state, "20261205T163200Z-cccc") as lock:  # free again once released
        assert lock.takeovers == []


def test_the_lock_body_says_who_holds_it(state: StateDir) -> None:
    with site_lock(state, "20261205T163000Z-aaaa") as lock:
        body = json.loads((state.path / "locks" / "site_lab.lock").read_text())
        assert body["run_id"] == "20261205T163000Z-aaaa"
        assert body["change_id"] == "CHG0042"
        assert body["owner"] == f"{Owner.current().operator}@{socket.gethostname()}"
        assert body["pid"] == os.getpid()
        acquired = datetime.fromisoformat(body["acquired"])
        assert datetime.fromisoformat(body["expires"]) - acquired == TTL
        assert lock.holder is not None and lock.holder.expires == acquired + TTL
        refreshed = lock.refresh(timedelta(hours=3))
        body = json.loads((state.path / "locks" / "site_lab.lock").read_text())
        assert datetime.fromisoformat(body["expires"]) == refreshed.expires
    assert (state.path / "locks" / "site_lab.lock").read_bytes() == b""


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_reason(state: StateDir) -> None:
    child = CONTEXT.Process(target=take_and_die, args=(str(state.path), "20261205T163000Z-dead"))
    child.start()
    child.join(30)
    with site_lock(state, "20261205T163100Z-next") as lock:
        (takeover,) = lock.takeovers
        assert takeover.previous is not None
        assert takeover.previous.run_id == "20261205T163000Z-dead"
        assert "the process is gone" in takeover.reason
        assert takeover.to_json()["previous"]["run_id"] == "20261205T163000Z-dead"


class RefusingTarget(TargetLock):
    """A target whose lock another controller holds (the real one is tested against the lab)."""

    def acquire(self, holder: LockHolder, now: datetime) -> None:
        raise LockedError("site lab is locked by run X on another controller")


def test_both_or_neither_the_local_lock_is_let_go_when_the_target_refuses(
    state: StateDir,
) -> None:
    target = RefusingTarget(SSHSettings("asterisk-lab", "127.0.11.54", 2222, "u", "k", "kh"), "/x")
    lock = SiteLock(
        state, "lab", run_id="20261205T163000Z-aaaa", change_id=None, ttl=TTL, target=target
    )
    with pytest.raises(LockedError):
        lock.acquire()
    assert lock.holder is None
    with site_lock(state, "20261205T163100Z-bbbb") as other:  # not left held
        assert other.takeovers == []


def test_break_refuses_a_live_holder_and_clears_a_dead_ones(state: StateDir) -> None:
    ready, done = CONTEXT.Event(), CONTEXT.Event()
    holder = CONTEXT.Process(
        target=hold, args=(str(state.path), "20261205T163000Z-live", ready, done)
    )
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockedError, match="refusing to break") as caught:
            break_lock(state, "lab", "controller died", target=None)
        assert caught.value.exit_status == 5
    finally:
        done.set()
        holder.join(30)
    child = CONTEXT.Process(target=take_and_die, args=(str(state.path), "20261205T163000Z-dead"))
    child.start()
    child.join(30)
    broken = break_lock(state, "lab", "  ctl1 was killed  ", target=None)
    assert broken.reason == "ctl1 was killed"
    assert broken.local is not None and broken.local.run_id == "20261205T163000Z-dead"
    assert broken.to_json()["local"]["run_id"] == "20261205T163000Z-dead"
    with site_lock(state, "20261205T163100Z-next") as lock:
        assert lock.takeovers == []  # the break left nothing to take over
    with pytest.raises(InputError, match="needs a reason"):
        break_lock(state, "lab", " ", target=None)


def holder(host: str, pid: int, expires: datetime) -> LockHolder:
    owner = Owner(host=host, pid=pid, operator="ops", boot_id=None, pid_start=None)
    return LockHolder("lab", "20261205T163000Z-aaaa", None, owner, expires - TTL, expires, "/s")


def test_staleness() -> None:
    now = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)
    later, earlier = now + timedelta(minutes=1), now - timedelta(minutes=1)
    # Another host: only the expiry can tell.
    assert holder("ctl-elsewhere", 1234, later).stale_reason(now, "/mine") is None
    reason = holder("ctl-elsewhere", 1234, earlier).stale_reason(now, "/mine")
    assert reason is not None and "expired at 2026-12-05T16:59:00Z" in reason
    # This host: a live holder keeps its lock even past expiry; a dead one loses it at once.
    here = socket.gethostname()
    assert holder(here, os.getpid(), earlier).stale_reason(now, "/mine") is None
    dead = CONTEXT.Process(target=os.getpid)
    dead.start()
    dead.join(30)
    assert dead.pid is not None
    reason = holder(here, dead.pid, later).stale_reason(now, "/mine")
    assert reason is not None and "no longer running" in reason


def journaled_holder(state: StateDir, status: RunStatus | None, site: str = "lab") -> LockHolder:
    """The lock of a run of this process journaled in `state`: finished as `status`, or still
    running (None). Its holder process (this one) is alive, as in a long-lived controller."""
    journal = Journal.start(state, site=site, dns=["5001"], fix="trusted-gateway")
    if status is not None:
        journal.finish(status)
    journal.close()
    now = datetime.now(UTC).replace(microsecond=0)
    return LockHolder(
        site="lab",
        run_id=journal.run_id,
        change_id=None,
        owner=Owner.current(),
        acquired=now,
        expires=now + TTL,
        state_dir=str(state.path),
    )


def test_a_lock_whose_run_ended_is_stale_though_its_process_lives(tmp_path: Path) -> None:
    # A long-lived controller (the API, a fleet) whose run ended while the target was unreachable:
    # its lock stayed there; its record in its state directory says the run ended.
    other = StateDir.open(tmp_path / "other-controller")
    now = datetime.now(UTC)
    for status in (RunStatus.FAILED_BEFORE_CHANGE, RunStatus.COMMITTED, RunStatus.ROLLED_BACK):
        ended = journaled_holder(other, status)
        reason = ended.stale_reason(now, str(tmp_path / "mine"))
        assert reason is not None
        assert f"its run ended ({status.value}, as its record in {other.path} says)" in reason
    # Still running (its process alive): a live run's lock is never taken over.
    running = journaled_holder(other, None)
    assert running.stale_reason(now, str(tmp_path / "mine")) is None
    # A record that is not the lock's run (another site's record under that id) proves nothing.
    foreign = journaled_holder(other, RunStatus.COMMITTED, site="mumbai")
    assert foreign.stale_reason(now, str(tmp_path / "mine")) is None


def test_a_lock_whose_record_cannot_be_read_is_respected_until_it_expires(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    owner = Owner(host="ctl2.example", pid=4242, operator="ops", boot_id=None, pid_start=None)
    missing = LockHolder(
        "lab", "20261205T163000Z-aaaa", None, owner, now - TTL, now + TTL, str(tmp_path / "ctl2")
    )
    assert missing.stale_reason(now, str(tmp_path / "mine")) is None
    expired = missing.stale_reason(now + 2 * TTL, str(tmp_path / "mine"))
    assert expired is not None and "expired at" in expired
    # The same path on another host names another directory than ours: not proof of an end.
    mine = StateDir.open(tmp_path / "mine")
    assert (
        dataclasses.replace(missing, state_dir=str(mine.path)).stale_reason(now, str(mine.path))
        is None
    )


def test_a_lock_of_this_state_directory_without_a_running_record_is_stale(
    state: StateDir,
) -> None:
    # Its run held this directory's local lock on the site; the taker holds it now, so that run
    # is not running, even with no record left to say so (its run directory pruned).
    now = datetime.now(UTC)
    owner = Owner.current()
    gone = LockHolder("lab", "20261205T163000Z-aaaa", None, owner, now, now + TTL, str(state.path))
    reason = gone.stale_reason(now, str(state.path))
    assert reason == "its run, from this state directory, has ended and left no record there"
    # A record there saying it still runs, its process alive: refused.
    assert journaled_holder(state, None).stale_reason(now, str(state.path)) is None


def test_a_torn_or_foreign_body_names_no_holder() -> None:
    assert LockHolder.parse(b"") is None
    assert LockHolder.parse(b'{"kind": "remediate-site-lock", "site": "lab"') is None
    assert LockHolder.parse(b'{"kind": "something-else"}') is None
    original = holder("h", 1, datetime(2026, 12, 5, tzinfo=UTC))
    assert LockHolder.parse(original.body()) == original


def test_target_lock_path() -> None:
    assert target_lock_path("lab", None, lab=True) == "/tmp/remediate-lab.lock"
    assert target_lock_path("mumbai", "", lab=False) == "/var/lock/remediate-mumbai.lock"
    assert target_lock_path("lab", "/run/lock/r.lock", lab=True) == "/run/lock/r.lock"
    for bad in ("relative.lock", "/tmp/a b.lock", "/tmp/../etc/passwd", "/tmp/x;rm"):
        with pytest.raises(InputError, match="remediate_lock_path"):
            target_lock_path("lab", bad, lab=False)
    with pytest.raises(InputError):
        LocalLock(StateDir(Path("/nonexistent")), "../etc")
