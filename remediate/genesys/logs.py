"""A streaming parser of Genesys SIP Server log files (DESIGN section 2.1).

A segment (`SIP_P-001.20260202_135459_850.log`) opens with a header block of `Key: value` lines,
then mixes framework lines (`2026-02-02T13:54:59.845 Trc 04110 ...`), SIP-layer lines that carry
the time only (`13:55:31.501: SIPTS: handle registration event 2`) and SIP message blocks (a
`Received [0,UDP] N bytes from A:P <<<<<` or `Sending  [0,UDP] N bytes to A:P >>>>>` line, the raw
message, a blank line).

`read_logs(paths)` and `LogReader.feed()` yield typed events. Two scopes:

- `Scope.REGISTRATIONS` (the default, what diagnosis needs): REGISTER requests and the responses
  to them, the registration handling lines that carry a decision or a DN (not the informational
  `trunk ip addr` and `Assocaited transport` lines), REGISTRAR outcomes, the DN and agent CTI
  lines, and check points. Files of hundreds of megabytes are read in big chunks and only those
  places and the marker line of every SIP block are located, by compiled byte regexes that run in
  C; nothing else is decoded or touched by Python code.
- `Scope.EVERYTHING`: every line and every SIP block of any method; lines no rule knows become
  `UnknownLine` events. Slower (it visits every line), for tooling and tests.

Nothing in the input is fatal: truncated blocks, CRLF line ends, bytes that are not UTF-8 and
unknown lines are all kept. Text inside a SIP message (a header, a body) is never read as a log
line, whatever a stranger puts there: blocks are followed from the start, each from the end of
the one before, and a block ends where its lines add up to the size its marker line gives (else
where its Content-Length says). Memory stays bounded whatever the file size (one chunk plus at
most one unfinished block).

`registrations(events, dns)` turns the events into one `RegistrationTransaction` per REGISTER
(responses matched by Call-ID and CSeq, retransmissions folded in) and, per DN, a `DnTimeline`.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import PurePath, PureWindowsPath

CHUNK_BYTES = 4 * 1024 * 1024
MAX_BLOCK_BYTES = 256 * 1024
"""A SIP block that has not ended within this many bytes is cut there (and marked truncated)."""
_MAX_HEADER_BLOCK_BYTES = 64 * 1024
_ROLLOVER_TOLERANCE = timedelta(minutes=5)
"""A SIP-layer time earlier than the previous one by more than this is on the next day."""


EVENT_MEANINGS = {0: "new binding", 1: "binding expired", 2: "un-registration", 3: "refresh"}


class Scope(enum.Enum):
    REGISTRATIONS = "registrations"
    EVERYTHING = "everything"


# ---------------------------------------------------------------------------------------------
# Events


@dataclass(slots=True)
class LogEvent:
    """A line (or a block) of a log: where it is, when it happened, and its text.

    Events are plain (not frozen) dataclasses: a frozen one costs microseconds more to build, and
    a big log has hundreds of thousands of them. Treat them as read-only.
    """

    file: str
    line: int
    time: datetime | None
    text: str

    @property
    def where(self) -> str:
        return f"{PurePath(self.file).name}:{self.line}"


@dataclass(slots=True)
class SegmentHeader(LogEvent):
    """The `Key: value` block that opens a segment."""

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return next((value for name, value in self.fields if name == key), None)


@dataclass(slots=True)
class SipMessage(LogEvent):
    """A SIP message block. `text` is its marker line; `message` the raw message (LF line ends)."""

    direction: str  # "received" or "sent"
    transport: str
    peer_address: str
    peer_port: int
    size: int
    message: str
    truncated: bool
    _headers: dict[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def start_line(self) -> str:
        return self.message.split("\n", 1)[0].strip()

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/")

    @property
    def method(self) -> str | None:
        """The request's method, or None for a response."""
        return self.start_line.split(" ", 1)[0] if self.is_request and self.start_line else None

    @property
    def status_code(self) -> int | None:
        parts = self.start_line.split(" ", 2)
        if self.is_request or len(parts) < 2 or not parts[1].isdigit():
            return None
        return int(parts[1])

    def header(self, name: str) -> str | None:
        """The first value of header `name` (compact forms understood), or None."""
        if self._headers is None:
            index: dict[str, str] = {}
            headers = self.message.split("\n\n", 1)[0].partition("\n")[2]  # not the start line
            for key, value in _HEADER_LINE.findall(headers):
                key = key.strip().lower()
                index.setdefault(_FULL_HEADER_NAMES.get(key, key), value.strip())
            self._headers = index
        return self._headers.get(_FULL_HEADER_NAMES.get(name.lower(), name.lower()))

    def header_line(self, name: str) -> int | None:
        """The log line number of header `name`, for evidence."""
        wanted = _FULL_HEADER_NAMES.get(name.lower(), name.lower())
        for offset, raw in enumerate(self.message.split("\n")[1:], start=1):
            if not raw.strip():
                return None
            key = raw.partition(":")[0].strip().lower()
            if _FULL_HEADER_NAMES.get(key, key) == wanted:
                return self.line + 1 + offset
        return None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def cseq(self) -> tuple[int, str] | None:
        value = self.header("CSeq")
        parts = value.split() if value else []
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        return int(parts[0]), parts[1].upper()

    @property
    def user_agent(self) -> str | None:
        return self.header("User-Agent")

    @property
    def contact(self) -> str | None:
        return self.header("Contact")

    @property
    def expires(self) -> int | None:
        """The binding's lifetime: the Contact's `expires` parameter, else the Expires header."""
        contact = self.contact or ""
        match = re.search(r";\s*expires\s*=\s*(\d+)", contact, re.IGNORECASE)
        if match:
            return int(match.group(1))
        value = self.header("Expires")
        return int(value) if value and value.isdigit() else None

    @property
    def to_user(self) -> str | None:
        """The user part of the To URI: the DN a REGISTER is about."""
        value = self.header("To") or ""
        match = re.search(r"sips?:([^@;>\s]+)@", value, re.IGNORECASE)
        return match.group(1) if match else None


@dataclass(slots=True)
class RegistrationEvent(LogEvent):
    """`SIPTS: handle registration event N`."""

    kind: int

    @property
    def meaning(self) -> str:
        return EVENT_MEANINGS.get(self.kind, f"event {self.kind}")


@dataclass(slots=True)
class RegistrarOutcome(LogEvent):
    """`REGISTRAR: TERMINATED:1002`, `ACTIVE:5002`, `EXPIRED:` (+ AOR/Contact), `OBSOLETE ...`."""

    outcome: str  # TERMINATED, ACTIVE, EXPIRED, OBSOLETE or what the server wrote
    dn: str | None
    aor: str | None = None
    contact: str | None = None


@dataclass(slots=True)
class CtiLine(LogEvent):
    """`$*:SIP:CTI:DN_IN_SERVICE:3` (prefix `$*:SIP:CTI`) or `$+CTI:PRM:ON_DN_IN_SERVICE:190:62`."""

    prefix: str
    name: str
    fields: tuple[str, ...]


@dataclass(slots=True)
class GatewayLookup(LogEvent):
    """`gateway 'G' associated with address 'A'` or `no gateway is found using address 'A' ...`."""

    address: str
    gateway: str | None
    number: str | None


@dataclass(slots=True)
class UnresolvedNumber(LogEvent):
    """`Unable to resolve number for DN:1002` (informational)."""

    dn: str


@dataclass(slots=True)
class DnNotConfigured(LogEvent):
    """`DN 5003 is not configured or disabled in CME. Registration attempt rejected`."""

    dn: str


@dataclass(slots=True)
class TrunkAddress(LogEvent):
    """`trunk ip addr 192.168.210.54` (informational)."""

    address: str


@dataclass(slots=True)
class TransportChange(LogEvent):
    """`Assocaited transport for the device [4] changed from [:0:0] to [A:P:1]`."""

    device: str
    old: str
    new: str


@dataclass(slots=True)
class InternalDomain(LogEvent):
    """`TRNMNGR: internal domain 192.168.210.81`: the SIP Server's own address."""

    domain: str


@dataclass(slots=True)
class CheckPoint(LogEvent):
    """`... Trc 04120 Check point 2026-02-02T14:54:56`: re-anchors the date."""

    anchor: datetime


@dataclass(slots=True)
class FrameworkLine(LogEvent):
    """Any other framework line (`<date>T<time> <level> <id> <message>`); EVERYTHING scope only."""

    level: str
    message_id: str


@dataclass(slots=True)
class UnknownLine(LogEvent):
    """A line no rule recognises; kept, never fatal."""


# ---------------------------------------------------------------------------------------------
# Patterns

# A marker line, after its time and ": ".
_MARKER_REST = (
    rb"(?:SIPTR: )?(?P<verb>Received|Sending) +\[(?P<transport>[^\]\n]*)\]"
    rb" (?P<size>\d+) bytes (?:from|to) (?P<address>\[[^\]\n]+\]|[^\s:]+):(?P<port>\d+)"
    rb" (?:<<<<<|>>>>>)[ \t\r]*(?P<eol>\n|\Z)"
)
_MARKER = re.compile(rb"(?P<clock>\d\d:\d\d:\d\d\.\d{3}): " + _MARKER_REST)
_KEYWORDS = (
    rb"SIPTS: handle registration event"
    rb"|REGISTRAR"
    rb"|\$\*:SIP:CTI:|\$\+CTI:PRM:(?:ON_DN_|AGENT_)"
    rb"|no gateway is found|gateway '"
    rb"|GetRegistration::Unable|Unable to resolve number"
    rb"|DN \S+ is not configured"
    rb"|TRNMNGR:"
)
# The REGISTRATIONS scope leaves out the purely informational `trunk ip addr` and `Assocaited
# transport` lines (the EVERYTHING scope yields them). Every interesting SIP-layer line has ": "
# right after its time, and so has every marker line; a block is decoded only when a REGISTER's
# CSeq header is in it. The literal ": " prefix lets the regex engine skip ahead in C; every branch
# starts with a literal (a leading `\w+` would make it three times slower).
_CANDIDATE_REGISTRATIONS = re.compile(
    rb"(?m): (?:(?P<line>" + _KEYWORDS + rb")"
    rb"|(?=SIPTR|Received|Sending)(?<=^(?P<clock>\d\d:\d\d:\d\d\.\d{3}): )"
    rb"(?P<marker>" + _MARKER_REST + rb"))"
)
_REGISTER_CSEQ = re.compile(rb"\n[Cc][Ss][Ee][Qq][ \t]*:[ \t]*\d+[ \t]+REGISTER\b")
_CANDIDATE_EVERYTHING = re.compile(rb"(?m)^(?P<line>[^\r\n])")
_CHECK_POINT_MARK = b"Trc 04120 Check point"  # a long needle: `find` skips faster

_FRAMEWORK_LINE = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?) (?P<level>[A-Z][a-z]{2}) "
    r"(?P<id>\d{5}) ?(?P<message>.*)$"
)
_HEADER_FIELD = re.compile(r"(?P<key>[A-Za-z][A-Za-z ]{0,40}): ?(?P<value>.*)$")
# A SIP block's headers end at a blank line, or (a truncated block) where a log line starts.
_HEADERS_END = re.compile(
    rb"\n(?:\r?\n|(?=\d\d:\d\d:\d\d\.\d{3}: |\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|@\d\d:\d\d:\d\d))"
)
_CONTENT_LENGTH = re.compile(
    rb"\n(?:[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]|[Ll])[ \t]*:[ \t]*(\d+)"
)
_FILE_NAME_STAMP = re.compile(r"\.(\d{8})_(\d{6})_(\d{3})\.log$", re.IGNORECASE)

# Every SIP-layer line this parser understands, as one regex: one `match` per line. Each branch
# ends with an empty group named after its kind, which `lastgroup` then reports.
_SIP_RULES = (
    r"SIPTS: handle registration event (?P<event_kind>\d+)(?P<event>)",
    r"REGISTRAR: ?EXPIRED:?\s*(?P<expired_dn>\S*)(?P<expired>)",
    r"REGISTRAR: ?(?P<outcome_name>[A-Z_]+):(?P<outcome_dn>\S+)(?P<outcome>)",
    r"REGISTRAR:DN\[(?P<obsolete_dn>[^\]]*)\]:\s*OBSOLETE REGISTRATION FOUND(?P<obsolete>)",
    r"\$\*:SIP:CTI:(?P<sip_cti_name>[A-Za-z_]+)(?::(?P<sip_cti_fields>.*))?(?P<sip_cti>)",
    r"\$\+CTI:(?P<cti_name>[A-Za-z_]+:[A-Za-z_]+)(?::(?P<cti_fields>.*))?(?P<cti>)",
    r"no gateway is found using address '(?P<no_gateway_address>[^']*)' for number "
    r"'(?P<no_gateway_dn>[^']*)'(?P<no_gateway>)",
    r"gateway '(?P<gateway_name>[^']*)' associated with address '(?P<gateway_address>[^']*)'"
    r"(?P<gateway>)",
    r"trunk ip addr (?P<trunk_address>\S+)(?P<trunk>)",
    r"(?:GetRegistration::)?Unable to resolve number for DN:(?P<unresolved_dn>\S+)(?P<unresolved>)",
    r"DN (?P<not_configured_dn>\S+) is not configured or disabled(?P<not_configured>)",
    r"Assocaited transport for the device \[(?P<transport_device>[^\]]*)\] changed from "
    r"\[(?P<transport_old>[^\]]*)\] to \[(?P<transport_new>[^\]]*)\](?P<transport>)",
    r"TRNMNGR: internal domain (?P<domain_name>\S+)(?P<domain>)",
)
_SIP_EVENT = re.compile(r"(?P<clock>\d\d:\d\d:\d\d\.\d{3}): (?:" + "|".join(_SIP_RULES) + ")?")
_CHECK_POINT = re.compile(r"Check point (?P<anchor>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")
_EXPIRED_DETAIL = re.compile(r"\s+(?P<key>AOR|Contact):\s*(?P<value>.*)$")

_HEADER_LINE = re.compile(r"(?m)^([^:\n]+):[ \t]*(.*)$")
_FULL_HEADER_NAMES = {
    "i": "call-id",
    "m": "contact",
    "f": "from",
    "t": "to",
    "v": "via",
    "l": "content-length",
    "c": "content-type",
}
"""SIP's compact header forms."""


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\r\n")


def date_from_file_name(name: str) -> datetime | None:
    """`SIP_P-001.20260202_135459_850.log` -> 2026-02-02 13:54:59.850 (None if no stamp)."""
    match = _FILE_NAME_STAMP.search(name)
    if match is None:
        return None
    try:
        return datetime.strptime("".join(match.groups()), "%Y%m%d%H%M%S%f")
    except ValueError:
        return None


def segment_order(names: Sequence[str]) -> list[str]:
    """Segments in the order they were written: by the file name's time stamp, else as given."""
    indexed = list(enumerate(names))
    indexed.sort(
        key=lambda item: (
            date_from_file_name(PureWindowsPath(item[1]).name) or datetime.min,
            item[0],
        )
    )
    return [name for _, name in indexed]


# ---------------------------------------------------------------------------------------------
# The reader


@dataclass
class _Clock:
    """The date of SIP-layer lines: from the header or file name, rolled at midnight, re-anchored
    by check points."""

    day: date | None = None
    last: datetime | None = None
    last_clock: str = ""

    def anchor(self, moment: datetime) -> None:
        self.day = moment.date()
        self.last = moment
        self.last_clock = ""

    def at(self, clock: str) -> datetime | None:
        if clock == self.last_clock:  # consecutive lines mostly share their time
            return self.last
        if self.day is None:
            return None
        try:
            moment = datetime.combine(self.day, time.fromisoformat(clock))
        except ValueError:
            return None
        self.last_clock = clock
        if self.last is not None and moment < self.last - _ROLLOVER_TOLERANCE:
            moment += timedelta(days=1)
            self.day = moment.date()
        self.last = moment
        return moment


@dataclass(slots=True)
class _Block:
    """Where a SIP block lies in a buffer."""

    marker: re.Match[bytes]
    marker_start: int
    marker_end: int
    end: int
    truncated: bool


class LogReader:
    """Parses one segment fed in pieces: `feed(bytes)` as often as needed, then `close()`.

    `name` is the segment's file name: its time stamp dates the SIP-layer lines until the header
    block or a check point says otherwise. Pieces may be single lines or arbitrary chunks; lines
    may be missing (a pre-filtered stream), which only loses what they would have said. Line
    numbers count the lines fed. Consume the events of one `feed` before the next.
    """

    def __init__(self, name: str, scope: Scope = Scope.REGISTRATIONS) -> None:
        self.name = name
        self.scope = scope
        self._candidates = (
            _CANDIDATE_REGISTRATIONS if scope is Scope.REGISTRATIONS else _CANDIDATE_EVERYTHING
        )
        self._clock = _Clock()
        stamp = date_from_file_name(PureWindowsPath(name).name)
        if stamp is not None:
            self._clock.anchor(stamp)
        self._pending = b""
        self._first_line = 1  # the line number of _pending's first byte
        self._started = False
        self._header_done = False

    def feed(self, data: bytes) -> Iterator[LogEvent]:
        buffer = self._pending + data
        if not self._started:
            if len(buffer) < 3 and b"\n" not in buffer:
                self._pending = buffer
                return
            self._started = True
            buffer = buffer.removeprefix(b"\xef\xbb\xbf")
        cut = buffer.rfind(b"\n") + 1
        if cut == 0 and len(buffer) < MAX_BLOCK_BYTES:
            self._pending = buffer
            return
        cut = cut or len(buffer)  # an absurdly long line: take it as it is
        self._pending = buffer[cut:]
        yield from self._parse(buffer[:cut], final=False)

    def close(self) -> Iterator[LogEvent]:
        buffer, self._pending = self._pending, b""
        if not self._started:
            buffer = buffer.removeprefix(b"\xef\xbb\xbf")
        self._started = True
        if buffer:
            yield from self._parse(buffer, final=True)

    # -- internals -----------------------------------------------------------------------------

    def _parse(self, buffer: bytes, *, final: bool) -> Iterator[LogEvent]:
        lines = _LineCounter(buffer, self._first_line)
        position = 0
        if not self._header_done:
            header = self._header(buffer, final)
            if header is None:  # the header block is not complete yet
                self._pending = buffer + self._pending
                return
            self._header_done = True
            event, position = header
            if event is not None:
                yield event
        check_points = self._check_points(buffer, position)
        everything = self.scope is Scope.EVERYTHING
        lf_only = b"\r" not in buffer
        closing = b"\n\n" if lf_only else b"\n\r\n"  # a line end, then a blank line
        rfind = buffer.rfind
        wire_extra = partial(buffer.count, b"\n") if lf_only else partial(_wire_extra, buffer)
        # `position` only moves forwards, over whole lines and whole SIP blocks, each block from
        # the end of the one before: only there is the log known to be outside any message, so
        # text inside one (a forged marker or log line in a header or a body) is never read.
        carry_from = len(buffer)
        search = self._candidates.search
        while True:
            match = search(buffer, position)
            kind = None if match is None else match.lastgroup
            if match is None:
                line_start = len(buffer)
            elif kind == "marker":  # its time starts the line
                line_start = match.start("clock")
            else:
                line_start = buffer.rfind(b"\n", 0, match.start()) + 1
            if check_points and check_points[0] < line_start:
                line_start, kind = check_points.popleft(), "line"
                if line_start < position:
                    continue
            elif match is None:
                break
            if everything:
                marker = _MARKER.match(buffer, line_start)
            else:
                marker = match if kind == "marker" else None
            if marker is not None:
                marker_end = marker.start("eol")
                size = int(marker["size"])
                # The common case in two C-level calls, without following the message (where it
                # fits, `_block_end` finds the same end). The message cannot reach past `top` (no
                # line is longer in the log than on the wire), so the blank line that closes it,
                # counted in `size` or just after it, is the last one before there, and the end
                # is where the lines up to that blank line, with or without it, make `size`.
                top = marker_end + 1 + size
                blank = rfind(closing, marker_end, top) if 0 < size < MAX_BLOCK_BYTES else -1
                closed = blank + len(closing)
                excess = closed - top + wire_extra(marker_end + 1, closed)
                end: int | None
                if blank >= 0 and excess == 0:  # the blank line is the message's last line
                    end, truncated = closed, False
                elif blank >= 0 and excess == 2:  # the message ends just before the blank line
                    end, truncated = blank + 1, False
                else:
                    end, truncated = _block_end(buffer, marker_end, size, lf_only, final)
                if end is None:  # it goes on beyond this buffer
                    carry_from = line_start
                    break
                if everything or (
                    buffer.find(b"REGISTER", marker_end, end) >= 0  # the regex only when it may
                    and _REGISTER_CSEQ.search(buffer, marker_end, end)
                ):
                    message = self._message(
                        buffer, _Block(marker, line_start, marker_end, end, truncated), lines
                    )
                    if everything or _is_registration(message):
                        yield message
                position = end
                continue
            line_end = buffer.find(b"\n", line_start)
            line_end = len(buffer) if line_end < 0 else line_end
            event, consumed = self._line(buffer, line_start, line_end, lines)
            position = line_end + 1 + consumed
            if event is not None:
                yield event
        if carry_from < len(buffer):
            self._pending = buffer[carry_from:] + self._pending
        self._first_line = lines.number(carry_from)

    def _header(self, buffer: bytes, final: bool) -> tuple[LogEvent | None, int] | None:
        """The segment's header block (an event, and where the log proper starts), or None when
        more bytes are needed to see its end."""
        fields: list[tuple[str, str]] = []
        position = 0
        while position < len(buffer) and position < _MAX_HEADER_BLOCK_BYTES:
            end = buffer.find(b"\n", position)
            if end < 0:
                if not final:
                    return None
                end = len(buffer)
            text = _decode(buffer[position:end])
            field_match = _HEADER_FIELD.match(text)
            if field_match is None or _SIP_EVENT.match(text):
                break
            fields.append((field_match.group("key").strip(), field_match.group("value").strip()))
            position = end + 1
        else:
            if position < _MAX_HEADER_BLOCK_BYTES and not final and fields:
                return None
        if not fields:
            return None, 0
        if buffer[position : position + 1] in (b"\n", b"\r"):  # the blank line that closes it
            position = buffer.find(b"\n", position) + 1
        local = dict(fields).get("Local time")
        moment = None
        if local:
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(local)
                self._clock.anchor(moment)
        text = _decode(buffer[:position]).strip("\n")
        return SegmentHeader(self.name, 1, moment, text, tuple(fields)), position

    def _check_points(self, buffer: bytes, start: int) -> deque[int]:
        """Line starts of check-point lines (the candidate regex cannot see them cheaply)."""
        found: deque[int] = deque()
        if self.scope is Scope.EVERYTHING:
            return found  # every line is visited anyway
        index = buffer.find(_CHECK_POINT_MARK, start)
        while index >= 0:
            found.append(buffer.rfind(b"\n", 0, index) + 1)
            index = buffer.find(_CHECK_POINT_MARK, index + 1)
        return found

    def _message(self, buffer: bytes, block: _Block, lines: _LineCounter) -> SipMessage:
        marker = block.marker
        return SipMessage(
            self.name,
            lines.number(block.marker_start),
            self._clock.at(marker.group("clock").decode()),
            _decode(buffer[block.marker_start : block.marker_end]),
            direction="received" if marker.group("verb") == b"Received" else "sent",
            transport=_decode(marker.group("transport")),
            peer_address=_decode(marker.group("address")).strip("[]"),
            peer_port=int(marker.group("port")),
            size=int(marker.group("size")),
            message=_decode(buffer[block.marker_end + 1 : block.end]).strip("\n"),
            truncated=block.truncated,
        )

    def _line(
        self, buffer: bytes, start: int, end: int, lines: _LineCounter
    ) -> tuple[LogEvent | None, int]:
        """The event for one log line, and how many bytes after it belong to it (the tab-indented
        AOR/Contact lines of an EXPIRED outcome)."""
        text = buffer[start:end].decode("utf-8", "replace").rstrip("\r")
        number = lines.number(start)
        found = _SIP_EVENT.match(text)
        if found is None:
            return self._framework_line(text, number), 0
        moment = self._clock.at(found.group("clock"))
        kind = found.lastgroup
        group = found.group
        name = self.name
        if kind == "event":
            return RegistrationEvent(name, number, moment, text, int(group("event_kind"))), 0
        if kind == "expired":
            aor, contact, consumed = _expired_detail(buffer, end + 1)
            dn = group("expired_dn") or _uri_user(aor)
            return RegistrarOutcome(
                name, number, moment, text, "EXPIRED", dn, aor, contact
            ), consumed
        if kind == "outcome":
            return RegistrarOutcome(
                name, number, moment, text, group("outcome_name"), group("outcome_dn")
            ), 0
        if kind == "obsolete":
            return RegistrarOutcome(name, number, moment, text, "OBSOLETE", group("obsolete_dn")), 0
        if kind == "sip_cti" or kind == "cti":
            fields = group(f"{kind}_fields")
            return CtiLine(
                name,
                number,
                moment,
                text,
                "$*:SIP:CTI" if kind == "sip_cti" else "$+CTI",
                group(f"{kind}_name"),
                tuple(fields.split(":")) if fields else (),
            ), 0
        if kind == "no_gateway":
            return GatewayLookup(
                name,
                number,
                moment,
                text,
                group("no_gateway_address"),
                None,
                group("no_gateway_dn"),
            ), 0
        if kind == "gateway":
            return GatewayLookup(
                name, number, moment, text, group("gateway_address"), group("gateway_name"), None
            ), 0
        if kind == "trunk":
            return TrunkAddress(name, number, moment, text, group("trunk_address")), 0
        if kind == "unresolved":
            return UnresolvedNumber(name, number, moment, text, group("unresolved_dn")), 0
        if kind == "not_configured":
            return DnNotConfigured(name, number, moment, text, group("not_configured_dn")), 0
        if kind == "transport":
            return TransportChange(
                name,
                number,
                moment,
                text,
                group("transport_device"),
                group("transport_old"),
                group("transport_new"),
            ), 0
        if kind == "domain":
            return InternalDomain(name, number, moment, text, group("domain_name")), 0
        return UnknownLine(name, number, moment, text), 0

    def _framework_line(self, text: str, number: int) -> LogEvent | None:
        framework = _FRAMEWORK_LINE.match(text)
        if framework is None:
            return UnknownLine(self.name, number, None, text) if text.strip() else None
        try:
            moment = datetime.fromisoformat(framework.group("stamp"))
        except ValueError:
            return UnknownLine(self.name, number, None, text)
        check_point = _CHECK_POINT.match(framework.group("message"))
        if framework.group("id") == "04120" and check_point:
            try:
                anchor = datetime.fromisoformat(check_point.group("anchor"))
            except ValueError:
                anchor = moment
            self._clock.anchor(anchor)
            return CheckPoint(self.name, number, moment, text, anchor)
        return FrameworkLine(
            self.name, number, moment, text, framework.group("level"), framework.group("id")
        )


def _is_registration(message: SipMessage) -> bool:
    """A REGISTER request or a response to one; not a block that only carries their text (a
    stranger's datagram whose first line is a forged marker line, say)."""
    cseq = message.cseq
    if cseq is None or cseq[1] != "REGISTER":
        return False
    return message.method == "REGISTER" if message.is_request else message.status_code is not None


def _expired_detail(buffer: bytes, start: int) -> tuple[str | None, str | None, int]:
    """The tab-indented `AOR:` and `Contact:` lines that follow `REGISTRAR: EXPIRED:`."""
    aor = contact = None
    position = start
    while position < len(buffer):
        end = buffer.find(b"\n", position)
        end = len(buffer) if end < 0 else end
        detail = _EXPIRED_DETAIL.match(_decode(buffer[position:end]))
        if detail is None:
            break
        if detail.group("key") == "AOR":
            aor = detail.group("value").strip()
        else:
            contact = detail.group("value").strip()
        position = end + 1
    return aor, contact, position - start


_MORE = -1
"""`_sized_end`: the buffer ends before it can tell."""


def _block_end(
    buffer: bytes, marker_end: int, size: int, lf_only: bool, final: bool
) -> tuple[int | None, bool]:
    """Where the SIP block whose marker line ends at `marker_end` ends (just past its last line;
    None when the buffer does not reach it), and whether it was cut short. `size` is the byte
    count of its marker line; `lf_only`: the buffer holds no CR at all.

    The server logs every message it receives or sends whole, with its size on the wire and a
    blank line after it: where the lines add up to that size, the message ends, whatever its
    Content-Length says. Where they do not (a hand-made or pre-filtered log), the blank line after
    the headers and the Content-Length tell the end.
    """
    limit = marker_end + MAX_BLOCK_BYTES
    sized = _sized_end(buffer, marker_end + 1, size, limit, lf_only, final)
    if sized == _MORE:
        return None, False
    if sized is not None:
        return sized, False
    reachable = final or len(buffer) >= limit
    headers_end = _HEADERS_END.search(buffer, marker_end, limit)
    if headers_end is None:
        return (_cut(buffer, marker_end, limit), True) if reachable else (None, False)
    if headers_end.end() == headers_end.start() + 1:  # a log line starts inside the headers
        return headers_end.start() + 1, True
    length = _CONTENT_LENGTH.search(buffer, marker_end, headers_end.start() + 1)
    body = _lines_end(buffer, headers_end.end(), int(length[1]) if length else 0, limit)
    if body is None:
        return (_cut(buffer, marker_end, limit), True) if reachable else (None, False)
    return body[0], False


def _sized_end(
    buffer: bytes, start: int, size: int, limit: int, lf_only: bool, final: bool
) -> int | None:
    """Where the lines from `start` on add up to exactly `size` bytes on the wire, when a blank
    line closes them; None when they do not; `_MORE` when the buffer ends before that can be
    told. `lf_only`: the buffer holds no CR at all."""
    if not 0 < size <= MAX_BLOCK_BYTES:
        return None
    counted = _lines_end(buffer, start, size, limit)
    if counted is None:
        return None if final or len(buffer) >= limit else _MORE
    end, wire = counted
    if wire - size not in (0, 2):  # 2: the message's last line had no CRLF
        return None
    if buffer[end - 2 : end] == b"\n\n" or buffer[end - 3 : end] == b"\n\r\n":
        return end  # its last line is the blank one (a message without a body)
    if end == len(buffer):
        return None if final else _MORE
    return end if buffer.startswith((b"\n", b"\r\n"), end) else None  # the blank line after a body


def _lines_end(buffer: bytes, start: int, size: int, limit: int) -> tuple[int, int] | None:
    """The end of the first line at which the lines from `start` make at least `size` bytes on
    the wire, with that count; None when `limit` (or the end of the buffer) comes first."""
    if size <= 0:
        return start, 0
    # Counted from a line end at or before where the count can reach `size` (each LF-ended line
    # is one byte longer on the wire), then line by line: one or two lines at most.
    guess = min(start + size, limit)
    guess -= buffer.count(b"\n", start, guess) - buffer.count(b"\r\n", start, guess)
    end = buffer.rfind(b"\n", start, guess) + 1 or start
    wire = _wire_bytes(buffer, start, end)
    while wire < size:
        line_end = buffer.find(b"\n", end, limit)
        if line_end < 0:
            return None
        carriage_return = 1 if buffer[line_end - 1 : line_end] == b"\r" else 0
        wire += line_end - end - carriage_return + 2
        end = line_end + 1
    return end, wire


def _wire_bytes(buffer: bytes, start: int, end: int) -> int:
    """The size of the lines [start, end) on the wire, where every line ends with CRLF."""
    return end - start + _wire_extra(buffer, start, end)


def _wire_extra(buffer: bytes, start: int, end: int) -> int:
    """How many bytes longer the lines [start, end) are on the wire: one per LF-ended line."""
    return buffer.count(b"\n", start, end) - buffer.count(b"\r\n", start, end)


def _cut(buffer: bytes, marker_end: int, limit: int) -> int:
    """The end of the last whole line before `limit` (a block that never ended is cut there)."""
    if limit >= len(buffer):
        return len(buffer)
    end = buffer.rfind(b"\n", marker_end, limit)
    return end + 1 if end > marker_end else limit


def _uri_user(value: str | None) -> str | None:
    if not value:
        return None
    match = re.search(r"sips?:([^@;>\s]+)@", value, re.IGNORECASE)
    return match.group(1) if match else None


class _LineCounter:
    """Line numbers of buffer positions, counted incrementally (positions mostly ascend)."""

    def __init__(self, buffer: bytes, first_line: int) -> None:
        self._buffer = buffer
        self._position = 0
        self._line = first_line

    def number(self, position: int) -> int:
        if position >= self._position:
            self._line += self._buffer.count(b"\n", self._position, position)
        else:
            self._line -= self._buffer.count(b"\n", position, self._position)
        self._position = position
        return self._line


# ---------------------------------------------------------------------------------------------
# Reading files and streams


def read_stream(
    pieces: Iterable[bytes], name: str, scope: Scope = Scope.REGISTRATIONS
) -> Iterator[LogEvent]:
    """Events of one segment given as byte pieces (lines or chunks; lines may be missing).

    `name` is the segment's file name, e.g. `SIP_P-001.20260202_135459_850.log`, for the date.
    """
    reader = LogReader(name, scope)
    for piece in pieces:
        yield from reader.feed(piece)
    yield from reader.close()


def read_logs(
    paths: Sequence[str | os.PathLike[str]], scope: Scope = Scope.REGISTRATIONS
) -> Iterator[LogEvent]:
    """Events of several segments of one application, read in the order they were written."""
    for path in segment_order([os.fspath(path) for path in paths]):
        with open(path, "rb") as handle:
            yield from read_stream(iter(partial(handle.read, CHUNK_BYTES), b""), path, scope)


# ---------------------------------------------------------------------------------------------
# Registration transactions and DN timelines


class Verdict(enum.Enum):
    """What the server made of one REGISTER."""

    ACCEPTED = "accepted"
    UNREGISTERED = "unregistered"
    REFUSED = "refused"
    NOT_CONFIGURED = "not-configured"
    NO_ANSWER = "no-answer"


_ACCEPTING_CTI = frozenset({"DN_IN_SERVICE", "DN_CONTACT_CHANGE"})
_ATTACH_WINDOW = timedelta(seconds=5)
"""Handling lines belong to a REGISTER logged at most this long before them."""
_OPEN_TRANSACTIONS = 1024
"""Transactions still waiting for a response are kept at most this many (memory stays bounded)."""


@dataclass
class RegistrationTransaction:
    """One REGISTER (with its retransmissions), what the server logged about it, its response."""

    request: SipMessage
    dn: str
    call_id: str
    cseq: int
    retransmissions: list[SipMessage] = field(default_factory=list)
    lines: list[LogEvent] = field(default_factory=list)
    response: SipMessage | None = None
    provisional: list[SipMessage] = field(default_factory=list)

    @property
    def time(self) -> datetime | None:
        return self.request.time

    @property
    def source_address(self) -> str:
        return self.request.peer_address

    @property
    def source_port(self) -> int:
        return self.request.peer_port

    @property
    def user_agent(self) -> str | None:
        return self.request.user_agent

    @property
    def contact(self) -> str | None:
        return self.request.contact

    @property
    def expires(self) -> int | None:
        return self.request.expires

    @property
    def server_events(self) -> list[int]:
        return [line.kind for line in self.lines if isinstance(line, RegistrationEvent)]

    @property
    def gateway(self) -> GatewayLookup | None:
        return next((line for line in self.lines if isinstance(line, GatewayLookup)), None)

    @property
    def outcomes(self) -> list[LogEvent]:
        """The lines that say what became of the binding."""
        return [
            line
            for line in self.lines
            if isinstance(line, RegistrarOutcome | DnNotConfigured)
            or (isinstance(line, CtiLine) and line.prefix == "$*:SIP:CTI")
        ]

    @property
    def response_code(self) -> int | None:
        return self.response.status_code if self.response else None

    @property
    def verdict(self) -> Verdict:
        code = self.response_code
        if code == 404 or any(isinstance(line, DnNotConfigured) for line in self.lines):
            return Verdict.NOT_CONFIGURED
        if code is not None and code >= 300:
            return Verdict.REFUSED
        ending = Verdict.UNREGISTERED if self.expires == 0 else Verdict.REFUSED
        decisive: Verdict | None = None
        for line in self.lines:
            if isinstance(line, RegistrarOutcome) and line.outcome == "TERMINATED":
                decisive = ending
            elif _accepts(line):
                decisive = Verdict.ACCEPTED
        if decisive is not None:
            return decisive
        events = self.server_events
        if events and events[-1] in (0, 3):
            return Verdict.ACCEPTED
        if events and events[-1] == 2:
            return ending
        if code is not None and 200 <= code < 300:
            return Verdict.UNREGISTERED if self.expires == 0 else Verdict.ACCEPTED
        return Verdict.NO_ANSWER

    @property
    def evidence(self) -> list[LogEvent]:
        """Every log line of the transaction, in log order."""
        found: list[LogEvent] = [self.request, *self.retransmissions, *self.lines]
        found.extend(self.provisional)
        if self.response is not None:
            found.append(self.response)
        return found


def _accepts(line: LogEvent) -> bool:
    if isinstance(line, RegistrarOutcome):
        return line.outcome == "ACTIVE"
    return isinstance(line, CtiLine) and line.name in _ACCEPTING_CTI


@dataclass
class BindingExpiry:
    """`SIPTS: handle registration event 1` and `REGISTRAR: EXPIRED:`: nothing refreshed it."""

    dn: str
    lines: list[LogEvent]

    @property
    def time(self) -> datetime | None:
        return self.lines[-1].time

    @property
    def evidence(self) -> list[LogEvent]:
        return list(self.lines)


TimelineEntry = RegistrationTransaction | BindingExpiry


@dataclass
class DnTimeline:
    """What happened to one DN's registration, oldest first (the latest `keep` entries)."""

    dn: str
    entries: deque[TimelineEntry]
    total: int = 0
    accepted_before: RegistrationTransaction | None = None
    """The latest accepted transaction among those too old to be kept in `entries`."""

    def append(self, entry: TimelineEntry) -> None:
        if self.entries.maxlen is not None and len(self.entries) == self.entries.maxlen:
            oldest = self.entries[0]
            if isinstance(oldest, RegistrationTransaction) and oldest.verdict is Verdict.ACCEPTED:
                self.accepted_before = oldest
        self.entries.append(entry)
        self.total += 1

    @property
    def last_accepted(self) -> RegistrationTransaction | None:
        for entry in reversed(self.entries):
            if isinstance(entry, RegistrationTransaction) and entry.verdict is Verdict.ACCEPTED:
                return entry
        return self.accepted_before


@dataclass
class SourceStats:
    """What the server made of the REGISTERs from one address, all DNs together."""

    address: str
    verdicts: dict[str, int] = field(default_factory=dict)
    gateways: set[str] = field(default_factory=set)
    no_gateway: bool = False
    user_agents: set[str] = field(default_factory=set)

    @property
    def accepted(self) -> int:
        return self.verdicts.get(Verdict.ACCEPTED.value, 0)


@dataclass
class RegistrationHistory:
    timelines: dict[str, DnTimeline]
    sources: dict[str, SourceStats]
    server_addresses: set[str]
    files: list[str]
    first_time: datetime | None
    last_time: datetime | None
    events: int


class RegistrationTracker:
    """Builds transactions and timelines from events fed in log order (`add`, then `finish`).

    `dns` limits the timelines kept (None: every DN); each keeps its latest `keep` entries.
    """

    def __init__(self, dns: Iterable[str] | None = None, keep: int = 50) -> None:
        self._wanted = None if dns is None else set(dns)
        self._keep = keep
        self._timelines: dict[str, DnTimeline] = {}
        self._sources: dict[str, SourceStats] = {}
        self._open: OrderedDict[tuple[str, int], RegistrationTransaction] = OrderedDict()
        self._latest_by_dn: dict[str, RegistrationTransaction] = {}
        self._current: RegistrationTransaction | None = None
        self._expiry: list[LogEvent] = []
        self._server_addresses: set[str] = set()
        self._files: list[str] = []
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._events = 0

    def add(self, event: LogEvent) -> None:
        self._events += 1
        if not self._files or self._files[-1] != event.file:
            self._files.append(event.file)
        if event.time is not None:
            self._first = self._first or event.time
            self._last = event.time if self._last is None else max(self._last, event.time)
        if isinstance(event, SipMessage):
            self._message(event)
        elif isinstance(event, RegistrationEvent) and event.kind == 1:
            self._expiry = [event]
        elif isinstance(event, RegistrarOutcome) and event.outcome == "EXPIRED":
            self._expired(event)
        elif isinstance(event, InternalDomain):
            self._server_addresses.add(event.domain)
            self._attach(event, None)
        elif isinstance(event, RegistrarOutcome | UnresolvedNumber | DnNotConfigured):
            self._attach(event, event.dn)
        elif isinstance(event, GatewayLookup):
            self._attach(event, event.number)
        elif isinstance(event, RegistrationEvent | CtiLine | TrunkAddress | TransportChange):
            self._attach(event, None)

    def finish(self) -> RegistrationHistory:
        for transaction in self._open.values():
            self._close(transaction)
        self._open.clear()
        return RegistrationHistory(
            timelines=self._timelines,
            sources=self._sources,
            server_addresses=self._server_addresses,
            files=self._files,
            first_time=self._first,
            last_time=self._last,
            events=self._events,
        )

    def _message(self, message: SipMessage) -> None:
        cseq = message.cseq
        call_id = message.call_id
        if cseq is None or call_id is None or not _is_registration(message):
            return
        key = (call_id, cseq[0])
        if message.direction == "sent":
            if not message.is_request:
                self._response(key, message)
            return
        if not message.is_request:
            return
        known = self._open.get(key)
        if known is not None:
            known.retransmissions.append(message)
            self._current = known
            return
        dn = message.to_user or "?"
        transaction = RegistrationTransaction(message, dn, call_id, cseq[0])
        self._open[key] = transaction
        if len(self._open) > _OPEN_TRANSACTIONS:
            self._close(self._open.popitem(last=False)[1])
        self._current = transaction
        self._latest_by_dn[dn] = transaction
        if self._wanted is None or dn in self._wanted:
            timeline = self._timelines.get(dn)
            if timeline is None:
                timeline = self._timelines[dn] = DnTimeline(dn, deque(maxlen=self._keep))
            timeline.append(transaction)

    def _response(self, key: tuple[str, int], message: SipMessage) -> None:
        transaction = self._open.get(key)
        if transaction is None:
            return
        code = message.status_code or 0
        if code < 200:
            transaction.provisional.append(message)
        elif transaction.response is None:
            transaction.response = message

    def _attach(self, event: LogEvent, dn: str | None) -> None:
        owner = self._current
        if dn is not None and (owner is None or owner.dn != dn):
            owner = self._latest_by_dn.get(dn)
        if owner is None:
            return
        latest = owner.retransmissions[-1] if owner.retransmissions else owner.request
        if not _close_in_time(latest.time, event.time):
            return
        owner.lines.append(event)

    def _expired(self, outcome: RegistrarOutcome) -> None:
        lines = [*self._expiry, outcome]
        self._expiry = []
        dn = outcome.dn or "?"
        if self._wanted is None or dn in self._wanted:
            timeline = self._timelines.get(dn)
            if timeline is None:
                timeline = self._timelines[dn] = DnTimeline(dn, deque(maxlen=self._keep))
            timeline.append(BindingExpiry(dn, lines))

    def _close(self, transaction: RegistrationTransaction) -> None:
        """Count the finished transaction in its source's statistics."""
        stats = self._sources.get(transaction.source_address)
        if stats is None:
            stats = self._sources[transaction.source_address] = SourceStats(
                transaction.source_address
            )
        verdict = transaction.verdict
        stats.verdicts[verdict.value] = stats.verdicts.get(verdict.value, 0) + 1
        if transaction.user_agent:
            stats.user_agents.add(transaction.user_agent)
        gateway = transaction.gateway
        if gateway is not None and gateway.gateway is not None:
            stats.gateways.add(gateway.gateway)
        elif gateway is not None:
            stats.no_gateway = True


def _close_in_time(start: datetime | None, moment: datetime | None) -> bool:
    if start is None or moment is None:
        return True
    return timedelta(0) - _ROLLOVER_TOLERANCE <= moment - start <= _ATTACH_WINDOW


def registrations(
    events: Iterable[LogEvent], dns: Iterable[str] | None = None, keep: int = 50
) -> RegistrationHistory:
    """Transactions and timelines of `dns` (None: every DN) from events in log order."""
    tracker = RegistrationTracker(dns, keep)
    for event in events:
        tracker.add(event)
    return tracker.finish()
