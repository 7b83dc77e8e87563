"""Per-site locks, so that two runs (on one controller or on two) never change a site at once.

A run holds two locks on its site, taken together or not at all (local first, then the target):

- a local one: `locks/site_<site>.lock` in the state directory, held with an exclusive `flock`
  for the life of the process (the kernel drops it when the process dies) and holding a JSON body
  that says who holds it;
- one on the target, which any controller (and a person on the host) can see: a JSON file on the
  site's Asterisk host, created over SFTP with an exclusive create (O_EXCL), at the path of the
  inventory variable `remediate_lock_path`. The default is `/var/lock/remediate-<site>.lock`
  (`/tmp/remediate-<site>.lock` in the lab, whose SSH user cannot write `/var/lock`).

Both bodies name the holder: owner (user@host), pid, run id, change id, when it was acquired and
when it expires. A second run gets `LockedError` (exit 5, `site-locked`) naming that holder.

A lock is stale, and taken over with a logged reason, when its run is known to have ended: its
record, in the state directory the lock names, says so (a run that could not remove its lock, the
host being unreachable as it ended), or it names this run's own state directory (whose local lock
this run holds) and no record of a running run is there. It is stale too when its holder ran on this
host and its process is gone, or when it has expired and its holder is not known to be alive. A
lock whose record cannot be read here (another controller's) stays until it expires, or until
someone breaks it explicitly (`break_lock`, with a reason the caller journals). A run removes a
target lock only if its run id is the run's own. Stale target locks are moved aside with a rename
that cannot replace anything and checked before they are deleted, so two controllers taking over at
once cannot both win.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from remediate.errors import InputError, RemediateError
from remediate.journal import Owner, OwnerState, RunRecord, RunStatus, read_run_dir
from remediate.state import FILE_MODE, StateDir, check_private_file, make_private_dir
from remediate.status import ExitStatus
from remediate.transport.settings import SSHSettings
from remediate.transport.ssh import SSHTransport

log = logging.getLogger(__name__)

LOCK_DIR = "locks"
LOCK_PATH_VARIABLE = "remediate_lock_path"
DEFAULT_LOCK_PATH = "/var/lock/remediate-{site}.lock"
LAB_LOCK_PATH = "/tmp/remediate-{site}.lock"  # noqa: S108 (the lab's documented default)
LOCK_KIND = "remediate-site-lock"
PARTIAL_GRACE = timedelta(seconds=30)
"""An exclusive create and its write are two SFTP requests: a lock file that is still empty or
half-written is somebody's lock being written, until it is this old."""
BREAK_HINT = "if that controller is dead, break the lock explicitly, with a reason"
_SITE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_LOCK_PATH = re.compile(r"/[A-Za-z0-9_.\-+@/]{1,1023}")
_TAKEOVER_ATTEMPTS = 3


class LockedError(RemediateError):
    """Another run holds the site's lock (or it cannot be taken safely)."""

    reference = "site-locked"
    exit_status = ExitStatus.LOCKED

    def __init__(self, message: str, *, holder: LockHolder | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


# The holder --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    """Who holds a site's lock: what both lock bodies say."""

    site: str
    run_id: str
    change_id: str | None
    owner: Owner
    acquired: datetime
    expires: datetime
    state_dir: str
    """The holder's state directory, where its run record is ('remediate show RUN_ID')."""

    @property
    def who(self) -> str:
        return f"{self.owner.operator}@{self.owner.host}"

    def describe(self) -> str:
        change = f" (change {self.change_id})" if self.change_id else ""
        return (
            f"run {self.run_id}{change} of {self.who}, pid {self.owner.pid}, "
            f"since {_utc_text(self.acquired)}, expires {_utc_text(self.expires)}"
        )

    def stale_reason(self, now: datetime, taker_state_dir: str) -> str | None:
        """Why a run of `taker_state_dir`, holding that directory's local lock on the site, may
        take this lock over (None: it may not): its holder is gone from this host, its run has
        ended, or it expired and its holder is not known to be alive."""
        state = self.owner.state()
        where = f"pid {self.owner.pid} on {self.owner.host}"
        if state is OwnerState.GONE:
            return f"its holder ({where}) is no longer running"
        ended = self._ended(taker_state_dir)
        if ended is not None:
            return ended
        if now >= self.expires and state is OwnerState.UNKNOWN:
            return f"it expired at {_utc_text(self.expires)} (its holder runs on another host)"
        return None

    def _ended(self, taker_state_dir: str) -> str | None:
        record = holder_record(self)
        if record is not None:
            if record.status is RunStatus.RUNNING:
                return None
            return (
                f"its run ended ({record.status.value}, as its record in {self.state_dir} says) "
                "without removing it"
            )
        if self.owner.host == socket.gethostname() and _same_directory(
            self.state_dir, taker_state_dir
        ):
            # Its run held this directory's local lock on the site while it ran; this run holds
            # it now, and that run left no record saying it still runs.
            return "its run, from this state directory, has ended and left no record there"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": LOCK_KIND,
            "schema_version": 1,
            "site": self.site,
            "run_id": self.run_id,
            "change_id": self.change_id,
            "owner": self.who,
            "pid": self.owner.pid,
            "process": asdict(self.owner),
            "acquired": _utc_text(self.acquired),
            "expires": _utc_text(self.expires),
            "state_dir": self.state_dir,
        }

    def body(self) -> bytes:
        return json.dumps(self.to_json(), indent=1).encode() + b"\n"

    @classmethod
    def parse(cls, content: bytes) -> LockHolder | None:
        """The holder a lock body names, or None when it is empty, torn or not a lock."""
        try:
            data = json.loads(content)
            if data.get("kind") != LOCK_KIND:
                return None
            return cls(
                site=str(data["site"]),
                run_id=str(data["run_id"]),
                change_id=None if data["change_id"] is None else str(data["change_id"]),
                owner=Owner(**data["process"]),
                acquired=_parse_time(data["acquired"]),
                expires=_parse_time(data["expires"]),
                state_dir=str(data.get("state_dir", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class Takeover:
    """A stale lock this run took over (or a lock broken on purpose): for the journal."""

    where: str
    reason: str
    previous: LockHolder | None

    def to_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "reason": self.reason,
            "previous": None if self.previous is None else self.previous.to_json(),
        }


def holder_record(holder: LockHolder) -> RunRecord | None:
    """The record of the run a lock names, from the state directory the lock names, when this
    machine can read it and it is that run's (its site and its owner's host are the lock's)."""
    if not holder.state_dir:
        return None
    try:
        record = read_run_dir(StateDir(Path(holder.state_dir)).run_path(holder.run_id))
    except (RemediateError, OSError):
        return None
    if record.metadata.site != holder.site or record.owner.host != holder.owner.host:
        return None
    return record


def _same_directory(first: str, second: str) -> bool:
    try:
        return bool(first and second) and os.path.samefile(first, second)
    except OSError:
        return False


def utc_now() -> datetime:
    return datetime.now(UTC)


def target_lock_path(site: str, configured: str | None, *, lab: bool) -> str:
    """The lock file's path on the Asterisk host: `remediate_lock_path`, else the default."""
    _check_site(site)
    if configured in (None, ""):
        return (LAB_LOCK_PATH if lab else DEFAULT_LOCK_PATH).format(site=site)
    path = str(configured)
    if _LOCK_PATH.fullmatch(path) is None or "/../" in f"{path}/":
        raise InputError(
            f"{LOCK_PATH_VARIABLE} {path[:80]!r} is not an absolute path of plain characters",
            reference="inventory-variable-invalid",
            hint=f"e.g. {LOCK_PATH_VARIABLE}: {DEFAULT_LOCK_PATH.format(site=site)}",
        )
    return path


def _check_site(site: str) -> None:
    if _SITE_NAME.fullmatch(site) is None:
        raise InputError(f"site name {site[:80]!r} cannot name a lock", reference="bad-input")


# The local lock ----------------------------------------------------------------------------------


class LocalLock:
    """`locks/site_<site>.lock` in the state directory: an flock plus a JSON body."""

    def __init__(self, state: StateDir, site: str) -> None:
        _check_site(site)
        self.site = site
        self.path = make_private_dir(state.path / LOCK_DIR) / f"site_{site}.lock"
        self._descriptor: int | None = None

    @property
    def where(self) -> str:
        return f"local lock {self.path}"

    def acquire(self, holder: LockHolder) -> Takeover | None:
        """Take the lock for `holder`; a body left by a holder that died is taken over."""
        descriptor = self._open()
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            current = LockHolder.parse(_read_all(descriptor))
            os.close(descriptor)
            raise _locked(self.site, self.where, current, alive_here=True) from None
        takeover = None
        left = _read_all(descriptor)
        if left.strip():
            previous = LockHolder.parse(left)
            takeover = Takeover(
                self.where,
                "its holder ended without releasing it (the process is gone: the kernel "
                "released its flock)",
                previous,
            )
        _rewrite(descriptor, holder.body())
        self._descriptor = descriptor
        return takeover

    def rewrite(self, holder: LockHolder) -> None:
        """A new body (a later expiry) for the lock this process holds."""
        if self._descriptor is None:
            raise RemediateError(f"the {self.where} is not held", reference="lock-not-held")
        _rewrite(self._descriptor, holder.body())

    def release(self) -> None:
        """Empty the body and drop the flock (only this process can hold it)."""
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            try:
                _rewrite(descriptor, b"")
            finally:
                os.close(descriptor)

    def break_(self) -> LockHolder | None:
        """Clear a lock no live process holds; a live holder on this host is never broken."""
        descriptor = self._open()
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                current = LockHolder.parse(_read_all(descriptor))
                raise _live_holder(self.site, self.where, current) from None
            previous = LockHolder.parse(_read_all(descriptor))
            _rewrite(descriptor, b"")
            return previous
        finally:
            os.close(descriptor)

    def _open(self) -> int:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            check_private_file(self.path)
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor


def _read_all(descriptor: int) -> bytes:
    return os.pread(descriptor, 1 << 16, 0)


def _rewrite(descriptor: int, content: bytes) -> None:
    os.ftruncate(descriptor, 0)
    if content:
        os.pwrite(descriptor, content, 0)
    os.fsync(descriptor)


# The target lock ---------------------------------------------------------------------------------


class TargetLock:
    """The lock file on the site's Asterisk host, reached over SFTP (a fresh connection for each
    operation, so a lock held for hours does not depend on one connection staying up)."""

    def __init__(self, settings: SSHSettings, path: str) -> None:
        self.settings = settings
        self.path = path

    @property
    def where(self) -> str:
        return f"lock file {self.path} on {self.settings.inventory_host}"

    def acquire(self, holder: LockHolder, now: datetime) -> Takeover | None:
        """Create the lock file for `holder`, taking over a stale one."""
        takeover: Takeover | None = None
        with SSHTransport(self.settings) as ssh:
            for _ in range(_TAKEOVER_ATTEMPTS):
                if ssh.create_file_exclusive(self.path, holder.body()):
                    return takeover
                content = self._read(ssh)
                if content is None:
                    continue  # released between our create and our read: try again
                current = LockHolder.parse(content)
                if current is not None and current.run_id == holder.run_id:
                    ssh.write_file_atomic(self.path, holder.body(), mode=0o644)
                    return takeover  # this run's own lock (a resumed run): renewed
                reason = self._stale_reason(ssh, current, now, holder.state_dir)
                if reason is None:
                    raise _locked(holder.site, self.where, current, alive_here=False)
                if self._move_aside(ssh, content):
                    takeover = Takeover(self.where, reason, current)
                    log.warning("taking over the stale %s: %s", self.where, reason)
        raise LockedError(
            f"site {holder.site}: the {self.where} kept changing while this run tried to take it",
            hint="another controller is taking the lock at the same moment; try again shortly",
        )

    def rewrite(self, holder: LockHolder) -> None:
        """A new body (a later expiry) for this run's lock; refused if the lock is not ours."""
        with SSHTransport(self.settings) as ssh:
            current = LockHolder.parse(self._read(ssh) or b"")
            if current is None or current.run_id != holder.run_id:
                raise LockedError(
                    f"site {holder.site}: the {self.where} no longer belongs to run "
                    f"{holder.run_id}"
                    + (f"; {current.describe()} holds it" if current else " (it is gone)"),
                    holder=current,
                    hint="someone broke this run's lock; stop and check the site",
                )
            ssh.write_file_atomic(self.path, holder.body(), mode=0o644)

    def release(self, run_id: str) -> bool:
        """Remove the lock file if it is `run_id`'s; True when removed."""
        with SSHTransport(self.settings) as ssh:
            content = self._read(ssh)
            if content is None:
                log.warning("the %s was already gone when run %s released it", self.where, run_id)
                return False
            current = LockHolder.parse(content)
            if current is None or current.run_id != run_id:
                log.warning(
                    "not removing the %s: it belongs to %s, not to run %s",
                    self.where,
                    current.describe() if current else "nobody readable",
                    run_id,
                )
                return False
            return self._move_aside(ssh, content)

    def peek(self) -> LockHolder | None:
        """Who holds the lock now (None: nobody, or an unreadable file)."""
        with SSHTransport(self.settings) as ssh:
            return LockHolder.parse(self._read(ssh) or b"")

    def break_(self) -> tuple[bool, LockHolder | None]:
        """Remove the lock file whoever holds it, unless a live process on this host does:
        (whether there was one, the holder it named)."""
        with SSHTransport(self.settings) as ssh:
            for _ in range(_TAKEOVER_ATTEMPTS):
                content = self._read(ssh)
                if content is None:
                    return False, None
                current = LockHolder.parse(content)
                if current is not None and current.owner.state() is OwnerState.ALIVE:
                    raise _live_holder(current.site, self.where, current)
                if self._move_aside(ssh, content):
                    return True, current
        raise LockedError(f"the {self.where} kept changing while it was being broken")

    def _read(self, ssh: SSHTransport) -> bytes | None:
        try:
            return ssh.read_file(self.path)
        except RemediateError as error:
            if error.reference == "ssh-file-missing":
                return None
            raise

    def _stale_reason(
        self, ssh: SSHTransport, current: LockHolder | None, now: datetime, state_dir: str
    ) -> str | None:
        if current is not None:
            return current.stale_reason(now, state_dir)
        attributes = ssh.stat(self.path)
        if attributes is None or attributes.st_mtime is None:
            return None
        age = now - datetime.fromtimestamp(attributes.st_mtime, UTC)
        if age < PARTIAL_GRACE:
            return None
        return f"it is unreadable (empty or torn) and {int(age.total_seconds())} s old"

    def _move_aside(self, ssh: SSHTransport, expected: bytes) -> bool:
        """Remove the lock file if it still holds `expected`: rename it to a unique name (only
        one controller's rename can succeed), then check what was moved before deleting it."""
        aside = f"{self.path}.{secrets.token_hex(4)}.removed"
        if not ssh.rename_file(self.path, aside):
            return False
        moved = ssh.read_file(aside)
        if moved != expected:  # a fresh lock replaced the one we judged: put it back
            if not ssh.rename_file(aside, self.path):
                log.error("could not put back %s as %s", aside, self.path)
            return False
        ssh.remove_file(aside)
        return True


# Both locks --------------------------------------------------------------------------------------


class SiteLock:
    """A run's locks on one site, local and on the target: both or neither. A context manager.

    `ttl` bounds how long the lock lasts unless `refresh`ed: give the run's worst case plus a
    margin, so that a controller that dies without releasing blocks the site no longer than that.
    `takeovers` lists the stale locks taken over while acquiring: the caller journals them.
    """

    def __init__(
        self,
        state: StateDir,
        site: str,
        *,
        run_id: str,
        change_id: str | None,
        ttl: timedelta,
        target: TargetLock | None,
        operator: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.state = state
        self.site = site
        self.run_id = run_id
        self.change_id = change_id
        self.ttl = ttl
        self.target = target
        self.operator = operator
        self.clock = clock
        self.takeovers: list[Takeover] = []
        self.holder: LockHolder | None = None
        self._local: LocalLock | None = None

    def acquire(self) -> LockHolder:
        """Take both locks, or raise `LockedError` (exit 5) naming the holder and hold neither."""
        now = self.clock().replace(microsecond=0)  # as the body writes it: reads compare equal
        holder = LockHolder(
            site=self.site,
            run_id=self.run_id,
            change_id=self.change_id,
            owner=Owner.current(self.operator),
            acquired=now,
            expires=now + self.ttl,
            state_dir=str(self.state.path),
        )
        local = LocalLock(self.state, self.site)
        takeovers = [local.acquire(holder)]
        try:
            if self.target is not None:
                takeovers.append(self.target.acquire(holder, now))
        except BaseException:
            local.release()
            raise
        for takeover in takeovers:
            if takeover is not None:
                log.warning("took over the stale %s: %s", takeover.where, takeover.reason)
                self.takeovers.append(takeover)
        self._local, self.holder = local, holder
        return holder

    def refresh(self, ttl: timedelta | None = None) -> LockHolder:
        """Push the expiry to now + `ttl` (default: the lock's ttl), on both locks."""
        if self.holder is None or self._local is None:
            raise RemediateError(f"site {self.site}: no lock is held", reference="lock-not-held")
        expires = self.clock().replace(microsecond=0) + (self.ttl if ttl is None else ttl)
        holder = replace(self.holder, expires=expires)
        if self.target is not None:
            self.target.rewrite(holder)
        self._local.rewrite(holder)
        self.holder = holder
        return holder

    def release(self) -> str | None:
        """Drop both locks. Returns a warning when the target lock could not be removed (the
        host unreachable, or the lock no longer ours): it then stays until a run that can read
        this run's record takes it over, or until it expires."""
        if self.holder is None or self._local is None:
            return None
        warning = None
        try:
            if self.target is not None and not self.target.release(self.run_id):
                warning = f"the {self.target.where} was not this run's any more; left as it was"
        except RemediateError as error:
            warning = (
                f"could not remove the {self.target.where if self.target else 'target lock'} "
                f"({error}); the next run of site {self.site} takes it over, this run's "
                f"record (in {self.state.path}) saying it ended; a controller that cannot read "
                f"that record waits until it expires at {_utc_text(self.holder.expires)}"
            )
            log.warning("%s", warning)
        finally:
            self._local.release()
            self._local, self.holder = None, None
        return warning

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(frozen=True)
class BrokenLock:
    """What an explicit break removed, for the journal."""

    site: str
    reason: str
    by: str
    time: datetime
    local: LockHolder | None
    target: LockHolder | None
    target_existed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "reason": self.reason,
            "by": self.by,
            "time": _utc_text(self.time),
            "local": None if self.local is None else self.local.to_json(),
            "target": None if self.target is None else self.target.to_json(),
            "target_existed": self.target_existed,
        }


def break_lock(
    state: StateDir,
    site: str,
    reason: str,
    *,
    target: TargetLock | None,
    operator: str | None = None,
) -> BrokenLock:
    """Break a site's locks on purpose (a controller died and its lock has not expired). A lock
    whose holder is alive on this host is refused: end that run instead. The caller journals the
    returned record; it is logged here too."""
    if not reason.strip():
        raise InputError(
            "breaking a lock needs a reason", hint="say why, e.g. 'controller ctl2 died'"
        )
    local = LocalLock(state, site).break_()
    existed, held = target.break_() if target is not None else (False, None)
    owner = Owner.current(operator)
    broken = BrokenLock(
        site=site,
        reason=reason.strip(),
        by=f"{owner.operator}@{owner.host}",
        time=utc_now(),
        local=local,
        target=held,
        target_existed=existed,
    )
    log.warning(
        "broke the lock of site %s (%s): %s",
        site,
        "; ".join(h.describe() for h in (local, held) if h is not None) or "no holder recorded",
        broken.reason,
    )
    return broken


# Text --------------------------------------------------------------------------------------------


def _locked(site: str, where: str, holder: LockHolder | None, *, alive_here: bool) -> LockedError:
    if holder is None:
        return LockedError(
            f"site {site} is locked ({where}), by a holder whose lock is still being written "
            "or cannot be read",
            hint="try again in a minute; " + BREAK_HINT,
        )
    expired = ""
    if utc_now() >= holder.expires and (alive_here or holder.owner.state() is OwnerState.ALIVE):
        expired = f" (expired, but pid {holder.owner.pid} still runs on this host)"
    state_dir = f" --state-dir {holder.state_dir}" if holder.state_dir else ""
    return LockedError(
        f"site {site} is locked by {holder.describe()}{expired} ({where})",
        holder=holder,
        hint=f"wait for that run to end (on {holder.owner.host}: 'remediate show {holder.run_id}"
        f"{state_dir}'); {BREAK_HINT}",
    )


def _live_holder(site: str, where: str, holder: LockHolder | None) -> LockedError:
    who = holder.describe() if holder else "a process on this host"
    return LockedError(
        f"site {site}: refusing to break the {where}: {who} still runs on this host",
        holder=holder,
        hint="let that run end, or stop it (it then rolls back or is recovered); a live run's "
        "lock is never broken",
    )


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError("naive time in a lock body")
    return moment
