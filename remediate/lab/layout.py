"""Where the lab keeps its files, its addresses, its credentials, its scenarios and faults.

Every lab component (the Genesys host process, the Asterisk host process, `remediate lab`) agrees on
the lab through this module alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PureWindowsPath

DEFAULT_LAB_DIR_ENV = "REMEDIATE_LAB_DIR"


@dataclass(frozen=True)
class LabAddresses:
    genesys_host: str = "127.0.0.81"
    sip_port: int = 5060
    softphone_port: int = 5090
    winrm_http_port: int = 5985
    winrm_https_port: int = 5986
    gax_http_port: int = 8080
    gax_https_port: int = 8443
    asterisk_host: str = "127.0.0.54"
    ssh_port: int = 2222
    asterisk_sip_port: int = 5060


@dataclass(frozen=True)
class LabCredentials:
    """The lab's own accounts. They are lab data, committed in inventories/lab; never real ones."""

    winrm_user: str = "remediate"
    winrm_password: str = "Lab-WinRM-7f3c9e!"  # noqa: S105 (lab data, not a secret)
    gax_user: str = "default"
    gax_password: str = "Lab-GAX-2b81d4!"  # noqa: S105 (lab data, not a secret)


# The Genesys host's clock: India Standard Time, as in the real deployment's log header.
GENESYS_UTC_OFFSET_SECONDS = 19800
GENESYS_TIME_ZONE_NAME = "India Standard Time"
GENESYS_HOST_NAME = "GenUAT02"
GENESYS_APPLICATION = "SIP_P"
GENESYS_SERVICE = "TSrvSIP64"
GENESYS_SWITCH = "SIP_P"
WINDOWS_LOG_DIR = PureWindowsPath(r"D:\gcti_logs\SIP_P")
WINDOWS_APP_DIR = PureWindowsPath(r"D:\gcti_apps\SIP_P")

SCENARIOS: dict[str, str] = {
    "untrusted-gateway": "the seed's fault: REGISTERs from the Asterisk address are refused",
    "gateway-unregisters": "the gateway is trusted, then un-registers 5002 and stays silent",
    "dn-not-configured": "DN 5002 does not exist in configuration: its REGISTER gets 404",
    "binding-expired": "the gateway is trusted but stops refreshing 5002: its binding expires",
    "service-stopped": "TSrvSIP64 is stopped: nothing answers SIP",
    "trunk-no-reverse-route": "a Trunk DN covers the gateway; Asterisk has no route back to 50xx",
}
DEFAULT_SCENARIO = "untrusted-gateway"

FAULTS: dict[str, str] = {
    "winrm-401": "WinRM refuses every credential",
    "winrm-500": "WinRM answers HTTP 500 to every request",
    "winrm-drop": "WinRM closes the connection without answering",
    "winrm-stall": "WinRM accepts a request and never answers",
    "gax-500": "GAX answers HTTP 500 to every request",
    "gax-timeout": "GAX accepts a request and never answers",
    "ssh-drop": "the Asterisk host's SSH server drops every connection",
    "service-hang": "stopping TSrvSIP64 leaves it in StopPending",
    "service-1053": "starting TSrvSIP64 fails with error 1053",
    "registrar-silent": "the SIP registrar stops answering",
}


@dataclass(frozen=True)
class LabLayout:
    root: Path
    addresses: LabAddresses = field(default_factory=LabAddresses)
    credentials: LabCredentials = field(default_factory=LabCredentials)

    # Control
    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def faults_file(self) -> Path:
        return self.root / "faults.json"

    @property
    def lab_file(self) -> Path:
        """JSON written by `lab up`: addresses, credentials' location, scenario."""
        return self.root / "lab.json"

    def pid_file(self, component: str) -> Path:
        return self.run_dir / f"{component}.pid"

    def ready_file(self, component: str) -> Path:
        return self.run_dir / f"{component}.ready"

    def process_log(self, component: str) -> Path:
        return self.run_dir / f"{component}.out"

    # TLS (the lab's own CA; one server certificate for 127.0.0.81 used by WinRM and GAX)
    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.tls_dir / "genesys.pem"

    @property
    def server_key(self) -> Path:
        return self.tls_dir / "genesys-key.pem"

    # The Genesys host
    @property
    def genesys_dir(self) -> Path:
        return self.root / "genesys"

    @property
    def cme_file(self) -> Path:
        """Configuration objects (switch, DNs, annexes) as GAX serves them."""
        return self.genesys_dir / "cme.json"

    @property
    def genesys_status_file(self) -> Path:
        """Written by the Genesys host on every change: service state and DNs in service."""
        return self.genesys_dir / "status.json"

    def windows_to_local(self, path: str | PureWindowsPath) -> Path | None:
        """Map a Windows path on the simulated host (`D:\\gcti_logs\\...`) to this machine."""
        windows = PureWindowsPath(path)
        if not windows.drive or not windows.is_absolute():
            return None
        drive = windows.drive.rstrip(":").upper()
        return self.genesys_dir.joinpath(drive, *windows.parts[1:])

    @property
    def log_dir(self) -> Path:
        local = self.windows_to_local(WINDOWS_LOG_DIR)
        assert local is not None
        return local

    # The Asterisk host
    @property
    def asterisk_dir(self) -> Path:
        return self.root / "asterisk"

    @property
    def asterisk_etc(self) -> Path:
        return self.asterisk_dir / "etc"

    @property
    def asterisk_log(self) -> Path:
        return self.asterisk_dir / "log" / "messages"

    @property
    def asterisk_control_socket(self) -> Path:
        return self.asterisk_dir / "run" / "asterisk.ctl"

    @property
    def bin_dir(self) -> Path:
        """First on PATH for commands run over the lab's SSH server (holds `asterisk`)."""
        return self.asterisk_dir / "bin"

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_host_key(self) -> Path:
        return self.ssh_dir / "ssh_host_ed25519_key"

    @property
    def ssh_client_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def inventory_dir(self) -> Path:
        """An inventory written by `lab up` with this lab's absolute paths."""
        return self.root / "inventory"


def default_lab_dir() -> Path:
    return Path(os.environ.get(DEFAULT_LAB_DIR_ENV) or ".lab").resolve()


def active_faults(layout: LabLayout) -> frozenset[str]:
    """The faults switched on now. Cheap enough to call on every request."""
    try:
        data = json.loads(layout.faults_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return frozenset()
    return frozenset(name for name in data.get("faults", []) if name in FAULTS)


def set_fault(layout: LabLayout, name: str, on: bool) -> frozenset[str]:
    if name not in FAULTS:
        raise KeyError(name)
    faults = set(active_faults(layout))
    if on:
        faults.add(name)
    else:
        faults.discard(name)
    layout.root.mkdir(parents=True, exist_ok=True)
    temporary = layout.faults_file.with_suffix(".tmp")
    temporary.write_text(json.dumps({"faults": sorted(faults)}), encoding="utf-8")
    os.replace(temporary, layout.faults_file)
    return frozenset(faults)


def save_layout(layout: LabLayout, scenario: str) -> None:
    """Record the lab's addresses and scenario in `lab.json`, where every component reads them."""
    layout.root.mkdir(parents=True, exist_ok=True)
    document = {
        "addresses": asdict(layout.addresses),
        "scenario": scenario,
    }
    temporary = layout.lab_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.replace(temporary, layout.lab_file)


def load_layout(root: Path) -> tuple[LabLayout, str]:
    """The layout and scenario recorded in `root/lab.json` (defaults when there is none)."""
    root = root.resolve()
    try:
        document = json.loads((root / "lab.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return LabLayout(root), DEFAULT_SCENARIO
    addresses = LabAddresses(**document.get("addresses", {}))
    return LabLayout(root, addresses), str(document.get("scenario", DEFAULT_SCENARIO))
