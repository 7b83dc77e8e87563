"""The "Asterisk daemon": configuration state, the CLI commands, and the control socket.

`asterisk -rx "<command>"` connects to the control socket, sends one command line and prints what
comes back. Answers are those of Asterisk 22.10.1, including its failures: an unknown command is
`No such command '...'`, a failing one ends with `Command '...' failed.`, and there is no
`pjsip reload` (PJSIP reloads with `module reload res_pjsip.so`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from remediate.lab.asterisk.asterisk_log import AsteriskLog
from remediate.lab.asterisk.conf import ConfigError
from remediate.lab.asterisk.dialplan import Dialplan, load_dialplan, show_dialplan
from remediate.lab.asterisk.outbound import RegisterRecord, RegistrationClient, SipGateway
from remediate.lab.asterisk.pjsip import (
    ASTERISK_VERSION,
    PjsipConfig,
    load_pjsip,
    registration_row,
    show_endpoint,
    show_endpoints,
    show_registration,
    show_registrations,
)
from remediate.lab.layout import LabLayout

VERSION_LINE = (
    f"Asterisk {ASTERISK_VERSION} built by root @ vm on a x86_64 running Linux on "
    "2026-11-28 12:38:44 UTC"
)
RELOADABLE_MODULES = ("pbx_config.so", "res_pjsip.so", "res_pjsip_outbound_registration.so")


@dataclass(frozen=True)
class Reply:
    output: str
    failed: bool = False


Handler = Callable[[list[str]], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    summary: str
    usage: str
    handler: Handler
    max_args: int = 0
    min_args: int = 0


class AsteriskDaemon:
    def __init__(self, layout: LabLayout) -> None:
        self.layout = layout
        self.etc = layout.asterisk_etc
        self.log = AsteriskLog(layout.asterisk_log)
        self.dialplan = Dialplan()
        self.gateway = SipGateway(
            (layout.addresses.asterisk_host, layout.addresses.asterisk_sip_port),
            RegisterRecord(register_record_path(layout)),
            self.log,
            lambda: self.dialplan,
        )
        self.commands = self._command_table()
        self._server: asyncio.AbstractServer | None = None

    # --- configuration ----------------------------------------------------------------------

    def load_dialplan(self) -> None:
        """Like pbx_config: a file that fails to parse is rejected whole; the old dialplan stays."""
        try:
            dialplan = load_dialplan(self.etc)
        except ConfigError as error:
            self.log.write(error.log_level, "config.c", str(error))
            return
        except OSError as error:
            self.log.write("WARNING", "pbx_config.c", f"Unable to open extensions.conf: {error}")
            return
        for warning in dialplan.warnings:
            self.log.write("WARNING", "pbx_config.c", warning)
        self.dialplan = dialplan

    def load_pjsip(self, *, start: bool) -> None:
        try:
            pjsip = load_pjsip(self.etc)
        except ConfigError as error:
            self.log.write(error.log_level, "config.c", str(error))
            return
        except OSError as error:
            self.log.write("ERROR", "res_sorcery_config.c", f"Unable to load config file: {error}")
            return
        for error_text in pjsip.errors:
            self.log.write("ERROR", "res_pjsip_outbound_registration.c", error_text)
        self.gateway.apply_config(pjsip, start=start)

    @property
    def pjsip(self) -> PjsipConfig:
        return self.gateway.pjsip

    # --- the CLI ----------------------------------------------------------------------------

    def _command_table(self) -> list[Command]:
        return [
            Command(("core", "show", "version"), "Display version info", "", self._version),
            Command(("core", "show", "help"), "Display help list, or specific help on a command",
                    "Usage: core show help [topic]\n", self._help, max_args=10),
            Command(("dialplan", "reload"), "Reload extensions and *only* extensions", "",
                    self._dialplan_reload),
            Command(("dialplan", "show"), "Show dialplan",
                    "Usage: dialplan show [[exten@]context]\n       Show dialplan\n",
                    self._dialplan_show, max_args=1),
            Command(("module", "reload"), "Reload configuration for a module",
                    "Usage: module reload [module ...]\n", self._module_reload, max_args=10),
            Command(("core", "reload"), "Global reload", "", self._core_reload),
            Command(("pjsip", "show", "registrations"), "List PJSIP Registrations", "",
                    self._show_registrations, max_args=2),
            Command(("pjsip", "show", "registration"), "Show PJSIP Registration",
                    "Usage: pjsip show registration <id>\n"
                    "       Show the configuration and status of a specific registration\n",
                    self._show_registration, max_args=1, min_args=1),
            Command(("pjsip", "show", "endpoints"), "List PJSIP Endpoints", "",
                    self._show_endpoints, max_args=2),
            Command(("pjsip", "show", "endpoint"), "Show PJSIP Endpoint",
                    "Usage: pjsip show endpoint <id>\n"
                    "       Show the configuration and status of a specific endpoint\n",
                    self._show_endpoint, max_args=1, min_args=1),
            Command(("pjsip", "send", "register"),
                    "Registers an outbound registration target",
                    "Usage: pjsip send register <registration> | *all \n"
                    "       Unregisters the specified (or all) outbound registration(s) then "
                    "starts registration(s) and schedules re-registrations.\n",
                    self._send_register, max_args=1, min_args=1),
            Command(("pjsip", "send", "unregister"),
                    "Unregisters outbound registration target",
                    "Usage: pjsip send unregister <registration> | *all\n"
                    "       Unregisters the specified (or all) outbound registration(s) and stops "
                    "future registration attempts.\n",
                    self._send_unregister, max_args=1, min_args=1),
        ]  # fmt: skip

    def _find(self, words: list[str]) -> tuple[Command, list[str]] | None:
        lowered = [word.lower() for word in words]
        best: Command | None = None
        for command in self.commands:
            size = len(command.words)
            if tuple(lowered[:size]) == command.words and (best is None or size > len(best.words)):
                best = command
        if best is None:
            return None
        return best, words[len(best.words) :]

    async def execute(self, line: str) -> str:
        line = line.strip()
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        found = self._find(words)
        if found is None or len(found[1]) > found[0].max_args:
            return (
                f"No such command '{line}' (type 'core show help {line}' for other possible "
                "commands)\n"
            )
        command, arguments = found
        if len(arguments) < command.min_args:
            return command.usage
        reply = await command.handler(arguments)
        output = reply.output
        if reply.failed:
            output += f"Command '{line}' failed.\n"
        return output or "\n"

    async def _version(self, _arguments: list[str]) -> Reply:
        return Reply(VERSION_LINE + "\n")

    async def _help(self, _arguments: list[str]) -> Reply:
        lines = [f"{' '.join(c.words):>30} -- {c.summary}" for c in self.commands]
        return Reply("\n".join(sorted(lines)) + "\n")

    async def _dialplan_reload(self, _arguments: list[str]) -> Reply:
        self.load_dialplan()
        return Reply("Dialplan reloaded.\n")

    async def _dialplan_show(self, arguments: list[str]) -> Reply:
        output, succeeded = show_dialplan(self.dialplan, arguments[0] if arguments else None)
        return Reply(output, failed=not succeeded)

    def _reload_module(self, module: str) -> None:
        if module == "pbx_config.so":
            self.load_dialplan()
        else:
            self.load_pjsip(start=True)

    async def _module_reload(self, arguments: list[str]) -> Reply:
        if not arguments:
            return await self._core_reload([])
        lines = []
        for module in arguments:
            name = module if module.endswith(".so") else module + ".so"
            if name not in RELOADABLE_MODULES:
                lines.append(f"No such module '{module}'")
                continue
            self._reload_module(name)
            lines.append(f"Module '{module}' reloaded successfully.")
        return Reply("\n".join(lines) + "\n")

    async def _core_reload(self, _arguments: list[str]) -> Reply:
        self.load_dialplan()
        self.load_pjsip(start=True)
        return Reply("")

    def _row(self, client: RegistrationClient) -> str:
        return registration_row(client.registration, client.status, client.expires_in())

    async def _show_registrations(self, _arguments: list[str]) -> Reply:
        rows = [self._row(client) for client in self.gateway.clients.values()]
        return Reply(show_registrations(rows))

    async def _show_registration(self, arguments: list[str]) -> Reply:
        client = self.gateway.clients.get(arguments[0])
        if client is None:
            return Reply(f"Unable to find object {arguments[0]}.\n")
        return Reply(show_registration(self._row(client), client.registration))

    async def _show_endpoints(self, _arguments: list[str]) -> Reply:
        return Reply(show_endpoints(self.pjsip))

    async def _show_endpoint(self, arguments: list[str]) -> Reply:
        endpoint = self.pjsip.endpoints.get(arguments[0])
        if endpoint is None:
            return Reply(f"Unable to find object {arguments[0]}.\n")
        return Reply(show_endpoint(self.pjsip, endpoint))

    async def _send_register(self, arguments: list[str]) -> Reply:
        name = arguments[0]
        if name == "*all":
            for client in self.gateway.clients.values():
                self.gateway.spawn(client.reregister())
            return Reply("Re-register all queued\n")
        found = self.gateway.clients.get(name)
        if found is None:
            return Reply(f"Unable to retrieve registration {name}\n", failed=True)
        self.gateway.spawn(found.reregister())
        return Reply("")

    async def _send_unregister(self, arguments: list[str]) -> Reply:
        name = arguments[0]
        if name == "*all":
            for client in self.gateway.clients.values():
                self.gateway.spawn(client.unregister())
            return Reply("Unregister all queued\n")
        found = self.gateway.clients.get(name)
        if found is None:
            return Reply(f"Unable to retrieve registration {name}\n", failed=True)
        self.gateway.spawn(found.unregister())
        return Reply("")

    # --- the control socket -----------------------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await reader.readline()
            output = await self.execute(line.decode("utf-8", errors="replace"))
            writer.write(output.encode("utf-8"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def listen(self) -> None:
        path = self.layout.asterisk_control_socket
        path.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._serve_client, path=str(path))
        path.chmod(0o660)

    async def close(self) -> None:
        self.gateway.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.layout.asterisk_control_socket.unlink(missing_ok=True)


def register_record_path(layout: LabLayout) -> Path:
    """The JSON lines record of REGISTERs the gateway sent and the responses it received."""
    return layout.asterisk_dir / "log" / "sip-register.jsonl"
