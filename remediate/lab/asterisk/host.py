"""The Asterisk host process: seed, listen (SSH, SIP, control socket), report ready, run, stop.

Scenarios that concern the gateway:
- `gateway-unregisters`: 3 s after start the gateway sends an un-REGISTER (Expires: 0) for 5002
  and, as after `pjsip send unregister`, stays unregistered until `pjsip send register`;
- `binding-expired`: the registration-monitor of the real deployment registers DNs dynamically;
  here it registers 5002 once with Expires: 10 and then loses track of it, so nothing refreshes
  it and the registrar's binding expires, while 5001 refreshes normally. `pjsip send register`
  (the operator's fix) registers 5002 again with the configured expiration and refreshes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from remediate.lab.asterisk.daemon import AsteriskDaemon
from remediate.lab.asterisk.seed import seed
from remediate.lab.asterisk.ssh import SshHost
from remediate.lab.layout import LabLayout

COMPONENT = "asterisk"
UNREGISTER_AFTER_SECONDS = 3.0
LOST_BINDING_EXPIRATION = 10
SHUTDOWN_BOUND_SECONDS = 0.8


class StartError(Exception):
    """The host cannot start (a port taken, another daemon running): said on stderr, exit 1."""


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _write_ready(layout: LabLayout, scenario: str) -> None:
    a = layout.addresses
    document = {
        "pid": os.getpid(),
        "scenario": scenario,
        "ssh": {"host": a.asterisk_host, "port": a.ssh_port},
        "sip": {"host": a.asterisk_host, "port": a.asterisk_sip_port, "transport": "udp"},
        "control_socket": str(layout.asterisk_control_socket),
        "started": time.time(),
    }
    ready = layout.ready_file(COMPONENT)
    ready.parent.mkdir(parents=True, exist_ok=True)
    temporary = ready.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.replace(temporary, ready)


def _apply_scenario(daemon: AsteriskDaemon, scenario: str) -> None:
    client = daemon.gateway.client_for_dn("5002")
    if client is None:
        return
    if scenario == "binding-expired":
        client.lost_binding_expiration = LOST_BINDING_EXPIRATION
    elif scenario == "gateway-unregisters":
        asyncio.get_running_loop().call_later(
            UNREGISTER_AFTER_SECONDS, lambda: daemon.gateway.spawn(client.unregister())
        )


async def _listen(daemon: AsteriskDaemon, ssh: SshHost) -> None:
    layout = daemon.layout
    a = layout.addresses
    control = layout.asterisk_control_socket
    if control.exists():
        if _socket_answers(control):
            raise StartError(f"another Asterisk daemon already answers on {control}")
        control.unlink()
    try:
        await daemon.gateway.start()
    except OSError as error:
        raise StartError(
            f"cannot listen on {a.asterisk_host}:{a.asterisk_sip_port}/udp (SIP): {error.strerror}"
        ) from None
    try:
        await ssh.listen()
    except OSError as error:
        raise StartError(
            f"cannot listen on {a.asterisk_host}:{a.ssh_port}/tcp (SSH): {error.strerror}"
        ) from None
    try:
        await daemon.listen()
    except OSError as error:
        raise StartError(f"cannot create the control socket {control}: {error}") from None


async def serve(layout: LabLayout, scenario: str) -> int:
    host_key, client_key = seed(layout, scenario)
    daemon = AsteriskDaemon(layout)
    ssh = SshHost(layout, host_key, client_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    daemon.load_dialplan()
    daemon.load_pjsip(start=False)
    try:
        await _listen(daemon, ssh)
    except StartError as error:
        print(f"asterisk host: {error}", file=sys.stderr)
        await _shutdown(daemon, ssh)
        return 1
    _apply_scenario(daemon, scenario)
    daemon.gateway.start_registrations()
    _write_ready(layout, scenario)
    try:
        await stop.wait()
    finally:
        layout.ready_file(COMPONENT).unlink(missing_ok=True)
        await _shutdown(daemon, ssh)
    return 0


async def _shutdown(daemon: AsteriskDaemon, ssh: SshHost) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SHUTDOWN_BOUND_SECONDS):
            await ssh.close()
            await daemon.close()


def run(layout: LabLayout, scenario: str) -> int:
    with contextlib.suppress(PermissionError):
        os.setsid()  # its own session: a test's process group can be killed without it
    return asyncio.run(serve(layout, scenario))
