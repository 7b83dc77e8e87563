"""WS-Management's Windows shell protocol (MS-WSMV): Create, Command, Send, Receive, Signal, Delete.

Shells live on the endpoint, not on a connection (a client may reconnect). Every response carries
`RelatesTo` equal to the request's `MessageID`; faults are SOAP faults with a `WSManFault` code, the
codes Windows uses for the cases clients handle (2150858793 when a Receive has nothing within its
OperationTimeout, which clients retry; 2150858843 for a shell that does not exist).
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from remediate.lab.windows import WindowsHost
from remediate.lab.winrm.cmd import CommandOutput, WindowsShell
from remediate.lab.winrm.powershell import ServiceControls

SOAP = "http://www.w3.org/2003/05/soap-envelope"
ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
FAULT_DETAIL = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
CMD_RESOURCE = f"{SHELL}/cmd"
ANONYMOUS = f"{ADDRESSING}/role/anonymous"
ACTION_CREATE = f"{TRANSFER}/Create"
ACTION_DELETE = f"{TRANSFER}/Delete"
ACTION_COMMAND = f"{SHELL}/Command"
ACTION_SEND = f"{SHELL}/Send"
ACTION_RECEIVE = f"{SHELL}/Receive"
ACTION_SIGNAL = f"{SHELL}/Signal"
SIGNAL_TERMINATE = f"{SHELL}/signal/terminate"
SIGNAL_CTRL_C = f"{SHELL}/signal/ctrl_c"
STATE_RUNNING = f"{SHELL}/CommandState/Running"
STATE_DONE = f"{SHELL}/CommandState/Done"
STATUS_CONTROL_C_EXIT = -1073741510  # 0xC000013A as a signed exit code
FAULT_OPERATION_TIMEOUT = 2150858793
FAULT_SHELL_NOT_FOUND = 2150858843
FAULT_INTERNAL_ERROR = 2147500037  # E_FAIL
DEFAULT_MAX_ENVELOPE = 153600
DEFAULT_OPERATION_TIMEOUT = 60.0
MAX_OPERATION_TIMEOUT = 600.0


class WSManFault(Exception):
    def __init__(self, code: int, subcode: str, reason: str, *, receiver: bool = True) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.receiver = receiver


def operation_timeout_fault() -> WSManFault:
    return WSManFault(
        FAULT_OPERATION_TIMEOUT,
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified in "
        "OperationTimeout.  ",
    )


def internal_error_fault() -> WSManFault:
    return WSManFault(
        FAULT_INTERNAL_ERROR,
        "w:InternalError",
        "The WS-Management service cannot process the request because of an internal error.  ",
    )


def shell_not_found_fault(shell_id: str) -> WSManFault:
    return WSManFault(
        FAULT_SHELL_NOT_FOUND,
        "w:InvalidSelectors",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the "
        "shell was not found on the server. Possible causes are: the specified ShellId is "
        "incorrect or the shell no longer exists on the server. Provide the correct ShellId or "
        "create a new shell and "
        "retry the operation. ",
        receiver=False,
    )


def _duration_seconds(text: str | None) -> float | None:
    if not text:
        return None
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", text.strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


@dataclass
class Request:
    action: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    options: dict[str, str]
    operation_timeout: float
    max_envelope: int
    body: ET.Element | None

    @classmethod
    def parse(cls, text: bytes) -> Request:
        # The lab listens on loopback only and clients are test clients; the XML is theirs.
        root = ET.fromstring(text)  # noqa: S314
        header = root.find(f"{{{SOAP}}}Header")
        body_parent = root.find(f"{{{SOAP}}}Body")
        if header is None:
            raise WSManFault(
                2150858817, "w:InvalidMessageInformationHeader", "The SOAP header is missing."
            )

        def value(namespace: str, name: str) -> str:
            node = header.find(f"{{{namespace}}}{name}")
            return (node.text or "").strip() if node is not None else ""

        selector = header.find(f"{{{WSMAN}}}SelectorSet/{{{WSMAN}}}Selector[@Name='ShellId']")
        options = {
            option.get("Name", ""): (option.text or "").strip()
            for option in header.findall(f"{{{WSMAN}}}OptionSet/{{{WSMAN}}}Option")
        }
        timeout = _duration_seconds(value(WSMAN, "OperationTimeout"))
        envelope = value(WSMAN, "MaxEnvelopeSize")
        return cls(
            action=value(ADDRESSING, "Action"),
            message_id=value(ADDRESSING, "MessageID"),
            resource_uri=value(WSMAN, "ResourceURI"),
            shell_id=(selector.text or "").strip() if selector is not None else None,
            options=options,
            operation_timeout=min(timeout or DEFAULT_OPERATION_TIMEOUT, MAX_OPERATION_TIMEOUT),
            max_envelope=int(envelope) if envelope.isdigit() else DEFAULT_MAX_ENVELOPE,
            body=body_parent[0] if body_parent is not None and len(body_parent) else None,
        )


def message_id_of(text: bytes) -> str:
    """The request's MessageID even when the rest of it is not understood (for faults)."""
    match = re.search(rb"<(?:\w+:)?MessageID[^>]*>\s*([^<\s]+)\s*<", text)
    return match.group(1).decode("ascii", errors="replace") if match else ""


def envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{SOAP}" xmlns:a="{ADDRESSING}" '
        f'xmlns:x="{TRANSFER}" '
        f'xmlns:w="{WSMAN}" xmlns:rsp="{SHELL}" xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
        f"<s:Header><a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def fault_envelope(fault: WSManFault, relates_to: str, machine: str) -> bytes:
    side = "s:Receiver" if fault.receiver else "s:Sender"
    body = (
        f"<s:Fault><s:Code><s:Value>{side}</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value>"
        f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text>'
        f'</s:Reason><s:Detail><f:WSManFault xmlns:f="{FAULT_DETAIL}" Code="{fault.code}" '
        f"Machine={quoteattr(machine)}><f:Message>{escape(fault.reason)}</f:Message></f:WSManFault>"
        f"</s:Detail></s:Fault>"
    )
    return envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


@dataclass
class RunningCommand:
    command_id: str
    stdin_wanted: bool
    condition: threading.Condition = field(default_factory=threading.Condition)
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_sent: int = 0
    stderr_sent: int = 0
    exit_code: int | None = None

    def finish(self, output: CommandOutput) -> None:
        with self.condition:
            if self.exit_code is None:
                self.stdout, self.stderr, self.exit_code = (
                    output.stdout,
                    output.stderr,
                    output.exit_code,
                )
            self.condition.notify_all()


@dataclass
class Shell:
    shell_id: str
    runner: WindowsShell
    commands: dict[str, RunningCommand] = field(default_factory=dict)


class ShellService:
    """The shells of one endpoint and the WS-Management operations on them."""

    def __init__(self, host: WindowsHost, user: str, machine: str) -> None:
        self.host = host
        self.user = user
        self.machine = machine
        self.controls = ServiceControls()
        self.lock = threading.Lock()
        self.shells: dict[str, Shell] = {}

    def handle(self, text: bytes, address: str) -> tuple[int, bytes]:
        """Return (HTTP status, SOAP envelope) for one request body."""
        relates_to = message_id_of(text)
        try:
            request = Request.parse(text)
            return 200, self.dispatch(request, address)
        except ET.ParseError:
            fault = WSManFault(
                2150858817, "w:InvalidMessageInformationHeader", "The request is not XML."
            )
            return 400, fault_envelope(fault, relates_to, self.machine)
        except WSManFault as fault:
            return 500, fault_envelope(fault, relates_to, self.machine)

    def dispatch(self, request: Request, address: str) -> bytes:
        action = request.action
        if action == ACTION_CREATE:
            return self.create(request, address)
        handlers = {
            ACTION_DELETE: self.delete,
            ACTION_COMMAND: self.command,
            ACTION_SEND: self.send,
            ACTION_RECEIVE: self.receive,
            ACTION_SIGNAL: self.signal,
        }
        handler = handlers.get(action)
        if handler is None:
            raise WSManFault(
                2150858754,
                "a:ActionNotSupported",
                "The WS-Management service cannot process the request because the action "
                f"{action} is "
                "not supported by the lab.  ",
                receiver=False,
            )
        return handler(request, self.shell(request))

    def shell(self, request: Request) -> Shell:
        shell_id = request.shell_id or ""
        with self.lock:
            shell = self.shells.get(shell_id.upper())
        if shell is None:
            raise shell_not_found_fault(shell_id)
        return shell

    def create(self, request: Request, address: str) -> bytes:
        codepage = request.options.get("WINRS_CODEPAGE", "437")
        runner = WindowsShell(
            self.host, self.controls, self.user, int(codepage) if codepage.isdigit() else 437
        )
        shell_id = str(uuid.uuid4()).upper()
        with self.lock:
            self.shells[shell_id] = Shell(shell_id, runner)
        body = (
            f"<x:ResourceCreated><a:Address>{escape(address)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{CMD_RESOURCE}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters>"
            f"</x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{CMD_RESOURCE}</rsp:ResourceUri><rsp:Owner>{escape(self.user)}</rsp:Owner>"
            f"<rsp:ClientIP>127.0.0.1</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr"
            f"</rsp:OutputStreams><rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
            f"<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell>"
        )
        return envelope(f"{TRANSFER}/CreateResponse", request.message_id, body)

    def delete(self, request: Request, shell: Shell) -> bytes:
        with self.lock:
            self.shells.pop(shell.shell_id, None)
        return envelope(f"{TRANSFER}/DeleteResponse", request.message_id, "")

    def command(self, request: Request, shell: Shell) -> bytes:
        body = request.body
        line_node = body.find(f"{{{SHELL}}}Command") if body is not None else None
        arguments = body.findall(f"{{{SHELL}}}Arguments") if body is not None else []
        command_line = " ".join(
            [(line_node.text or "") if line_node is not None else ""]
            + [(a.text or "") for a in arguments]
        ).strip()
        skip_cmd = request.options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() == "TRUE"
        command_id = str(uuid.uuid4()).upper()
        running = RunningCommand(command_id, shell.runner.reads_stdin(command_line))
        shell.commands[command_id] = running

        def execute() -> None:
            if running.stdin_wanted:
                with running.condition:
                    running.condition.wait_for(
                        lambda: running.stdin_closed or running.exit_code is not None
                    )
            running.finish(shell.runner.run(command_line, bytes(running.stdin), skip_cmd=skip_cmd))

        threading.Thread(
            target=execute, name=f"winrm-command-{command_id[:8]}", daemon=True
        ).start()
        body_xml = (
            f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId>"
            "</rsp:CommandResponse>"
        )
        return envelope(f"{SHELL}/CommandResponse", request.message_id, body_xml)

    def running(self, shell: Shell, command_id: str) -> RunningCommand:
        running = shell.commands.get(command_id.upper())
        if running is None:
            raise WSManFault(
                2150858843,
                "w:InvalidSelectors",
                f"The request for the Windows Remote Shell with ShellId {shell.shell_id} failed "
                "because "
                f"the command with CommandId {command_id} was not found.  ",
                receiver=False,
            )
        return running

    def send(self, request: Request, shell: Shell) -> bytes:
        stream = request.body.find(f"{{{SHELL}}}Stream") if request.body is not None else None
        if stream is None:
            raise WSManFault(
                2150858817, "w:SchemaValidationError", "The Send request has no Stream."
            )
        running = self.running(shell, stream.get("CommandId", ""))
        data = base64.b64decode(stream.text or "")
        with running.condition:
            running.stdin.extend(data)
            if stream.get("End", "false").lower() == "true":
                running.stdin_closed = True
            running.condition.notify_all()
        return envelope(f"{SHELL}/SendResponse", request.message_id, "<rsp:SendResponse/>")

    def receive(self, request: Request, shell: Shell) -> bytes:
        desired = (
            request.body.find(f"{{{SHELL}}}DesiredStream") if request.body is not None else None
        )
        running = self.running(shell, desired.get("CommandId", "") if desired is not None else "")
        budget = max(4096, (min(request.max_envelope, 512000) - 4096) * 3 // 4)
        deadline = time.monotonic() + request.operation_timeout
        with running.condition:
            while running.exit_code is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise operation_timeout_fault()
                running.condition.wait(remaining)
            stdout = running.stdout[running.stdout_sent : running.stdout_sent + budget]
            running.stdout_sent += len(stdout)
            stderr = running.stderr[
                running.stderr_sent : running.stderr_sent + budget - len(stdout)
            ]
            running.stderr_sent += len(stderr)
            done = running.stdout_sent >= len(running.stdout) and running.stderr_sent >= len(
                running.stderr
            )
            exit_code = running.exit_code
        streams = []
        command_id = running.command_id
        for name, chunk in (("stdout", stdout), ("stderr", stderr)):
            if chunk:
                encoded = base64.b64encode(chunk).decode("ascii")
                streams.append(
                    f'<rsp:Stream Name="{name}" CommandId="{command_id}">{encoded}</rsp:Stream>'
                )
            if done:
                streams.append(
                    f'<rsp:Stream Name="{name}" CommandId="{command_id}" End="true"></rsp:Stream>'
                )
        if done:
            state = (
                f'<rsp:CommandState CommandId="{command_id}" State="{STATE_DONE}">'
                f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            state = f'<rsp:CommandState CommandId="{command_id}" State="{STATE_RUNNING}"/>'
        body = f"<rsp:ReceiveResponse>{''.join(streams)}{state}</rsp:ReceiveResponse>"
        return envelope(f"{SHELL}/ReceiveResponse", request.message_id, body)

    def signal(self, request: Request, shell: Shell) -> bytes:
        node = request.body
        command_id = node.get("CommandId", "") if node is not None else ""
        code_node = node.find(f"{{{SHELL}}}Code") if node is not None else None
        code = (code_node.text or "").strip() if code_node is not None else ""
        running = self.running(shell, command_id)
        if code in (SIGNAL_TERMINATE, SIGNAL_CTRL_C):
            running.finish(CommandOutput(b"", b"", STATUS_CONTROL_C_EXIT))
            if code == SIGNAL_TERMINATE:
                shell.commands.pop(running.command_id, None)
        return envelope(f"{SHELL}/SignalResponse", request.message_id, "<rsp:SignalResponse/>")

    def close(self) -> None:
        with self.lock:
            shells = list(self.shells.values())
            self.shells.clear()
        for shell in shells:
            for running in shell.commands.values():
                running.finish(CommandOutput(b"", b"", STATUS_CONTROL_C_EXIT))
