"""Asterisk configuration files (pjsip.conf, extensions.conf) as diagnosis needs them.

Asterisk's format: `[section]` headers, optionally `[name](!)` (a template), `[name](tmpl1,tmpl2)`
(inherits from templates) or `[name](+)` (adds to an earlier section); `key=value` or `key => value`
lines; `;` comments (`\\;` is a literal semicolon) and `;-- ... --;` block comments; `#include` and
`#tryinclude` resolved against the configuration directory. Section names repeat (one name for an
endpoint and its AOR), and an extensions.conf context may be spread over several files, so sections
stay a list, and every section and setting keeps its file and line for the editor that comes later.

Files are read through a callable, so the same parser reads a local file or one fetched over SFTP.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from remediate.errors import InputError

Reader = Callable[[str], bytes]
MAX_INCLUDE_DEPTH = 10


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Setting:
    key: str
    value: str
    location: Location
    arrow: bool = False  # written `key => value` (extensions.conf style)


@dataclass
class Section:
    name: str
    location: Location
    templates: tuple[str, ...] = ()
    is_template: bool = False
    additive: bool = False
    settings: list[Setting] = field(default_factory=list)

    def own(self, key: str) -> str | None:
        """The last value this section itself gives `key`."""
        values = [setting.value for setting in self.settings if setting.key == key]
        return values[-1] if values else None


@dataclass
class ConfigFile:
    """Every section of a configuration and its includes, in the order Asterisk reads them."""

    path: str
    sections: list[Section]
    files: list[str]
    problems: list[str] = field(default_factory=list)

    def named(self, name: str) -> list[Section]:
        return [section for section in self.sections if section.name == name]

    def effective(self, section: Section) -> dict[str, str]:
        """`section`'s settings with its templates' settings underneath (the last value wins)."""
        values: dict[str, str] = {}
        for template_name in section.templates:
            templates = [s for s in self.named(template_name) if s.is_template]
            for template in templates:
                values.update(self.effective(template))
        for setting in section.settings:
            values[setting.key] = setting.value
        return values


_HEADER = re.compile(r"^\[(?P<name>[^\]]+)\]\s*(?:\((?P<options>[^)]*)\))?\s*$")
_INCLUDE = re.compile(r"^#(?P<kind>include|tryinclude)\s+(?P<target>.+?)\s*$")
_SETTING = re.compile(r"^(?P<key>[^=]+?)\s*(?P<arrow>=>|=)\s*(?P<value>.*)$")


def _strip_comment(line: str) -> str:
    """The line without its `;` comment (an escaped `\\;` stays, unescaped)."""
    out: list[str] = []
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\" and index + 1 < len(line) and line[index + 1] == ";":
            out.append(";")
            index += 2
            continue
        if char == ";":
            break
        out.append(char)
        index += 1
    return "".join(out).strip()


def parse_config(path: str, read: Reader) -> ConfigFile:
    """Parse `path` and everything it includes. A missing main file raises `InputError`; a missing
    `#tryinclude` is skipped, a missing `#include` is noted in `problems` (Asterisk logs and
    skips it too)."""
    config = ConfigFile(path=path, sections=[], files=[])
    base = posixpath.dirname(path)
    state: dict[str, Section | None] = {"current": None}

    def visit(file_path: str, depth: int, required: bool) -> None:
        if depth > MAX_INCLUDE_DEPTH or file_path in config.files:
            config.problems.append(f"{file_path}: include loop or nesting too deep; skipped")
            return
        try:
            data = read(file_path)
        except FileNotFoundError:
            if depth == 0:
                raise InputError(
                    f"{file_path} does not exist", reference="asterisk-config-missing"
                ) from None
            if required:
                config.problems.append(f"{file_path}: included but missing")
            return
        config.files.append(file_path)
        in_block_comment = False
        for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            line = raw
            if in_block_comment:
                if "--;" not in line:
                    continue
                line = line.split("--;", 1)[1]
                in_block_comment = False
            if ";--" in line:
                before, _, after = line.partition(";--")
                if "--;" in after:
                    line = before + after.split("--;", 1)[1]
                else:
                    line = before
                    in_block_comment = True
            text = _strip_comment(line)
            if not text:
                continue
            where = Location(file_path, number)
            include = _INCLUDE.match(text)
            if include:
                target = include["target"].strip().strip('"').strip("<>")
                if not posixpath.isabs(target):
                    target = posixpath.join(base, target)
                visit(target, depth + 1, include["kind"] == "include")
                continue
            if text.startswith("#"):
                continue  # #exec and friends: not configuration the product reads
            header = _HEADER.match(text)
            if header:
                options = [o.strip() for o in (header["options"] or "").split(",") if o.strip()]
                section = Section(
                    name=header["name"].strip(),
                    location=where,
                    templates=tuple(o for o in options if o not in ("!", "+")),
                    is_template="!" in options,
                    additive="+" in options,
                )
                config.sections.append(section)
                state["current"] = section
                continue
            setting = _SETTING.match(text)
            current = state["current"]
            if setting is None or current is None:
                config.problems.append(f"{where}: not understood: {text[:80]}")
                continue
            current.settings.append(
                Setting(
                    key=setting["key"].strip(),
                    value=setting["value"].strip(),
                    location=where,
                    arrow=setting["arrow"] == "=>",
                )
            )

    visit(path, 0, True)
    return config


# pjsip.conf -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PjsipObject:
    """One typed pjsip.conf object: its section name, effective settings and where it starts."""

    name: str
    type: str
    settings: dict[str, str]
    location: Location

    def get(self, key: str, default: str = "") -> str:
        return self.settings.get(key, default)


def pjsip_objects(config: ConfigFile, object_type: str | None = None) -> list[PjsipObject]:
    """Every non-template object (of `object_type`), `(+)` additions merged into their base."""
    objects: list[PjsipObject] = []
    for section in config.sections:
        if section.is_template:
            continue
        settings = config.effective(section)
        if section.additive:
            for index in range(len(objects) - 1, -1, -1):
                if objects[index].name == section.name:
                    merged = {**objects[index].settings, **settings}
                    objects[index] = PjsipObject(
                        section.name, merged.get("type", ""), merged, objects[index].location
                    )
                    break
            continue
        objects.append(
            PjsipObject(section.name, settings.get("type", ""), settings, section.location)
        )
    if object_type is None:
        return objects
    return [obj for obj in objects if obj.type == object_type]


@dataclass(frozen=True)
class RetryProblem:
    """A registration setting that keeps a registration from recovering on its own."""

    registration: str
    setting: str
    value: str
    location: Location
    why: str


def registration_retry_problems(registration: PjsipObject) -> list[RetryProblem]:
    """The settings of `registration` (type=registration) that stop Asterisk retrying after a
    failure or a 403, per Asterisk's documented defaults."""
    problems: list[RetryProblem] = []
    defaults = {
        "max_retries": "10",
        "retry_interval": "60",
        "forbidden_retry_interval": "0",
        "expiration": "3600",
        "auth_rejection_permanent": "yes",
    }

    def value(key: str) -> str:
        return registration.get(key, defaults[key]).strip()

    def add(key: str, why: str) -> None:
        shown = registration.settings.get(key, f"{defaults[key]} (the default)")
        problems.append(RetryProblem(registration.name, key, shown, registration.location, why))

    if value("max_retries") == "0":
        add("max_retries", "after one failed attempt Asterisk stops trying to register")
    if value("retry_interval") == "0":
        add("retry_interval", "a failed registration is never retried")
    if value("forbidden_retry_interval") == "0":
        add("forbidden_retry_interval", "after a 403 Forbidden the registration is never retried")
    if value("expiration") == "0":
        add("expiration", "the registration asks for no binding at all")
    if registration.get("outbound_auth") and value("auth_rejection_permanent").lower() in (
        "yes",
        "true",
        "on",
    ):
        add("auth_rejection_permanent", "a rejected authentication stops the registration for good")
    return problems


def uri_host(uri: str) -> str:
    """`sip:5001@127.0.0.81:5060;transport=udp` -> `127.0.0.81`."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";", 1)[0].split("@")[-1]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.split(":", 1)[0]


def uri_user(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0] if "@" in rest else ""


# extensions.conf --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DialplanLine:
    context: str
    pattern: str
    priority: str
    application: str
    location: Location


def dialplan(config: ConfigFile) -> dict[str, list[DialplanLine]]:
    """Context -> its `exten =>`/`same =>` lines, merged across files and repeated headers."""
    contexts: dict[str, list[DialplanLine]] = {}
    for section in config.sections:
        if section.name in ("general", "globals"):
            continue
        lines = contexts.setdefault(section.name, [])
        pattern = ""
        for setting in section.settings:
            if setting.key not in ("exten", "same"):
                continue
            parts = setting.value.split(",", 2 if setting.key == "exten" else 1)
            if setting.key == "exten":
                if len(parts) < 3:
                    continue
                pattern, priority, application = (part.strip() for part in parts)
            else:
                if len(parts) < 2 or not pattern:
                    continue
                priority, application = (part.strip() for part in parts)
            lines.append(
                DialplanLine(section.name, pattern, priority, application, setting.location)
            )
    return contexts


def context_includes(config: ConfigFile, context: str) -> list[str]:
    return [
        setting.value
        for section in config.named(context)
        for setting in section.settings
        if setting.key == "include"
    ]


_PATTERN_CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """An Asterisk extension pattern (`_5XXX`, `_X.`, `_8[1-9]XXX`, `1003`) as a regex."""
    if not pattern.startswith("_"):
        return re.compile(re.escape(pattern))
    out: list[str] = []
    body = pattern[1:]
    index = 0
    while index < len(body):
        char = body[index]
        if char.upper() in _PATTERN_CLASSES:
            out.append(_PATTERN_CLASSES[char.upper()])
        elif char == "[":
            end = body.find("]", index)
            if end < 0:
                out.append(re.escape(char))
            else:
                out.append("[" + body[index + 1 : end].replace("\\", "\\\\") + "]")
                index = end
        elif char == ".":
            out.append(".+")
        elif char == "!":
            out.append(".*")
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out))


def extension_matches(pattern: str, number: str) -> bool:
    try:
        return pattern_regex(pattern).fullmatch(number) is not None
    except re.error:
        return False


def matching_lines(config: ConfigFile, context: str, number: str) -> Iterator[DialplanLine]:
    """The lines of `context` (and the contexts it includes) whose pattern matches `number`."""
    seen: set[str] = set()
    pending = [context]
    contexts = dialplan(config)
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for line in contexts.get(name, []):
            if extension_matches(line.pattern, number):
                yield line
        pending.extend(context_includes(config, name))
