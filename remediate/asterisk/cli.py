"""The `asterisk -rx` commands the product sends and parsers of their output (Asterisk 22 shapes).

`asterisk -rx` exits 0 whatever happens (DESIGN section 2.4): a failure shows only in the text
(`Command '...' failed.`, `No such command '...'`, `Unable to ...`), so every parser reads the
output and `check_output` turns those texts into errors.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from remediate.errors import InputError, RemediateError

# Registration, endpoint and context names, extensions: what Asterisk configs really use, and
# nothing that could leave a shell word or an Asterisk CLI argument.
NAME = re.compile(r"[A-Za-z0-9_.+\-]{1,80}")
_EXTEN = re.compile(r"[A-Za-z0-9_.+*#\-]{1,80}")

_FAILED = re.compile(r"^Command '.*' failed\.$", re.MULTILINE)
_NO_SUCH = re.compile(r"^No such command '(?P<command>.*?)'", re.MULTILINE)


class AsteriskCommandError(RemediateError):
    """Asterisk answered a CLI command with a failure."""

    reference = "asterisk-command-failed"


def _checked_name(value: str, what: str) -> str:
    if NAME.fullmatch(value) is None:
        raise InputError(
            f"{value!r} cannot be an Asterisk {what} name",
            reference="bad-asterisk-name",
            hint="letters, digits, '_', '.', '+' and '-' only",
        )
    return value


def rx(command: str, *, binary: str = "asterisk") -> str:
    """The shell command line that asks the running Asterisk to execute a CLI `command`."""
    return f"{shlex.quote(binary)} -rx {shlex.quote(command)}"


def show_version() -> str:
    return "core show version"


def show_registrations() -> str:
    return "pjsip show registrations"


def show_registration(name: str) -> str:
    return f"pjsip show registration {_checked_name(name, 'registration')}"


def show_endpoint(name: str) -> str:
    return f"pjsip show endpoint {_checked_name(name, 'endpoint')}"


def dialplan_show(context: str, exten: str | None = None) -> str:
    _checked_name(context, "context")
    if exten is None:
        return f"dialplan show {context}"
    if _EXTEN.fullmatch(exten) is None:
        raise InputError(f"{exten!r} cannot be an extension", reference="bad-asterisk-name")
    return f"dialplan show {exten}@{context}"


def send_register(name: str) -> str:
    """`*all` re-registers every outbound registration."""
    return f"pjsip send register {name if name == '*all' else _checked_name(name, 'registration')}"


def send_unregister(name: str) -> str:
    return (
        f"pjsip send unregister {name if name == '*all' else _checked_name(name, 'registration')}"
    )


def dialplan_reload() -> str:
    """Prints `Dialplan reloaded.` even when extensions.conf is broken: prove with dialplan_show."""
    return "dialplan reload"


def pjsip_reload() -> str:
    """Asterisk 22 has no `pjsip reload`."""
    return "module reload res_pjsip.so"


def check_output(command: str, output: str) -> str:
    """`output` when Asterisk accepted `command`; `AsteriskCommandError` when it said otherwise."""
    no_such = _NO_SUCH.search(output)
    if no_such:
        raise AsteriskCommandError(
            f"Asterisk has no command {no_such.group('command')!r}",
            hint="check the Asterisk version (`core show version`) and its loaded modules",
        )
    if _FAILED.search(output):
        first = next((line for line in output.splitlines() if line.strip()), output.strip())
        raise AsteriskCommandError(f"{command!r}: {first.strip()}")
    return output


# pjsip show registrations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """One row of `pjsip show registrations`."""

    name: str
    server_uri: str
    auth: str
    status: str  # Registered, Unregistered, Rejected, Stopped, ...
    expires_in: int | None  # seconds to the next attempt, `(exp. 55s)`; negative: `(exp. 9s ago)`

    @property
    def registered(self) -> bool:
        return self.status == "Registered"


_REGISTRATION_ROW = re.compile(
    r"^\s*(?P<name>[^\s/]+)/(?P<uri>\S+)\s+(?P<auth>\S+)\s+(?P<status>[A-Z][A-Za-z]+)"
    r"(?:\s+\(exp\.\s*(?P<exp>-?\d+)s(?P<ago> ago)?\))?\s*$"
)


def _expires(seconds: str | None, ago: str | None) -> int | None:
    """`(exp. 55s)` -> 55; `(exp. 9s ago)` (the attempt is overdue) -> -9."""
    if seconds is None:
        return None
    return -int(seconds) if ago else int(seconds)


def parse_registrations(output: str) -> list[Registration]:
    rows: list[Registration] = []
    for line in output.splitlines():
        if line.lstrip().startswith("<") or line.startswith("="):
            continue
        match = _REGISTRATION_ROW.match(line)
        if match is None:
            continue
        rows.append(
            Registration(
                name=match["name"],
                server_uri=match["uri"],
                auth=match["auth"],
                status=match["status"],
                expires_in=_expires(match["exp"], match["ago"]),
            )
        )
    return rows


@dataclass(frozen=True)
class RegistrationDetail:
    """`pjsip show registration <name>`: the row and the running parameters."""

    registration: Registration | None
    parameters: dict[str, str] = field(default_factory=dict)


_PARAMETER = re.compile(r"^\s*(?P<key>[a-z_]+)\s*:\s?(?P<value>.*?)\s*$")


def parse_registration_detail(output: str) -> RegistrationDetail:
    rows = parse_registrations(output.split("ParameterName", 1)[0])
    parameters: dict[str, str] = {}
    if "ParameterName" in output:
        for line in output.split("ParameterName", 1)[1].splitlines()[1:]:
            match = _PARAMETER.match(line)
            if match:
                parameters[match["key"]] = match["value"]
    return RegistrationDetail(rows[0] if rows else None, parameters)


# dialplan show ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Priority:
    number: str  # "1", "2", ... or a label
    application: str
    location: str  # "extensions.conf:5"


@dataclass(frozen=True)
class Extension:
    context: str
    pattern: str
    priorities: list[Priority]


@dataclass(frozen=True)
class DialplanShow:
    """What `dialplan show [<exten>@]<context>` printed: matching extensions, or why none."""

    extensions: list[Extension]
    missing: str = ""  # "extension" or "context" when Asterisk said there is none

    @property
    def found(self) -> bool:
        return bool(self.extensions)


_CONTEXT_HEADER = re.compile(r"^\[ Context '(?P<context>[^']+)' created by '[^']*' \]")
_EXTENSION_LINE = re.compile(
    r"^\s+'(?P<pattern>[^']+)'\s+=>\s+(?P<number>\S+)\.\s+(?P<app>.*?)\s+\[(?P<where>[^\]]+)\]\s*$"
)
_ABSENT = re.compile(r"^There is no existence of .* (?P<what>extension|context)\s*$", re.MULTILINE)
_PRIORITY_LINE = re.compile(r"^\s+(?P<number>\S+)\.\s+(?P<app>.*?)\s+\[(?P<where>[^\]]+)\]\s*$")


def parse_dialplan_show(output: str) -> DialplanShow:
    absent = _ABSENT.search(output)
    if absent:
        return DialplanShow([], missing=absent["what"])
    extensions: list[Extension] = []
    context = ""
    for line in output.splitlines():
        header = _CONTEXT_HEADER.match(line)
        if header:
            context = header["context"]
            continue
        first = _EXTENSION_LINE.match(line)
        if first:
            extensions.append(
                Extension(
                    context,
                    first["pattern"],
                    [Priority(first["number"], first["app"], first["where"])],
                )
            )
            continue
        more = _PRIORITY_LINE.match(line)
        if more and extensions:
            extensions[-1].priorities.append(Priority(more["number"], more["app"], more["where"]))
    return DialplanShow(extensions)


def parse_version(output: str) -> str:
    """`Asterisk 22.10.1 built by ...` -> `22.10.1` (empty when the text is not a version)."""
    match = re.match(r"\s*Asterisk\s+(\S+)", output)
    return match.group(1) if match else ""
