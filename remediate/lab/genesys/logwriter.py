"""The SIP Server log as the real one is written (DESIGN 2.1), for the lab's Genesys host.

A segment `SIP_P-001.YYYYMMDD_HHMMSS_mmm.log` opens with a header block of `Key: value` lines; then
come framework lines (`2026-02-02T13:54:59.845 Trc 04110 Option ...`: full local timestamp, level,
five-digit message id) and SIP-layer lines (`13:55:31.501: SIPTS: ...`: time only), SIP messages as
`Received`/`Sending` blocks followed by a blank line. Times are the simulated host's clock
(IST), not this machine's. A new segment starts at every service start (`open_segment`) and
when the current one reaches the `segment` size; `expire` keeps only the newest N segments.

Deliberately independent of the product's parser (remediate.genesys.logs): the parser's tests must
prove it reads what SIP Server writes, not what the parser itself would write.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from remediate.lab.layout import (
    GENESYS_APPLICATION,
    GENESYS_HOST_NAME,
    GENESYS_SERVICE,
    GENESYS_TIME_ZONE_NAME,
    GENESYS_UTC_OFFSET_SECONDS,
    WINDOWS_APP_DIR,
    WINDOWS_LOG_DIR,
)

HOST_ZONE = datetime.timezone(
    datetime.timedelta(seconds=GENESYS_UTC_OFFSET_SECONDS), GENESYS_TIME_ZONE_NAME
)
LOG_OUTPUT_NAME = f"{GENESYS_APPLICATION}-001"
DEFAULT_SEGMENT_BYTES = 10 * 1024 * 1024
DEFAULT_EXPIRE_FILES = 20
CHECKPOINT_INTERVAL_SECONDS = 3600.0

Clock = Callable[[], datetime.datetime]


def host_now() -> datetime.datetime:
    """The simulated Windows host's clock: now, in India Standard Time."""
    return datetime.datetime.now(HOST_ZONE)


def _millis(moment: datetime.datetime) -> str:
    return f"{moment.microsecond // 1000:03d}"


def full_timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + _millis(moment)


def time_only(moment: datetime.datetime) -> str:
    return moment.strftime("%H:%M:%S.") + _millis(moment)


def segment_file_name(moment: datetime.datetime) -> str:
    return f"{LOG_OUTPUT_NAME}.{moment.strftime('%Y%m%d_%H%M%S')}_{_millis(moment)}.log"


def _size_text(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    if size % 1024 == 0:
        return f"{size // 1024} KB"
    return str(size)


class Transaction:
    """Lines of one SIP transaction, collected then written and flushed together."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.lines: list[str] = []

    def sip(self, text: str) -> None:
        """A SIP-layer line: `HH:MM:SS.mmm: text`."""
        self.lines.append(f"{time_only(self._clock())}: {text}")

    def framework(self, level: str, message_id: int, text: str) -> None:
        """A framework line: `YYYY-MM-DDTHH:MM:SS.mmm Lvl NNNNN text`."""
        self.lines.append(f"{full_timestamp(self._clock())} {level} {message_id:05d} {text}")

    def raw(self, text: str) -> None:
        self.lines.append(text)

    def received(self, data: bytes, source: tuple[str, int]) -> None:
        self.sip(f"SIPTR: Received [0,UDP] {len(data)} bytes from {source[0]}:{source[1]} <<<<<")
        self._message(data)

    def sending(self, data: bytes, destination: tuple[str, int]) -> None:
        self.sip(f"Sending  [0,UDP] {len(data)} bytes to {destination[0]}:{destination[1]} >>>>>")
        self._message(data)

    def _message(self, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        self.lines.append(text.rstrip("\n"))
        self.lines.append("")


class SipServerLog:
    """The log files of SIP Server: thread-safe, flushed after each transaction."""

    def __init__(
        self,
        directory: Path,
        *,
        command_line: str,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        expire_files: int = DEFAULT_EXPIRE_FILES,
        clock: Clock = host_now,
    ) -> None:
        self._directory = directory
        self._command_line = command_line
        self._segment_bytes = segment_bytes
        self._expire_files = expire_files
        self._clock = clock
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None
        self._path: Path | None = None
        self._file_number = 0
        self._last_checkpoint = 0.0

    @property
    def current_path(self) -> Path | None:
        return self._path

    def open_segment(self) -> Path:
        """Start a new segment, as SIP Server does at each start, and log its options."""
        with self._lock:
            self._file_number = 0
            path = self._rotate()
        with self.transaction() as log:
            log.framework(
                "Trc",
                4110,
                f"Option 'segment' has been set to the value '{_size_text(self._segment_bytes)}'",
            )
            log.framework(
                "Trc",
                4110,
                f"Option 'expire' has been set to the value '{self._expire_files} file'",
            )
            log.framework("Trc", 4110, "Option 'verbose' has been set to the value 'all'")
            self._checkpoint(log)
        return path

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Collect lines, then write them in one piece: concurrent transactions never interleave."""
        collected = Transaction(self._clock)
        yield collected
        self._write(collected.lines)

    def checkpoint_if_due(self, monotonic_now: float, interval: float) -> None:
        """The hourly `Trc 04120 Check point` line that re-anchors the SIP-layer lines' date."""
        if self._handle is None or monotonic_now - self._last_checkpoint < interval:
            return
        with self.transaction() as log:
            self._checkpoint(log)

    def _checkpoint(self, log: Transaction) -> None:
        self._last_checkpoint = time.monotonic()
        log.framework("Trc", 4120, f"Check point {self._clock().strftime('%Y-%m-%dT%H:%M:%S')}")

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        with self._lock:
            if self._handle is None:
                return  # the service is not running: SIP Server writes nothing
            if self._handle.tell() >= self._segment_bytes:
                self._rotate()
            assert self._handle is not None
            self._handle.write("\n".join(lines) + "\n")
            self._handle.flush()

    def _rotate(self) -> Path:
        """Close the current segment and open the next one with its header (lock held)."""
        if self._handle is not None:
            self._handle.close()
        self._directory.mkdir(parents=True, exist_ok=True)
        moment = self._clock()
        path = self._directory / segment_file_name(moment)
        while path.exists():  # two segments within one millisecond
            moment += datetime.timedelta(milliseconds=1)
            path = self._directory / segment_file_name(moment)
        self._file_number += 1
        # newline="\r\n": the real files come from Windows
        self._handle = path.open("x", encoding="utf-8", newline="\r\n")
        self._path = path
        self._handle.write(self._header(moment, path.name))
        self._handle.flush()
        self._expire()
        return path

    def _header(self, moment: datetime.datetime, file_name: str) -> str:
        utc = moment.astimezone(datetime.UTC)
        lines = [
            f"Application name: {GENESYS_APPLICATION}",
            "Application type: TServer (1)",
            f"Command line: {self._command_line}",
            f"Host name: {GENESYS_HOST_NAME}",
            f"Time zone: {-GENESYS_UTC_OFFSET_SECONDS}, {GENESYS_TIME_ZONE_NAME}, "
            "India Daylight Time",
            f"UTC time: {full_timestamp(utc)}",
            f"Local time: {full_timestamp(moment)}",
            "Host info: x64, Windows Server 2019 Standard, 10.0.17763",
            f"File: ({self._file_number}) {WINDOWS_LOG_DIR / file_name}",
            "",
        ]
        return "\n".join(lines) + "\n"

    def _expire(self) -> None:
        segments = sorted(self._directory.glob(f"{LOG_OUTPUT_NAME}.*.log"))
        for old in segments[: max(0, len(segments) - self._expire_files)]:
            old.unlink(missing_ok=True)


def command_line(license_host: str) -> str:
    """SIP Server's command line as the header shows it (`-l port@host`: the licence server)."""
    return (
        f"{WINDOWS_APP_DIR}\\sip_server.exe -host {GENESYS_HOST_NAME} -port 2020 "
        f"-app {GENESYS_APPLICATION} -service {GENESYS_SERVICE} -l 7260@{license_host}"
    )
