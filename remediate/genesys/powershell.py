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
- filtered log: a smaller log in the same format (the header block, each matching line, each
  REGISTER-related SIP message block followed by a blank line), in file order;
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

# A SIP message block of the SIP Server log (DESIGN 2.1) whose CSeq method is REGISTER: the
# `Received ... <<<<<` / `Sending ... >>>>>` line, then the message's non-empty lines.
REGISTER_BLOCK = (
    r"^[^\r\n]*(?:Received|Sending) +\[[^\r\n]*(?:<<<<<|>>>>>)[ \t]*\r?\n"
    r"(?:[^\r\n]+\r?\n)*?CSeq:[ \t]*\d+[ \t]+REGISTER[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*"
)
# The DN-bearing form: a REGISTER block (request or response) whose To header names one of the DNs
# (`{users}`), then the lines logged right after it up to the next SIP message or blank line, at
# most 20, never a binding expiry's (event 1 and EXPIRED belong to no REGISTER). Its marker line is
# a SIP-layer line (`13:55:31.501: ...`): testing that prefix first rejects most lines of a large
# log at their first character, which halves the host's work.
SIP_LINE_START = r"^\d\d:\d\d:\d\d\.\d\d\d: "
REGISTER_BLOCK_OF_DNS = (
    SIP_LINE_START + r"[^\r\n]*?(?:Received|Sending) +\[[^\r\n]*(?:<<<<<|>>>>>)[ \t]*\r?\n"
    r"(?=(?:[^\r\n]+\r?\n)*?(?:[Tt][Oo]|[Tt])[ \t]*:[^\r\n]*sips?:(?:{users})@)"
    r"(?=(?:[^\r\n]+\r?\n)*?CSeq:[ \t]*\d+[ \t]+REGISTER)(?:[^\r\n]+\r?\n)*(?:\r?\n)?"
    r"(?:(?![^\r\n]*(?:<<<<<|>>>>>|handle registration event 1|REGISTRAR: EXPIRED))"
    r"[^\r\n]+\r?\n){{0,20}}"
)
# A binding expiry names its DN only in the tab-indented `AOR:` line under `REGISTRAR: EXPIRED:`.
EXPIRY_BLOCK = SIP_LINE_START + r"REGISTRAR: EXPIRED:[^\r\n]*\r?\n(?:\t[^\r\n]*\r?\n)*"
_DN = re.compile(r"\+?[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def register_blocks_of(dns: Sequence[str]) -> str:
    """REGISTER_BLOCK_OF_DNS for `dns` (DN names as `remediate.dn.validate_dn` accepts them), and
    every binding expiry (rare, and only its AOR line says whose it is)."""
    users = "|".join(regex_literal(_check(_DN, dn, "DN", "use a DN such as 5001")) for dn in dns)
    return f"{REGISTER_BLOCK_OF_DNS.format(users=users)}|{EXPIRY_BLOCK}"


# The header block that opens every segment: `Key: value` lines up to the first blank line.
HEADER_BLOCK = r"\A(?:[^\r\n]+\r?\n)+"


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
    `patterns` (literal text), and every SIP message block of a REGISTER transaction (requests and
    their responses, matched by CSeq). The host's .NET regex engine does the filtering, so only
    those lines cross the wire.

    With `dns`, only the REGISTER blocks whose To header names one of them are kept, each with the
    handling lines logged right after it (up to the next SIP message or blank line, never a binding
    expiry's): other DNs' handling lines would otherwise attach to the wrong REGISTER.
    """
    if not patterns:
        raise InputError("no log patterns to filter on", hint="give at least one pattern")
    for pattern in patterns:
        if not pattern or len(pattern) > 200 or any(char in pattern for char in "\r\n"):
            raise InputError(
                f"invalid log pattern: {pattern!r}",
                hint="use one line of literal text, at most 200 characters",
            )
    alternatives = "|".join(regex_literal(pattern) for pattern in patterns)
    registers = REGISTER_BLOCK if not dns else register_blocks_of(dns)
    regex = f"(?m){HEADER_BLOCK}|{registers}|^[^\\r\\n]*(?:{alternatives})[^\\r\\n]*"
    path = quote(_file(directory, name))
    return encode(
        f"$t = Get-Content -LiteralPath {path} -Raw -ErrorAction Stop\n"
        f"[regex]::Matches($t, {quote(regex)}) | ForEach-Object {{ $_.Value }}"
    )


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
