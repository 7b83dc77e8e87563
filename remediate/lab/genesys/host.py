"""The simulated Genesys host: every component of the Windows machine behind one thread-safe object.

`GenesysHost` implements remediate.lab.windows.WindowsHost for the WinRM endpoint: the TSrvSIP64
service, the host's clock, its drives (D:\\ maps into the lab directory) and its listening
sockets with the owning processes. It keeps `layout.genesys_status_file` up to date:

    {"service": "Running", "scenario": "...", "updated_at": "<host local time>",
     "bindings": {"1003": {"aor", "contact", "source": "ip:port", "expires", "expires_in",
                           "user_agent", "registered_at"}},
     "in_service": ["1002", "1003"],
     "trunks": {"AsteriskTrunk_webRTC": {"contact", "prefix", "oos_check", "state",
                                         "last_result"}}}
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from pathlib import Path

from remediate.lab.genesys.cme import ConfigStore, load_trust_options, seed_document
from remediate.lab.genesys.gax import GaxApi, GaxListener, server_tls_context
from remediate.lab.genesys.logwriter import (
    CHECKPOINT_INTERVAL_SECONDS,
    DEFAULT_SEGMENT_BYTES,
    SipServerLog,
    command_line,
    full_timestamp,
    host_now,
)
from remediate.lab.genesys.registrar import Registrar
from remediate.lab.genesys.service import (
    DEFAULT_START_DELAY,
    DEFAULT_STOP_DELAY,
    RUNNING,
    WindowsService,
)
from remediate.lab.genesys.softphone import DEFAULT_EXPIRES as SOFTPHONE_EXPIRES
from remediate.lab.genesys.softphone import Softphone
from remediate.lab.layout import GENESYS_SERVICE, LabLayout, active_faults
from remediate.lab.windows import Listener, ServiceError

SERVICE_DISPLAY_NAME = "Genesys SIP Server - SIP_P"
ERROR_SERVICE_DOES_NOT_EXIST = 1060
# Stable fake process ids, as `Get-Process` / netstat would show them on the real host.
SIP_SERVER_PROCESS = ("sip_server", 4312)
SOFTPHONE_PROCESS = ("GenesysSoftphone", 6120)
GAX_PROCESS = ("java", 3188)
SYSTEM_PROCESS = ("System", 4)  # HTTP.sys owns the WinRM listeners on Windows
STATUS_WRITE_INTERVAL = 0.02


class GenesysHost:
    def __init__(
        self,
        layout: LabLayout,
        scenario: str,
        *,
        start_delay: float = DEFAULT_START_DELAY,
        stop_delay: float = DEFAULT_STOP_DELAY,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        checkpoint_interval: float = CHECKPOINT_INTERVAL_SECONDS,
        softphone_expires: int = SOFTPHONE_EXPIRES,
    ) -> None:
        self.layout = layout
        self.scenario = scenario
        addresses = layout.addresses
        self._trust = load_trust_options(layout)
        self.store = ConfigStore(layout.cme_file, seed_document(layout, scenario, self._trust))
        self.log = SipServerLog(
            layout.log_dir,
            command_line=command_line(addresses.genesys_host),
            segment_bytes=segment_bytes,
        )
        self.registrar = Registrar(
            addresses,
            self.log,
            self.faults,
            self._status_changed,
            checkpoint_interval=checkpoint_interval,
        )
        self.softphone = Softphone(addresses, expires=softphone_expires)
        self.service = WindowsService(
            GENESYS_SERVICE,
            SERVICE_DISPLAY_NAME,
            on_start=self._service_starting,
            on_stop=self._service_stopping,
            on_state=self._service_state,
            faults=self.faults,
            start_delay=start_delay,
            stop_delay=stop_delay,
        )
        self.gax = GaxApi(self.store, layout.credentials, self.faults)
        self._gax_listeners: list[GaxListener] = []
        self._extra_listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._status_dirty = threading.Event()
        self._closing = threading.Event()
        self._status_thread = threading.Thread(
            target=self._write_status_loop, name="status", daemon=True
        )

    # Lifecycle
    def start(self, *, start_service: bool, timeout: float = 10.0) -> None:
        """Bind the softphone and GAX, then start TSrvSIP64 unless told not to.

        Raises ListenError when a port is taken, and ServiceError when the service cannot start
        (the service-1053 fault included: the caller decides whether that is fatal).
        """
        self._status_thread.start()
        self.softphone.start()
        addresses = self.layout.addresses
        tls = server_tls_context(str(self.layout.server_cert), str(self.layout.server_key))
        for port, context in ((addresses.gax_http_port, None), (addresses.gax_https_port, tls)):
            listener = GaxListener(self.gax, (addresses.genesys_host, port), context)
            self._gax_listeners.append(listener)
            listener.start()
        self._status_changed()
        if start_service:
            self.service.start(timeout)

    def close(self) -> None:
        self._closing.set()
        self.gax.closing.set()
        self.service.close()
        self.registrar.close()
        self.log.close()
        self.softphone.close()
        for listener in self._gax_listeners:
            listener.close()
        self._status_dirty.set()
        if self._status_thread.is_alive():
            self._status_thread.join(timeout=1)

    def add_listeners(self, listeners: list[Listener]) -> None:
        """Sockets opened by components outside this class (the WinRM endpoint)."""
        with self._listeners_lock:
            self._extra_listeners.extend(listeners)

    def faults(self) -> frozenset[str]:
        return active_faults(self.layout)

    # Service hooks
    def _service_starting(self) -> None:
        """SIP Server starts: read configuration, open a log segment, bind the SIP port."""
        config = self.store.registrar_config(self._trust)
        self.log.open_segment()
        try:
            self.registrar.open(config)
        except OSError:
            self.log.close()
            raise

    def _service_stopping(self) -> None:
        self.registrar.close()
        self.log.close()

    def _service_state(self, state: str) -> None:
        self._status_changed()
        if state == RUNNING:
            self.softphone.register_now()

    # WindowsHost
    def _known(self, name: str) -> bool:
        return name.lower() == self.service.name.lower()

    def service_status(self, name: str) -> str | None:
        return self.service.state if self._known(name) else None

    def service_display_name(self, name: str) -> str | None:
        return self.service.display_name if self._known(name) else None

    def _require(self, name: str) -> None:
        if not self._known(name):
            raise ServiceError(
                f"Cannot find any service with service name '{name}'.",
                win32_code=ERROR_SERVICE_DOES_NOT_EXIST,
            )

    def start_service(self, name: str, timeout: float) -> str:
        self._require(name)
        return self.service.start(timeout)

    def stop_service(self, name: str, timeout: float) -> str:
        self._require(name)
        return self.service.stop(timeout)

    def restart_service(self, name: str, timeout: float) -> str:
        self._require(name)
        return self.service.restart(timeout)

    def local_now(self) -> datetime.datetime:
        return host_now()

    def windows_to_local(self, path: str) -> Path | None:
        return self.layout.windows_to_local(path)

    def listeners(self) -> list[Listener]:
        host = self.layout.addresses.genesys_host
        found: list[Listener] = []
        if self.registrar.listening:
            name, pid = SIP_SERVER_PROCESS
            found.append(Listener("UDP", host, self.layout.addresses.sip_port, "", pid, name))
        name, pid = SOFTPHONE_PROCESS
        found.append(Listener("UDP", host, self.softphone.address[1], "", pid, name))
        name, pid = GAX_PROCESS
        found.extend(
            Listener("TCP", host, listener.address[1], "Listen", pid, name)
            for listener in self._gax_listeners
        )
        with self._listeners_lock:
            found.extend(self._extra_listeners)
        return found

    # Status file
    def _status_changed(self) -> None:
        self._status_dirty.set()

    def status(self) -> dict[str, object]:
        return {
            "service": self.service.state,
            "scenario": self.scenario,
            "updated_at": full_timestamp(host_now()),
            **self.registrar.status(),
        }

    def _write_status_loop(self) -> None:
        # Changes coalesce: under a burst of REGISTERs the file is rewritten every
        # STATUS_WRITE_INTERVAL at most, never once per message behind the burst.
        path = self.layout.genesys_status_file
        while True:
            self._status_dirty.wait()
            self._status_dirty.clear()
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(json.dumps(self.status(), indent=2), encoding="utf-8")
            os.replace(temporary, path)
            if self._closing.is_set():
                return
            time.sleep(STATUS_WRITE_INTERVAL)
