"""The lab Asterisk's `messages` log, in Asterisk's own format.

`[2026-11-28 13:02:40] WARNING[8638] config.c: parse error: no closing ']', line 4 of ...`
(logger.conf `dateformat=%F %T`; the bracketed number is the thread that logged).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path


class AsteriskLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def write(self, level: str, source_file: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        thread = threading.get_native_id()
        with self.path.open("a", encoding="utf-8") as log:
            log.write(f"[{stamp}] {level}[{thread}] {source_file}: {message}\n")
