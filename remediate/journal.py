"""Run records on disk (DESIGN section 4): an append-only journal, byte-exact backups, queries.

Each run has a directory `runs/<run_id>/` in the state directory holding:

- `journal.jsonl`: one JSON object per line (`seq`, `time` in UTC ISO 8601, `event`, `step`,
  `data`). Every line is written, flushed and fsynced before the call that writes it returns, and
  the directory is fsynced when the file is created, so after a SIGKILL or a power cut the journal
  says exactly which steps started and which finished. A crash in the middle of a write leaves a
  torn last line (no newline): readers ignore it and report how many bytes it had.
- `backups/<name>`: the exact before-state of what a change touches (a file's bytes, a
  configuration object's JSON), made durable before the journal records its SHA-256; reading a
  backup back verifies that checksum and refuses a mismatch.

Every journal line goes through a Scrubber: the run's known secrets become `********`, as does
the value of any field named like a password, secret or token. Backups are the one exception:
they must restore byte for byte, so they are kept as they are, 0600 in a 0700 directory.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from remediate import __version__
from remediate.errors import RemediateError
from remediate.scrub import Scrubber
from remediate.state import (
    FILE_MODE,
    StateDir,
    check_private_file,
    fsync_dir,
    make_private_dir,
    write_private_file,
)

JOURNAL_FILE = "journal.jsonl"
BACKUP_DIR = "backups"
_BACKUP_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class JournalError(RemediateError):
    """A run record cannot be written or read as it must be."""

    reference = "journal-error"


class BackupCorruptError(JournalError):
    """A backup's bytes no longer match the checksum the journal recorded."""

    reference = "backup-corrupt"


class RunStatus(StrEnum):
    """Where a run ended (or `running`: it has not recorded an end)."""

    RUNNING = "running"
    COMMITTED = "committed"
    """The change was applied and verified."""
    NO_CHANGE = "no-change"
    """The estate already was as the fix wants it; nothing was changed."""
    ROLLED_BACK = "rolled-back"
    """The change failed or did not verify, and the rollback restored the estate."""
    ROLLBACK_FAILED = "rollback-failed"
    """The rollback itself failed: a person must act."""
    FAILED_BEFORE_CHANGE = "failed-before-change"
    """A guard or a precondition failed; nothing was changed."""
    ABORTED = "aborted"
    """Stopped by the operator (or a signal) before anything was changed."""


class EventType(StrEnum):
    """The kinds of journal lines."""

    RUN_STARTED = "run-started"
    RUN_RESUMED = "run-resumed"
    STEP_STARTED = "step-started"
    STEP_FINISHED = "step-finished"
    STEP_FAILED = "step-failed"
    BACKUP_STORED = "backup-stored"
    RUN_FINISHED = "run-finished"


class OwnerState(StrEnum):
    """Whether the process that owns a run (started or last resumed it) still runs."""

    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"
    """The owner ran on another host: nothing here can tell whether it still runs."""


class StepOutcome(StrEnum):
    """What became of a step that started."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class Owner:
    """The process that writes a run's journal: enough to tell, later, whether it still runs."""

    host: str
    pid: int
    operator: str
    boot_id: str | None
    pid_start: int | None

    @classmethod
    def current(cls, operator: str | None = None) -> Owner:
        """This process."""
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            operator=operator or _login_name(),
            boot_id=_boot_id(),
            pid_start=_process_start(os.getpid()),
        )

    def state(self) -> OwnerState:
        """Is this owner still running? Only answerable on its own host."""
        if self.host != socket.gethostname():
            return OwnerState.UNKNOWN
        boot_id = _boot_id()
        if self.boot_id is not None and boot_id is not None and boot_id != self.boot_id:
            return OwnerState.GONE
        if not _pid_exists(self.pid):
            return OwnerState.GONE
        start = _process_start(self.pid)
        if self.pid_start is not None and start is not None and start != self.pid_start:
            return OwnerState.GONE  # the pid was reused by another process
        return OwnerState.ALIVE


@dataclass(frozen=True)
class RunMetadata:
    """What a run is about and who started it, as its first journal line records it."""

    run_id: str
    site: str
    dns: tuple[str, ...]
    fix: str
    change_id: str | None
    action: str
    started: str
    owner: Owner
    version: str


@dataclass(frozen=True)
class JournalEntry:
    """One journal line."""

    seq: int
    time: str
    event: EventType
    step: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class BackupRecord:
    """A stored before-state: where it came from, its size and SHA-256."""

    name: str
    source: str
    kind: str
    sha256: str
    size: int
    time: str


@dataclass(frozen=True)
class StepState:
    """A step's life as the journal tells it."""

    name: str
    outcome: StepOutcome
    started: str
    ended: str | None
    error: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class RunRecord:
    """Everything the journal of one run says (what `remediate show` prints)."""

    path: Path
    metadata: RunMetadata
    entries: tuple[JournalEntry, ...]
    torn_tail_bytes: int
    """Bytes of an incomplete last line (a crash mid-write), ignored; 0 when none."""
    owner: Owner = field(compare=False)
    """The current owner: who started the run, or who last resumed it."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.metadata.run_id

    @property
    def status(self) -> RunStatus:
        """The recorded end, or RUNNING while none is recorded."""
        for entry in reversed(self.entries):
            if entry.event is EventType.RUN_FINISHED:
                return RunStatus(entry.data["status"])
        return RunStatus.RUNNING

    @property
    def finished(self) -> str | None:
        """When the run recorded its end, if it did."""
        for entry in reversed(self.entries):
            if entry.event is EventType.RUN_FINISHED:
                return entry.time
        return None

    @property
    def result(self) -> Mapping[str, Any]:
        """The data recorded with the run's end (empty while it runs)."""
        for entry in reversed(self.entries):
            if entry.event is EventType.RUN_FINISHED:
                return entry.data
        return {}

    @property
    def backups(self) -> dict[str, BackupRecord]:
        """The backups the journal recorded, by name."""
        return {
            entry.data["name"]: BackupRecord(
                name=entry.data["name"],
                source=entry.data["source"],
                kind=entry.data["kind"],
                sha256=entry.data["sha256"],
                size=entry.data["size"],
                time=entry.time,
            )
            for entry in self.entries
            if entry.event is EventType.BACKUP_STORED
        }

    @property
    def steps(self) -> list[StepState]:
        """Every step in the order it started, with what became of it."""
        states: list[StepState] = []
        open_steps: dict[str, int] = {}
        for entry in self.entries:
            if entry.step is None:
                continue
            if entry.event is EventType.STEP_STARTED:
                open_steps[entry.step] = len(states)
                states.append(
                    StepState(entry.step, StepOutcome.RUNNING, entry.time, None, None, entry.data)
                )
            elif entry.event in (EventType.STEP_FINISHED, EventType.STEP_FAILED):
                index = open_steps.pop(entry.step, None)
                if index is None:
                    continue
                failed = entry.event is EventType.STEP_FAILED
                states[index] = StepState(
                    entry.step,
                    StepOutcome.FAILED if failed else StepOutcome.FINISHED,
                    states[index].started,
                    entry.time,
                    entry.data.get("error") if failed else None,
                    {**states[index].data, **entry.data},
                )
        return states

    @property
    def unfinished_steps(self) -> list[str]:
        """Steps that started and never recorded an end: what a crash interrupted."""
        return [step.name for step in self.steps if step.outcome is StepOutcome.RUNNING]

    @property
    def owner_state(self) -> OwnerState:
        """Whether the run's current owner still runs (FINISHED runs need no owner)."""
        return self.owner.state()

    @property
    def needs_recovery(self) -> bool:
        """Started, never finished, and its owner is gone: `remediate recover` must finish it."""
        return self.status is RunStatus.RUNNING and self.owner_state is OwnerState.GONE


def utc_now() -> str:
    """Now, UTC, ISO 8601 with microseconds and a Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_default(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} cannot go into the journal")


def _to_json(value: Any) -> Any:
    """Plain JSON types (what the journal will hold), so the scrubber sees every string."""
    return json.loads(json.dumps(value, default=_json_default))


class Journal:
    """The writer of one run's record. One writer per run: it holds a lock on the journal file."""

    def __init__(
        self, path: Path, descriptor: int, entries: Sequence[JournalEntry], scrubber: Scrubber
    ) -> None:
        self.path = path
        self._descriptor: int | None = descriptor
        self._scrubber = scrubber
        self._lock = threading.Lock()
        self._seq = entries[-1].seq if entries else 0
        self._open_steps = set(_record(path, entries, 0).unfinished_steps) if entries else set()
        self._backups = {
            entry.data["name"] for entry in entries if entry.event is EventType.BACKUP_STORED
        }
        self._finished = any(entry.event is EventType.RUN_FINISHED for entry in entries)

    @classmethod
    def start(
        cls,
        state: StateDir,
        *,
        site: str,
        dns: Sequence[str],
        fix: str,
        change_id: str | None = None,
        action: str = "apply",
        operator: str | None = None,
        secrets: Collection[str] = (),
    ) -> Journal:
        """Create a run directory and its journal, and durably record the run's start."""
        run_id, path = state.new_run()
        journal_path = path / JOURNAL_FILE
        descriptor = os.open(
            journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, FILE_MODE
        )
        try:
            os.fchmod(descriptor, FILE_MODE)
            _lock_file(descriptor, journal_path)
            fsync_dir(path)
        except BaseException:
            os.close(descriptor)
            raise
        journal = cls(path, descriptor, (), Scrubber(secrets))
        owner = Owner.current(operator)
        journal._append(
            EventType.RUN_STARTED,
            None,
            {
                "run_id": run_id,
                "site": site,
                "dns": list(dns),
                "fix": fix,
                "change_id": change_id,
                "action": action,
                "owner": asdict(owner),
                "version": __version__,
            },
        )
        return journal

    @classmethod
    def resume(
        cls,
        state: StateDir,
        run_id: str,
        *,
        operator: str | None = None,
        secrets: Collection[str] = (),
        force: bool = False,
    ) -> Journal:
        """Take over a run whose owner is gone (for `recover`): cut a torn tail, log it.

        An owner on another host cannot be checked from here: `force` takes the run over anyway
        (the operator vouches that it is dead); a live owner on this host is always refused.
        """
        path = state.run_path(run_id)
        journal_path = path / JOURNAL_FILE
        check_private_file(journal_path)
        descriptor = os.open(journal_path, os.O_RDWR | os.O_APPEND)
        try:
            _lock_file(descriptor, journal_path)
            record = read_run_dir(path)
            if record.status is not RunStatus.RUNNING:
                raise JournalError(
                    f"run {run_id} already ended ({record.status})",
                    reference="run-finished",
                    hint="a finished run cannot be resumed; start a new run",
                )
            owner_state = record.owner_state
            if owner_state is OwnerState.ALIVE or (owner_state is OwnerState.UNKNOWN and not force):
                raise JournalError(
                    f"run {run_id} is owned by pid {record.owner.pid} on {record.owner.host}, "
                    f"which is {owner_state}",
                    reference="run-owned",
                    hint="wait for that process to end (or end it) before recovering the run"
                    + (
                        "; if it is dead, force the takeover"
                        if owner_state is OwnerState.UNKNOWN
                        else ""
                    ),
                )
            if record.torn_tail_bytes:
                os.ftruncate(descriptor, os.fstat(descriptor).st_size - record.torn_tail_bytes)
                os.fsync(descriptor)
        except BaseException:
            os.close(descriptor)
            raise
        journal = cls(path, descriptor, record.entries, Scrubber(secrets))
        journal._append(
            EventType.RUN_RESUMED,
            None,
            {
                "owner": asdict(Owner.current(operator)),
                "discarded_torn_bytes": record.torn_tail_bytes,
                "unfinished_steps": record.unfinished_steps,
            },
        )
        return journal

    @property
    def run_id(self) -> str:
        """The run's id (its directory's name)."""
        return self.path.name

    def add_secrets(self, *secrets: str) -> None:
        """Secrets learnt during the run: from now on they are masked too."""
        self._scrubber.add(*secrets)

    def step_started(self, step: str, data: Mapping[str, Any] | None = None) -> None:
        """Durably record that a step starts; returns only once the line is on disk."""
        with self._lock:
            if step in self._open_steps:
                raise JournalError(f"step {step!r} already started and has not ended")
            self._append(EventType.STEP_STARTED, step, data or {})
            self._open_steps.add(step)

    def step_finished(self, step: str, data: Mapping[str, Any] | None = None) -> None:
        """Durably record that a started step finished."""
        self._end_step(EventType.STEP_FINISHED, step, data or {})

    def step_failed(self, step: str, error: str, data: Mapping[str, Any] | None = None) -> None:
        """Durably record that a started step failed, and why."""
        self._end_step(EventType.STEP_FAILED, step, {**(data or {}), "error": error})

    @contextmanager
    def step(self, step: str, data: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Record a step around a block: the block fills the dict it gets with its results."""
        self.step_started(step, data)
        results: dict[str, Any] = {}
        try:
            yield results
        except BaseException as error:
            self.step_failed(step, str(error) or type(error).__name__, results)
            raise
        self.step_finished(step, results)

    def store_backup(self, name: str, content: bytes, *, source: str, kind: str) -> BackupRecord:
        """Keep a byte-exact before-state, durable before the journal records its SHA-256."""
        _check_backup_name(name)
        with self._lock:
            if name in self._backups:
                raise JournalError(f"a backup named {name!r} is already stored in this run")
            directory = make_private_dir(self.path / BACKUP_DIR)
            write_private_file(directory / name, content)
            digest = hashlib.sha256(content).hexdigest()
            entry = self._append(
                EventType.BACKUP_STORED,
                None,
                {
                    "name": name,
                    "source": source,
                    "kind": kind,
                    "sha256": digest,
                    "size": len(content),
                    "path": f"{BACKUP_DIR}/{name}",
                },
            )
            self._backups.add(name)
        return BackupRecord(name, source, kind, digest, len(content), entry.time)

    def store_json_backup(self, name: str, value: Any, *, source: str, kind: str) -> BackupRecord:
        """Keep a configuration object's before-state as canonical JSON (sorted keys, UTF-8)."""
        content = json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")
        return self.store_backup(name, content + b"\n", source=source, kind=kind)

    def record(self) -> RunRecord:
        """The run's record as it stands on disk now."""
        return read_run_dir(self.path)

    def finish(self, status: RunStatus, data: Mapping[str, Any] | None = None) -> None:
        """Durably record how the run ended; the journal accepts nothing after this."""
        if status is RunStatus.RUNNING:
            raise ValueError("a run cannot finish as 'running'")
        with self._lock:
            self._append(EventType.RUN_FINISHED, None, {**(data or {}), "status": status.value})
            self._finished = True

    def close(self) -> None:
        """Release the journal (and its lock); a run closed unfinished stays open for recovery."""
        with self._lock:
            if self._descriptor is not None:
                os.close(self._descriptor)
                self._descriptor = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _end_step(self, event: EventType, step: str, data: Mapping[str, Any]) -> None:
        with self._lock:
            if step not in self._open_steps:
                raise JournalError(f"step {step!r} has not started")
            self._append(event, step, data)
            self._open_steps.discard(step)

    def _append(self, event: EventType, step: str | None, data: Mapping[str, Any]) -> JournalEntry:
        if self._descriptor is None:
            raise JournalError(f"the journal of run {self.run_id} is closed")
        if self._finished:
            raise JournalError(f"run {self.run_id} has ended; its journal takes no more lines")
        entry = JournalEntry(
            seq=self._seq + 1,
            time=utc_now(),
            event=event,
            step=None if step is None else self._scrubber.text(step),
            data=self._scrubber.data(_to_json(data)),
        )
        line = json.dumps(
            {
                "seq": entry.seq,
                "time": entry.time,
                "event": entry.event.value,
                "step": entry.step,
                "data": entry.data,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        view = memoryview(line.encode("utf-8") + b"\n")
        while view:
            view = view[os.write(self._descriptor, view) :]
        os.fsync(self._descriptor)
        self._seq = entry.seq
        return entry


def read_journal(path: Path) -> tuple[list[JournalEntry], int]:
    """The complete lines of a journal file, and the size in bytes of a torn last line (or 0)."""
    content = path.read_bytes()
    complete, _, torn = content.rpartition(b"\n")
    entries: list[JournalEntry] = []
    for number, raw in enumerate(complete.split(b"\n") if complete else [], start=1):
        try:
            line = json.loads(raw)
            entries.append(
                JournalEntry(
                    seq=int(line["seq"]),
                    time=str(line["time"]),
                    event=EventType(line["event"]),
                    step=line["step"],
                    data=line["data"],
                )
            )
        except (ValueError, KeyError, TypeError) as error:
            raise JournalError(
                f"{path} line {number} is damaged ({error}); a torn line can only be the last",
                reference="journal-corrupt",
                hint="the file was edited or the disk is failing: inspect it before any recovery",
            ) from None
    return entries, len(torn)


def read_run_dir(path: Path) -> RunRecord:
    """The record of the run in directory `path`."""
    journal_path = path / JOURNAL_FILE
    if not journal_path.is_file():
        raise JournalError(f"run {path.name} has no journal ({journal_path} is missing)")
    entries, torn = read_journal(journal_path)
    return _record(path, entries, torn)


def _record(path: Path, entries: Sequence[JournalEntry], torn: int) -> RunRecord:
    if not entries or entries[0].event is not EventType.RUN_STARTED:
        raise JournalError(f"the journal of run {path.name} does not begin with its start")
    start = entries[0]
    owner = start.data["owner"]
    for entry in entries:
        if entry.event is EventType.RUN_RESUMED:
            owner = entry.data["owner"]
    return RunRecord(
        path=path,
        metadata=RunMetadata(
            run_id=start.data["run_id"],
            site=start.data["site"],
            dns=tuple(start.data["dns"]),
            fix=start.data["fix"],
            change_id=start.data["change_id"],
            action=start.data["action"],
            started=start.time,
            owner=Owner(**start.data["owner"]),
            version=start.data["version"],
        ),
        entries=tuple(entries),
        torn_tail_bytes=torn,
        owner=Owner(**owner),
    )


def read_run(state: StateDir, run_id: str) -> RunRecord:
    """The full record of one run (`remediate show RUN_ID`; a unique prefix of the id works)."""
    return read_run_dir(state.run_path(state.find_run(run_id)))


def list_runs(
    state: StateDir, *, include: Callable[[RunRecord], bool] | None = None
) -> list[RunRecord]:
    """Every run with a record, newest first (`remediate history`).

    A run directory with no complete first line is skipped: its process died before the run
    could start, so it changed nothing.
    """
    records: list[RunRecord] = []
    for run_id in state.run_ids():
        try:
            record = read_run_dir(state.runs / run_id)
        except JournalError as error:
            if error.reference == "journal-corrupt":
                raise
            continue
        if include is None or include(record):
            records.append(record)
    records.sort(key=lambda record: (record.metadata.started, record.run_id), reverse=True)
    return records


def open_runs(state: StateDir) -> list[RunRecord]:
    """Runs that started, never finished, and whose owner is gone: what `recover` must finish."""
    return list_runs(state, include=lambda record: record.needs_recovery)


def read_backup(run: RunRecord, name: str) -> bytes:
    """A backup's bytes, after checking them against the SHA-256 the journal recorded."""
    backup = run.backups.get(name)
    if backup is None:
        raise JournalError(
            f"run {run.run_id} recorded no backup named {name!r}",
            reference="backup-missing",
            hint=f"recorded backups: {', '.join(sorted(run.backups)) or 'none'}",
        )
    path = run.path / BACKUP_DIR / name
    try:
        check_private_file(path)
        content = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(
            f"the backup {path} recorded by run {run.run_id} is gone",
            reference="backup-missing",
            hint=f"restore {backup.source} by hand; its SHA-256 was {backup.sha256}",
        ) from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != backup.sha256:
        raise BackupCorruptError(
            f"the backup {path} does not match its checksum (SHA-256 {digest}, the journal "
            f"recorded {backup.sha256}); refusing to restore it",
            hint=f"restore {backup.source} by hand from another copy",
        )
    return content


def read_json_backup(run: RunRecord, name: str) -> Any:
    """A JSON backup (see `Journal.store_json_backup`), checked and parsed."""
    return json.loads(read_backup(run, name))


def _check_backup_name(name: str) -> None:
    if not name or name[0] in "._-" or len(name) > 128 or set(name) - _BACKUP_NAME_CHARS:
        raise ValueError(f"backup name {name!r}: use letters, digits, '.', '_', '-' (128 at most)")


def _lock_file(descriptor: int, path: Path) -> None:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalError(
            f"another process is writing {path}",
            reference="run-owned",
            hint="wait for it to end before recovering the run",
        ) from None


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _process_stat(pid)[0] != "Z"  # a zombie has already died


def _process_stat(pid: int) -> tuple[str, int | None]:
    """A process's state letter and start time (clock ticks after boot) from /proc, if there."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?", None
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _process_start(pid: int) -> int | None:
    return _process_stat(pid)[1]
