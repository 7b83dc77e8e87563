"""One ansible-playbook for the same step of several sites' transactions (a fleet).

Each site of a fleet is the engine's own transaction (its lock, journal, verification and
rollback), but the playbooks its steps run are handed to a `PlaybookBatcher`, which runs the
requests of all the sites at the same step as ONE ansible-playbook: `--limit site_a:site_b`,
Ansible's forks across their hosts, each site's variables as host vars of an extra inventory
source. Ansible's start-up (seconds of CPU per run) is then paid once per step, not once per
site, and the hosts run in Ansible's own worker processes.

A batch is started when every site still running waits for a playbook, or when the oldest
request has waited `linger` seconds (a site slow to reach the step runs in a later batch). Requests
for different playbooks, or check mode and not, run as separate ansible-playbook runs at the same
time. Each site gets the run's result cut down to its own hosts (`PlaybookResult.for_hosts`): one
site's failed task is that site's failure only, and its transaction rolls back alone.

The playbooks run this way must let each site fail on its own: no `any_errors_fatal` and no
`max_fail_percentage` (tests/unit/test_batch.py checks the project's playbooks).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from remediate.ansible import PlaybookEvent, PlaybookResult, run_playbook, unsafe_yaml
from remediate.state import make_private_dir

LINGER = 20.0
"""Seconds the first request of a step waits for the other sites to reach it."""


@dataclass(frozen=True)
class PlaybookRequest:
    """One site's playbook run, as the engine asks for it."""

    playbook: Path
    inventory: Path
    private_dir: Path
    timeout: float
    limit: str
    """The site's group (`site_<name>`)."""
    hosts: tuple[str, ...]
    """The site's hosts in the inventory: its events and results are the ones on these hosts."""
    extravars: Mapping[str, Any]
    secrets: tuple[str, ...]
    check: bool
    diff: bool
    on_event: Callable[[PlaybookEvent], None] | None
    vault_password_file: Path | None
    environment: Mapping[str, str]

    @property
    def batch_key(self) -> tuple[Any, ...]:
        """Requests with the same key can share one ansible-playbook run."""
        return (
            self.playbook,
            self.inventory,
            self.check,
            self.diff,
            self.vault_password_file,
            tuple(sorted(self.environment.items())),
        )


PlaybookRunner = Callable[[PlaybookRequest], PlaybookResult]


def run_alone(request: PlaybookRequest) -> PlaybookResult:
    """The request as its own ansible-playbook run (one site)."""
    return run_playbook(
        request.playbook,
        inventory=request.inventory,
        private_dir=request.private_dir,
        timeout=request.timeout,
        limit=request.limit,
        extravars=dict(request.extravars),
        secrets=request.secrets,
        check=request.check,
        diff=request.diff,
        on_event=request.on_event,
        vault_password_file=request.vault_password_file,
        environment=request.environment,
    )


@dataclass
class _Waiting:
    request: PlaybookRequest
    since: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: PlaybookResult | None = None
    error: BaseException | None = None


class PlaybookBatcher:
    """A `PlaybookRunner` shared by the sites of a fleet; each site's thread runs inside
    `member()` for as long as its transaction may ask for a playbook."""

    def __init__(self, linger: float = LINGER) -> None:
        self.linger = linger
        self._condition = threading.Condition()
        self._members = 0
        self._waiting: list[_Waiting] = []

    @contextmanager
    def member(self) -> Iterator[None]:
        with self._condition:
            self._members += 1
        try:
            yield
        finally:
            with self._condition:
                self._members -= 1
                self._condition.notify_all()  # the others may be all that is left now

    def __call__(self, request: PlaybookRequest) -> PlaybookResult:
        waiting = _Waiting(request)
        with self._condition:
            self._waiting.append(waiting)
            self._condition.notify_all()
            while True:
                if waiting.done.is_set() or waiting not in self._waiting:
                    batch = None
                    break
                if self._ready():
                    batch, self._waiting = self._waiting, []
                    break
                oldest = min(item.since for item in self._waiting)
                self._condition.wait(timeout=max(0.05, oldest + self.linger - time.monotonic()))
        if batch is not None:
            _run_batch(batch)
        waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        assert waiting.result is not None
        return waiting.result

    def _ready(self) -> bool:
        if len(self._waiting) >= self._members:
            return True
        return time.monotonic() - min(item.since for item in self._waiting) >= self.linger


def _run_batch(batch: Sequence[_Waiting]) -> None:
    """Run each group of compatible requests as one ansible-playbook, the groups at once."""
    groups: dict[tuple[Any, ...], list[_Waiting]] = {}
    for waiting in batch:
        groups.setdefault(waiting.request.batch_key, []).append(waiting)
    workers = [
        threading.Thread(target=_run_group, args=(group,), name="playbook-batch", daemon=True)
        for group in groups.values()
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _run_group(group: Sequence[_Waiting]) -> None:
    try:
        if len(group) == 1:
            group[0].result = run_alone(group[0].request)
        else:
            _run_together(group)
    except BaseException as error:  # each site's thread re-raises it
        for waiting in group:
            if waiting.result is None:
                waiting.error = error
    finally:
        for waiting in group:
            waiting.done.set()


def _run_together(group: Sequence[_Waiting]) -> None:
    """One ansible-playbook for every request of the group. Its artifacts are kept in the private
    directory of the first site by name; the others' hold a `batch` link to it, and the run's
    processes are marked with all of them, so that `recover` of any of these sites finds them."""
    requests = sorted((waiting.request for waiting in group), key=lambda each: each.limit)
    first = requests[0]
    for request in requests[1:]:
        make_private_dir(request.private_dir)
        os.symlink(first.private_dir.absolute(), request.private_dir / "batch")
    events = {host: waiting for waiting in group for host in waiting.request.hosts}

    def on_event(event: PlaybookEvent) -> None:
        owners = [events[event.host]] if event.host in events else list(group)
        for owner in owners:
            deliver = owner.request.on_event
            if deliver is not None and owner.error is None:
                try:
                    deliver(event)
                except Exception as error:  # that site's failure; the others' run goes on
                    owner.error = error

    # Beside the private directory, in the run's 0700 record, not in /tmp: the variables are the
    # extra vars' (objects to restore); removed after the run, scrubbed by `recover` after a crash.
    overlay = first.private_dir.with_name(f"{first.private_dir.name}.hostvars")
    make_private_dir(overlay)
    try:
        _write_host_vars(overlay, requests)
        result = run_playbook(
            first.playbook,
            inventory=[first.inventory, overlay],
            private_dir=first.private_dir,
            timeout=max(request.timeout for request in requests),
            limit=":".join(request.limit for request in requests),
            secrets=sorted({secret for request in requests for secret in request.secrets}),
            check=first.check,
            diff=first.diff,
            on_event=on_event,
            vault_password_file=first.vault_password_file,
            environment=first.environment,
            serves=[request.private_dir for request in requests[1:]],
        )
    finally:
        shutil.rmtree(overlay, ignore_errors=True)
    for waiting in group:
        if waiting.error is None:
            waiting.result = result.for_hosts(waiting.request.hosts)


def _write_host_vars(directory: Path, requests: Sequence[PlaybookRequest]) -> None:
    """An inventory source naming each site's hosts, with the site's extra vars as their host
    vars in host_vars/ files: later in the source list than the site's own inventory, they win
    over its group and host variables, as extra vars would."""
    hosts = {str(host): None for request in requests for host in request.hosts}
    (directory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": hosts}}), encoding="utf-8"
    )
    host_vars = directory / "host_vars"
    host_vars.mkdir(mode=0o700)
    for request in requests:
        for host in request.hosts:
            path = host_vars / f"{host}.yml"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as stream:
                stream.write(unsafe_yaml(request.extravars))
