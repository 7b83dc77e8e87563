"""Secret scrubbing: every string the product writes to disk or shows passes through a Scrubber.

A secret can reach a file in more shapes than its raw text: JSON escapes it (`\\"`, `\\u00e9`),
Python's repr escapes it, a job event's `stdout` field holds JSON inside JSON, a URL quotes it.
The scrubber masks each of those shapes, longest first, so no shape leaves a fragment behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

MASK = "********"

_SECRET_FIELD = re.compile(
    r"pass(?:word|wd|phrase)|secret|token|api[_-]?key|private[_-]?key|credential",
    re.IGNORECASE,
)


def is_secret_field(name: str) -> bool:
    """True when a field's name says it holds a secret (password, secret, token, key...)."""
    return _SECRET_FIELD.search(name) is not None


def _shapes(secret: str) -> set[str]:
    """The forms a secret takes once escaped by JSON, repr or URL quoting, up to two levels deep."""
    shapes = {secret}
    for _ in range(2):
        for shape in list(shapes):
            shapes.add(json.dumps(shape)[1:-1])
            shapes.add(json.dumps(shape, ensure_ascii=False)[1:-1])
            shapes.add(repr(shape)[1:-1])
            shapes.add(quote(shape, safe=""))
    return {shape for shape in shapes if shape}


class Scrubber:
    """Replaces every known secret, in every escaped shape, with MASK."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Learn more secrets (empty strings are ignored: they cannot leak)."""
        new = {secret for secret in secrets if secret} - self._secrets
        if not new:
            return
        self._secrets |= new
        shapes = set().union(*(_shapes(secret) for secret in self._secrets))
        ordered = sorted(shapes, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(shape) for shape in ordered))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        """The text with every secret masked."""
        if self._pattern is None:
            return value
        return self._pattern.sub(MASK, value)

    def contains_secret(self, value: str) -> bool:
        """True when the text holds a secret in any shape."""
        return self._pattern is not None and self._pattern.search(value) is not None

    def data(self, value: Any) -> Any:
        """A copy of JSON-like data: secrets masked, and every secret-named field's value masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(key)): self._field(str(key), item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value

    def _field(self, key: str, value: Any) -> Any:
        if is_secret_field(key) and value is not None and not isinstance(value, bool):
            return MASK
        return self.data(value)
