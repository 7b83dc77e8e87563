"""The lab's cmd.exe: what a WinRM `cmd` shell runs for each Command.

It enforces cmd.exe's 8191-character command-line limit, runs the few built-ins and programs that
testinfra and the product send raw (`echo`, `hostname`, `whoami`, `ver`, `powershell.exe`,
`mlcmd.exe`), encodes output in the shell's code page (437 unless WINRS_CODEPAGE says otherwise),
and answers anything else as cmd.exe does.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from remediate.lab.layout import GENESYS_APPLICATION, GENESYS_HOST_NAME, GENESYS_SERVICE
from remediate.lab.windows import ServiceError, WindowsHost
from remediate.lab.winrm.powershell import PowerShell, ProgramOutput, ServiceControls

MAX_COMMAND_LINE = 8191
COMMAND_LINE_TOO_LONG = "The command line is too long.\r\n"
CREATE_PROCESS_LIMIT = 32767
FILENAME_TOO_LONG = "The filename or extension is too long.\r\n"
NOT_RECOGNIZED = (
    "'{name}' is not recognized as an internal or external command,\r\n"
    "operable program or batch file.\r\n"
)
WINDOWS_VERSION = "Microsoft Windows [Version 10.0.17763.5458]"
# MLCmd asks Solution Control Server to stop or start an application; the lab's SCS is the host.
MLCMD_APPLICATIONS = {GENESYS_APPLICATION.lower(): GENESYS_SERVICE}
MLCMD_TIMEOUT_SECONDS = 60.0
_COMPOUND = re.compile(r"[&|<>]")


@dataclass(frozen=True)
class CommandOutput:
    stdout: bytes
    stderr: bytes
    exit_code: int


def split_arguments(text: str) -> list[str]:
    """CommandLineToArgvW's rules for the common cases: blanks separate, double quotes group."""
    arguments: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    for char in text:
        if char == '"':
            quoted = not quoted
            started = True
        elif char in " \t" and not quoted:
            if started:
                arguments.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        arguments.append("".join(current))
    return arguments


def _program_name(word: str) -> str:
    name = word.strip('"').replace("/", "\\").rsplit("\\", 1)[-1].lower()
    return name.removesuffix(".exe")


def _codec(codepage: int) -> str:
    return {65001: "utf-8", 1252: "cp1252", 850: "cp850"}.get(codepage, "cp437")


class WindowsShell:
    """Runs one command line as cmd.exe would, against the simulated host."""

    def __init__(
        self, host: WindowsHost, controls: ServiceControls, user: str, codepage: int = 437
    ) -> None:
        self.host = host
        self.controls = controls
        self.user = user
        self.codec = _codec(codepage)

    def encode(self, text: str) -> bytes:
        return text.encode(self.codec, errors="replace")

    def reads_stdin(self, command_line: str) -> bool:
        """powershell.exe reads its script from stdin with `-Command -` or with no command."""
        words = split_arguments(command_line.strip())
        if not words or _program_name(words[0]) != "powershell":
            return False
        script, _ = self._powershell_script(words[1:])
        return script is None

    def run(
        self, command_line: str, stdin: bytes = b"", *, skip_cmd: bool = False
    ) -> CommandOutput:
        # WINRS_SKIP_CMD_SHELL starts the program with CreateProcess, whose limit is 32767.
        if skip_cmd and len(command_line) > CREATE_PROCESS_LIMIT:
            return CommandOutput(b"", self.encode(FILENAME_TOO_LONG), 1)
        if not skip_cmd and len(command_line) > MAX_COMMAND_LINE:
            return CommandOutput(b"", self.encode(COMMAND_LINE_TOO_LONG), 1)
        line = command_line.strip()
        if not line:
            return CommandOutput(b"", b"", 0)
        first = line.split(None, 1)[0]
        name = _program_name(first)
        rest = line[len(first) :].strip()
        if name == "echo" or first.lower().startswith("echo."):
            text = rest if name == "echo" else line[5:]
            return CommandOutput(
                self.encode((text if text or name != "echo" else "ECHO is on.") + "\r\n"), b"", 0
            )
        if _COMPOUND.search(line.replace('"', "")) and name != "powershell":
            return self._output(
                ProgramOutput(
                    "", "The lab's cmd.exe runs one command per line: no &, |, < or >.\r\n", 1
                )
            )
        if name == "ver":
            return CommandOutput(self.encode(f"\r\n{WINDOWS_VERSION}\r\n"), b"", 0)
        if name == "exit":
            words = [word for word in split_arguments(rest) if word.lower() != "/b"]
            code = int(words[0]) if words and words[0].lstrip("-").isdigit() else 0
            return CommandOutput(b"", b"", code)
        if name == "powershell":
            return self.powershell(split_arguments(rest), stdin)
        result = self.program(name, split_arguments(rest))
        if result is None:
            return CommandOutput(b"", self.encode(NOT_RECOGNIZED.format(name=first.strip('"'))), 1)
        return self._output(result)

    def _output(self, result: ProgramOutput) -> CommandOutput:
        return CommandOutput(
            self.encode(result.stdout), self.encode(result.stderr), result.exit_code
        )

    def program(self, name: str, arguments: Sequence[str]) -> ProgramOutput | None:
        """The programs on the host's PATH, for cmd.exe and for PowerShell's `&`."""
        name = _program_name(name)
        if name == "hostname":
            return ProgramOutput(GENESYS_HOST_NAME + "\r\n", "", 0)
        if name == "whoami":
            return ProgramOutput(f"{GENESYS_HOST_NAME.lower()}\\{self.user.lower()}\r\n", "", 0)
        if name == "mlcmd":
            return self.mlcmd(arguments)
        return None

    def _powershell_script(self, arguments: Sequence[str]) -> tuple[str | None, str | None]:
        """(script, error): the script given by -EncodedCommand or -Command; None means stdin."""
        index = 0
        while index < len(arguments):
            word = arguments[index]
            lowered = word.lower()
            if not lowered.startswith("-"):
                return " ".join(arguments[index:]), None
            option = lowered[1:]
            if option in ("e", "ec") or (len(option) >= 2 and "encodedcommand".startswith(option)):
                if index + 1 >= len(arguments):
                    return "", "Missing argument for parameter -EncodedCommand."
                try:
                    raw = base64.b64decode(arguments[index + 1], validate=True)
                    return raw.decode("utf-16-le"), None
                except (binascii.Error, UnicodeDecodeError):
                    return "", (
                        "Cannot process the command because the value specified with "
                        "-EncodedCommand "
                        "is not properly encoded. The value must be Base64 encoded."
                    )
            if option in ("c",) or (len(option) >= 1 and "command".startswith(option)):
                remainder = arguments[index + 1 :]
                if remainder == ["-"]:
                    return None, None
                return " ".join(remainder), None
            if (len(option) >= 3 and "noprofile".startswith(option)) or (
                len(option) >= 4 and "noninteractive".startswith(option)
            ):
                index += 1
            elif len(option) >= 2 and "executionpolicy".startswith(option):
                index += 2
            elif option in ("nologo",):
                index += 1
            else:
                return (
                    "",
                    f"-{option} : The term '-{option}' is not recognized as a powershell.exe "
                    "parameter.",
                )
        return None, None

    def powershell(self, arguments: Sequence[str], stdin: bytes) -> CommandOutput:
        script, error = self._powershell_script(arguments)
        if error:
            return CommandOutput(b"", self.encode(error + "\r\n"), 1)
        if script is None:
            script = stdin.decode(self.codec, errors="replace")
        result = PowerShell(self.host, self.controls, self.program).run(script)
        return CommandOutput(
            self.encode(result.stdout), self.encode(result.stderr), result.exit_code
        )

    def mlcmd(self, arguments: Sequence[str]) -> ProgramOutput:
        options: dict[str, str] = {}
        actions: list[str] = []
        index = 0
        while index < len(arguments):
            word = arguments[index].lower()
            if word in ("-stopapp", "-startapp"):
                actions.append(word[1:])
                index += 1
            elif word in ("-cshost", "-csport", "-app") and index + 1 < len(arguments):
                options[word[1:]] = arguments[index + 1]
                index += 2
            else:
                return ProgramOutput("", f"MLCmd: unknown argument '{arguments[index]}'\r\n", 2)
        usage = (
            "Usage: mlcmd.exe -cshost <host> -csport <port> -app <application> "
            "-stopapp|-startapp\r\n"
        )
        if (
            set(options) != {"cshost", "csport", "app"}
            or len(actions) != 1
            or not options["csport"].isdigit()
        ):
            return ProgramOutput("", usage, 2)
        application = options["app"]
        service = MLCMD_APPLICATIONS.get(application.lower())
        if service is None:
            return ProgramOutput("", f"MLCmd: application '{application}' is not found\r\n", 3)
        try:
            if actions[0] == "stopapp":
                state = self.host.stop_service(service, MLCMD_TIMEOUT_SECONDS)
            else:
                state = self.host.start_service(service, MLCMD_TIMEOUT_SECONDS)
        except ServiceError as failure:
            return ProgramOutput("", f"MLCmd: application '{application}': {failure}\r\n", 4)
        return ProgramOutput(f"MLCmd: application '{application}' is {state}\r\n", "", 0)
