"""Asterisk's configuration file format, read the way Asterisk's config.c reads it.

`[section]` headers (with `(!)` templates, `(name,...)` inheritance and `(+)` additions),
`key = value` and `key => value` lines, `;` comments (`\\;` is a literal semicolon, `;-- ... --;` a
block comment),
`#include` / `#tryinclude` relative to the configuration directory. A section name may appear more
than once (pjsip.conf reuses one name for an endpoint and an AOR; extensions.conf merges a context
that appears in several files), so a file reads as a list of sections, in order.

Errors are reported with the words Asterisk writes to its log.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

MAX_INCLUDE_DEPTH = 10


class ConfigError(Exception):
    """A file Asterisk would refuse to load. `log_level` and `str()` are what Asterisk logs."""

    def __init__(self, message: str, log_level: str = "WARNING") -> None:
        super().__init__(message)
        self.log_level = log_level


@dataclass(frozen=True)
class Option:
    key: str
    value: str
    file: str  # as Asterisk records it: the name relative to the configuration directory
    line: int
    inherited: bool = False


@dataclass
class Section:
    name: str
    file: str
    line: int
    is_template: bool = False
    templates: tuple[str, ...] = ()
    options: list[Option] = field(default_factory=list)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The last value given for `key` (own values come after inherited ones, so they win)."""
        value = default
        for option in self.options:
            if option.key == key:
                value = option.value
        return value

    def get_all(self, key: str) -> list[str]:
        return [option.value for option in self.options if option.key == key]


def strip_comment(line: str, in_block_comment: bool) -> tuple[str, bool]:
    """Remove `;` comments and `;-- --;` block comments; keep `\\;` as a literal `;`."""
    kept: list[str] = []
    index = 0
    while index < len(line):
        if in_block_comment:
            end = line.find("--;", index)
            if end < 0:
                return "".join(kept), True
            index = end + 3
            in_block_comment = False
            continue
        char = line[index]
        if char == "\\" and line[index + 1 : index + 2] == ";":
            kept.append(";")
            index += 2
            continue
        if char == ";":
            if line.startswith(";--", index):
                in_block_comment = True
                index += 3
                continue
            break
        kept.append(char)
        index += 1
    return "".join(kept), in_block_comment


def _parse_header(text: str, line: int, path: Path) -> tuple[str, str | None]:
    """`[name](options)` -> (name, options or None)."""
    close = text.find("]")
    if close < 0:
        raise ConfigError(f"parse error: no closing ']', line {line} of {path}")
    name = text[1:close]
    rest = text[close + 1 :].strip()
    if not rest:
        return name, None
    if not rest.startswith("("):
        return name, None
    end = rest.find(")")
    if end < 0:
        raise ConfigError(f"parse error: no closing ')', line {line} of {path}")
    return name, rest[1:end]


class _Reader:
    def __init__(self, etc_dir: Path) -> None:
        self.etc_dir = etc_dir
        self.sections: list[Section] = []
        self.current: Section | None = None  # where option lines go
        self.files: list[Path] = []

    def _find(self, name: str) -> Section | None:
        for section in self.sections:
            if section.name == name:
                return section
        return None

    def read(self, name: str, depth: int = 0) -> None:
        path = Path(name) if Path(name).is_absolute() else self.etc_dir / name
        self.files.append(path)
        text = path.read_text(encoding="utf-8", errors="replace")
        record_name = name
        in_block_comment = False
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped, in_block_comment = strip_comment(raw, in_block_comment)
            content = stripped.strip()
            if not content:
                continue
            if content.startswith("#"):
                self._directive(content, record_name, number, path, depth)
            elif content.startswith("["):
                self._section(content, record_name, number, path)
            else:
                self._option(content, record_name, number, path)

    def _directive(self, content: str, file: str, number: int, path: Path, depth: int) -> None:
        word, _, argument = content.partition(" ")
        argument = argument.strip().strip('"').strip("<>").strip()
        if word not in ("#include", "#tryinclude"):
            # #exec needs execincludes=yes, which the lab never sets: Asterisk skips it.
            return
        if depth >= MAX_INCLUDE_DEPTH:
            raise ConfigError(f"Maximum Include level ({MAX_INCLUDE_DEPTH}) exceeded", "ERROR")
        pattern = argument if Path(argument).is_absolute() else str(self.etc_dir / argument)
        matches = sorted(glob.glob(pattern))
        if not matches:
            if word == "#tryinclude":
                return
            raise ConfigError(
                f"The file '{argument}' was listed as a #include but it does not exist.", "ERROR"
            )
        for match in matches:
            relative = Path(match)
            try:
                include_name = str(relative.relative_to(self.etc_dir))
            except ValueError:
                include_name = match
            self.read(include_name, depth + 1)

    def _section(self, content: str, file: str, number: int, path: Path) -> None:
        name, options_text = _parse_header(content, number, path)
        section = Section(name, file, number)
        if options_text is not None:
            templates: list[str] = []
            for item in (part.strip() for part in options_text.split(",")):
                if item == "!":
                    section.is_template = True
                elif item == "+":
                    existing = self._find(name)
                    if existing is None:
                        raise ConfigError(
                            f"Category addition requested, but category '{name}' does not "
                            f"exist, line {number} of {path}"
                        )
                    self.current = existing
                    return
                elif item:
                    base = self._find(item)
                    if base is None:
                        raise ConfigError(
                            f"Inheritance requested, but category '{item}' does not exist, "
                            f"line {number} of {path}"
                        )
                    templates.append(item)
                    section.options.extend(
                        Option(o.key, o.value, o.file, o.line, inherited=True) for o in base.options
                    )
            section.templates = tuple(templates)
        self.sections.append(section)
        self.current = section

    def _option(self, content: str, file: str, number: int, path: Path) -> None:
        if self.current is None:
            raise ConfigError(f"parse error: No category context for line {number} of {path}")
        key, equals, value = content.partition("=")
        if not equals:
            # Asterisk warns and goes on: the line is ignored, the file still loads.
            return
        if value.startswith(">"):
            value = value[1:]
        self.current.options.append(Option(key.strip(), value.strip(), file, number))


@dataclass
class ConfigFile:
    sections: list[Section]
    files: list[Path]  # every file read, the main one first

    def named(self, name: str) -> list[Section]:
        return [section for section in self.sections if section.name == name]


def read_config(etc_dir: Path, name: str) -> ConfigFile:
    """Read `etc_dir/name` and its includes. Raises ConfigError, or OSError for the main file."""
    reader = _Reader(etc_dir)
    reader.read(name)
    return ConfigFile(reader.sections, reader.files)
