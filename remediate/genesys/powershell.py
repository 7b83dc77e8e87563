"""Every PowerShell command the product sends to the SIP Server host, and the parsers of their
output.

Each builder validates its values, quotes every one as a single-quoted PowerShell string (a quote
inside is doubled, including the typographic quotes PowerShell also treats as quotes), and returns a
`PowerShellCommand`: the script and the command line `powershell -NoProfile -NonInteractive
-EncodedCommand <base64 of UTF-16LE>` that cmd.exe runs. cmd.exe refuses command lines over 8191
characters, so a builder whose line would be longer raises instead of sending it; scripts are
kept small (a script of about 3 KB is already too long once encoded).

Output formats (one record per line, `|`-separated, the free-text field last):
- service state: `Name|Status|DisplayName`;
- log segments: `Name|Length|LastWriteTime` (the host's local time, round-trip `o` format);
- log lines: the raw lines of the file;
- filtered log: the regions of the log the diagnosis needs (the header block, each matching line,
  each REGISTER-related SIP message block with the blank line and handling lines after it), exactly
  as written, in file order;
- listeners: `Protocol|LocalAddress|LocalPort|OwningProcess|ProcessName`;
- host clock: one line, round-trip `o` format with the host's UTC offset.
Judge success by the exit code; errors come on stderr as CLIXML.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass

from remediate.errors import InputError, RemediateError

MAX_COMMAND_LINE = 8191
COMMAND_PREFIX = "powershell -NoProfile -NonInteractive -EncodedCommand "
# PowerShell ends a single-quoted string at any of these and reads any of them doubled as one.
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
SERVICE_STATES = (
    "Stopped",
    "StartPending",
    "StopPending",
    "Running",
    "ContinuePending",
    "PausePending",
    "Paused",
)
MAX_READ_LINES = 100_000
MAX_WAIT_SECONDS = 3600

_SERVICE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,256}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.*?\-]{1,255}")
_PATH_PART = r"[^<>:\"/\\|?*\x00-\x1f]+"
_WINDOWS_PATH = re.compile(rf"[A-Za-z]:\\(?:{_PATH_PART}(?:\\{_PATH_PART})*\\?)?")
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,252}[A-Za-z0-9])?")
_APPLICATION = re.compile(r"[A-Za-z0-9_.\- ]{1,255}")
_EXECUTABLE_NAME = re.compile(r"[A-Za-z0-9_.\-]+\.exe", re.IGNORECASE)

# The host-side filter (`read_log_filtered`) is one `[regex]::Replace` over the segment that follows
# the SIP Server log from its start, as the parser does (`remediate.genesys.logs`): every match
# starts where the previous one ended or on a later line outside any SIP block, and every SIP block
# is matched whole, kept or not, so a marker line or a log line inside a message (a stranger can
# put any text in a header or a body) is never read as a block or a line of its own. What is kept
# is captured; everything else is replaced by nothing. The syntax is the one .NET and Python share
# (numbered groups, `[0-9]` for digits: .NET's `\d` takes any Unicode digit, the parser's does not).
_CLOCK = r"[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}: "
SIP_LINE_START = "^" + _CLOCK
# The marker line's byte count, at most five digits (a message over 99999 bytes falls to
# `_UNSIZED_REST`), read into one empty group per bit of each decimal digit so that the block's
# extent can be matched by conditionals; each digit test has exactly one way to match, so the
# regex engine can never backtrack into another count.
_DIGIT_BITS = ((8, "[89]"), (4, "[4-7]"), (2, "[2367]"), (1, "[13579]"))
_SIZE_DIGITS = 5


def _size_groups() -> tuple[str, list[int]]:
    """The size field's regex and the value of each of its groups, in group order."""
    parts = [rf"(?=[1-9][0-9]{{0,{_SIZE_DIGITS - 1}}} )"]
    values: list[int] = []
    for position in range(_SIZE_DIGITS - 1, -1, -1):
        bits = "".join(rf"(?:(?={digits})()|(?!{digits}))" for _, digits in _DIGIT_BITS)
        values.extend(bit * 10**position for bit, _ in _DIGIT_BITS)
        width = rf"[0-9]{{{position + 1}}} "
        parts.append(f"(?:(?={width}){bits}[0-9]|(?!{width}))" if position else bits + "[0-9]")
    return "".join(parts), values


# One character of a message as SIP Server logs it: a line ends with CRLF, as on the wire. A bare
# LF counts one byte more on the wire (the parser's rule): such a block falls to `_UNSIZED_REST`.
_LOGGED_CHAR = r"(?:[^\n]|(?<=\r)\n)"


def _sized_block(first_group: int) -> str:
    """A SIP block whose lines add up to the byte count of its marker line (`remediate.genesys.
    logs._sized_end`): the marker line, that many characters ending a line (the last one blank,
    or a blank line right after; or two characters short of a line's CRLF, then a blank line)."""
    size, values = _size_groups()
    count = "".join(
        f"(?({first_group + index}){_LOGGED_CHAR}{{{value}}})" for index, value in enumerate(values)
    )
    return (
        SIP_LINE_START
        + r"(?:SIPTR: )?(?:Received|Sending) +\[[^\]\n]*\] "
        + size
        + r" bytes (?:from|to) (?:\[[^\]\n]+\]|[^\s:]+):[0-9]+ (?:<<<<<|>>>>>)[ \t\r]*\n"
        + count
        + r"(?:(?<=\n\r\n)|(?<=\n)(?=\r?\n)|\r\n(?=\r?\n))"
    )


def _register_check(users: str | None) -> str:
    """At a marker line: the block is a REGISTER request or a response whose headers hold a
    REGISTER CSeq (and a To naming one of `users`, when given), as the parser decides (a superset:
    dropping a block the parser would read changes the diagnosis, keeping one more does not). The
    headers end at the first blank line, inside the block or right after it."""
    start = r"(?=[^\n]*\n\s*(?:REGISTER(?: |\r?\n)|SIP/))"
    header = r"(?=[^\n]*\n(?:[^\n]*[^\r\n]\r?\n)*?"
    cseq = header + r"[ \t]*[Cc][Ss][Ee][Qq][ \t]*:[ \t]*[0-9]+[ \t]+REGISTER\b)"
    if users is None:
        return start + cseq
    to = header + rf"[ \t]*(?:[Tt][Oo]|[Tt])[ \t]*:[^\n]*[Ss][Ii][Pp][Ss]?:(?:{users})@)"
    return start + to + cseq


# The handling lines logged right after a kept REGISTER block, up to the next SIP message or blank
# line, at most 20, never a binding expiry's (event 1 and EXPIRED belong to no REGISTER).
_HANDLING_LINES = (
    r"(?:\r?\n)?(?:(?![^\n]*(?:<<<<<|>>>>>|handle registration event 1|REGISTRAR: EXPIRED))"
    r"[^\n]*[^\r\n]\r?\n){0,20}"
)
# A marker line outside any block whose block does not add up to its byte count (a hand-made log,
# a message over 99999 bytes, a bare LF): the parser then ends the block by its Content-Length,
# which no regex can count, so the rest of the segment is kept whole, for the parser to read.
_UNSIZED_REST = SIP_LINE_START + r"(?:SIPTR: )?(?:Received|Sending) [\s\S]*"
# A binding expiry names its DN only in the indented `AOR:` line under `REGISTRAR: EXPIRED:`.
EXPIRY_BLOCK = SIP_LINE_START + r"REGISTRAR: EXPIRED:[^\n]*\n(?:[ \t][^\n]*\n)*"
# The header block that opens every segment: `Key: value` lines up to the first blank line.
HEADER_BLOCK = r"\A(?:[^\r\n]+\r?\n)+(?:\r?\n)?"
_DN = re.compile(r"\+?[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def filter_regex(patterns: Sequence[str], dns: Sequence[str]) -> tuple[str, str]:
    """The host-side filter's regex and its .NET replacement (see `read_log_filtered`)."""
    users = None
    if dns:
        users = "|".join(
            regex_literal(_check(_DN, dn, "DN", "use a DN such as 5001")) for dn in dns
        )
    block = _sized_block(first_group=2)
    kept_block = 2 + len(_DIGIT_BITS) * _SIZE_DIGITS
    alternatives = "|".join(regex_literal(pattern) for pattern in patterns)
    regex = (
        rf"(?m)^(?=({block}))(?:{_register_check(users)}(\1{_HANDLING_LINES})|\1)"
        rf"|({HEADER_BLOCK}|{_UNSIZED_REST}|{EXPIRY_BLOCK}|^[^\n]*(?:{alternatives})[^\n]*\n?)"
        r"|[^\n]+\n?|\n"
    )
    return regex, f"${{{kept_block}}}${{{kept_block + 1}}}"


@dataclass(frozen=True)
class PowerShellCommand:
    script: str
    command_line: str


@dataclass(frozen=True)
class ServiceState:
    name: str
    status: str
    display_name: str


@dataclass(frozen=True)
class LogSegment:
    name: str
    length: int
    last_write: datetime.datetime  # aware, in the host's zone


@dataclass(frozen=True)
class PortListener:
    protocol: str  # "UDP" or "TCP"
    local_address: str
    local_port: int
    pid: int
    process_name: str


class PowerShellOutputError(RemediateError):
    """The host answered with text the product cannot read: a different PowerShell or a bug."""

    reference = "powershell-output-unreadable"


def quote(value: str) -> str:
    """`value` as a single-quoted PowerShell string literal."""
    if any(ord(char) < 32 and char not in "\t" for char in value):
        raise InputError(
            f"control characters cannot be sent to PowerShell: {value!r}",
            hint="remove line breaks and control characters from the value",
        )
    escaped = "".join(char * 2 if char in SINGLE_QUOTES else char for char in value)
    return f"'{escaped}'"


def encode(script: str) -> PowerShellCommand:
    """The command line for `script`, refused when cmd.exe would refuse it."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    command_line = COMMAND_PREFIX + encoded
    if len(command_line) > MAX_COMMAND_LINE:
        raise RemediateError(
            f"the PowerShell command is {len(command_line)} characters long once encoded; cmd.exe "
            f"refuses more than {MAX_COMMAND_LINE}",
            reference="powershell-command-too-long",
            hint="send fewer values per command (e.g. fewer log patterns) and split the work",
        )
    return PowerShellCommand(script, command_line)


def _check(pattern: re.Pattern[str], value: str, what: str, hint: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InputError(f"invalid {what}: {value!r}", hint=hint)
    return value


def _service(name: str) -> str:
    return _check(
        _SERVICE_NAME, name, "Windows service name", "use the service's short name, e.g. TSrvSIP64"
    )


def windows_path(path: str) -> str:
    """A validated absolute local Windows path (no UNC, no `..`, at most 260 characters)."""
    _check(_WINDOWS_PATH, path, "Windows path", r"use an absolute path such as D:\gcti_logs\SIP_P")
    if len(path) > 260 or any(part in (".", "..") for part in path.split("\\")):
        raise InputError(
            f"invalid Windows path: {path!r}", hint="use a plain absolute path without . or .."
        )
    return path


def _seconds(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WAIT_SECONDS:
        raise InputError(
            f"invalid {what}: {value!r}",
            hint=f"use a whole number of seconds from 1 to {MAX_WAIT_SECONDS}",
        )
    return value


def _timespan(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _service_line(variable: str) -> str:
    return f"'{{0}}|{{1}}|{{2}}' -f {variable}.Name, {variable}.Status, {variable}.DisplayName"


# Service


def service_state(service: str) -> PowerShellCommand:
    name = quote(_service(service))
    return encode(
        f"Get-Service -Name {name} -ErrorAction Stop | ForEach-Object {{ {_service_line('$_')} }}"
    )


def _control_script(service: str, steps: Sequence[str]) -> PowerShellCommand:
    lines = [
        "$ErrorActionPreference = 'Stop'",
        f"$s = Get-Service -Name {quote(_service(service))}",
    ]
    lines.extend(steps)
    lines.append(_service_line("$s"))
    return encode("\n".join(lines))


def _stop_steps(timeout_seconds: int) -> list[str]:
    span = quote(_timespan(_seconds(timeout_seconds, "stop timeout")))
    return ["Stop-Service -InputObject $s -Force -NoWait", f"$s.WaitForStatus('Stopped', {span})"]


def _start_steps(timeout_seconds: int) -> list[str]:
    span = quote(_timespan(_seconds(timeout_seconds, "start timeout")))
    return ["$s.Start()", f"$s.WaitForStatus('Running', {span})"]


def stop_service(service: str, timeout_seconds: int) -> PowerShellCommand:
    """Stop and wait for Stopped up to the bound; stuck in StopPending fails the command."""
    return _control_script(service, _stop_steps(timeout_seconds))


def start_service(service: str, timeout_seconds: int) -> PowerShellCommand:
    """Start and wait for Running up to the bound; error 1053 or a timeout fails the command."""
    return _control_script(service, _start_steps(timeout_seconds))


def restart_service(
    service: str, stop_timeout_seconds: int, start_timeout_seconds: int
) -> PowerShellCommand:
    """The `Restart-Service` method: stop, then start, each bounded; output: the final state."""
    return _control_script(
        service, _stop_steps(stop_timeout_seconds) + _start_steps(start_timeout_seconds)
    )


def wait_service_status(service: str, status: str, timeout_seconds: int) -> PowerShellCommand:
    """Wait for `status` up to the bound (after an mlcmd request); output is the final state."""
    if status not in ("Running", "Stopped"):
        raise InputError(
            f"invalid service status to wait for: {status!r}", hint="use Running or Stopped"
        )
    span = quote(_timespan(_seconds(timeout_seconds, "wait timeout")))
    return _control_script(service, [f"$s.WaitForStatus({quote(status)}, {span})"])


def parse_service_state(text: str) -> ServiceState:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise PowerShellOutputError(f"expected one service line, got {len(lines)}: {text[:200]!r}")
    fields = lines[0].split("|", 2)
    if len(fields) != 3 or fields[1] not in SERVICE_STATES:
        raise PowerShellOutputError(f"unreadable service line: {lines[0][:200]!r}")
    return ServiceState(fields[0], fields[1], fields[2])


def mlcmd(
    executable: str, cs_host: str, cs_port: int, application: str, action: str
) -> PowerShellCommand:
    """The `mlcmd` method: ask Genesys Management Layer to stop or start an application.

    `action` is "stop" or "start". Success is the exit code; then wait with `wait_service_status`.
    """
    if action not in ("stop", "start"):
        raise InputError(f"invalid mlcmd action: {action!r}", hint="use stop or start")
    if isinstance(cs_port, bool) or not isinstance(cs_port, int) or not 1 <= cs_port <= 65535:
        raise InputError(
            f"invalid Configuration Server port: {cs_port!r}", hint="use a TCP port number"
        )
    if not executable.lower().endswith(".exe"):
        raise InputError(
            f"invalid mlcmd executable: {executable!r}", hint=r"use mlcmd.exe or a full path to it"
        )
    if "\\" in executable:
        windows_path(executable)
    else:
        _check(
            _EXECUTABLE_NAME, executable, "mlcmd executable", r"use mlcmd.exe or a full path to it"
        )
    program = quote(executable)
    host = quote(
        _check(_HOST_NAME, cs_host, "Configuration Server host", "use a host name or IP address")
    )
    app = quote(
        _check(
            _APPLICATION, application, "Genesys application name", "use the name in Configuration"
        )
    )
    return encode(
        f"& {program} -cshost {host} -csport {cs_port} -app {app} -{action}app\nexit $LASTEXITCODE"
    )


# Logs


def _ticks(moment: datetime.datetime) -> int:
    """.NET ticks (100 ns since 0001-01-01) of an aware datetime, in UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(
            f"a time without a zone cannot be compared with the host's: {moment!r}",
            hint="use the host's clock (host_clock) to build the time",
        )
    utc = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return (utc - datetime.datetime(1, 1, 1)) // datetime.timedelta(microseconds=1) * 10


def list_log_segments(
    directory: str, name_pattern: str, since: datetime.datetime | None = None
) -> PowerShellCommand:
    """The files of `directory` matching `name_pattern` (`*`, `?`), written at or after `since`."""
    folder = quote(windows_path(directory))
    pattern = quote(
        _check(_NAME_PATTERN, name_pattern, "file name pattern", "use letters, digits, . _ - * ?")
    )
    steps = [f"Get-ChildItem -LiteralPath {folder} -Filter {pattern} -File -ErrorAction Stop"]
    if since is not None:
        steps.append(f"Where-Object {{ $_.LastWriteTimeUtc.Ticks -ge {_ticks(since)} }}")
    steps.append(
        "ForEach-Object { '{0}|{1}|{2}' -f $_.Name, $_.Length, $_.LastWriteTime.ToString('o') }"
    )
    return encode(" | ".join(steps))


def parse_log_segments(text: str) -> list[LogSegment]:
    segments = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 3 or not fields[1].isdigit():
            raise PowerShellOutputError(f"unreadable log segment line: {line[:200]!r}")
        segments.append(LogSegment(fields[0], int(fields[1]), parse_round_trip(fields[2])))
    return segments


def _file(directory: str, name: str) -> str:
    folder = windows_path(directory).rstrip("\\")
    file_name = _check(
        _FILE_NAME, name, "log file name", "use the segment name from list_log_segments"
    )
    return windows_path(f"{folder}\\{file_name}")


def read_log_lines(directory: str, name: str, first_line: int, max_lines: int) -> PowerShellCommand:
    """Lines `first_line` (0-based) to `first_line + max_lines` raw (code page 437)."""
    if isinstance(first_line, bool) or not isinstance(first_line, int) or first_line < 0:
        raise InputError(f"invalid first line: {first_line!r}", hint="use a line number from 0")
    if (
        isinstance(max_lines, bool)
        or not isinstance(max_lines, int)
        or not 1 <= max_lines <= MAX_READ_LINES
    ):
        raise InputError(
            f"invalid line count: {max_lines!r}", hint=f"read from 1 to {MAX_READ_LINES} lines"
        )
    path = quote(_file(directory, name))
    return encode(
        f"Get-Content -LiteralPath {path} -TotalCount {first_line + max_lines} -ErrorAction Stop"
        f" | Select-Object -Skip {first_line}"
    )


def parse_log_lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def regex_literal(text: str) -> str:
    """`text` as a regular expression matching itself, in the syntax .NET and Python share."""
    return "".join(char if char.isalnum() or char in " _" else "\\" + char for char in text)


def read_log_filtered(
    directory: str, name: str, patterns: Sequence[str], dns: Sequence[str] = ()
) -> PowerShellCommand:
    """Only what the diagnosis needs from a segment: its header block, the lines containing any of
    `patterns` (literal text), every binding expiry, and every SIP message block of a REGISTER
    transaction (requests and their responses, matched by CSeq), each a region of the segment
    exactly as written. The host's .NET regex engine does the filtering in one pass, so only those
    regions cross the wire; the parser reads them as it reads the whole segment (see `filter_regex`:
    blocks are followed from the start of the segment, each matched whole by its byte count, so
    text inside a message is never kept as a block or a line of its own).

    With `dns`, only the REGISTER blocks whose To header names one of them are kept, each with the
    handling lines logged right after it (up to the next SIP message or blank line, never a binding
    expiry's): other DNs' handling lines would otherwise attach to the wrong REGISTER. When the DNs
    do not fit in one command line, every REGISTER block is kept.
    """
    if not patterns:
        raise InputError("no log patterns to filter on", hint="give at least one pattern")
    for pattern in patterns:
        if not pattern or len(pattern) > 200 or any(char in pattern for char in "\r\n"):
            raise InputError(
                f"invalid log pattern: {pattern!r}",
                hint="use one line of literal text, at most 200 characters",
            )
    regex, replacement = filter_regex(patterns, dns)
    path = quote(_file(directory, name))
    try:
        return encode(
            f"$t = Get-Content -LiteralPath {path} -Raw -ErrorAction Stop\n"
            f"[regex]::Replace($t, {quote(regex)}, {quote(replacement)})"
        )
    except RemediateError as error:
        if not dns or error.reference != "powershell-command-too-long":
            raise
        # More DNs than one command line holds (about 150, e.g. a large site's baseline): every
        # REGISTER block crosses instead; more bytes, and the parser reads the same.
        return read_log_filtered(directory, name, patterns)


def parse_filtered_log(text: str) -> list[str]:
    """The filtered log's lines (blocks end with an empty line, as in the log itself)."""
    return parse_log_lines(text)


# Network and clock


def port_listeners(port: int) -> PowerShellCommand:
    """The UDP endpoints and TCP listeners on `port` with their process (none is not an error)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InputError(f"invalid port: {port!r}", hint="use a port number from 1 to 65535")
    record = (
        "ForEach-Object {{ '{{0}}|{{1}}|{{2}}|{{3}}|{{4}}' -f '{protocol}', "
        "$_.LocalAddress, $_.LocalPort, "
        "$_.OwningProcess, (Get-Process -Id $_.OwningProcess).ProcessName }}"
    )
    return encode(
        f"Get-NetUDPEndpoint -LocalPort {port} -ErrorAction SilentlyContinue"
        f" | {record.format(protocol='UDP')}\n"
        f"Get-NetTCPConnection -LocalPort {port} -State Listen -ErrorAction SilentlyContinue"
        f" | {record.format(protocol='TCP')}\n"
        "exit 0"
    )


def parse_port_listeners(text: str) -> list[PortListener]:
    listeners = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 4)
        if (
            len(fields) != 5
            or fields[0] not in ("UDP", "TCP")
            or not (fields[2].isdigit() and fields[3].isdigit())
        ):
            raise PowerShellOutputError(f"unreadable listener line: {line[:200]!r}")
        listeners.append(
            PortListener(fields[0], fields[1], int(fields[2]), int(fields[3]), fields[4])
        )
    return listeners


def host_clock() -> PowerShellCommand:
    return encode("Get-Date -Format 'o'")


def parse_round_trip(text: str) -> datetime.datetime:
    """.NET's round-trip (`o`) format: seven fractional digits and an offset (or Z)."""
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?(Z|[+-]\d\d:\d\d)", text.strip()
    )
    if not match:
        raise PowerShellOutputError(
            f"unreadable time (expected the 'o' format with an offset): {text[:60]!r}"
        )
    fraction = (match.group(2) or "0").ljust(7, "0")[:6]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}")


def parse_host_clock(text: str) -> datetime.datetime:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise PowerShellOutputError(f"expected one time line, got {len(lines)}")
    return parse_round_trip(lines[0])
