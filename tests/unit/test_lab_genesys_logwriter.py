"""The lab's SIP Server log writer: header block, both line styles, SIP blocks, segments."""

from __future__ import annotations

import datetime
import re
import time
from pathlib import Path

from remediate.lab.genesys.logwriter import (
    HOST_ZONE,
    SipServerLog,
    command_line,
    host_now,
    segment_file_name,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 2, 2, 13, 54, 59, 850000, tzinfo=HOST_ZONE)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


def _log(tmp_path: Path, clock: FakeClock, segment_bytes: int = 10 * 1024 * 1024) -> SipServerLog:
    return SipServerLog(
        tmp_path,
        command_line=command_line("127.0.0.81"),
        segment_bytes=segment_bytes,
        expire_files=3,
        clock=clock,
    )


def test_host_clock_is_ist_whatever_the_local_zone() -> None:
    now = host_now()
    assert now.utcoffset() == datetime.timedelta(hours=5, minutes=30)
    utc = datetime.datetime.now(datetime.UTC)
    assert abs((now - utc).total_seconds()) < 5


def test_segment_header_and_option_lines(tmp_path: Path) -> None:
    clock = FakeClock()
    log = _log(tmp_path, clock)
    path = log.open_segment()
    log.close()
    assert path.name == "SIP_P-001.20260202_135459_850.log"
    raw = path.read_bytes()
    assert b"\r\n" in raw  # written as on Windows
    lines = raw.decode().split("\r\n")
    assert lines[:10] == [
        "Application name: SIP_P",
        "Application type: TServer (1)",
        r"Command line: D:\gcti_apps\SIP_P\sip_server.exe -host GenUAT02 -port 2020 -app SIP_P "
        "-service TSrvSIP64 -l 7260@127.0.0.81",
        "Host name: GenUAT02",
        "Time zone: -19800, India Standard Time, India Daylight Time",
        "UTC time: 2026-02-02T08:24:59.850",
        "Local time: 2026-02-02T13:54:59.850",
        "Host info: x64, Windows Server 2019 Standard, 10.0.17763",
        r"File: (1) D:\gcti_logs\SIP_P\SIP_P-001.20260202_135459_850.log",
        "",
    ]
    assert lines[10] == (
        "2026-02-02T13:54:59.850 Trc 04110 Option 'segment' has been set to the value '10 MB'"
    )
    assert "2026-02-02T13:54:59.850 Trc 04120 Check point 2026-02-02T13:54:59" in lines


def test_sip_blocks_and_sip_layer_lines(tmp_path: Path) -> None:
    clock = FakeClock()
    log = _log(tmp_path, clock)
    path = log.open_segment()
    request = b"REGISTER sip:127.0.0.81:5060 SIP/2.0\r\nContent-Length:  0\r\n\r\n"
    response = b"SIP/2.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    clock.advance(seconds=31, milliseconds=651)
    with log.transaction() as entry:
        entry.received(request, ("127.0.0.54", 5060))
        entry.sip("SIPTS: handle registration event 2")
        entry.sip("REGISTRAR: TERMINATED:5002")
        entry.sending(response, ("127.0.0.54", 5060))
    text = path.read_text().split("\n", 1)[1]  # universal newlines
    assert (
        "13:55:31.501: SIPTR: Received [0,UDP] 60 bytes from 127.0.0.54:5060 <<<<<\n"
        "REGISTER sip:127.0.0.81:5060 SIP/2.0\n"
        "Content-Length:  0\n"
        "\n"
        "13:55:31.501: SIPTS: handle registration event 2\n"
        "13:55:31.501: REGISTRAR: TERMINATED:5002\n"
        "13:55:31.501: Sending  [0,UDP] 44 bytes to 127.0.0.54:5060 >>>>>\n"
        "SIP/2.0 403 Forbidden\n"
        "Content-Length: 0\n"
        "\n"
    ) in text
    assert len(request) == 60 and len(response) == 44


def test_segments_rotate_at_size_and_expire(tmp_path: Path) -> None:
    clock = FakeClock()
    log = _log(tmp_path, clock, segment_bytes=2048)
    log.open_segment()
    for index in range(40):
        clock.advance(milliseconds=7)
        with log.transaction() as entry:
            entry.sip(f"line {index} " + "x" * 200)
    log.close()
    segments = sorted(tmp_path.glob("SIP_P-001.*.log"))
    assert len(segments) == 3  # expire keeps the newest three
    numbers = []
    for segment in segments:
        text = segment.read_text()
        assert re.fullmatch(r"SIP_P-001\.\d{8}_\d{6}_\d{3}\.log", segment.name)
        assert text.startswith("Application name: SIP_P\n")
        header_file = re.search(r"^File: \((\d+)\) D:\\gcti_logs\\SIP_P\\(\S+)$", text, re.M)
        assert header_file is not None and header_file.group(2) == segment.name
        numbers.append(int(header_file.group(1)))
        assert segment.stat().st_size < 2048 + 400  # a transaction is never split
    assert numbers == sorted(numbers) and numbers[0] > 1
    assert "line 39 " in segments[-1].read_text()


def test_new_segment_at_each_start_and_nothing_written_while_closed(tmp_path: Path) -> None:
    clock = FakeClock()
    log = _log(tmp_path, clock)
    first = log.open_segment()
    log.close()
    with log.transaction() as entry:
        entry.sip("written while the service is stopped")
    clock.advance(seconds=5)
    second = log.open_segment()
    assert first != second
    assert "stopped" not in first.read_text() + second.read_text()
    assert "File: (1)" in second.read_text()


def test_checkpoint_when_due(tmp_path: Path) -> None:
    clock = FakeClock()
    log = _log(tmp_path, clock)
    path = log.open_segment()
    log.checkpoint_if_due(monotonic_now=0.0, interval=3600)
    clock.advance(hours=1)
    log.checkpoint_if_due(monotonic_now=time.monotonic() + 3600, interval=3600)
    checkpoints = re.findall(r"Trc 04120 Check point (\S+)", path.read_text())
    assert checkpoints == ["2026-02-02T13:54:59", "2026-02-02T14:54:59"]


def test_segment_file_name_format() -> None:
    moment = datetime.datetime(2026, 2, 2, 13, 54, 59, 7000, tzinfo=HOST_ZONE)
    assert segment_file_name(moment) == "SIP_P-001.20260202_135459_007.log"
