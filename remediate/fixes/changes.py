"""A change set: what a fix's playbook changes (or, in check mode, would change), target by target.

Built from the diffs that Ansible modules return (`--diff`): a configuration object's diff holds
the object before and after (GAX JSON; None when it does not exist), a file's diff holds its text
before and after with the path as header. Diffs of one target across tasks merge into one change
(the first before, the last after), so the plan of a run and the changes its apply recorded can be
compared line for line.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from remediate.ansible import TaskChange
from remediate.genesys.gax import annex_options

OBJECT = "object"
FILE = "file"
_IGNORED_FIELDS = frozenset({"dbid", "userproperties"})
"""The dbid is given by Configuration Server at creation (a plan cannot know it); the annex is
compared option by option."""


@dataclass(frozen=True)
class Change:
    host: str
    kind: str  # OBJECT or FILE
    target: str  # "CfgSwitch/SIP_P" or the file's path
    action: str  # "create", "update" or "delete"
    lines: tuple[str, ...]
    """What changes: `+ [sip] trusted-gateways = 127.0.0.54`, `~ state: A -> B`, or the lines of a
    unified diff of the file (`@@ ... @@`, `+line`, `-line`, ` context`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "kind": self.kind,
            "target": self.target,
            "action": self.action,
            "lines": list(self.lines),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            host=str(data["host"]),
            kind=str(data["kind"]),
            target=str(data["target"]),
            action=str(data["action"]),
            lines=tuple(str(line) for line in data["lines"]),
        )


def _as_object(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return None


def _is_object_state(value: Any) -> bool:
    obj = _as_object(value)
    return obj is not None and "type" in obj and "name" in obj


def object_lines(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """Field by field, then annex option by annex option, what differs between two objects."""
    lines: list[str] = []
    old, new = before or {}, after or {}
    for key in sorted((set(old) | set(new)) - _IGNORED_FIELDS):
        if key not in old:
            lines.append(f"+ {key}: {new[key]}")
        elif key not in new:
            lines.append(f"- {key}: {old[key]}")
        elif old[key] != new[key]:
            lines.append(f"~ {key}: {old[key]} -> {new[key]}")
    old_annex, new_annex = annex_options(dict(old)), annex_options(dict(new))
    for section, key in [*old_annex, *(k for k in new_annex if k not in old_annex)]:
        name = f"[{section}] {key}"
        if (section, key) not in new_annex:
            lines.append(f"- {name} = {old_annex[section, key]}")
        elif (section, key) not in old_annex:
            lines.append(f"+ {name} = {new_annex[section, key]}")
        elif old_annex[section, key] != new_annex[section, key]:
            lines.append(f"~ {name}: {old_annex[section, key]} -> {new_annex[section, key]}")
    return lines


def file_lines(before: str, after: str) -> list[str]:
    """A unified diff of the file's text, one line of context, without the file headers."""
    diff = difflib.unified_diff(
        before.splitlines(), after.splitlines(), n=1, lineterm="", fromfile="a", tofile="b"
    )
    return [line for line in diff if not line.startswith(("--- a", "+++ b"))]


@dataclass
class _Merged:
    host: str
    kind: str
    target: str
    before: Any
    after: Any


def _file_target(change: TaskChange, diff: Mapping[str, Any]) -> str | None:
    for key in ("after_header", "before_header"):
        header = diff.get(key)
        if isinstance(header, str) and header.startswith("/"):
            return header.split(" ", 1)[0]
    for key in ("dest", "path"):
        value = change.result.get(key)
        if isinstance(value, str) and value.startswith("/"):
            return value
    return None


class UnmappedChangeError(ValueError):
    """A diff that names neither a configuration object nor a file."""


def change_set(task_changes: Iterable[TaskChange]) -> list[Change]:
    """The changes the tasks made (or would make), one per target, in the order first touched.

    A task whose module returns the object before and after (`before`/`after` with `type` and
    `name`, None when absent: the genesys_* modules) is an object change; every other diff with
    text before and after is a file change, its path in the diff's header.
    """
    merged: dict[tuple[str, str, str], _Merged] = {}

    def add(host: str, kind: str, target: str, before: Any, after: Any) -> None:
        key = (host, kind, target)
        if key in merged:
            merged[key].after = after
        else:
            merged[key] = _Merged(host, kind, target, before, after)

    for task in task_changes:
        if _is_object_state(task.before) or _is_object_state(task.after):
            before, after = _as_object(task.before), _as_object(task.after)
            identity = after or before
            assert identity is not None
            add(task.host, OBJECT, f"{identity['type']}/{identity['name']}", before, after)
            continue
        for diff in task.diff:
            before, after = diff.get("before"), diff.get("after")
            # A module may add diffs of a file's attributes (dicts) or headers alone: only text
            # before and after is the file's content.
            if not isinstance(before, str | None) or not isinstance(after, str | None):
                continue
            if before is None and after is None:
                continue
            target = _file_target(task, diff)
            if target is None:
                raise UnmappedChangeError(
                    f"task {task.task!r} on {task.host} ({task.action}) returned a diff that "
                    "names no configuration object and no file"
                )
            add(task.host, FILE, target, before or "", after or "")
    changes: list[Change] = []
    for item in merged.values():
        if item.kind == OBJECT:
            lines = object_lines(item.before, item.after)
            action = (
                "create" if item.before is None else "delete" if item.after is None else "update"
            )
        else:
            lines = file_lines(item.before, item.after)
            action = "update"
        if lines:
            changes.append(Change(item.host, item.kind, item.target, action, tuple(lines)))
    return changes


def render_changes(changes: Iterable[Change]) -> list[str]:
    """The change set as an operator reviews it."""
    out: list[str] = []
    marks = {"create": "+", "update": "~", "delete": "-"}
    for change in changes:
        what = "configuration object" if change.kind == OBJECT else "file"
        out.append(
            f"{marks[change.action]} {change.target}  ({what} on {change.host}, {change.action})"
        )
        out.extend(f"    {line}" for line in change.lines)
    return out
