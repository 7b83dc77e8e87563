"""SIP Server's registrar on UDP: REGISTER and OPTIONS as DESIGN 2.1 describes, and trunk probes.

Decisions follow the configuration read at the service start (`RegistrarConfig`):

- the DN (the To URI's user) must be configured, else `GetRegistration::Unable to resolve number
  for DN:N` + `DN N is not configured or disabled in CME. Registration attempt rejected` and
  `404 Not Found`; an un-registration for such a DN gets no answer at all (the sender retransmits);
- a REGISTER is accepted from the server's own address, from an address a Trunk DN's `contact`
  names (`gateway '<trunk>' associated with address '<ip>'`), or from an address the switch annex's
  trusted-gateway option lists; from anywhere else SIP Server logs `no gateway is found ...`,
  event 2 and `REGISTRAR: TERMINATED:<dn>`, answers `403 Forbidden` and takes the DN out of service;
- accepted: event 0 for a new binding (`DN_IN_SERVICE`), 3 for a refresh, 0 with `OBSOLETE
  REGISTRATION FOUND` and `DN_CONTACT_CHANGE` when another contact replaces the binding, 2 with
  `TERMINATED` for an un-registration (`Expires: 0`); an un-registration of a contact that is not
  bound is answered `200 OK` with no handling lines; a binding that lapses logs event 1 and
  `REGISTRAR: EXPIRED:` with tab-indented `AOR:` and `Contact:` lines.

A Trunk DN with `oos-check` > 0 is probed with OPTIONS every `oos-check` seconds (the lab's
wording, as SIP Server's own is not documented):
  `TRUNK[<name>]: OOS check: <code> <reason> from <ip>:<port>: in service` on any response, and
  `TRUNK[<name>]: OOS check: no response from <ip>:<port> in <n> s: out of service` otherwise.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from remediate.lab.genesys.cme import RegistrarConfig, Trunk
from remediate.lab.genesys.logwriter import (
    CHECKPOINT_INTERVAL_SECONDS,
    SipServerLog,
    Transaction,
    full_timestamp,
    host_now,
)
from remediate.lab.layout import LabAddresses
from remediate.lab.sip import (
    NameAddr,
    SipMessage,
    SipParseError,
    build_request,
    build_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    parse_name_addr,
    parse_uri,
)

DEFAULT_EXPIRES = 3600
MAX_EXPIRES = 3600
TRANSACTION_MEMORY_SECONDS = 32.0  # RFC 3261 Timer J: answer retransmissions from the cache
MAX_PROBE_WAIT_SECONDS = 4.0
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, NOTIFY, REFER, UPDATE, SUBSCRIBE"
RECEIVE_POLL_SECONDS = 0.1
TICK_SECONDS = 0.05  # timers' resolution: expiry, probes, the check point

FaultReader = Callable[[], frozenset[str]]


class ListenError(OSError):
    """A socket of the Genesys host cannot be bound (the port is taken, the address is missing)."""

    def __init__(self, protocol: str, address: tuple[str, int], error: OSError) -> None:
        super().__init__(f"cannot bind {protocol} {address[0]}:{address[1]}: {error.strerror}")
        self.address = address


@dataclass
class Binding:
    dn: str
    aor: str
    contact: str  # the contact's URI
    source: tuple[str, int]
    expires: int
    expires_at: float  # time.monotonic()
    user_agent: str
    device: int
    dialog: int
    registered_at: str = field(default_factory=lambda: full_timestamp(host_now()))

    def as_status(self) -> dict[str, Any]:
        remaining = max(0, int(self.expires_at - time.monotonic()))
        return {
            "aor": self.aor,
            "contact": self.contact,
            "source": f"{self.source[0]}:{self.source[1]}",
            "expires": self.expires,
            "expires_in": remaining,
            "user_agent": self.user_agent,
            "registered_at": self.registered_at,
        }


@dataclass
class TrunkState:
    trunk: Trunk
    state: str = "unknown"  # "in-service", "out-of-service"
    next_probe_at: float = 0.0
    pending_call_id: str | None = None
    probe_deadline: float = 0.0
    last_result: str = ""

    def as_status(self) -> dict[str, Any]:
        return {
            "contact": f"{self.trunk.contact_host}:{self.trunk.contact_port}",
            "prefix": self.trunk.prefix,
            "oos_check": self.trunk.oos_check,
            "state": self.state,
            "last_result": self.last_result,
        }


class Registrar:
    """A service run's registrar: `open` binds UDP and serves, `close` stops, drops bindings."""

    def __init__(
        self,
        addresses: LabAddresses,
        log: SipServerLog,
        faults: FaultReader,
        on_change: Callable[[], None],
        *,
        checkpoint_interval: float = CHECKPOINT_INTERVAL_SECONDS,
    ) -> None:
        self._addresses = addresses
        self._log = log
        self._faults = faults
        self._on_change = on_change
        self._checkpoint_interval = checkpoint_interval
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._config = RegistrarConfig(frozenset(), (), frozenset())
        self._bindings: dict[str, Binding] = {}
        self._trunks: dict[str, TrunkState] = {}
        self._devices: dict[str, int] = {}
        self._transports: dict[int, tuple[str, int]] = {}
        self._answered: dict[tuple[str, str, str], tuple[float, bytes | None]] = {}
        self._next_dialog = 1
        self._cti_reference = 100

    @property
    def address(self) -> tuple[str, int]:
        return (self._addresses.genesys_host, self._addresses.sip_port)

    def open(self, config: RegistrarConfig) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
        except OSError as error:
            sock.close()
            raise ListenError("UDP", self.address, error) from error
        # A burst of REGISTERs must not overflow the kernel's queue while a transaction is logged.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.settimeout(RECEIVE_POLL_SECONDS)
        now = time.monotonic()
        with self._lock:
            self._config = config
            self._bindings.clear()
            self._devices.clear()
            self._transports.clear()
            self._answered.clear()
            self._trunks = {
                trunk.name: TrunkState(trunk, next_probe_at=now)
                for trunk in config.trunks
                if trunk.oos_check > 0
            }
            self._socket = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="sip-registrar", daemon=True)
        self._thread.start()
        self._on_change()

    def close(self) -> None:
        """Stop answering and forget every binding (a stopped SIP Server keeps none)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            self._bindings.clear()
            self._trunks.clear()
        self._on_change()

    @property
    def listening(self) -> bool:
        return self._socket is not None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "bindings": {dn: b.as_status() for dn, b in sorted(self._bindings.items())},
                "in_service": sorted(self._bindings),
                "trunks": {name: t.as_status() for name, t in sorted(self._trunks.items())},
            }

    # The receive loop: one thread handles every message and the timers, so state needs no
    # locking against itself; the lock only guards status() readers.
    def _serve(self) -> None:
        assert self._socket is not None
        sock = self._socket
        last_tick = 0.0
        while not self._stop.is_set():
            try:
                data, source = sock.recvfrom(65535)
            except (TimeoutError, ConnectionError):  # ConnectionError: an ICMP unreachable
                data = b""
            except OSError:
                return
            if data and "registrar-silent" not in self._faults():
                try:
                    self._handle(data, source)
                except OSError:
                    if self._stop.is_set():
                        return
                except Exception:  # a lab bug must not silence the registrar: report, go on
                    traceback.print_exc()
            now = time.monotonic()
            if now - last_tick >= TICK_SECONDS:
                last_tick = now
                self._tick()

    def _send(self, data: bytes, destination: tuple[str, int]) -> None:
        if self._socket is not None:
            self._socket.sendto(data, destination)

    def _handle(self, data: bytes, source: tuple[str, int]) -> None:
        # The transaction is in the log before its response leaves: whoever reads the log after
        # the answer arrived finds it there.
        with self._log.transaction() as log:
            response = self._answer(data, source, log)
            if response is not None:
                log.sending(response, source)
        if response is not None:
            self._send(response, source)

    def _answer(self, data: bytes, source: tuple[str, int], log: Transaction) -> bytes | None:
        log.received(data, source)
        try:
            message = parse_message(data)
        except SipParseError as error:
            log.sip(f"SIPTR: message from {source[0]}:{source[1]} dropped: {error}")
            return None
        if not message.is_request:
            self._handle_response(message, log)
            return None
        key = (
            message.header("Call-ID") or "",
            message.header("CSeq") or "",
            message.header_values("Via")[0],
        )
        if key in self._answered:
            return self._answered[key][1]  # a retransmission: the same answer, or silence again
        if message.method == "REGISTER":
            response = self._register(message, source, log)
        elif message.method == "OPTIONS":
            response = build_response(
                message,
                200,
                "OK",
                to_tag=new_tag(),
                headers=[("Allow", ALLOW), ("Accept", "application/sdp")],
                received=source,
            )
        elif message.method == "ACK":
            return None
        else:
            response = build_response(
                message, 501, "Not Implemented", to_tag=new_tag(), received=source
            )
        self._answered[key] = (time.monotonic(), response)
        return response

    def _register(
        self, message: SipMessage, source: tuple[str, int], log: Transaction
    ) -> bytes | None:
        def answer(code: int, reason: str, headers: list[tuple[str, str]] | None = None) -> bytes:
            return build_response(
                message, code, reason, to_tag=new_tag(), headers=headers or [], received=source
            )

        try:
            to = parse_name_addr(message.header("To") or "")
            aor_uri = parse_uri(to.uri)
            contacts = [parse_name_addr(value) for value in message.header_values("Contact")]
            expires_header = message.header("Expires")
        except SipParseError:
            return answer(400, "Bad Request")
        if expires_header is not None and not re.fullmatch(r"[0-9]{1,10}", expires_header):
            return answer(400, "Bad Request")
        default_expires = int(expires_header) if expires_header is not None else None
        dn = aor_uri.user
        if not dn:
            return answer(400, "Bad Request")
        if any(c.is_wildcard for c in contacts) and (len(contacts) > 1 or default_expires != 0):
            return answer(400, "Bad Request")
        if not contacts:  # a query: list the current binding
            binding = self._bindings.get(dn)
            return answer(200, "OK", self._contact_headers(binding))
        contact = contacts[0]
        expires = self._expires(contact, default_expires)
        unregister = expires == 0
        if dn not in self._config.registrable_dns:
            log.sip(f"GetRegistration::Unable to resolve number for DN:{dn}")
            log.sip(f"DN {dn} is not configured or disabled in CME. Registration attempt rejected")
            return None if unregister else answer(404, "Not Found")
        binding = self._bindings.get(dn)
        if unregister and (
            binding is None or not (contact.is_wildcard or contact.uri == binding.contact)
        ):
            return answer(200, "OK", self._contact_headers(binding))
        ip = source[0]
        log.sip(f"Unable to resolve number for DN:{dn}")
        log.sip(f"trunk ip addr {ip}")
        trunk = self._config.trunk_for_address(ip)
        if trunk is not None:
            log.sip(f"gateway '{trunk.name}' associated with address '{ip}'")
        else:
            log.sip(f"no gateway is found using address '{ip}' for number '{dn}'")
        trusted = (
            ip == self._addresses.genesys_host
            or trunk is not None
            or ip in self._config.trusted_addresses
        )
        if not trusted or unregister:
            log.sip("SIPTS: handle registration event 2")
            log.sip(f"REGISTRAR: TERMINATED:{dn}")
            self._remove_binding(dn, log)
            if not trusted:
                return answer(403, "Forbidden")
            return answer(200, "OK")
        device = self._devices.setdefault(dn, len(self._devices) + 3)
        refresh = (
            binding is not None and binding.contact == contact.uri and binding.source == source
        )
        new_binding = Binding(
            dn=dn,
            aor=str(aor_uri),
            contact=contact.uri,
            source=source,
            expires=expires,
            expires_at=time.monotonic() + expires,
            user_agent=message.header("User-Agent") or "",
            device=device,
            dialog=binding.dialog if refresh and binding is not None else self._new_dialog(),
        )
        if refresh:
            log.sip("SIPTS: handle registration event 3")
        else:
            previous = self._transports.get(device)
            before = f"{previous[0]}:{previous[1]}:1" if previous else ":0:0"
            if previous != source:
                log.sip(
                    f"Assocaited transport for the device [{device}] changed from [{before}] "
                    f"to [{source[0]}:{source[1]}:1]"
                )
                self._transports[device] = source
            log.sip(f"TRNMNGR: internal domain {self._addresses.genesys_host}")
            if binding is not None:
                log.sip(
                    f"REGISTRAR:DN[{dn}]:OBSOLETE REGISTRATION FOUND: TERM >> DLG[{binding.dialog}]"
                )
            log.sip("SIPTS: handle registration event 0")
            if binding is None:
                log.sip(f"$*:SIP:CTI:DN_IN_SERVICE:{device}")
                log.sip(f"REGISTRAR: ACTIVE:{dn}")
                log.sip(f"$+CTI:PRM:ON_DN_IN_SERVICE:{self._next_cti_reference()}:{device}")
            else:
                log.sip(f"$*:SIP:CTI:DN_CONTACT_CHANGE:{device}")
        with self._lock:
            self._bindings[dn] = new_binding
        self._on_change()
        return answer(200, "OK", self._contact_headers(new_binding))

    @staticmethod
    def _expires(contact: NameAddr, default_expires: int | None) -> int:
        requested = contact.expires
        if requested is None:
            requested = DEFAULT_EXPIRES if default_expires is None else default_expires
        return min(max(requested, 0), MAX_EXPIRES)

    @staticmethod
    def _contact_headers(binding: Binding | None) -> list[tuple[str, str]]:
        if binding is None:
            return []
        remaining = max(1, round(binding.expires_at - time.monotonic()))
        return [("Contact", f"<{binding.contact}>;expires={remaining}")]

    def _new_dialog(self) -> int:
        self._next_dialog += 1
        return self._next_dialog

    def _next_cti_reference(self) -> int:
        self._cti_reference += 1
        return self._cti_reference

    def _remove_binding(self, dn: str, log: Transaction) -> None:
        """Take a DN out of service; an agent logged in on it is logged out."""
        with self._lock:
            binding = self._bindings.pop(dn, None)
        if binding is None:
            return
        log.sip(f"$*:SIP:CTI:DN_OUT_OF_SERVICE:{binding.device}")
        log.sip(f"$+CTI:PRM:AGENT_LOGGED_OUT:{self._next_cti_reference()}:{binding.device}")
        self._on_change()

    # Timers: binding expiry, trunk probes, the check point line, the transaction cache.
    def _tick(self) -> None:
        now = time.monotonic()
        for dn, binding in list(self._bindings.items()):
            if binding.expires_at <= now:
                with self._log.transaction() as log:
                    log.sip("SIPTS: handle registration event 1")
                    log.sip("REGISTRAR: EXPIRED:")
                    log.raw(f"\tAOR: {binding.aor}")
                    log.raw(f"\tContact: <{binding.contact}>")
                    self._remove_binding(dn, log)
        for state in self._trunks.values():
            self._probe_trunk(state, now)
        self._log.checkpoint_if_due(now, self._checkpoint_interval)
        for key, (answered_at, _) in list(self._answered.items()):
            if now - answered_at > TRANSACTION_MEMORY_SECONDS:
                del self._answered[key]

    def _probe_trunk(self, state: TrunkState, now: float) -> None:
        trunk = state.trunk
        destination = (trunk.contact_host, trunk.contact_port)
        wait = min(MAX_PROBE_WAIT_SECONDS, float(trunk.oos_check))
        if state.pending_call_id is not None and now >= state.probe_deadline:
            state.pending_call_id = None
            with self._log.transaction() as log:
                log.sip(
                    f"TRUNK[{trunk.name}]: OOS check: no response from "
                    f"{destination[0]}:{destination[1]} in {wait:g} s: out of service"
                )
            self._set_trunk_state(state, "out-of-service", "no response")
        if now < state.next_probe_at or state.pending_call_id is not None:
            return
        host, port = self.address
        call_id = new_call_id(host)
        request = build_request(
            "OPTIONS",
            f"sip:{destination[0]}:{destination[1]}",
            [
                ("Via", f"SIP/2.0/UDP {host}:{port};branch={new_branch()}"),
                ("From", f"<sip:{trunk.name}@{host}:{port}>;tag={new_tag()}"),
                ("To", f"<sip:{destination[0]}:{destination[1]}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 OPTIONS"),
                ("Max-Forwards", "70"),
                ("Contact", f"<sip:{host}:{port}>"),
                ("Accept", "application/sdp"),
            ],
        )
        state.pending_call_id = call_id
        state.probe_deadline = now + wait
        state.next_probe_at = now + trunk.oos_check
        with self._log.transaction() as log:
            log.sending(request, destination)
        # unreachable: the deadline logs it out of service like any silence
        with contextlib.suppress(OSError):
            self._send(request, destination)

    def _handle_response(self, message: SipMessage, log: Transaction) -> None:
        call_id = message.header("Call-ID")
        for state in self._trunks.values():
            if state.pending_call_id is not None and state.pending_call_id == call_id:
                state.pending_call_id = None
                trunk = state.trunk
                log.sip(
                    f"TRUNK[{trunk.name}]: OOS check: {message.status_code} {message.reason} "
                    f"from {trunk.contact_host}:{trunk.contact_port}: in service"
                )
                self._set_trunk_state(
                    state, "in-service", f"{message.status_code} {message.reason}"
                )

    def _set_trunk_state(self, state: TrunkState, new_state: str, result: str) -> None:
        with self._lock:
            state.state = new_state
            state.last_result = result
        self._on_change()
