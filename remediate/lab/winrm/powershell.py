"""The lab's PowerShell: runs the parsed subset (see `pslang`) against a `WindowsHost`.

Values are Python objects standing in for the .NET objects the real cmdlets return (a service
controller, a FileInfo, a DateTime, a NetUDPEndpoint), each with only the members the product's
scripts touch; `[regex]::Replace` runs the pattern with Python's `re` (the product keeps to the
syntax both engines share) and substitutes as .NET does. Errors are error records written to
stderr as CLIXML, as powershell.exe does when its output is redirected; the exit code follows
powershell.exe's rules (1 after a terminating error or when the last statement failed, the number
given to `exit`).
"""

from __future__ import annotations

import datetime
import fnmatch
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from remediate.lab.windows import ServiceError, WindowsHost
from remediate.lab.winrm import pslang
from remediate.lab.winrm.pslang import (
    ArrayLiteral,
    Assignment,
    BinaryOperation,
    Command,
    Exit,
    Literal,
    Member,
    MethodCall,
    Parameter,
    Pipeline,
    ScriptBlock,
    StaticCall,
    SubPipeline,
    Variable,
)

DOTNET_EPOCH = datetime.datetime(1, 1, 1)
SERVICE_POLL_SECONDS = 0.05
# How long a background service control request may run; WaitForStatus bounds what the script sees.
SERVICE_CONTROL_SECONDS = 300.0
NOT_RECOGNIZED = (
    "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or "
    "operable "
    "program. Check the spelling of the name, or if a path was included, verify that the path is "
    "correct and try again."
)


@dataclass(frozen=True)
class ProgramOutput:
    stdout: str
    stderr: str
    exit_code: int


# Runs an external program by name (hostname, whoami, mlcmd.exe ...); None when there is none.
ProgramRunner = Callable[[str, Sequence[str]], ProgramOutput | None]


class PSError(Exception):
    """An error record. `terminating` errors stop the statement (and the script under Stop)."""

    def __init__(
        self,
        message: str,
        *,
        command: str = "",
        category: str = "NotSpecified",
        target: str = "",
        error_id: str = "",
        exception: str = "System.Management.Automation.RuntimeException",
        terminating: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.command = command
        self.category = category
        self.target = target
        self.error_id = error_id or exception.rsplit(".", 1)[-1]
        self.exception = exception
        self.terminating = terminating
        self.halts_script = False

    def render(self) -> list[str]:
        prefix = f"{self.command} : " if self.command else ""
        target = f"({self.target}:String)" if self.target else "(:)"
        source = f" [{self.command}]" if self.command else " []"
        return [
            f"{prefix}{self.message}",
            f"    + CategoryInfo          : {self.category}: {target}{source}, "
            f"{self.exception.rsplit('.', 1)[-1]}",
            f"    + FullyQualifiedErrorId : {self.error_id}"
            + (
                f",Microsoft.PowerShell.Commands.{self.command.replace('-', '')}Command"
                if self.command in CANONICAL.values()
                else ""
            ),
            " ",
        ]


class _ExitScript(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def clixml(records: Sequence[PSError]) -> str:
    """powershell.exe's redirected error stream: `#< CLIXML` then one <S S="Error"> per line."""
    parts = []
    for record in records:
        for line in record.render():
            text = escape(line.replace("_x", "_x005F_x")) + "_x000D__x000A_"
            parts.append(f'<S S="Error">{text}</S>')
    return (
        "#< CLIXML\r\n"
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        + "".join(parts)
        + "</Objs>"
    )


# .NET stand-ins


class PSObject:
    type_name = "System.Object"

    def properties(self) -> dict[str, Callable[[], object]]:
        return {}

    def methods(self) -> dict[str, Callable[..., object]]:
        return {}

    def text(self) -> str:
        return self.type_name


@dataclass
class DateTimeValue(PSObject):
    moment: datetime.datetime  # timezone-aware
    utc: bool = False
    type_name = "System.DateTime"

    def wall_clock(self) -> datetime.datetime:
        zone = datetime.UTC if self.utc else self.moment.tzinfo
        return self.moment.astimezone(zone).replace(tzinfo=None)

    def round_trip(self) -> str:
        wall = self.wall_clock()
        fraction = f"{wall.microsecond:06d}0"
        base = wall.strftime("%Y-%m-%dT%H:%M:%S") + "." + fraction
        if self.utc:
            return base + "Z"
        offset = self.moment.utcoffset() or datetime.timedelta()
        sign = "-" if offset < datetime.timedelta() else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        return f"{base}{sign}{minutes // 60:02d}:{minutes % 60:02d}"

    def format(self, pattern: str) -> str:
        if pattern in ("o", "O"):
            return self.round_trip()
        raise PSError(
            f"The lab's DateTime formats only 'o', not '{pattern}'.",
            exception="System.FormatException",
        )

    def properties(self) -> dict[str, Callable[[], object]]:
        wall = self.wall_clock()
        return {
            "ticks": lambda: (wall - DOTNET_EPOCH) // datetime.timedelta(microseconds=1) * 10,
            "year": lambda: wall.year,
            "kind": lambda: "Utc" if self.utc else "Local",
        }

    def methods(self) -> dict[str, Callable[..., object]]:
        return {
            "tostring": lambda pattern=None: (
                self.text() if pattern is None else self.format(str(pattern))
            ),
            "touniversaltime": lambda: DateTimeValue(self.moment, utc=True),
        }

    def text(self) -> str:
        wall = self.wall_clock()
        return (
            f"{wall:%A}, {wall:%B} {wall.day}, {wall.year} {wall.hour % 12 or 12}:{wall:%M:%S %p}"
        )


@dataclass
class FileInfoValue(PSObject):
    windows_directory: str
    path: Path
    zone: datetime.tzinfo
    type_name = "System.IO.FileInfo"

    def properties(self) -> dict[str, Callable[[], object]]:
        def modified() -> datetime.datetime:
            return datetime.datetime.fromtimestamp(self.path.stat().st_mtime, tz=self.zone)

        return {
            "name": lambda: self.path.name,
            "fullname": lambda: self.windows_directory.rstrip("\\") + "\\" + self.path.name,
            "length": lambda: self.path.stat().st_size,
            "lastwritetime": lambda: DateTimeValue(modified()),
            "lastwritetimeutc": lambda: DateTimeValue(modified(), utc=True),
        }

    def text(self) -> str:
        return self.path.name


@dataclass
class RecordValue(PSObject):
    """A CIM instance or a plain record: read-only named properties."""

    type_name_: str
    values: dict[str, object]

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return self.type_name_

    def properties(self) -> dict[str, Callable[[], object]]:
        def constant(value: object) -> Callable[[], object]:
            return lambda: value

        return {key.lower(): constant(value) for key, value in self.values.items()}


@dataclass
class ServiceControls:
    """Service control requests in flight, shared by every command of one endpoint."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: dict[str, tuple[str, ServiceError]] = field(default_factory=dict)

    def launch(self, host: WindowsHost, name: str, method: str) -> None:
        action = host.start_service if method == "Start" else host.stop_service
        with self.lock:
            self.failures.pop(name.lower(), None)

        def control() -> None:
            try:
                action(name, SERVICE_CONTROL_SECONDS)
            except ServiceError as error:
                with self.lock:
                    self.failures[name.lower()] = (method, error)

        threading.Thread(target=control, name=f"service-{method}-{name}", daemon=True).start()

    def failure(self, name: str) -> tuple[str, ServiceError] | None:
        with self.lock:
            return self.failures.get(name.lower())


@dataclass
class ServiceValue(PSObject):
    host: WindowsHost
    controls: ServiceControls
    name: str
    type_name = "System.ServiceProcess.ServiceController"

    def status(self) -> str:
        return self.host.service_status(self.name) or "Stopped"

    def properties(self) -> dict[str, Callable[[], object]]:
        return {
            "name": lambda: self.name,
            "servicename": lambda: self.name,
            "status": self.status,
            "displayname": lambda: self.host.service_display_name(self.name) or self.name,
        }

    def methods(self) -> dict[str, Callable[..., object]]:
        return {
            "start": lambda: self._control("Start", "Running"),
            "stop": lambda: self._control("Stop", "Stopped"),
            "waitforstatus": self.wait_for_status,
            "refresh": lambda: None,
        }

    def _control(self, method: str, forbidden_state: str) -> None:
        if self.status() == forbidden_state:
            verb = "start" if method == "Start" else "stop"
            raise _method_error(method, 0, f"Cannot {verb} service {self.name} on computer '.'.")
        self.controls.launch(self.host, self.name, method)

    def wait_for_status(self, wanted: object, timeout: object = None) -> None:
        wanted_state = str(wanted)
        seconds = _timespan_seconds(timeout) if timeout is not None else None
        deadline = None if seconds is None else time.monotonic() + seconds
        arguments = 1 if timeout is None else 2
        while True:
            state = self.status()
            if state.lower() == wanted_state.lower():
                return
            failure = self.controls.failure(self.name)
            if failure is not None and not state.endswith("Pending"):
                method, error = failure
                raise _method_error(method, 0, str(error))
            if deadline is not None and time.monotonic() >= deadline:
                raise _method_error(
                    "WaitForStatus",
                    arguments,
                    "Time out has expired and the operation has not been completed.",
                )
            time.sleep(SERVICE_POLL_SECONDS)

    def text(self) -> str:
        return self.name


def _method_error(method: str, count: int, message: str) -> PSError:
    return PSError(
        f'Exception calling "{method}" with "{count}" argument(s): "{message}"',
        error_id="MethodInvocationException" if method != "WaitForStatus" else "TimeoutException",
        exception="System.Management.Automation.MethodInvocationException",
    )


def _timespan_seconds(value: object) -> float:
    if isinstance(value, int):
        return float(value) / 10_000_000  # a number converts to TimeSpan as ticks
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?", str(value).strip())
    if not match:
        raise PSError(
            f'Cannot convert value "{value}" to type "System.TimeSpan".',
            exception="System.Management.Automation.PSInvalidCastException",
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def to_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, PSObject):
        return value.text()
    if isinstance(value, list):
        return " ".join(to_text(item) for item in value)
    return str(value)


def composite_format(pattern: str, values: Sequence[object]) -> str:
    """.NET's String.Format for `{index}`, `{index,alignment}`, `{index:format}` and `{{ }}`."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "{" and pattern.startswith("{{", index):
            out.append("{")
            index += 2
        elif char == "}" and pattern.startswith("}}", index):
            out.append("}")
            index += 2
        elif char == "{":
            end = pattern.find("}", index)
            match = (
                re.fullmatch(r"(\d+)(?:,(-?\d+))?(?::(.*))?", pattern[index + 1 : end])
                if end > 0
                else None
            )
            if match is None or int(match.group(1)) >= len(values):
                raise PSError(
                    "Error formatting a string: Index (zero based) must be greater than or equal "
                    "to zero "
                    "and less than the size of the argument list..",
                    exception="System.FormatException",
                    error_id="FormatError",
                )
            value = values[int(match.group(1))]
            if match.group(3) and isinstance(value, DateTimeValue):
                text = value.format(match.group(3))
            else:
                text = to_text(value)
            if match.group(2):
                width = int(match.group(2))
                text = text.ljust(-width) if width < 0 else text.rjust(width)
            out.append(text)
            index = end + 1
        elif char == "}":
            raise PSError("Error formatting a string: Input string was not in a correct format..")
        else:
            out.append(char)
            index += 1
    return "".join(out)


_SUBSTITUTION = re.compile(r"\$(?:\$|&|\{(\w+)\}|([0-9]+))")


def dotnet_substitution(
    pattern: re.Pattern[str], replacement: str
) -> Callable[[re.Match[str]], str]:
    """.NET's replacement pattern for `pattern`: `$$`, `$&`, `${group}` and `$number` (all of its
    digits) substitute; an unmatched group is empty, and a `$` that names no group stays itself.
    `$``, `$'`, `$+` and `$_` are outside the lab's PowerShell."""
    if re.search(r"\$[`'+_]", replacement):
        raise PSError("$`, $', $+ and $_ substitutions are outside the lab's PowerShell.")
    parts: list[str | int] = []
    position = 0
    for found in _SUBSTITUTION.finditer(replacement):
        parts.append(replacement[position : found.start()])
        position = found.end()
        name = found.group(1) or found.group(2)
        if found.group() == "$$":
            parts.append("$")
        elif found.group() == "$&":
            parts.append(0)
        elif name.isdigit() and int(name) <= pattern.groups:
            parts.append(int(name))
        elif name in pattern.groupindex:
            parts.append(pattern.groupindex[name])
        else:
            parts.append(found.group())
    parts.append(replacement[position:])

    def substitute(match: re.Match[str]) -> str:
        return "".join(part if isinstance(part, str) else match.group(part) or "" for part in parts)

    return substitute


def _flatten(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _compare(operator: str, left: object, right: object) -> bool:
    if isinstance(left, PSObject):
        left = left.text()
    if isinstance(left, bool):
        right = bool(right)
    elif isinstance(left, int):
        try:
            right = int(str(right))
        except ValueError as error:
            raise PSError(
                f'Cannot convert value "{right}" to type "System.Int32".',
                exception="System.Management.Automation.PSInvalidCastException",
            ) from error
    else:
        left, right = to_text(left).lower(), to_text(right).lower()
    if operator == "-like":
        return fnmatch.fnmatchcase(str(left), str(right))
    if operator == "-notlike":
        return not fnmatch.fnmatchcase(str(left), str(right))
    if operator == "-match":
        return re.search(str(right), str(left), re.IGNORECASE) is not None
    results = {
        "-eq": left == right,
        "-ne": left != right,
        "-ge": left >= right,  # type: ignore[operator]
        "-gt": left > right,  # type: ignore[operator]
        "-le": left <= right,  # type: ignore[operator]
        "-lt": left < right,  # type: ignore[operator]
    }
    return results[operator]


def _truthy(value: object) -> bool:
    if isinstance(value, list):
        return any(_truthy(item) for item in value) if len(value) == 1 else bool(value)
    return bool(value)


def decode_file_text(data: bytes) -> str:
    """Windows PowerShell 5.1's Get-Content default: a BOM wins, otherwise the ANSI code page."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    return data.decode("cp1252", errors="replace")


_LINE_BREAK = re.compile(r"\r\n|\n|\r")


@dataclass(frozen=True)
class CmdletSpec:
    switches: frozenset[str]
    values: tuple[str, ...]  # valued parameters; the first ones are positional in this order
    positional: int = 1


COMMON_VALUES = ("erroraction",)

# Each cmdlet: its parameters (lower case). Unique prefixes bind like PowerShell's.
CMDLETS: dict[str, CmdletSpec] = {
    "get-service": CmdletSpec(frozenset(), ("name",)),
    "stop-service": CmdletSpec(frozenset({"force", "nowait"}), ("name", "inputobject")),
    "get-childitem": CmdletSpec(frozenset({"file"}), ("literalpath", "filter")),
    "where-object": CmdletSpec(frozenset(), ("filterscript",)),
    "foreach-object": CmdletSpec(frozenset(), ("process",)),
    "get-content": CmdletSpec(frozenset({"raw"}), ("literalpath", "totalcount")),
    "select-object": CmdletSpec(frozenset(), ("skip", "first"), positional=0),
    "get-netudpendpoint": CmdletSpec(frozenset(), ("localport",), positional=0),
    "get-nettcpconnection": CmdletSpec(frozenset(), ("localport", "state"), positional=0),
    "get-process": CmdletSpec(frozenset(), ("id",), positional=0),
    "get-date": CmdletSpec(frozenset(), ("format",), positional=0),
    "write-output": CmdletSpec(frozenset(), ("inputobject",)),
}
ALIASES = {
    "echo": "write-output",
    "%": "foreach-object",
    "?": "where-object",
    "gci": "get-childitem",
}
CANONICAL = {name: "-".join(part.capitalize() for part in name.split("-")) for name in CMDLETS}
CANONICAL.update(
    {
        "get-netudpendpoint": "Get-NetUDPEndpoint",
        "get-nettcpconnection": "Get-NetTCPConnection",
        "foreach-object": "ForEach-Object",
        "get-childitem": "Get-ChildItem",
    }
)


@dataclass
class PowerShellResult:
    stdout: str
    stderr: str
    exit_code: int


class PowerShell:
    """One powershell.exe run: its variables, its error records, its output."""

    def __init__(
        self, host: WindowsHost, controls: ServiceControls, run_program: ProgramRunner
    ) -> None:
        self.host = host
        self.controls = controls
        self.run_program = run_program
        self.variables: dict[str, object] = {
            "erroractionpreference": "Continue",
            "null": None,
            "true": True,
            "false": False,
            "lastexitcode": 0,
        }
        self.errors: list[PSError] = []
        self.statement_failed = False

    def run(self, script: str) -> PowerShellResult:
        output: list[str] = []
        exit_code: int | None = None
        try:
            statements = pslang.parse(script)
        except pslang.ParseError as error:
            line = script.count("\n", 0, error.position) + 1
            column = error.position - (script.rfind("\n", 0, error.position) + 1) + 1
            self.errors.append(
                PSError(
                    f"At line:{line} char:{column}\r\n{error}",
                    category="ParserError",
                    error_id="ParseException",
                    exception="System.Management.Automation.ParseException",
                )
            )
            return self._result(output, 1)
        try:
            for statement in statements:
                self.statement_failed = False
                try:
                    output.extend(to_text(item) for item in self.statement(statement))
                except PSError as error:
                    self.errors.append(error)
                    self.statement_failed = True
                    if self._preference() == "stop" or error.halts_script:
                        exit_code = 1
                        break
        except _ExitScript as request:
            exit_code = request.code
        if exit_code is None:
            exit_code = 1 if self.statement_failed else 0
        return self._result(output, exit_code)

    def _result(self, output: list[str], exit_code: int) -> PowerShellResult:
        stdout = "".join(line + "\r\n" for line in output)
        return PowerShellResult(stdout, clixml(self.errors) if self.errors else "", exit_code)

    def _preference(self) -> str:
        return to_text(self.variables.get("erroractionpreference")).lower()

    def statement(self, statement: pslang.Statement) -> list[object]:
        if isinstance(statement, Assignment):
            values = self.pipeline(statement.value)
            name = statement.variable.lower()
            if name != "null":
                self.variables[name] = values[0] if len(values) == 1 else (values or None)
            return []
        if isinstance(statement, Exit):
            code = 0 if statement.code is None else self.expression(statement.code)
            raise _ExitScript(int(to_text(code) or 0))
        return self.pipeline(statement)

    def pipeline(self, pipeline: Pipeline) -> list[object]:
        items: list[object] | None = None
        for element in pipeline.elements:
            if isinstance(element, Command):
                items = self.command(element, items)
            else:
                items = _flatten(self.expression(element))
        return items or []

    def script_block(self, block: ScriptBlock, current: object) -> list[object]:
        saved = self.variables.get("_")
        self.variables["_"] = current
        try:
            out: list[object] = []
            for statement in block.statements:
                out.extend(self.statement(statement))
            return out
        finally:
            self.variables["_"] = saved

    # Expressions

    def expression(self, node: pslang.Expression) -> object:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Variable):
            return self.variables.get(node.name.lower())
        if isinstance(node, ArrayLiteral):
            return [self.expression(item) for item in node.items]
        if isinstance(node, SubPipeline):
            values = self.pipeline(node.pipeline)
            return values[0] if len(values) == 1 else (values or None)
        if isinstance(node, ScriptBlock):
            return node
        if isinstance(node, Member):
            return self.member(self.expression(node.target), node.name)
        if isinstance(node, MethodCall):
            target = self.expression(node.target)
            return self.call(target, node.name, [self.expression(arg) for arg in node.arguments])
        if isinstance(node, StaticCall):
            return self.static_call(node)
        return self.binary(node)

    def binary(self, node: BinaryOperation) -> object:
        left = self.expression(node.left)
        right = self.expression(node.right)
        if node.operator == "-f":
            return composite_format(
                to_text(left), _flatten(right) if isinstance(right, list) else [right]
            )
        if node.operator == "-and":
            return _truthy(left) and _truthy(right)
        if node.operator == "-or":
            return _truthy(left) or _truthy(right)
        if isinstance(left, list):
            return [item for item in left if _compare(node.operator, item, right)]
        return _compare(node.operator, left, right)

    def member(self, target: object, name: str) -> object:
        if isinstance(target, list):
            return [self.member(item, name) for item in target]
        if isinstance(target, str):
            return len(target) if name.lower() == "length" else None
        if isinstance(target, PSObject):
            getter = target.properties().get(name.lower())
            return getter() if getter else None
        return None

    def call(self, target: object, name: str, arguments: list[object]) -> object:
        methods = target.methods() if isinstance(target, PSObject) else {}
        if isinstance(target, str | int) and name.lower() == "tostring" and not arguments:
            return to_text(target)
        method = methods.get(name.lower())
        if method is None:
            type_name = target.type_name if isinstance(target, PSObject) else type(target).__name__
            raise PSError(
                f"Method invocation failed because [{type_name}] does not contain a method named "
                f"'{name}'.",
                category="InvalidOperation",
                error_id="MethodNotFound",
            )
        return method(*arguments)

    def static_call(self, node: StaticCall) -> object:
        arguments = [self.expression(arg) for arg in node.arguments]
        type_name = node.type_name.lower()
        if (
            type_name in ("regex", "system.text.regularexpressions.regex")
            and node.name.lower() == "replace"
        ):
            if len(arguments) != 3:
                raise _method_error("Replace", len(arguments), "Wrong number of arguments")
            try:
                pattern = re.compile(to_text(arguments[1]))
            except re.error as error:
                raise _method_error("Replace", 3, f'parsing "{arguments[1]}" - {error}') from error
            substitute = dotnet_substitution(pattern, to_text(arguments[2]))
            return pattern.sub(substitute, to_text(arguments[0]))
        raise PSError(
            f"[{node.type_name}]::{node.name} is outside the lab's PowerShell.",
            category="InvalidOperation",
        )

    # Commands

    def command(self, node: Command, piped: list[object] | None) -> list[object]:
        name = ALIASES.get(node.name.lower(), node.name.lower())
        spec = None if node.invoked else CMDLETS.get(name)
        if spec is None:
            return self.program(node, piped)
        canonical = CANONICAL[name]
        bound = self.bind(node, spec, canonical)
        action = str(bound.pop("erroraction", self._preference())).lower()
        handler: Callable[[dict[str, Any], list[object] | None], list[object]] = getattr(
            self, "cmdlet_" + name.replace("-", "_")
        )
        try:
            return handler(bound, piped)
        except PSError as error:
            error.command = error.command or canonical
            if action == "stop":
                # -ErrorAction Stop makes it an ActionPreferenceStopException: the script halts.
                error.halts_script = True
                raise
            if error.terminating:
                raise
            if action != "silentlycontinue":
                self.errors.append(error)
            self.statement_failed = True
            return []

    def bind(self, node: Command, spec: CmdletSpec, canonical: str) -> dict[str, Any]:
        names = [*spec.switches, *spec.values, *COMMON_VALUES]
        bound: dict[str, Any] = {}
        positional = list(spec.values[: spec.positional])
        arguments = list(node.arguments)
        while arguments:
            argument = arguments.pop(0)
            if isinstance(argument, Parameter):
                written = argument.name.lower()
                written = {"ea": "erroraction"}.get(written, written)
                matches = [name for name in names if name == written] or [
                    name for name in names if name.startswith(written)
                ]
                if len(matches) != 1:
                    raise PSError(
                        "A parameter cannot be found that matches parameter name "
                        f"'{argument.name}'.",
                        command=canonical,
                        category="InvalidArgument",
                        error_id="NamedParameterNotFound",
                        exception="System.Management.Automation.ParameterBindingException",
                    )
                name = matches[0]
                if name in spec.switches:
                    bound[name] = True
                    continue
                if not arguments or isinstance(arguments[0], Parameter):
                    raise PSError(
                        f"Missing an argument for parameter '{argument.name}'. "
                        "Specify a parameter of "
                        "the type required and try again.",
                        command=canonical,
                        category="InvalidArgument",
                        error_id="MissingArgument",
                        exception="System.Management.Automation.ParameterBindingException",
                    )
                value = arguments.pop(0)
                assert not isinstance(value, Parameter)
                bound[name] = self.expression(value)
                if name in positional:
                    positional.remove(name)
            else:
                if not positional:
                    raise PSError(
                        f"A positional parameter cannot be found that accepts argument "
                        f"'{to_text(self.expression(argument))}'.",
                        command=canonical,
                        category="InvalidArgument",
                        error_id="PositionalParameterNotFound",
                        exception="System.Management.Automation.ParameterBindingException",
                    )
                bound[positional.pop(0)] = self.expression(argument)
        return bound

    def program(self, node: Command, piped: list[object] | None) -> list[object]:
        arguments: list[str] = []
        for argument in node.arguments:
            if isinstance(argument, Parameter):
                arguments.append("-" + argument.name)
            else:
                arguments.extend(to_text(value) for value in _flatten(self.expression(argument)))
        result = self.run_program(node.name, arguments)
        if result is None:
            raise PSError(
                NOT_RECOGNIZED.format(name=node.name),
                command=node.name,
                category="ObjectNotFound",
                target=node.name,
                error_id="CommandNotFoundException",
                exception="System.Management.Automation.CommandNotFoundException",
            )
        self.variables["lastexitcode"] = result.exit_code
        if result.stderr:
            # A native program's stderr becomes NativeCommandError records in Windows PowerShell.
            for line in _LINE_BREAK.split(result.stderr.rstrip("\r\n")):
                self.errors.append(
                    PSError(
                        line,
                        command=node.name,
                        category="NotSpecified",
                        error_id="NativeCommandError",
                    )
                )
        self.statement_failed = result.exit_code != 0
        return [line for line in _LINE_BREAK.split(result.stdout.rstrip("\r\n")) if result.stdout]

    def local_file(self, windows_path: str, command: str) -> Path:
        local = self.host.windows_to_local(windows_path)
        if local is None or not local.exists():
            raise PSError(
                f"Cannot find path '{windows_path}' because it does not exist.",
                command=command,
                category="ObjectNotFound",
                target=windows_path,
                error_id="PathNotFound",
                exception="System.Management.Automation.ItemNotFoundException",
                terminating=False,
            )
        return local

    def service(self, name: str) -> ServiceValue:
        if self.host.service_status(name) is None:
            raise PSError(
                f"Cannot find any service with service name '{name}'.",
                category="ObjectNotFound",
                target=name,
                error_id="NoServiceFoundForGivenName",
                exception="Microsoft.PowerShell.Commands.ServiceCommandException",
                terminating=False,
            )
        return ServiceValue(self.host, self.controls, name)

    def cmdlet_get_service(self, bound: dict[str, Any], piped: list[object] | None) -> list[object]:
        return [self.service(to_text(name)) for name in _flatten(bound.get("name"))]

    def cmdlet_stop_service(
        self, bound: dict[str, Any], piped: list[object] | None
    ) -> list[object]:
        targets = _flatten(bound.get("inputobject")) or piped or []
        services = [
            target if isinstance(target, ServiceValue) else self.service(to_text(target))
            for target in targets or [to_text(name) for name in _flatten(bound.get("name"))]
        ]
        for service in services:
            if service.status() in ("Stopped", "StopPending"):
                continue
            self.controls.launch(self.host, service.name, "Stop")
            if not bound.get("nowait"):
                service.wait_for_status("Stopped")
        return []

    def cmdlet_get_childitem(
        self, bound: dict[str, Any], piped: list[object] | None
    ) -> list[object]:
        directory = to_text(bound.get("literalpath"))
        local = self.local_file(directory, "Get-ChildItem")
        pattern = to_text(bound.get("filter") or "*").lower()
        zone = self.host.local_now().tzinfo or datetime.UTC
        entries = sorted(local.iterdir()) if local.is_dir() else [local]
        return [
            FileInfoValue(directory, entry, zone)
            for entry in entries
            if (entry.is_file() or not bound.get("file"))
            and fnmatch.fnmatchcase(entry.name.lower(), pattern)
        ]

    def cmdlet_where_object(
        self, bound: dict[str, Any], piped: list[object] | None
    ) -> list[object]:
        block = bound.get("filterscript")
        if not isinstance(block, ScriptBlock):
            raise PSError("Where-Object needs a script block in the lab's PowerShell.")
        return [item for item in piped or [] if _truthy(self.script_block(block, item))]

    def cmdlet_foreach_object(
        self, bound: dict[str, Any], piped: list[object] | None
    ) -> list[object]:
        block = bound.get("process")
        if not isinstance(block, ScriptBlock):
            raise PSError("ForEach-Object needs a script block in the lab's PowerShell.")
        out: list[object] = []
        for item in piped or []:
            out.extend(self.script_block(block, item))
        return out

    def cmdlet_get_content(self, bound: dict[str, Any], piped: list[object] | None) -> list[object]:
        path = to_text(bound.get("literalpath"))
        local = self.local_file(path, "Get-Content")
        text = decode_file_text(local.read_bytes())
        if bound.get("raw"):
            return [text]
        lines = _LINE_BREAK.split(text)
        if lines and lines[-1] == "":
            lines.pop()
        total = bound.get("totalcount")
        if total is not None and int(to_text(total)) >= 0:
            lines = lines[: int(to_text(total))]
        return list(lines)

    def cmdlet_select_object(
        self, bound: dict[str, Any], piped: list[object] | None
    ) -> list[object]:
        items = list(piped or [])
        skip = int(to_text(bound.get("skip") or 0))
        items = items[skip:]
        if bound.get("first") is not None:
            items = items[: int(to_text(bound["first"]))]
        return items

    def _listeners(self, protocol: str, bound: dict[str, Any], cim_class: str) -> list[object]:
        port = bound.get("localport")
        state = bound.get("state")
        found = [
            listener
            for listener in self.host.listeners()
            if listener.protocol == protocol
            and (port is None or listener.local_port == int(to_text(port)))
            and (state is None or listener.state.lower() == to_text(state).lower())
        ]
        if not found:
            query = "SELECT * FROM " + cim_class  # noqa: S608 - quoted in the error text only
            raise PSError(
                f"No matching {cim_class} objects found by CIM query for instances of the "
                f"ROOT/StandardCimv2/{cim_class} class on the  CIM server: {query}  "
                "WHERE ... Verify query parameters and retry.",
                category="ObjectNotFound",
                target=cim_class,
                error_id=f"CmdletizationQuery_NotFound,Get-{cim_class.removeprefix('MSFT_')}",
                exception="Microsoft.Management.Infrastructure.CimException",
                terminating=False,
            )
        return [
            RecordValue(
                cim_class,
                {
                    "LocalAddress": listener.local_address,
                    "LocalPort": listener.local_port,
                    "State": listener.state,
                    "OwningProcess": listener.pid,
                },
            )
            for listener in found
        ]

    def cmdlet_get_netudpendpoint(
        self, bound: dict[str, Any], piped: list[object] | None
    ) -> list[object]:
        return self._listeners("UDP", bound, "MSFT_NetUDPEndpoint")

    def cmdlet_get_nettcpconnection(
        self, bound: dict[str, Any], piped: list[object] | None
    ) -> list[object]:
        return self._listeners("TCP", bound, "MSFT_NetTCPConnection")

    def cmdlet_get_process(self, bound: dict[str, Any], piped: list[object] | None) -> list[object]:
        wanted = int(to_text(bound.get("id")))
        for listener in self.host.listeners():
            if listener.pid == wanted:
                return [
                    RecordValue(
                        "System.Diagnostics.Process",
                        {"Id": wanted, "ProcessName": listener.process_name},
                    )
                ]
        raise PSError(
            f"Cannot find a process with the process identifier {wanted}.",
            category="ObjectNotFound",
            target=str(wanted),
            error_id="NoProcessFoundForGivenId",
            exception="Microsoft.PowerShell.Commands.ProcessCommandException",
            terminating=False,
        )

    def cmdlet_get_date(self, bound: dict[str, Any], piped: list[object] | None) -> list[object]:
        now = DateTimeValue(self.host.local_now())
        if bound.get("format") is not None:
            return [now.format(to_text(bound["format"]))]
        return [now]

    def cmdlet_write_output(
        self, bound: dict[str, Any], piped: list[object] | None
    ) -> list[object]:
        return _flatten(bound.get("inputobject")) or list(piped or [])
