"""The dialplan of extensions.conf as pbx_config builds it; `dialplan show` as Asterisk 22 has it.

Contexts merge when a name appears more than once (in one file or across `#include`s); priorities
are numbers, `n` (the previous line's priority plus one, as pbx_config counts it), `n(label)`,
`<number>(label)` and `hint`; `same =>` continues the previous extension. Extensions are ordered
as Asterisk orders them (plain extensions first, then patterns from the most specific), and pattern
matching follows Asterisk: `_` prefix, `X` `Z` `N`, `[...]` sets with ranges, `.` and `!`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from remediate.lab.asterisk.conf import ConfigFile, read_config

HINT_PRIORITY = -1
SPECIAL_SECTIONS = ("general", "globals")
REGISTRAR = "pbx_config"


@dataclass(frozen=True)
class Priority:
    number: int
    label: str | None
    app: str
    data: str
    file: str
    line: int

    def describe(self) -> str:
        if self.number == HINT_PRIORITY:
            return f"hint: {self.app}"
        return f"{self.number}. {self.app}({self.data})"


@dataclass
class Extension:
    name: str
    caller_id: str | None = None
    priorities: dict[int, Priority] = field(default_factory=dict)

    def ordered(self) -> list[Priority]:
        return [self.priorities[number] for number in sorted(self.priorities)]


@dataclass
class Context:
    name: str
    extensions: dict[tuple[str, str | None], Extension] = field(default_factory=dict)
    includes: list[str] = field(default_factory=list)

    def ordered_extensions(self) -> list[Extension]:
        return sorted(self.extensions.values(), key=lambda e: extension_sort_key(e.name))


@dataclass
class Dialplan:
    contexts: dict[str, Context] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _split_first(text: str) -> tuple[str, str]:
    """Split at the first comma outside `[...]` (a pattern set may hold a comma)."""
    depth = 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        elif char == "," and not depth:
            return text[:index], text[index + 1 :]
    return text, ""


_PRIORITY = re.compile(r"^(?P<base>\d+|n|hint)(?:\((?P<label>[^)]*)\))?$", re.IGNORECASE)


def _application(text: str) -> tuple[str, str]:
    text = text.strip()
    opening = text.find("(")
    if opening < 0:
        name, _, data = text.partition(",")
        return name.strip(), data
    closing = text.rfind(")")
    data = text[opening + 1 : closing] if closing > opening else text[opening + 1 :]
    return text[:opening].strip(), data


def build_dialplan(config: ConfigFile) -> Dialplan:
    dialplan = Dialplan()
    for section in config.sections:
        if section.name in SPECIAL_SECTIONS or section.is_template:
            continue
        context = dialplan.contexts.setdefault(section.name, Context(section.name))
        last_extension: tuple[str, str | None] | None = None
        last_priority = 0
        for option in section.options:
            where = f"line {option.line} of {option.file}"
            if option.key == "include":
                if option.value not in context.includes:
                    context.includes.append(option.value)
                continue
            if option.key not in ("exten", "same"):
                continue
            value = option.value
            if option.key == "same":
                if last_extension is None:
                    dialplan.warnings.append(f"Can't use 'same' without a previous exten, {where}")
                    continue
                key = last_extension
            else:
                name_text, value = _split_first(value)
                name, slash, caller_id = name_text.strip().partition("/")
                key = (name.strip(), caller_id.strip() if slash else None)
            priority_text, application = _split_first(value)
            match = _PRIORITY.match(priority_text.strip())
            if match is None:
                dialplan.warnings.append(f"Invalid priority/label '{priority_text}' at {where}")
                continue
            base = match.group("base").lower()
            if base == "hint":
                number = HINT_PRIORITY
            elif base == "n":
                number = last_priority + 1
            else:
                number = int(base)
            if number != HINT_PRIORITY:
                last_priority = number
            last_extension = key
            app, data = _application(application)
            extension = context.extensions.setdefault(key, Extension(key[0], key[1]))
            if number in extension.priorities:
                dialplan.warnings.append(
                    f"Unable to register extension '{key[0]}' priority {number} in "
                    f"'{context.name}', already in use"
                )
                continue
            extension.priorities[number] = Priority(
                number, match.group("label"), app, data, option.file, option.line
            )
    return dialplan


def load_dialplan(etc_dir: Path, name: str = "extensions.conf") -> Dialplan:
    """Read and build; raises ConfigError (the file is rejected whole) or OSError."""
    return build_dialplan(read_config(etc_dir, name))


# Pattern classes: the characters each matches. Letters are case-insensitive, as in Asterisk.
_CLASSES = {"X": "0123456789", "Z": "123456789", "N": "23456789"}
# `.` (one or more characters) and `!` (zero or more) end a pattern's positions.
_WILDCARDS = {".": ".+", "!": ".*"}
_WILDCARD_WEIGHT = 0x40000


def _pattern_set(pattern: str, start: int) -> tuple[str, int]:
    """The characters of `[...]` starting at `start` (the `[`), and the index after `]`."""
    end = pattern.find("]", start)
    if end < 0:
        return "[", start + 1  # Asterisk treats an unterminated '[' as a literal
    body = pattern[start + 1 : end]
    chars: list[str] = []
    index = 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            low, high = ord(body[index]), ord(body[index + 2])
            chars.extend(chr(code) for code in range(low, high + 1))
            index += 3
        else:
            chars.append(body[index])
            index += 1
    return "".join(sorted(set(chars))), end + 1


def _pattern_positions(pattern: str) -> list[tuple[str, str]]:
    """Each position as ("set", characters) or ("wildcard", "." or "!")."""
    positions: list[tuple[str, str]] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char.upper() in _CLASSES:
            positions.append(("set", _CLASSES[char.upper()]))
            index += 1
        elif char == "[":
            chars, index = _pattern_set(pattern, index)
            positions.append(("set", chars))
        elif char in _WILDCARDS:
            positions.append(("wildcard", char))
            index += 1
        else:
            positions.append(("set", char))
            index += 1
    return positions


def extension_matches(name: str, number: str) -> bool:
    """Does the extension `name` (a literal or a `_pattern`) match the dialled `number`?"""
    if not name.startswith("_"):
        return name == number
    regex = [
        _WILDCARDS[chars] if kind == "wildcard" else f"[{re.escape(chars)}]" if chars else "(?!)"
        for kind, chars in _pattern_positions(name[1:])
    ]
    return re.fullmatch("".join(regex), number) is not None


def extension_sort_key(name: str) -> tuple[int, tuple[int, ...], str]:
    """Asterisk's ext_cmp: plain extensions first; patterns by specificity, position by position."""
    if not name.startswith("_"):
        return (0, (), name)
    weights = [
        _WILDCARD_WEIGHT | ord(chars) if kind == "wildcard" else (len(chars) << 8) | ord(chars[0])
        for kind, chars in _pattern_positions(name[1:])
        if chars
    ]
    return (1, tuple(weights), name)


@dataclass
class ShowCounters:
    contexts: int = 0
    extensions: int = 0
    priorities: int = 0
    context_exists: bool = False
    extension_exists: bool = False


def _show_context(
    dialplan: Dialplan,
    name: str,
    exten: str | None,
    counters: ShowCounters,
    lines: list[str],
    included: bool,
    visited: list[str],
) -> None:
    context = dialplan.contexts.get(name)
    if context is None:
        return
    counters.context_exists = True
    kind = "Included context" if included else "Context"
    header = f"[ {kind} '{context.name}' created by '{REGISTRAR}' ]"
    printed = False
    if exten is None:
        lines.append(header)
        counters.contexts += 1
        printed = True
    for extension in context.ordered_extensions():
        if exten is not None and not extension_matches(extension.name, exten):
            continue
        counters.extension_exists = True
        if not printed:
            lines.append(header)
            counters.contexts += 1
            printed = True
        counters.extensions += 1
        if extension.caller_id is not None:
            first_column = f"'{extension.name}' (CID match '{extension.caller_id}') => "
        else:
            first_column = f"'{extension.name}' =>"
        for index, priority in enumerate(extension.ordered()):
            counters.priorities += 1
            if index:
                first_column = f"   [{priority.label}]" if priority.label else ""
            where = f"{priority.file}:{priority.line}"
            lines.append(f"  {first_column:<17} {priority.describe():<45} [{where}]")
    for include in context.includes:
        if exten is None:
            quoted = f"'{include}'"
            lines.append(f"  {'Include =>':<17} {quoted:<45} [{REGISTRAR}]")
        elif include not in visited:
            _show_context(dialplan, include, exten, counters, lines, True, [*visited, include])
    if printed:
        lines.append("")


def show_dialplan(dialplan: Dialplan, argument: str | None) -> tuple[str, bool]:
    """`dialplan show [argument]`: (output, succeeded). A failure is followed by the CLI's
    `Command '...' failed.` line, which the caller adds."""
    exten: str | None = None
    context_name: str | None = None
    if argument:
        if "@" in argument:
            exten_text, _, context_text = argument.partition("@")
            exten = exten_text or None
            context_name = context_text or None
        else:
            context_name = argument
    counters = ShowCounters()
    lines: list[str] = []
    for name in sorted(dialplan.contexts):
        if context_name is not None and name != context_name:
            continue
        _show_context(dialplan, name, exten, counters, lines, False, [name])
    if context_name is not None and not counters.context_exists:
        return f"There is no existence of '{context_name}' context\n", False
    if exten is not None and not counters.extension_exists:
        if context_name is not None:
            return f"There is no existence of {exten}@{context_name} extension\n", False
        return f"There is no existence of '{exten}' extension in all contexts\n", False
    extension_word = "extension" if counters.extensions == 1 else "extensions"
    priority_word = "priority" if counters.priorities == 1 else "priorities"
    context_word = "context" if counters.contexts == 1 else "contexts"
    lines.append(
        f"-= {counters.extensions} {extension_word} ({counters.priorities} {priority_word}) "
        f"in {counters.contexts} {context_word}. =-"
    )
    return "\n".join(lines) + "\n", True
