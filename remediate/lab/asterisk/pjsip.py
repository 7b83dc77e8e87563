"""pjsip.conf as res_pjsip's sorcery loads it, and the `pjsip show ...` tables of Asterisk 22.

Objects are typed by their `type=` option, so one section name may be an endpoint and an AOR at
once; templates are resolved by the config reader. The column layouts below are those of Asterisk
22.10.1 (`../shared/fixtures/asterisk/cli-output-asterisk-22.txt`), down to each width.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path

from remediate.lab.asterisk.conf import ConfigFile, Section, read_config

ASTERISK_VERSION = "22.10.1"
DEFAULT_USER_AGENT = f"Asterisk PBX {ASTERISK_VERSION}"

_TRUE = ("yes", "true", "y", "t", "1", "on")


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in _TRUE


def _number(section: Section, key: str, default: int) -> int:
    value = section.get(key)
    if value is None or not value.strip():
        return default
    try:
        return int(value.split()[0])
    except ValueError:
        return default


@dataclass(frozen=True)
class Registration:
    name: str
    server_uri: str
    client_uri: str
    contact_user: str = ""
    expiration: int = 3600
    retry_interval: int = 60
    forbidden_retry_interval: int = 0
    fatal_retry_interval: int = 0
    max_retries: int = 10
    max_random_initial_delay: int = 10
    auth_rejection_permanent: bool = True
    outbound_auth: str = ""
    outbound_proxy: str = ""
    transport: str = ""
    line: bool = False
    endpoint: str = ""
    contact_header_params: str = ""
    support_path: bool = False
    support_outbound: bool = False
    security_negotiation: str = "no"
    user_agent: str = ""

    def parameters(self) -> dict[str, str]:
        """The sorcery object set `pjsip show registration` lists (type excluded)."""

        def yes_no(value: bool) -> str:
            return "yes" if value else "no"

        def true_false(value: bool) -> str:
            return "true" if value else "false"

        return {
            "auth_rejection_permanent": true_false(self.auth_rejection_permanent),
            "client_uri": self.client_uri,
            "contact_header_params": self.contact_header_params,
            "contact_user": self.contact_user,
            "endpoint": self.endpoint,
            "expiration": str(self.expiration),
            "fatal_retry_interval": str(self.fatal_retry_interval),
            "forbidden_retry_interval": str(self.forbidden_retry_interval),
            "line": true_false(self.line),
            "max_random_initial_delay": str(self.max_random_initial_delay),
            "max_retries": str(self.max_retries),
            "outbound_auth": self.outbound_auth,
            "outbound_proxy": self.outbound_proxy,
            "retry_interval": str(self.retry_interval),
            "security_negotiation": self.security_negotiation,
            "server_uri": self.server_uri,
            "support_outbound": yes_no(self.support_outbound),
            "support_path": true_false(self.support_path),
            "transport": self.transport,
            "user_agent": self.user_agent,
        }


@dataclass(frozen=True)
class Transport:
    name: str
    protocol: str = "udp"
    bind: str = "0.0.0.0:5060"
    cos: int = 0
    tos: int = 0


@dataclass(frozen=True)
class Aor:
    name: str
    contacts: tuple[str, ...] = ()
    max_contacts: int = 0
    qualify_frequency: int = 0


@dataclass(frozen=True)
class Identify:
    name: str
    endpoint: str
    matches: tuple[str, ...] = ()

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for match in self.matches:
            for item in match.split(","):
                item = item.strip()
                if item:
                    try:
                        networks.append(ipaddress.ip_network(item, strict=False))
                    except ValueError:
                        continue  # a host name: Asterisk resolves it; the lab has none
        return networks


@dataclass(frozen=True)
class Endpoint:
    name: str
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str, default: str = "") -> str:
        value = default
        for name, item in self.options:
            if name == key:
                value = item
        return value

    @property
    def aors(self) -> list[str]:
        return [a.strip() for a in self.option("aors").split(",") if a.strip()]


@dataclass
class PjsipConfig:
    user_agent: str = DEFAULT_USER_AGENT
    transports: dict[str, Transport] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    aors: dict[str, Aor] = field(default_factory=dict)
    identifies: dict[str, Identify] = field(default_factory=dict)
    registrations: dict[str, Registration] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def registration_user_agent(self, registration: Registration) -> str:
        return registration.user_agent or self.user_agent

    def endpoint_for_address(self, address: str) -> Endpoint | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for identify in self.identifies.values():
            if any(ip in network for network in identify.networks()):
                return self.endpoints.get(identify.endpoint)
        return None


def _registration(section: Section) -> Registration:
    return Registration(
        name=section.name,
        server_uri=section.get("server_uri") or "",
        client_uri=section.get("client_uri") or "",
        contact_user=section.get("contact_user") or "",
        expiration=_number(section, "expiration", 3600),
        retry_interval=_number(section, "retry_interval", 60),
        forbidden_retry_interval=_number(section, "forbidden_retry_interval", 0),
        fatal_retry_interval=_number(section, "fatal_retry_interval", 0),
        max_retries=_number(section, "max_retries", 10),
        max_random_initial_delay=_number(section, "max_random_initial_delay", 10),
        auth_rejection_permanent=_flag(section.get("auth_rejection_permanent"), True),
        outbound_auth=section.get("outbound_auth") or "",
        outbound_proxy=section.get("outbound_proxy") or "",
        transport=section.get("transport") or "",
        line=_flag(section.get("line"), False),
        endpoint=section.get("endpoint") or "",
        contact_header_params=section.get("contact_header_params") or "",
        support_path=_flag(section.get("support_path"), False),
        support_outbound=_flag(section.get("support_outbound"), False),
        security_negotiation=section.get("security_negotiation") or "no",
        user_agent=section.get("user_agent") or "",
    )


def build_pjsip(config: ConfigFile) -> PjsipConfig:
    pjsip = PjsipConfig()
    for section in config.sections:
        if section.is_template:
            continue
        kind = (section.get("type") or "").strip().lower()
        where = f"'{section.name}' (line {section.line} of {section.file})"
        if kind == "global":
            pjsip.user_agent = section.get("user_agent") or DEFAULT_USER_AGENT
        elif kind == "transport":
            pjsip.transports[section.name] = Transport(
                section.name,
                (section.get("protocol") or "udp").lower(),
                section.get("bind") or "0.0.0.0:5060",
                _number(section, "cos", 0),
                _number(section, "tos", 0),
            )
        elif kind == "endpoint":
            pjsip.endpoints[section.name] = Endpoint(
                section.name,
                tuple((o.key, o.value) for o in section.options if o.key != "type"),
            )
        elif kind == "aor":
            pjsip.aors[section.name] = Aor(
                section.name,
                tuple(c.strip() for v in section.get_all("contact") for c in v.split(",") if c),
                _number(section, "max_contacts", 0),
                _number(section, "qualify_frequency", 0),
            )
        elif kind == "identify":
            pjsip.identifies[section.name] = Identify(
                section.name, section.get("endpoint") or "", tuple(section.get_all("match"))
            )
        elif kind == "registration":
            registration = _registration(section)
            if not registration.server_uri:
                pjsip.errors.append(f"No server URI specified on outbound registration {where}")
            elif not registration.client_uri:
                pjsip.errors.append(f"No client URI specified on outbound registration {where}")
            else:
                pjsip.registrations[section.name] = registration
    return pjsip


def load_pjsip(etc_dir: Path, name: str = "pjsip.conf") -> PjsipConfig:
    return build_pjsip(read_config(etc_dir, name))


# --- `pjsip show ...` output -------------------------------------------------------------------

REGISTRATION_URI_FIELD_LEN = 53
RULE = "=" * 90

REGISTRATIONS_HEADER = (
    " <Registration/ServerURI..............................>  <Auth....................>"
    "  <Status.......>"
)

ENDPOINTS_HEADER = """\
 Endpoint:  <Endpoint/CID.....................................>  <State.....>  <Channels.>
    I/OAuth:  <AuthId/UserName...........................................................>
        Aor:  <Aor............................................>  <MaxContact>
      Contact:  <Aor/ContactUri..........................> <Hash....> <Status> <RTT(ms)..>
  Transport:  <TransportId........>  <Type>  <cos>  <tos>  <BindAddress..................>
   Identify:  <Identify/Endpoint.........................................................>
        Match:  <criteria.........................>
    Channel:  <ChannelId......................................>  <State.....>  <Time.....>
        Exten: <DialedExten...........>  CLCID: <ConnectedLineCID.......>"""


def registration_row(registration: Registration, status: str, expires_in: int) -> str:
    """One line of `pjsip show registrations`; `expires_in` may be negative (`s ago`)."""
    width = max(REGISTRATION_URI_FIELD_LEN - len(registration.name), 0)
    uri = registration.server_uri[:width].ljust(width)
    auth = registration.outbound_auth or "n/a"
    suffix = "s ago)" if expires_in < 0 else "s)"
    return f" {registration.name}/{uri}  {auth:<26}  {status:<16}  (exp. {abs(expires_in)}{suffix}"


def objects_found(count: int) -> str:
    return f"\nObjects found: {count}\n"


def object_set(parameters: dict[str, str]) -> str:
    """Asterisk's ast_sip_cli_print_sorcery_objset: a sorted name/value table."""
    name_width = max([13, *(len(name) for name in parameters)])
    value_width = max([14, *(len(value) for value in parameters.values())])
    lines = [
        f" {'ParameterName':<{name_width}} : ParameterValue",
        " " + "=" * (name_width + value_width + 3),
    ]
    lines.extend(f" {name:<{name_width}} : {parameters[name]}" for name in sorted(parameters))
    return "\n".join(lines) + "\n"


def show_registrations(rows: list[str]) -> str:
    if not rows:
        return "No objects found.\n\n"
    body = "\n".join(rows)
    return f"\n{REGISTRATIONS_HEADER}\n{RULE}\n\n{body}\n" + objects_found(len(rows))


def show_registration(row: str, registration: Registration) -> str:
    return f"\n{REGISTRATIONS_HEADER}\n{RULE}\n\n{row}\n\n" + object_set(registration.parameters())


def contact_hash(uri: str) -> str:
    return hashlib.md5(uri.encode(), usedforsecurity=False).hexdigest()[:10]


def _endpoint_block(pjsip: PjsipConfig, endpoint: Endpoint) -> str:
    aors = [pjsip.aors[name] for name in endpoint.aors if name in pjsip.aors]
    contacts = [(aor, uri) for aor in aors for uri in aor.contacts]
    # Static contacts that nobody qualifies are "NonQual": the endpoint counts as unavailable.
    reachable = any(aor.qualify_frequency > 0 for aor, _ in contacts)
    state = "Not in use" if reachable else "Unavailable"
    lines = [f"{'Endpoint':>9}:  {endpoint.name:<51.51}  {state:<12.12}  0 of inf"]
    for aor in aors:
        lines.append(f"{'Aor':>11}:  {aor.name:<49.49}  {aor.max_contacts}")
        for contact_aor, uri in contacts:
            if contact_aor is not aor:
                continue
            status = "Unknown" if aor.qualify_frequency > 0 else "NonQual"
            rtt = f"{math.nan:11.3f}"
            lines.append(
                f"{'Contact':>13}:  {aor.name + '/' + uri:<42.42} {contact_hash(uri):<10.10} "
                f"{status:<7.7} {rtt}"
            )
    transport = pjsip.transports.get(endpoint.option("transport"))
    if transport is not None:
        lines.append(
            f"{'Transport':>11}:  {transport.name:<21.21}  {transport.protocol:>6.6}  "
            f"{transport.cos:>5}  {transport.tos:>5}  {transport.bind}"
        )
    for identify in pjsip.identifies.values():
        if identify.endpoint != endpoint.name:
            continue
        lines.append(f"{'Identify':>11}:  {identify.name}/{identify.endpoint}")
        for network in identify.networks():
            lines.append(f"{'Match':>13}: {network}")
    return "\n".join(lines) + "\n\n"


def show_endpoints(pjsip: PjsipConfig) -> str:
    if not pjsip.endpoints:
        return "No objects found.\n\n"
    blocks = "".join(
        _endpoint_block(pjsip, pjsip.endpoints[name]) for name in sorted(pjsip.endpoints)
    )
    return f"\n{ENDPOINTS_HEADER}\n{RULE}\n\n{blocks}" + objects_found(len(pjsip.endpoints))


# A subset of res_pjsip's endpoint fields with their defaults: `pjsip show endpoint` lists every
# field; the lab lists these plus whatever the configuration sets.
ENDPOINT_DEFAULTS = {
    "100rel": "yes",
    "accountcode": "",
    "aors": "",
    "allow": "(nothing)",
    "auth": "",
    "callerid": "<unknown>",
    "context": "default",
    "direct_media": "true",
    "disallow": "",
    "dtmf_mode": "rfc4733",
    "force_rport": "true",
    "from_domain": "",
    "from_user": "",
    "identify_by": "username,ip",
    "media_encryption": "no",
    "outbound_auth": "",
    "outbound_proxy": "",
    "rewrite_contact": "false",
    "rtp_symmetric": "false",
    "send_pai": "false",
    "send_rpid": "false",
    "transport": "",
    "trust_id_inbound": "false",
    "trust_id_outbound": "false",
    "webrtc": "no",
}


def show_endpoint(pjsip: PjsipConfig, endpoint: Endpoint) -> str:
    parameters = dict(ENDPOINT_DEFAULTS)
    parameters.update(dict(endpoint.options))
    return (
        f"\n{ENDPOINTS_HEADER}\n{RULE}\n\n"
        + _endpoint_block(pjsip, endpoint)
        + object_set(parameters)
    )
