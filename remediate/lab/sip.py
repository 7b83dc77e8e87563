"""A small RFC 3261 message module for the lab: parse and build SIP requests and responses.

It covers what the lab's registrar, softphone and gateway user agents exchange over UDP: start
lines, headers in long and compact form, folded (multi-line) header values, comma-separated header
lists (Via, Contact, ...), Content-Length, name-addr and SIP URIs with parameters. Anything that is
not a well-formed SIP message raises `SipParseError` (a `ValueError`) and nothing else.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"

# RFC 3261 section 7.3.3 (and RFC 3841/4028 for the rarer ones kept out): compact form -> long form.
COMPACT_FORMS: dict[str, str] = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
}

# Headers whose grammar is a comma-separated list (RFC 3261 section 7.3.1); every other header's
# value is taken whole, because a comma may legitimately appear inside it (e.g. a Date).
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
    )
)

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ?(.*)$")
_DECIMAL = re.compile(r"^[0-9]{1,10}$")  # a CSeq number may be up to 2**31 - 1 (RFC 3261 8.1.1.5)
_MAX_CSEQ = 2**31 - 1
_MAX_CONTENT_LENGTH = 65535


def _is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts characters int() refuses (e.g. '²')."""
    return bool(_DECIMAL.match(text))


class SipParseError(ValueError):
    """The bytes are not a well-formed SIP message (or a URI/name-addr is malformed)."""


def canonical_name(name: str) -> str:
    """The long form of a header name, lower-cased: the key used for comparisons."""
    lowered = name.strip().lower()
    return COMPACT_FORMS.get(lowered, lowered).lower()


@dataclass
class SipMessage:
    start_line: str
    headers: list[tuple[str, str]]  # in order, names as received, values unfolded
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of the header `name` (long or compact form, any case), or None."""
        wanted = canonical_name(name)
        for header_name, value in self.headers:
            if canonical_name(header_name) == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of `name`; list headers (Via, Contact, ...) split at top-level commas."""
        wanted = canonical_name(name)
        values: list[str] = []
        for header_name, value in self.headers:
            if canonical_name(header_name) != wanted:
                continue
            if wanted in LIST_HEADERS:
                values.extend(split_header_list(value))
            else:
                values.append(value)
        return values

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith(SIP_VERSION + " ")

    @property
    def method(self) -> str:
        """The request's method; for a response, the method of its CSeq."""
        if self.is_request:
            return self.start_line.split(" ", 1)[0]
        cseq = self.header("CSeq") or ""
        parts = cseq.split()
        return parts[1] if len(parts) == 2 else ""

    @property
    def request_uri(self) -> str:
        if not self.is_request:
            raise AttributeError("a response has no Request-URI")
        return self.start_line.split(" ")[1]

    @property
    def status_code(self) -> int:
        if self.is_request:
            raise AttributeError("a request has no status code")
        return int(self.start_line.split(" ")[1])

    @property
    def reason(self) -> str:
        if self.is_request:
            raise AttributeError("a request has no reason phrase")
        parts = self.start_line.split(" ", 2)
        return parts[2] if len(parts) == 3 else ""

    @property
    def cseq_number(self) -> int:
        cseq = self.header("CSeq") or ""
        number = cseq.split()[0] if cseq.split() else ""
        if not _is_decimal(number):
            raise SipParseError(f"bad CSeq {cseq!r}")
        return int(number)

    def to_bytes(self) -> bytes:
        lines = [self.start_line, *(f"{name}: {value}" for name, value in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def split_header_list(value: str) -> list[str]:
    """Split at commas that are outside quotes and angle brackets; drop empty elements."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    in_brackets = False
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
            continue
        if in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif not in_quotes and char == "<":
            in_brackets = True
        elif not in_quotes and char == ">":
            in_brackets = False
        elif char == "," and not in_quotes and not in_brackets:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def _validate_start_line(line: str) -> None:
    if line.startswith("SIP/"):
        if not _STATUS_LINE.match(line):
            raise SipParseError(f"bad status line {line!r}")
        return
    parts = line.split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1] or parts[2] != SIP_VERSION:
        raise SipParseError(f"bad request line {line!r}")
    if ":" not in parts[1]:
        raise SipParseError(f"bad Request-URI {parts[1]!r}")


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP message (CRLF or LF line ends, folded headers, Content-Length honoured)."""
    if not isinstance(data, bytes | bytearray):
        raise SipParseError("a SIP message is bytes")
    data = bytes(data).lstrip(b"\r\n")  # RFC 3261 7.5: ignore CRLFs before the start line
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None:
        raise SipParseError("no blank line after the headers")
    head, rest = data[: match.start()], data[match.end() :]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SipParseError(f"headers are not UTF-8: {error}") from None
    raw_lines = re.split(r"\r?\n", text)
    start_line = raw_lines[0].strip()
    _validate_start_line(start_line)
    unfolded: list[str] = []
    for line in raw_lines[1:]:
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError("a continuation line before any header")
            unfolded[-1] = unfolded[-1].rstrip() + " " + line.strip()
        else:
            unfolded.append(line)
    headers: list[tuple[str, str]] = []
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line!r}")
        headers.append((name, value.strip()))
    message = SipMessage(start_line, headers, b"")
    for required in ("Via", "From", "To", "Call-ID", "CSeq"):
        if message.header(required) is None:
            raise SipParseError(f"missing {required} header")
    cseq = (message.header("CSeq") or "").split()
    if (
        len(cseq) != 2
        or not _is_decimal(cseq[0])
        or int(cseq[0]) > _MAX_CSEQ
        or not _TOKEN.match(cseq[1])
    ):
        raise SipParseError(f"bad CSeq {message.header('CSeq')!r}")
    if message.is_request and cseq[1] != message.method:
        raise SipParseError(f"CSeq method {cseq[1]} does not match {message.method}")
    length_text = message.header("Content-Length")
    if length_text is None:
        message.body = rest
    else:
        if not _is_decimal(length_text) or int(length_text) > _MAX_CONTENT_LENGTH:
            raise SipParseError(f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > len(rest):
            raise SipParseError(f"Content-Length {length} but only {len(rest)} body bytes")
        message.body = rest[:length]
    return message


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    password: str | None = None

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        params = "".join(
            f";{key}" if value is None else f";{key}={value}" for key, value in self.params.items()
        )
        return f"{self.scheme}:{userinfo}{self.hostport}{params}"


def _parse_params(text: str) -> dict[str, str | None]:
    """`;a=1;b` -> {'a': '1', 'b': None}; names are lower-cased, values kept (quotes stripped)."""
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        key, equals, value = item.partition("=")
        key = key.strip().lower()
        if not _TOKEN.match(key):
            raise SipParseError(f"bad parameter {item!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[key] = value if equals else None
    return params


def parse_uri(uri: str) -> SipUri:
    """Parse `sip:user:password@host:port;param=value?headers` (sip and sips schemes)."""
    text = uri.strip()
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise SipParseError(f"not a SIP URI: {uri!r}")
    rest = rest.split("?", 1)[0]
    userinfo, at, hostpart = rest.rpartition("@")
    user: str | None = None
    password: str | None = None
    if at:
        user, has_password, secret = userinfo.partition(":")
        password = secret if has_password else None
        if not user:
            raise SipParseError(f"empty user in {uri!r}")
    hostport, _, params_text = hostpart.partition(";")
    if hostport.startswith("["):
        host, bracket, after = hostport.partition("]")
        if not bracket:
            raise SipParseError(f"bad IPv6 host in {uri!r}")
        host += "]"
        port_text = after[1:] if after.startswith(":") else ""
        if after and not after.startswith(":"):
            raise SipParseError(f"bad host in {uri!r}")
    else:
        host, _, port_text = hostport.partition(":")
    if not host or not re.match(r"^[A-Za-z0-9.\-\[\]:]+$", host):
        raise SipParseError(f"bad host in {uri!r}")
    port: int | None = None
    if port_text:
        if not _is_decimal(port_text) or not 0 < int(port_text) < 65536:
            raise SipParseError(f"bad port in {uri!r}")
        port = int(port_text)
    return SipUri(scheme.lower(), user, host, port, _parse_params(params_text), password)


@dataclass(frozen=True)
class NameAddr:
    display_name: str | None
    uri: str  # "*" for a wildcard Contact
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_wildcard(self) -> bool:
        return self.uri == "*"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        return int(value) if value is not None and _is_decimal(value) else None

    def parsed_uri(self) -> SipUri:
        return parse_uri(self.uri)

    def __str__(self) -> str:
        if self.is_wildcard:
            return "*"
        name = f'"{self.display_name}" ' if self.display_name else ""
        params = "".join(
            f";{key}" if value is None else f";{key}={value}" for key, value in self.params.items()
        )
        return f"{name}<{self.uri}>{params}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse a From/To/Contact value: `"Name" <uri>;params`, `Name <uri>;params`, `uri;params`, `*`.

    In the addr-spec form (no angle brackets) the parameters after the URI belong to the header,
    as RFC 3261 section 20.10 says.
    """
    text = value.strip()
    if text == "*":
        return NameAddr(None, "*")
    display_name: str | None = None
    if text.startswith('"'):
        match = re.match(r'^"((?:[^"\\]|\\.)*)"\s*', text)
        if match is None:
            raise SipParseError(f"unterminated display name in {value!r}")
        display_name = re.sub(r"\\(.)", r"\1", match.group(1))
        text = text[match.end() :]
        if not text.startswith("<"):
            raise SipParseError(f"display name without <uri> in {value!r}")
    if "<" in text:
        before, _, after = text.partition("<")
        uri, closing, params_text = after.partition(">")
        if not closing:
            raise SipParseError(f"missing '>' in {value!r}")
        if display_name is None and before.strip():
            display_name = before.strip()
        if params_text.strip() and not params_text.strip().startswith(";"):
            raise SipParseError(f"junk after '>' in {value!r}")
    else:
        uri, _, params_text = text.partition(";")
        params_text = ";" + params_text if params_text else ""
    uri = uri.strip()
    parse_uri(uri)
    return NameAddr(display_name or None, uri, _parse_params(params_text))


def with_tag(value: str, tag: str) -> str:
    """A To/From value with `;tag=` added, unless it already has a tag."""
    if parse_name_addr(value).tag is not None:
        return value
    return f"{value};tag={tag}"


def _content_length_headers(headers: Iterable[tuple[str, str]], body: bytes) -> list[str]:
    lines = [
        f"{name}: {value}" for name, value in headers if canonical_name(name) != "content-length"
    ]
    lines.append(f"Content-Length: {len(body)}")
    return lines


def build_request(
    method: str, uri: str, headers: Sequence[tuple[str, str]], body: bytes = b""
) -> bytes:
    """A request with the given headers in order; Content-Length is always set from the body."""
    if not _TOKEN.match(method):
        raise SipParseError(f"bad method {method!r}")
    lines = [f"{method} {uri} {SIP_VERSION}", *_content_length_headers(headers, body)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def build_response(
    request: SipMessage,
    code: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    received: tuple[str, int] | None = None,
    body: bytes = b"",
) -> bytes:
    """A response to `request` (RFC 3261 section 8.2.6): Via(s), From, To, Call-ID, CSeq copied.

    `to_tag` is added to To unless it already carries one. `received` is the packet's source
    address: the top Via gets `received=` when its sent-by host differs, and `rport=` filled in
    when the client asked for it (RFC 3581).
    """
    vias = request.header_values("Via")
    if received is not None and vias:
        vias[0] = _stamp_via(vias[0], *received)
    copied: list[tuple[str, str]] = [("Via", via) for via in vias]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.header(name)
        if value is None:
            raise SipParseError(f"cannot answer a request without {name}")
        if name == "To" and to_tag is not None:
            value = with_tag(value, to_tag)
        copied.append((name, value))
    lines = [f"{SIP_VERSION} {code} {reason}", *_content_length_headers([*copied, *headers], body)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def _stamp_via(via: str, host: str, port: int) -> str:
    protocol, _, rest = via.partition(" ")
    sent_by, _, params_text = rest.strip().partition(";")
    params = _parse_params(params_text)
    sent_host = sent_by.strip().rsplit(":", 1)[0] if "]" not in sent_by else sent_by.split("]")[0]
    if sent_host.strip("[]") != host:
        params["received"] = host
    if "rport" in params:
        params["rport"] = str(port)
        params["received"] = host
    rendered = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
    return f"{protocol} {sent_by.strip()}{rendered}"


def via_sent_by(via: str) -> tuple[str, int]:
    """The (host, port) a Via's sent-by names; the port defaults to 5060."""
    _protocol, _, rest = via.partition(" ")
    sent_by = rest.strip().split(";", 1)[0].strip()
    host, _, port = sent_by.rpartition(":") if sent_by.count(":") == 1 else (sent_by, "", "")
    if not _is_decimal(port):
        return sent_by, 5060
    return host, int(port)


def via_branch(via: str) -> str | None:
    _sent_by, _, params_text = via.partition(";")
    return _parse_params(params_text).get("branch")


def new_branch() -> str:
    """A Via branch with RFC 3261's magic cookie."""
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"
