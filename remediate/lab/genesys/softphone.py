"""The Genesys softphone on the SIP Server host: registers DNs 1002 and 1003 from
genesys_host:softphone_port with `User-Agent: Genesys-Softphone/9.0.014.13`.

It refreshes each registration before it expires, retransmits unanswered REGISTERs (0.5 s, 1 s,
2 s apart) and retries a failed one after `retry_interval`; `register_now()` (called by the host
when TSrvSIP64 reaches Running) re-registers at once, so the baseline DNs come back after a restart.
It answers OPTIONS with 200 OK.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

from remediate.lab.genesys.registrar import ListenError
from remediate.lab.layout import LabAddresses
from remediate.lab.sip import (
    SipMessage,
    SipParseError,
    build_request,
    build_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    parse_name_addr,
)

USER_AGENT = "Genesys-Softphone/9.0.014.13"
SOFTPHONE_DNS = ("1002", "1003")
DEFAULT_EXPIRES = 1800
RETRANSMIT_INTERVALS = (0.5, 1.0, 2.0)  # RFC 3261 Timer E doubling from T1
GIVE_UP_AFTER = 4.0
DEFAULT_RETRY_INTERVAL = 5.0
POLL_SECONDS = 0.05
ALLOW = "INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE"


@dataclass
class Line:
    dn: str
    call_id: str
    from_tag: str = field(default_factory=new_tag)
    cseq: int = 0
    next_register_at: float = 0.0
    pending: bytes | None = None
    pending_sent_at: float = 0.0
    retransmissions: int = 0
    attempts: int = 0


class Softphone:
    def __init__(
        self,
        addresses: LabAddresses,
        *,
        expires: int = DEFAULT_EXPIRES,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
    ) -> None:
        self._addresses = addresses
        self._expires = expires
        self._retry_interval = retry_interval
        self._local = (addresses.genesys_host, addresses.softphone_port)
        self._registrar = (addresses.genesys_host, addresses.sip_port)
        self._lines = {dn: Line(dn, new_call_id(addresses.genesys_host)) for dn in SOFTPHONE_DNS}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._local

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(self._local)
        except OSError as error:
            sock.close()
            raise ListenError("UDP", self._local, error) from error
        sock.settimeout(POLL_SECONDS)
        self._socket = sock
        self._thread = threading.Thread(target=self._run, name="softphone", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def register_now(self) -> None:
        """Re-register every line at once (the SIP Server has just started)."""
        with self._lock:
            for line in self._lines.values():
                line.pending = None
                line.next_register_at = 0.0

    def wait_first_attempts(self, timeout: float) -> bool:
        """Wait until every line has had one REGISTER answered or given up on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(line.attempts > 0 for line in self._lines.values()):
                    return True
            time.sleep(POLL_SECONDS)
        return False

    def _run(self) -> None:
        assert self._socket is not None
        sock = self._socket
        while not self._stop.is_set():
            self._timers(sock)
            try:
                data, source = sock.recvfrom(65535)
            except (TimeoutError, ConnectionError):
                continue  # ConnectionError: an ICMP port-unreachable from a stopped registrar
            except OSError:
                return
            try:
                message = parse_message(data)
            except SipParseError:
                continue
            if message.is_request:
                if message.method == "OPTIONS":
                    sock.sendto(
                        build_response(
                            message, 200, "OK", to_tag=new_tag(), headers=[("Allow", ALLOW)]
                        ),
                        source,
                    )
                continue
            self._on_response(message.header("Call-ID"), message)

    def _register_request(self, line: Line) -> bytes:
        host, port = self._local
        registrar = f"{self._registrar[0]}:{self._registrar[1]}"
        line.cseq += 1
        return build_request(
            "REGISTER",
            f"sip:{registrar}",
            [
                ("Via", f"SIP/2.0/UDP {host}:{port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("Contact", f"<sip:{line.dn}@{host}:{port};transport=udp>"),
                ("To", f"<sip:{line.dn}@{registrar}>"),
                ("From", f"<sip:{line.dn}@{registrar}>;tag={line.from_tag}"),
                ("Call-ID", line.call_id),
                ("CSeq", f"{line.cseq} REGISTER"),
                ("Expires", str(self._expires)),
                ("Allow", ALLOW),
                ("User-Agent", USER_AGENT),
            ],
        )

    def _timers(self, sock: socket.socket) -> None:
        now = time.monotonic()
        with self._lock:
            for line in self._lines.values():
                if line.pending is not None:
                    elapsed = now - line.pending_sent_at
                    if elapsed >= GIVE_UP_AFTER:
                        line.pending = None
                        line.attempts += 1
                        line.next_register_at = now + self._retry_interval
                    elif line.retransmissions < len(RETRANSMIT_INTERVALS) and elapsed >= sum(
                        RETRANSMIT_INTERVALS[: line.retransmissions + 1]
                    ):
                        line.retransmissions += 1
                        self._send(sock, line.pending)
                elif now >= line.next_register_at:
                    line.pending = self._register_request(line)
                    line.pending_sent_at = now
                    line.retransmissions = 0
                    self._send(sock, line.pending)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        # the registrar's port is closed (service stopped): retried like silence
        with contextlib.suppress(OSError):
            sock.sendto(data, self._registrar)

    def _on_response(self, call_id: str | None, response: SipMessage) -> None:
        now = time.monotonic()
        with self._lock:
            line = next((ln for ln in self._lines.values() if ln.call_id == call_id), None)
            if line is None or line.pending is None or response.cseq_number != line.cseq:
                return
            if response.status_code < 200:
                return
            line.pending = None
            line.attempts += 1
            if response.status_code == 200:
                granted = self._granted_expires(response, line.dn)
                # refresh ahead of expiry, as real user agents do
                line.next_register_at = now + max(1.0, granted - min(granted / 2, 30.0))
            else:
                line.next_register_at = now + self._retry_interval

    def _granted_expires(self, response: SipMessage, dn: str) -> float:
        """The expiry the registrar granted to this line's contact (ours when it names none)."""
        for value in response.header_values("Contact"):
            try:
                contact = parse_name_addr(value)
            except SipParseError:
                continue
            if contact.expires is not None and contact.uri.startswith(f"sip:{dn}@"):
                return float(contact.expires)
        return float(self._expires)
