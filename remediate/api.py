"""The facade that the CLI (and, later, the Ansible modules) call.

Each function validates its input, raises `RemediateError`s with a reference, a message and a
hint, and returns plain data (`remediate.diagnose.Diagnosis`); nothing here writes to a terminal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from remediate.diagnose import Diagnosis, diagnose_events
from remediate.dn import validate_dn
from remediate.errors import InputError
from remediate.genesys.logs import LogEvent, read_logs
from remediate.live import diagnose_site

_SNIFF_BYTES = 64 * 1024


def diagnose_logs(
    paths: Sequence[str | os.PathLike[str]],
    dns: Sequence[str],
    since: datetime | None = None,
) -> Diagnosis:
    """Diagnose each DN from SIP Server log segments (any order; they are sorted by the time
    stamp in their names). `since` is the SIP Server host's local time: earlier lines are ignored.
    """
    wanted = list(dict.fromkeys(validate_dn(dn) for dn in dns))
    if not wanted:
        raise InputError("no DN to diagnose", reference="bad-dn", hint="give --dn 5001")
    if not paths:
        raise InputError(
            "no log file given", reference="log-missing", hint="give --log SIP_P-001.<stamp>.log"
        )
    files = [check_log_file(path) for path in paths]
    counted = _Counted(read_logs(files))
    diagnosis = diagnose_events(_since(counted, since), wanted, since=since, sources=files)
    if counted.total == 0:
        raise InputError(
            f"{', '.join(files)}: no SIP Server header or log line found",
            reference="log-not-recognized",
            hint="give the SIP Server's own log segments, e.g. D:\\gcti_logs\\SIP_P\\"
            "SIP_P-001.20260202_135459_850.log",
        )
    return diagnosis


def parse_since(text: str) -> datetime:
    """`--since`: ISO 8601 local time of the SIP Server host, e.g. 2026-02-02T13:55."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"{text!r} is not a date and time",
            reference="bad-since",
            hint="give the SIP Server host's local time in ISO 8601, e.g. --since 2026-02-02T13:55",
        ) from None
    if moment.tzinfo is not None:
        raise InputError(
            f"{text!r} carries a UTC offset; log times are the SIP Server host's local time",
            reference="bad-since",
            hint="drop the offset and give the host's local time, e.g. --since 2026-02-02T13:55",
        )
    return moment


def check_log_file(path: str | os.PathLike[str]) -> str:
    """The path, if it is a readable, non-empty text file; else an `InputError` saying why."""
    name = os.fspath(path)
    candidate = Path(name)
    hint = "give a SIP Server log segment, e.g. --log SIP_P-001.20260202_135459_850.log"
    if candidate.is_dir():
        raise InputError(f"{name} is a directory", reference="log-is-directory", hint=hint)
    try:
        with candidate.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file", reference="log-not-found", hint=hint) from None
    except OSError as error:
        raise InputError(
            f"{name}: cannot be read ({error.strerror or error})",
            reference="log-unreadable",
            hint="check the file's permissions",
        ) from None
    if not head:
        raise InputError(
            f"{name} is empty",
            reference="log-empty",
            hint="the segment may have just been opened; give the previous one as well",
        )
    if b"\0" in head:
        raise InputError(
            f"{name} is not a text file (it contains NUL bytes)",
            reference="log-not-text",
            hint="give the SIP Server's .log segment itself, not an archive or a capture",
        )
    return name


class _Counted:
    """Passes events through, counting them (to tell a log from a file that is not one)."""

    def __init__(self, events: Iterable[LogEvent]) -> None:
        self._events = events
        self.total = 0

    def __iter__(self) -> Iterator[LogEvent]:
        for event in self._events:
            self.total += 1
            yield event


def _since(events: Iterable[LogEvent], since: datetime | None) -> Iterator[LogEvent]:
    """The events at or after `since` (events without a time are kept: they cannot be placed)."""
    for event in events:
        if since is None or event.time is None or event.time >= since:
            yield event


def diagnose_live(
    inventory: Path | None,
    site: str | None,
    dns: Sequence[str],
    since: str | None = None,
    capture_seconds: float | None = None,
    vault_password_file: Path | None = None,
) -> Diagnosis:
    """Diagnose each DN from the live estate of one site of the inventory (read-only): see
    `remediate.live`. Unreachable or refusing hosts raise errors with exit status 7."""
    return diagnose_site(inventory, site, list(dns), since, capture_seconds, vault_password_file)
