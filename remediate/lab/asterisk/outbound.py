"""The gateway's SIP side: res_pjsip_outbound_registration's behaviour over UDP, and OPTIONS/INVITE.

Each `type=registration` of pjsip.conf is a client with its own Call-ID and CSeq sequence.
Outcomes follow Asterisk 22: a 2xx with a non-zero expiration is `Registered` and refreshes 10 s
before expiry; a 2xx granting 0 is an un-registration (`Unregistered`); a temporal failure (408,
500, 502, 503, 504, 6xx, and 401/407 when `auth_rejection_permanent=no`) retries after
`retry_interval` until `max_retries`; a 403 retries after `forbidden_retry_interval` when it is
not 0; anything else is fatal (`fatal_retry_interval`, else stop). A stopped registration stays
`Rejected` until `pjsip send register`, which un-registers (Expires: 0) and then registers, as
Asterisk does. The `(exp. Ns)` column is the time of the next scheduled attempt, as Asterisk's
`registration_expires`.

Every REGISTER sent (retransmissions included) and every response to one is appended to a JSON
lines record that stands in for a packet capture on the Asterisk host.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from remediate.lab.asterisk.asterisk_log import AsteriskLog
from remediate.lab.asterisk.dialplan import Dialplan, extension_matches
from remediate.lab.asterisk.pjsip import PjsipConfig, Registration
from remediate.lab.sip import (
    SipMessage,
    SipParseError,
    build_request,
    build_response,
    new_branch,
    new_tag,
    parse_message,
    parse_name_addr,
    parse_uri,
    via_branch,
)

T1 = 0.5
T2 = 4.0
TIMER_F = 32.0
REREGISTER_BUFFER_TIME = 10
ALLOW = (
    "OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, "
    "MESSAGE, REFER"
)
ACCEPT = (
    "application/sdp, application/dialog-info+xml, application/simple-message-summary, "
    "application/pidf+xml, application/xpidf+xml, application/cpim-pidf+xml, "
    "message/sipfrag;version=2.0"
)
TEMPORAL_CODES = frozenset({408, 500, 502, 503, 504})

REGISTERED = "Registered"
UNREGISTERED = "Unregistered"
REJECTED = "Rejected"

SOURCE = "res_pjsip_outbound_registration.c"


class RegisterRecord:
    """JSON lines: one object per REGISTER sent or response received."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(
        self,
        direction: str,
        peer: tuple[str, int],
        message: SipMessage,
        registration: str,
        *,
        expires: int | None,
        retransmission: bool = False,
    ) -> None:
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "direction": direction,
            "peer": f"{peer[0]}:{peer[1]}",
            "line": message.start_line,
            "call_id": message.header("Call-ID"),
            "cseq": message.header("CSeq"),
            "expires": expires,
            "registration": registration,
            "retransmission": retransmission,
        }
        with self.path.open("a", encoding="utf-8") as record:
            record.write(json.dumps(entry) + "\n")


class RegistrationClient:
    def __init__(self, gateway: SipGateway, registration: Registration, user_agent: str) -> None:
        self.gateway = gateway
        self.registration = registration
        self.user_agent = user_agent
        self.status = UNREGISTERED
        self.expires_at = time.time()
        self.retries = 0
        self.call_id = str(uuid.uuid4())
        self.from_tag = str(uuid.uuid4())
        self.cseq = 0
        self.lock = asyncio.Lock()
        self.timer: asyncio.TimerHandle | None = None
        # Scenario `binding-expired`: the next registration asks for this and is never refreshed.
        self.lost_binding_expiration: int | None = None
        self.closed = False

    @property
    def server(self) -> tuple[str, int]:
        uri = parse_uri(self.registration.server_uri)
        return uri.host, uri.port or 5060

    def expires_in(self) -> int:
        return int(self.expires_at) - int(time.time())

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def schedule(self, seconds: int, *, arm: bool = True) -> None:
        self.cancel_timer()
        self.expires_at = time.time() + seconds
        if arm and not self.closed:
            self.timer = asyncio.get_running_loop().call_later(
                seconds, lambda: self.gateway.spawn(self.register())
            )

    def _request(self, expiration: int) -> tuple[bytes, str]:
        self.cseq += 1
        branch = new_branch()
        host, port = self.gateway.local
        contact = f"<sip:{self.registration.contact_user}@{host}:{port}>"
        if expiration == 0:
            contact += ";expires=0"
        headers = [
            ("Via", f"SIP/2.0/UDP {host}:{port};rport;branch={branch}"),
            ("From", f"<{self.registration.client_uri}>;tag={self.from_tag}"),
            ("To", f"<{self.registration.client_uri}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", contact),
            ("Expires", str(expiration)),
            ("Allow", ALLOW),
            ("Max-Forwards", "70"),
            ("User-Agent", self.user_agent),
        ]
        return build_request("REGISTER", self.registration.server_uri, headers), branch

    def granted(self, response: SipMessage, requested: int) -> int:
        host, port = self.gateway.local
        for value in response.header_values("Contact"):
            try:
                contact = parse_name_addr(value)
                uri = contact.parsed_uri()
            except SipParseError:
                continue
            ours = uri.user == self.registration.contact_user and uri.host == host
            if ours and (uri.port or 5060) == port and contact.expires is not None:
                return contact.expires
        expires = response.header("Expires")
        if expires is not None and expires.strip().isdigit():
            return int(expires.strip())
        return requested

    async def _transaction(self, expiration: int) -> tuple[int, SipMessage | None]:
        data, branch = self._request(expiration)
        response = await self.gateway.send_transaction(data, branch, self.server, self, expiration)
        if response is None:
            return 408, None
        return response.status_code, response

    async def register(self) -> None:
        async with self.lock:
            if self.closed:
                return
            self.cancel_timer()
            requested = self.lost_binding_expiration or self.registration.expiration
            code, response = await self._transaction(requested)
            self._handle_register_outcome(code, response, requested)

    def _handle_register_outcome(
        self, code: int, response: SipMessage | None, requested: int
    ) -> None:
        registration = self.registration
        target = (
            f"'{registration.server_uri}' on registration attempt to '{registration.client_uri}'"
        )
        log = self.gateway.log
        if 200 <= code < 300 and response is not None:
            granted = self.granted(response, requested)
            if granted:
                self.status = REGISTERED
                self.retries = 0
                refresh = max(granted - REREGISTER_BUFFER_TIME, 0)
                never_refresh = self.lost_binding_expiration is not None
                self.schedule(refresh, arm=not never_refresh)
            else:
                self.status = UNREGISTERED
            return
        auth_codes = (401, 407)
        temporal = (
            code in TEMPORAL_CODES
            or 600 <= code < 700
            or (code in auth_codes and not registration.auth_rejection_permanent)
        )
        if temporal:
            if self.retries >= registration.max_retries:
                self.status = REJECTED
                log.write(
                    "WARNING",
                    SOURCE,
                    f"Maximum retries reached when attempting outbound registration to "
                    f"'{registration.server_uri}' with client '{registration.client_uri}', "
                    "stopping registration attempt",
                )
                return
            self.retries += 1
            self.status = REJECTED
            if code == 408:
                message = (
                    f"No response received from {target}, retrying in "
                    f"'{registration.retry_interval}'"
                )
            else:
                message = (
                    f"Temporal response '{code}' received from {target}, retrying in "
                    f"'{registration.retry_interval}'"
                )
            log.write("WARNING", SOURCE, message)
            self.schedule(registration.retry_interval)
            return
        if (
            code == 403
            and registration.forbidden_retry_interval
            and self.retries < registration.max_retries
        ):
            self.retries += 1
            self.status = REJECTED
            log.write(
                "WARNING",
                SOURCE,
                f"403 Forbidden fatal response received from {target}, retrying in "
                f"'{registration.forbidden_retry_interval}' seconds",
            )
            self.schedule(registration.forbidden_retry_interval)
            return
        if registration.fatal_retry_interval and self.retries < registration.max_retries:
            self.retries += 1
            self.status = REJECTED
            log.write(
                "WARNING",
                SOURCE,
                f"'{code}' fatal response received from {target}, retrying in "
                f"'{registration.fatal_retry_interval}' seconds",
            )
            self.schedule(registration.fatal_retry_interval)
            return
        self.status = REJECTED
        log.write(
            "WARNING",
            SOURCE,
            f"'{code}' fatal response received from {target}, stopping outbound registration",
        )

    async def unregister(self) -> None:
        async with self.lock:
            self.cancel_timer()
            await self._transaction(0)
            self.status = UNREGISTERED

    async def reregister(self) -> None:
        """`pjsip send register`: an un-register, then a fresh registration."""
        self.lost_binding_expiration = None
        self.retries = 0
        await self.unregister()
        await self.register()

    def start(self) -> None:
        delay = self.registration.max_random_initial_delay
        self.schedule(random.randint(1, delay) if delay > 0 else 0)

    def send_final_unregister(self) -> None:
        """On shutdown Asterisk un-registers what is registered; nobody waits for the answer."""
        self.closed = True
        self.cancel_timer()
        if self.status == REGISTERED:
            data, _branch = self._request(0)
            self.gateway.send_raw(data, self.server, self, 0)


class SipGateway(asyncio.DatagramProtocol):
    def __init__(
        self,
        local: tuple[str, int],
        record: RegisterRecord,
        log: AsteriskLog,
        dialplan: Callable[[], Dialplan],
    ) -> None:
        self.local = local
        self.record = record
        self.log = log
        self.dialplan = dialplan
        self.pjsip = PjsipConfig()
        self.clients: dict[str, RegistrationClient] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._transactions: dict[str, asyncio.Future[SipMessage]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=self.local)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- configuration ----------------------------------------------------------------------

    def apply_config(self, pjsip: PjsipConfig, *, start: bool) -> None:
        """Load registrations; on reload keep unchanged ones, re-create changed ones."""
        self.pjsip = pjsip
        current = dict(self.clients)
        self.clients = {}
        for name in sorted(pjsip.registrations):
            registration = pjsip.registrations[name]
            user_agent = pjsip.registration_user_agent(registration)
            old = current.pop(name, None)
            if (
                old is not None
                and old.registration == registration
                and old.user_agent == user_agent
            ):
                self.clients[name] = old
                continue
            if old is not None:
                old.send_final_unregister()
            client = RegistrationClient(self, registration, user_agent)
            self.clients[name] = client
            if start:
                client.start()
        for removed in current.values():
            removed.send_final_unregister()

    def start_registrations(self) -> None:
        for client in self.clients.values():
            client.start()

    def client_for_dn(self, dn: str) -> RegistrationClient | None:
        for client in self.clients.values():
            if client.registration.contact_user == dn:
                return client
        return None

    # --- transactions -----------------------------------------------------------------------

    def send_raw(
        self,
        data: bytes,
        destination: tuple[str, int],
        client: RegistrationClient,
        expires: int,
        *,
        retransmission: bool = False,
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.sendto(data, destination)
        self.record.write(
            "sent",
            destination,
            parse_message(data),
            client.registration.name,
            expires=expires,
            retransmission=retransmission,
        )

    async def send_transaction(
        self,
        data: bytes,
        branch: str,
        destination: tuple[str, int],
        client: RegistrationClient,
        expires: int,
    ) -> SipMessage | None:
        """A non-INVITE client transaction over UDP (timers E and F); None on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SipMessage] = loop.create_future()
        self._transactions[branch] = future
        deadline = loop.time() + TIMER_F
        interval = T1
        try:
            self.send_raw(data, destination, client, expires)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                try:
                    response = await asyncio.wait_for(
                        asyncio.shield(future), min(interval, remaining)
                    )
                except TimeoutError:
                    interval = min(interval * 2, T2)
                    self.send_raw(data, destination, client, expires, retransmission=True)
                    continue
                self.record.write(
                    "received",
                    destination,
                    response,
                    client.registration.name,
                    expires=client.granted(response, expires)
                    if response.status_code < 300
                    else None,
                )
                return response
        finally:
            self._transactions.pop(branch, None)
            if not future.done():
                future.cancel()

    # --- incoming ---------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            return  # Asterisk drops what it cannot parse
        if message.is_request:
            self._answer(message, addr)
            return
        vias = message.header_values("Via")
        branch = via_branch(vias[0]) if vias else None
        future = self._transactions.get(branch or "")
        if future is not None and not future.done() and message.status_code >= 200:
            future.set_result(message)

    def _answer(self, request: SipMessage, addr: tuple[str, int]) -> None:
        if request.method == "ACK" or self.transport is None:
            return
        endpoint = self.pjsip.endpoint_for_address(addr[0])
        host, port = self.local
        common = [("Server", self.pjsip.user_agent), ("Allow", ALLOW)]
        if endpoint is None:
            nonce = secrets.token_hex(16)
            challenge = (
                f'Digest realm="asterisk",nonce="{nonce}",opaque="{new_tag()}",'
                'algorithm=MD5,qop="auth"'
            )
            response = build_response(
                request,
                401,
                "Unauthorized",
                to_tag=new_tag(),
                headers=[("WWW-Authenticate", challenge), *common],
                received=addr,
            )
        elif request.method == "OPTIONS":
            response = build_response(
                request,
                200,
                "OK",
                to_tag=new_tag(),
                headers=[
                    ("Contact", f"<sip:{host}:{port}>"),
                    *common,
                    ("Accept", ACCEPT),
                    ("Supported", "100rel, timer, replaces, norefersub"),
                    ("Accept-Encoding", "identity"),
                    ("Accept-Language", "en"),
                ],
                received=addr,
            )
        elif request.method == "INVITE":
            # The call enters the endpoint's context; the agents' WebRTC clients are never
            # connected in the lab, so a matching extension ends in 480 and none in 404.
            dialled = parse_uri(request.request_uri).user or ""
            context = self.dialplan().contexts.get(endpoint.option("context", "default"))
            found = context is not None and any(
                extension_matches(extension.name, dialled)
                for extension in context.extensions.values()
            )
            code, reason = (480, "Temporarily Unavailable") if found else (404, "Not Found")
            response = build_response(
                request, code, reason, to_tag=new_tag(), headers=common, received=addr
            )
        else:
            response = build_response(
                request, 405, "Method Not Allowed", to_tag=new_tag(), headers=common, received=addr
            )
        self.transport.sendto(response, addr)

    # --- shutdown ---------------------------------------------------------------------------

    def close(self) -> None:
        for client in self.clients.values():
            client.send_final_unregister()
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()
