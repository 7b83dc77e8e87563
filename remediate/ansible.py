"""Run playbooks through ansible-runner: streamed events, a bound on each run, no secret kept.

Every change to a host is a playbook run (DESIGN section 3). `run_playbook` runs one in a private
data directory of its own and guarantees, whatever happens (failure, timeout, cancel, Ctrl-C):

- secrets never stay on disk: extra vars go to ansible-playbook through a 0600 file that is
  deleted as soon as Ansible has read it (at its first event), or when the run ends; no `env/`
  file is left (the one written, settings, holds no secret); the artifacts (the command and
  environment, stdout, every job event) are scrubbed of the run's secrets when the run ends, and
  each event is scrubbed before ansible-runner writes it and before `on_event` sees it; `tmp/`
  (Ansible's local temp, SSH control sockets) is removed;
- the run is bounded: past `timeout` seconds, or once `cancel` is set, every process of the run
  (ansible-playbook, its workers, their modules) is killed within about 0.1 s, and the result
  says TIMEOUT or CANCELED (never merely FAILED);
- progress streams to `on_event` in the caller's thread, in the order Ansible emitted it.

One run may serve several sites' transactions at once (a fleet's batch, remediate/batch.py): each
site's variables come as host vars from an extra inventory source, and `PlaybookResult.for_hosts`
cuts the run's result down to one site's hosts.

SSH host keys are always checked (ansible-runner would otherwise turn the check off), and
ControlPersist sockets live in the private directory's `tmp/cp` when that path is short enough for
a Unix socket, else in a short temporary directory removed after the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from remediate.errors import RemediateError
from remediate.scrub import Scrubber
from remediate.state import DIR_MODE, FILE_MODE, check_private_dir, make_private_dir

ARTIFACT_IDENT = "run"
_POLL_SECONDS = 0.1
"""How often ansible-runner checks the deadline and the cancel flag while Ansible runs."""
_CONTROL_DIR_MAX = 79
"""A Unix socket path holds 107 bytes: Ansible's 10-character socket name, '/', and the 17
characters ssh appends while it creates the socket leave 79 for the directory."""
_OUTPUT_TAIL_LINES = 20
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RUN_MARKER = "REMEDIATE_PLAYBOOK_RUN"
"""Set in ansible-playbook's environment, which every process it starts inherits: it finds them all
when a run must be stopped, even those that left ansible-playbook's process group or were
orphaned by its death. It names the run's private directory and those of the runs it serves."""
_MARKER_SEPARATOR = "\n"


class PlaybookError(RemediateError):
    """A playbook cannot be run at all (missing file, unusable private directory, runner crash)."""

    reference = "playbook-not-runnable"


class PlaybookStatus(StrEnum):
    """How a playbook run ended."""

    SUCCESSFUL = "successful"
    FAILED = "failed"
    """A task failed, or Ansible stopped with an error (see `output_tail`)."""
    UNREACHABLE = "unreachable"
    """No task failed, but a host could not be reached (see `unreachable_hosts`)."""
    TIMEOUT = "timeout"
    """Killed at the run's time bound."""
    CANCELED = "canceled"
    """Killed because the caller asked (the cancel flag, an exception in on_event, Ctrl-C)."""


class EventKind(StrEnum):
    """The progress events a caller sees."""

    PLAY_STARTED = "play-started"
    TASK_STARTED = "task-started"
    OK = "ok"
    CHANGED = "changed"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class PlaybookEvent:
    """One step of progress: a play or a task on a host starting or ending."""

    kind: EventKind
    play: str | None
    task: str | None
    host: str | None
    action: str | None
    message: str | None
    """The module's `msg` (or stderr) for results; scrubbed of secrets."""
    ignored: bool
    """A failure that `ignore_errors` lets the play carry on from."""
    counter: int
    time: str


@dataclass(frozen=True)
class HostStats:
    """Ansible's recap for one host."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class TaskChange:
    """A task that changed a host (or, in check mode, would have), with what its module returned."""

    host: str
    task: str
    action: str
    diff: tuple[Mapping[str, Any], ...]
    before: Any
    after: Any
    result: Mapping[str, Any]
    """The module's result without `invocation` and Ansible's internal keys; scrubbed."""


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed on a host, or a host that could not be reached."""

    host: str
    task: str
    action: str
    message: str
    unreachable: bool


@dataclass(frozen=True)
class PlaybookResult:
    """What a playbook run did."""

    status: PlaybookStatus
    rc: int
    hosts: Mapping[str, HostStats]
    changes: tuple[TaskChange, ...]
    failures: tuple[TaskFailure, ...]
    duration: float
    check: bool
    private_dir: Path
    artifact_dir: Path
    output_tail: str = field(default="")
    """The end of Ansible's output (scrubbed) when the run did not succeed: it holds the reason
    when Ansible stopped before any task (a syntax error, an unreadable inventory)."""
    recap: bool = False
    """Ansible reached its recap: every host that was not failed ran the whole playbook."""

    @property
    def succeeded(self) -> bool:
        """True when the run ended SUCCESSFUL."""
        return self.status is PlaybookStatus.SUCCESSFUL

    @property
    def changed(self) -> bool:
        """True when a task changed something (or would have, in check mode)."""
        return bool(self.changes)

    @property
    def unreachable_hosts(self) -> tuple[str, ...]:
        """Hosts that could not be reached, sorted."""
        return tuple(sorted(host for host, stats in self.hosts.items() if stats.unreachable))

    def for_hosts(self, hosts: Collection[str]) -> PlaybookResult:
        """This run as seen by the transaction that owns `hosts` (one site of a batch): its
        hosts' stats, changes and failures. Another site's failure is not this site's: with a
        recap, the site succeeded unless one of its hosts failed. Without one (Ansible stopped
        early), or when the whole run was stopped (timeout, cancel), every site shares the end."""
        failures = tuple(failure for failure in self.failures if failure.host in hosts)
        status = self.status
        if status in (PlaybookStatus.FAILED, PlaybookStatus.UNREACHABLE) and self.recap:
            status = _status("failed" if failures else "successful", [], list(failures))
        return replace(
            self,
            status=status,
            hosts={host: stats for host, stats in self.hosts.items() if host in hosts},
            changes=tuple(change for change in self.changes if change.host in hosts),
            failures=failures,
            output_tail="" if status is PlaybookStatus.SUCCESSFUL else self.output_tail,
        )


def run_playbook(
    playbook: Path,
    *,
    inventory: Path | Sequence[Path],
    private_dir: Path,
    timeout: float,
    limit: str | None = None,
    extravars: Mapping[str, Any] | None = None,
    secrets: Collection[str] = (),
    check: bool = False,
    diff: bool = False,
    on_event: Callable[[PlaybookEvent], None] | None = None,
    cancel: threading.Event | None = None,
    verbosity: int = 0,
    vault_password_file: Path | None = None,
    environment: Mapping[str, str] | None = None,
    serves: Collection[Path] = (),
) -> PlaybookResult:
    """Run a playbook in `private_dir` (absent or empty), bounded by `timeout` seconds.

    `inventory`: one source, or several (later sources' variables win). `serves`: the private
    directories of the other transactions this run works for (a batch): `kill_run_processes` on
    any of them finds the run's processes too."""
    playbook = _existing(playbook, "playbook", want_file=True)
    sources = [inventory] if isinstance(inventory, Path) else list(inventory)
    sources = [_existing(source, "inventory", want_file=False) for source in sources]
    if vault_password_file is not None:
        vault_password_file = _existing(vault_password_file, "vault password file", want_file=True)
    if timeout <= 0:
        raise ValueError("a playbook run needs a positive timeout")
    scrubber = Scrubber(secrets)
    private_dir = _fresh_private_dir(private_dir)
    run = _Run(private_dir, scrubber, cancel, time.monotonic() + timeout)
    try:
        arguments = run.prepare(extravars, environment, serves)
        if check:
            arguments.append("--check")
        if diff:
            arguments.append("--diff")
        if vault_password_file is not None:
            arguments += ["--vault-password-file", str(vault_password_file)]
        run.start(
            playbook=str(playbook),
            project_dir=str(playbook.parent),
            inventory=[str(source) for source in sources],
            limit=limit,
            cmdline=shlex.join(arguments),
            verbosity=verbosity or None,
        )
        run.deliver(on_event)
    finally:
        run.finish()
    if run.error is not None:
        raise PlaybookError(f"ansible-runner failed: {scrubber.text(str(run.error))}") from None

    runner = run.runner
    artifact_dir = private_dir / "artifacts" / ARTIFACT_IDENT
    status = _status(str(runner.status), run.stopped_by, run.collector.failures)
    return PlaybookResult(
        status=status,
        rc=int(runner.rc) if runner.rc is not None else -1,
        hosts=run.collector.host_stats(),
        changes=tuple(run.collector.changes),
        failures=tuple(run.collector.failures),
        duration=run.duration,
        check=check,
        private_dir=private_dir,
        artifact_dir=artifact_dir,
        output_tail="" if status is PlaybookStatus.SUCCESSFUL else _output_tail(artifact_dir),
        recap=run.collector.recap,
    )


class _Run:
    """One ansible-runner run in a thread of its own, and everything to undo when it ends."""

    def __init__(
        self,
        private_dir: Path,
        scrubber: Scrubber,
        cancel: threading.Event | None,
        deadline: float,
    ) -> None:
        self.private_dir = private_dir
        self.scrubber = scrubber
        self.cancel = cancel
        self.deadline = deadline
        self.tmp = private_dir / "tmp"
        self.settings_dir = private_dir / "env"
        self.short_control_dir: Path | None = None
        self.extravars_file: Path | None = None
        self.collector = _Collector(scrubber)
        self.stop = threading.Event()
        self.stopped_by: list[PlaybookStatus] = []
        self.worker: threading.Thread | None = None
        self.started = time.monotonic()
        self.duration = 0.0
        self.runner: Any = None
        self.error: BaseException | None = None
        self.envvars: dict[str, str] = {}

    def prepare(
        self,
        extravars: Mapping[str, Any] | None,
        environment: Mapping[str, str] | None,
        serves: Collection[Path],
    ) -> list[str]:
        """Lay out tmp/ and env/settings, write the extra vars; returns ansible-playbook's args."""
        make_private_dir(self.tmp)
        # ansible-runner drops a `settings` argument unless env/settings exists (2.4), and
        # without pexpect_timeout it looks at the cancel callback only every 5 s. No secret here.
        make_private_dir(self.settings_dir)
        _write_secret_file(
            self.settings_dir / "settings",
            _json_bytes({"pexpect_timeout": _POLL_SECONDS, "suppress_ansible_output": True}),
        )
        control_dir = self.tmp / "cp"
        if len(os.fsencode(control_dir)) > _CONTROL_DIR_MAX:
            self.short_control_dir = control_dir = Path(tempfile.mkdtemp(prefix="rmd-cp-"))
        self.envvars = _environment([self.private_dir, *serves], self.tmp, control_dir, environment)
        if not extravars:
            return []
        self.extravars_file = self.collector.extravars_file = self.tmp / "extravars.yml"
        _write_secret_file(self.extravars_file, unsafe_yaml(extravars))
        return ["--extra-vars", f"@{self.extravars_file}"]

    def start(self, **arguments: Any) -> None:
        """Start ansible-runner in its own thread."""
        from ansible_runner import interface  # slow to import: only when a playbook runs

        def run_in_thread() -> None:
            try:
                self.runner = interface.run(
                    private_data_dir=str(self.private_dir),
                    ident=ARTIFACT_IDENT,
                    envvars=self.envvars,
                    suppress_env_files=True,
                    quiet=True,
                    event_handler=self.collector.on_runner_event,
                    status_handler=self._scrub_command_artifact,
                    cancel_callback=self._should_stop,
                    **arguments,
                )
            except BaseException as error:  # re-raised in the caller's thread
                self.error = error

        self.started = time.monotonic()
        self.worker = threading.Thread(target=run_in_thread, name="ansible-runner", daemon=True)
        self.worker.start()

    def deliver(self, on_event: Callable[[PlaybookEvent], None] | None) -> None:
        """Hand events to `on_event` in this thread until the run ends; stop it if that raises."""
        assert self.worker is not None
        try:
            while self.worker.is_alive() or not self.collector.events.empty():
                try:
                    event = self.collector.events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if on_event is not None:
                    on_event(event)
        except BaseException:
            self.stop.set()
            raise

    def finish(self) -> None:
        """Wait for the run to end, kill what it left running, remove and scrub what it wrote."""
        if self.worker is not None:
            _join(self.worker, self.stop)
        self.duration = time.monotonic() - self.started
        kill_run_processes(self.private_dir)  # stragglers, and ssh ControlPersist masters
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.settings_dir, ignore_errors=True)
        if self.short_control_dir is not None:
            shutil.rmtree(self.short_control_dir, ignore_errors=True)
        scrub_private_dir(self.private_dir, self.scrubber)

    def _should_stop(self) -> bool:
        if self.stop.is_set() or (self.cancel is not None and self.cancel.is_set()):
            self.stopped_by.append(PlaybookStatus.CANCELED)
        elif time.monotonic() > self.deadline:
            self.stopped_by.append(PlaybookStatus.TIMEOUT)
        else:
            return False
        # ansible-runner kills ansible-playbook's process group, but Ansible's workers run in
        # sessions of their own: without this, a hung task would outlive its bound.
        kill_run_processes(self.private_dir)
        return True

    def _scrub_command_artifact(self, status: Mapping[str, Any], runner_config: Any) -> None:
        # ansible-runner has just written the command and the whole environment to disk;
        # ansible-playbook does not exist yet, so no secret outlives this call (the variables
        # named like a secret are masked too: GAX_PASSWORD=... from the operator's shell).
        if status.get("status") == "running":
            _scrub_command_file(Path(runner_config.artifact_dir) / "command", self.scrubber)


def scrub_private_dir(private_dir: Path, secrets: Scrubber | Collection[str]) -> int:
    """Mask secrets in every file under a private data directory; returns how many changed.
    Every directory left is made 0700 and every file 0600, as the rest of the state directory
    (ansible-runner creates its artifacts with the process's umask).

    `run_playbook` does this itself; `recover` calls it on the directory of a run that a crash
    interrupted, with the secrets it knows again. A leftover extra-vars file is deleted.
    """
    scrubber = secrets if isinstance(secrets, Scrubber) else Scrubber(secrets)
    (private_dir / "tmp" / "extravars.yml").unlink(missing_ok=True)
    changed = 0
    for directory, _, files in os.walk(private_dir):
        os.chmod(directory, DIR_MODE)
        for name in files:
            path = Path(directory) / name
            changed += _scrub_file(path, scrubber)
            if path.is_file() and not path.is_symlink():
                path.chmod(FILE_MODE)
    return changed


class _Collector:
    """Takes ansible-runner's events in its thread: scrubs them, queues progress, keeps results."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber
        self.extravars_file: Path | None = None
        self.events: queue.Queue[PlaybookEvent] = queue.Queue()
        self.changes: list[TaskChange] = []
        self.failures: list[TaskFailure] = []
        self._stats: dict[str, HostStats] | None = None
        self._counts: dict[str, Counter[str]] = {}
        self._play: str | None = None

    def on_runner_event(self, raw: dict[str, Any]) -> bool:
        """ansible-runner's event_handler: scrub in place (so the job event file is clean too)."""
        if self.extravars_file is not None and raw.get("event") == "playbook_on_start":
            # Ansible has parsed its command line: the extra vars are in its memory now.
            self.extravars_file.unlink(missing_ok=True)
        scrubbed = self._scrubber.data(raw)
        raw.clear()
        raw.update(scrubbed)
        self._observe(raw)
        return True

    @property
    def recap(self) -> bool:
        return self._stats is not None

    def host_stats(self) -> dict[str, HostStats]:
        """Ansible's recap when it got that far, else the counts of the events seen."""
        if self._stats is not None:
            return self._stats
        return {
            host: HostStats(
                ok=counts["ok"],
                changed=counts["changed"],
                failed=counts["failed"],
                unreachable=counts["unreachable"],
                skipped=counts["skipped"],
                ignored=counts["ignored"],
            )
            for host, counts in self._counts.items()
        }

    def _observe(self, raw: Mapping[str, Any]) -> None:
        name = raw.get("event")
        data: Mapping[str, Any] = raw.get("event_data") or {}
        if name == "playbook_on_stats":
            self._stats = _recap(data)
            return
        if name == "playbook_on_play_start":
            self._play = data.get("name") or data.get("play")
            self._emit(EventKind.PLAY_STARTED, raw, data)
            return
        kind = _RESULT_EVENTS.get(str(name))
        if kind is None:
            return
        result: Mapping[str, Any] = data.get("res") or {}
        ignored = bool(data.get("ignore_errors")) and kind is EventKind.FAILED
        if kind is EventKind.OK and result.get("changed"):
            kind = EventKind.CHANGED
        host = str(data.get("host", ""))
        task = str(data.get("task", ""))
        action = str(data.get("task_action") or data.get("resolved_action") or "")
        if kind is not EventKind.TASK_STARTED:
            self._count(host, kind, ignored)
        if kind is EventKind.CHANGED:
            self.changes.append(
                TaskChange(
                    host=host,
                    task=task,
                    action=action,
                    diff=_diffs(result),
                    before=result.get("before"),
                    after=result.get("after"),
                    result={
                        key: value
                        for key, value in result.items()
                        if key not in ("invocation", "diff") and not key.startswith("_ansible")
                    },
                )
            )
        elif kind in (EventKind.FAILED, EventKind.UNREACHABLE) and not ignored:
            self.failures.append(
                TaskFailure(
                    host=host,
                    task=task,
                    action=action,
                    message=_message(result),
                    unreachable=kind is EventKind.UNREACHABLE,
                )
            )
        self._emit(kind, raw, data, ignored=ignored)

    def _count(self, host: str, kind: EventKind, ignored: bool) -> None:
        counts = self._counts.setdefault(host, Counter())
        if ignored:
            counts["ignored"] += 1
        elif kind in (EventKind.OK, EventKind.CHANGED):
            counts["ok"] += 1
            counts["changed"] += kind is EventKind.CHANGED
        else:
            counts[kind.value] += 1

    def _emit(
        self,
        kind: EventKind,
        raw: Mapping[str, Any],
        data: Mapping[str, Any],
        *,
        ignored: bool = False,
    ) -> None:
        result = data.get("res")
        message = _message(result) if isinstance(result, Mapping) else ""
        self.events.put(
            PlaybookEvent(
                kind=kind,
                play=self._play,
                task=data.get("task") or None,
                host=data.get("host") or None,
                action=data.get("task_action") or None,
                message=message or None,
                ignored=ignored,
                counter=int(raw.get("counter", 0)),
                time=str(raw.get("created", "")),
            )
        )


_RESULT_EVENTS = {
    "runner_on_start": EventKind.TASK_STARTED,
    "runner_on_ok": EventKind.OK,
    "runner_on_skipped": EventKind.SKIPPED,
    "runner_on_failed": EventKind.FAILED,
    "runner_on_unreachable": EventKind.UNREACHABLE,
}


def _recap(data: Mapping[str, Any]) -> dict[str, HostStats]:
    fields = {
        "ok": "ok",
        "changed": "changed",
        "failed": "failures",
        "unreachable": "dark",
        "skipped": "skipped",
        "rescued": "rescued",
        "ignored": "ignored",
    }
    hosts: set[str] = set()
    for key in fields.values():
        hosts.update(data.get(key) or {})
    return {
        host: HostStats(
            **{name: int((data.get(key) or {}).get(host, 0)) for name, key in fields.items()}
        )
        for host in sorted(hosts)
    }


def _diffs(result: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """A module's diffs: `diff` may be one dict or a list; a loop keeps them per item."""
    found: list[Mapping[str, Any]] = []
    for holder in [result, *(result.get("results") or [])]:
        if not isinstance(holder, Mapping):
            continue
        diff = holder.get("diff")
        if isinstance(diff, Mapping):
            found.append(diff)
        elif isinstance(diff, list):
            found.extend(item for item in diff if isinstance(item, Mapping))
    return tuple(found)


def _message(result: Mapping[str, Any]) -> str:
    for key in ("msg", "stderr", "reason"):
        value = result.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _status(
    runner_status: str, stopped_by: list[PlaybookStatus], failures: list[TaskFailure]
) -> PlaybookStatus:
    if stopped_by:
        return stopped_by[0]
    if runner_status == "successful":
        return PlaybookStatus.SUCCESSFUL
    if runner_status == "timeout":
        return PlaybookStatus.TIMEOUT
    if runner_status == "canceled":
        return PlaybookStatus.CANCELED
    if failures and all(failure.unreachable for failure in failures):
        return PlaybookStatus.UNREACHABLE
    return PlaybookStatus.FAILED


def _environment(
    private_dirs: Sequence[Path], tmp: Path, control_dir: Path, extra: Mapping[str, str] | None
) -> dict[str, str]:
    environment = {
        **(extra or {}),
        _RUN_MARKER: _MARKER_SEPARATOR.join(str(path.absolute()) for path in private_dirs),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "local"),
        # ansible-runner turns host key checking off unless told otherwise; a change tool must not.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    # The ansible-playbook installed beside this Python (the virtualenv's) comes first.
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "ansible-playbook").exists():
        path = (extra or {}).get("PATH") or os.environ.get("PATH", "")
        environment["PATH"] = os.pathsep.join(filter(None, [str(bin_dir), path]))
    return environment


def _existing(path: Path, what: str, *, want_file: bool) -> Path:
    path = Path(path).absolute()
    if not (path.is_file() if want_file else path.exists()):
        raise PlaybookError(f"the {what} {path} does not exist")
    return path


def _fresh_private_dir(path: Path) -> Path:
    path = Path(path).absolute()
    if path.exists():
        check_private_dir(path)
        if any(path.iterdir()):
            raise PlaybookError(
                f"the private data directory {path} is not empty",
                hint="give each playbook run a directory of its own",
            )
        return path
    return make_private_dir(path)


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(value)).encode("utf-8")


class _UnsafeDumper(yaml.SafeDumper):
    """YAML in which every string value is `!unsafe`: Ansible must never template data it is
    handed (a password with `{#` in it would otherwise lose its tail, silently)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_mapping(self, tag: str, mapping: Any, flow_style: bool | None = None) -> Any:
        node = super().represent_mapping(tag, mapping, flow_style)
        for key, _ in node.value:
            if key.tag == _UNSAFE_TAG:
                key.tag = "tag:yaml.org,2002:str"  # keys are names, never templated anyway
        return node


_UNSAFE_TAG = "!unsafe"
_TEMPLATE_MARKERS = ("{{", "{%", "{#")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> Any:
    # Only a string that holds a Jinja delimiter can be templated: it alone is `!unsafe`.
    # ansible-core 2.19 hands an `!unsafe` "5060" to modules as the int 5060.
    unsafe = any(marker in value for marker in _TEMPLATE_MARKERS)
    return dumper.represent_scalar(
        _UNSAFE_TAG if unsafe else "tag:yaml.org,2002:str", value, style='"'
    )


_UnsafeDumper.add_representer(str, _represent_str)


def unsafe_yaml(value: Mapping[str, Any]) -> bytes:
    try:
        text = yaml.dump(dict(value), Dumper=_UnsafeDumper, allow_unicode=True, width=2**20)
    except yaml.YAMLError as error:
        raise PlaybookError(f"the extra vars cannot be passed to Ansible: {error}") from None
    return text.encode("utf-8")


def _write_secret_file(path: Path, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
        view = memoryview(content)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


def _scrub_file(path: Path, scrubber: Scrubber) -> int:
    """Rewrite one file with its secrets masked (via a temp file and rename); 1 if it changed."""
    if not scrubber or not path.is_file() or path.is_symlink():
        return 0
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    return _replace_text(path, text, scrubber.text(text))


def _scrub_command_file(path: Path, scrubber: Scrubber) -> None:
    """The command artifact holds the whole environment: mask secret-named variables as well."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        _scrub_file(path, scrubber)
        return
    clean = json.dumps(scrubber.data(document), ensure_ascii=False)
    _replace_text(path, None, clean)


def _replace_text(path: Path, old: str | None, new: str) -> int:
    if new == old:
        return 0
    partial = path.with_name(f".{path.name}.scrubbing")
    partial.unlink(missing_ok=True)
    _write_secret_file(partial, new.encode("utf-8", "surrogateescape"))
    os.replace(partial, path)
    return 1


def _output_tail(artifact_dir: Path) -> str:
    try:
        text = (artifact_dir / "stdout").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.rstrip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return "\n".join(lines[-_OUTPUT_TAIL_LINES:])


def _join(worker: threading.Thread, stop: threading.Event) -> None:
    """Wait for the runner thread even through more Ctrl-C: it kills Ansible, then we scrub."""
    while worker.is_alive():
        try:
            worker.join()
        except KeyboardInterrupt:
            stop.set()


def kill_run_processes(private_dir: Path) -> int:
    """SIGKILL every process started for the run in `private_dir`; returns how many there were.

    `run_playbook` does this itself when a run stops; `recover` calls it for a run whose
    controller died (ansible-playbook outlives it) before it touches the estate again.
    """
    prefix = f"{_RUN_MARKER}=".encode()
    wanted = os.fsencode(private_dir.absolute())

    def serves(pid: int) -> bool:
        return any(
            wanted in entry.removeprefix(prefix).split(_MARKER_SEPARATOR.encode())
            for entry in _environ_entries(pid)
            if entry.startswith(prefix)
        )

    killed = 0
    for _ in range(10):  # a dying worker may still fork: sweep until nothing is left
        found = [pid for pid in _pids() if serves(pid)]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed += len(found)
        time.sleep(0.01)
    return killed


def _pids() -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit() and int(name) != os.getpid()]


def _environ_entries(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not ours
        return []
