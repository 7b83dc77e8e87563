"""The state directory: where run records live, private to the operator who runs remediate.

Resolved from `--state-dir`, else `$REMEDIATE_STATE_DIR`, else `$XDG_STATE_HOME/remediate`, else
`~/.local/state/remediate`. Directories are 0700 and files 0600; a state directory that another
user owns or could write into is refused, since whoever can write there can forge the backups a
rollback restores. Each run gets `runs/<run_id>/`; run ids sort by time (to the second) and are
unique (`20261128T143501Z-5f2a`).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from remediate.errors import InputError, RemediateError

STATE_DIR_ENV = "REMEDIATE_STATE_DIR"
RUN_ID_PATTERN = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")
DIR_MODE = 0o700
FILE_MODE = 0o600


class StateDirError(RemediateError):
    """The state directory (or something in it) is unsafe or unusable."""

    reference = "state-dir-unsafe"


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """The state directory when no option says otherwise: the environment, then XDG's default."""
    configured = environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    xdg_state = environ.get("XDG_STATE_HOME")
    # The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
    if xdg_state and Path(xdg_state).is_absolute():
        return Path(xdg_state) / "remediate"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "remediate"


def resolve_state_dir(option: str | Path | None, environ: Mapping[str, str]) -> Path:
    """`--state-dir` if given, else the default for this environment; always absolute."""
    if option is not None and str(option) != "":
        return Path(option).expanduser().absolute()
    return default_state_dir(environ)


def check_private_dir(path: Path) -> None:
    """Refuse a directory that is not ours or that others can write; drop others' read access."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise StateDirError(f"{path} does not exist") from None
    if stat.S_ISLNK(info.st_mode):
        info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(
            f"{path} is not a directory", hint="point --state-dir at a directory of your own"
        )
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"{path} is owned by uid {info.st_uid}, not by the user running remediate "
            f"(uid {os.geteuid()})",
            hint="use a state directory of your own (--state-dir or $REMEDIATE_STATE_DIR)",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateDirError(
            f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "anyone who can write there can forge the backups a rollback restores",
            hint=f"chmod 700 {path}, after checking nobody tampered with it",
        )
    if info.st_mode & 0o077:
        path.chmod(DIR_MODE)


def check_private_file(path: Path) -> None:
    """Refuse a file that is not ours or that others can write; drop others' read access."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise StateDirError(f"{path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"{path} is owned by uid {info.st_uid}, not by the user running remediate"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateDirError(
            f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o})",
            hint=f"chmod 600 {path}, after checking nobody tampered with it",
        )
    if info.st_mode & 0o077:
        path.chmod(FILE_MODE)


def make_private_dir(path: Path) -> Path:
    """Create a 0700 directory (parents too, as XDG asks) or check an existing one; durable."""
    if not path.exists():
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        else:
            path.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask
            fsync_dir(path.parent)
    check_private_dir(path)
    return path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new file, a rename) durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_private_file(path: Path, content: bytes) -> None:
    """Write a new 0600 file durably: temp file, fsync, rename into place, fsync the directory."""
    partial = path.with_name(f".{path.name}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
        view = memoryview(content)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(partial, path)
    fsync_dir(path.parent)


def new_run_id(now: datetime | None = None) -> str:
    """A run id: UTC time to the second, then 16 random bits (`20261128T143501Z-5f2a`)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class StateDir:
    """An opened, checked state directory."""

    path: Path

    @classmethod
    def open(cls, path: Path) -> StateDir:
        """Create (0700) or check the state directory and its `runs/`."""
        path = path.absolute()
        try:
            make_private_dir(path)
            make_private_dir(path / "runs")
        except OSError as error:
            raise StateDirError(
                f"cannot use the state directory {path}: {error.strerror or error}",
                reference="state-dir-unusable",
                hint="pass --state-dir or set $REMEDIATE_STATE_DIR to a directory you can write",
            ) from None
        return cls(path)

    @property
    def runs(self) -> Path:
        """The directory holding one subdirectory per run."""
        return self.path / "runs"

    def new_run(self, now: datetime | None = None) -> tuple[str, Path]:
        """Create a fresh 0700 run directory; returns its run id and path."""
        for _ in range(64):
            run_id = new_run_id(now)
            path = self.runs / run_id
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue
            path.chmod(DIR_MODE)
            fsync_dir(self.runs)
            return run_id, path
        raise StateDirError(f"cannot create a unique run directory in {self.runs}")

    def run_path(self, run_id: str) -> Path:
        """The directory of an existing run, after checking the id's shape and the directory."""
        if RUN_ID_PATTERN.fullmatch(run_id) is None:
            raise InputError(
                f"{run_id!r} is not a run id",
                reference="bad-run-id",
                hint="run ids look like 20261128T143501Z-5f2a; see 'remediate history'",
            )
        path = self.runs / run_id
        if not path.is_dir():
            raise InputError(
                f"no run {run_id} in {self.runs}",
                reference="run-not-found",
                hint="see 'remediate history' (and check --state-dir)",
            )
        check_private_dir(path)
        return path

    def run_ids(self) -> list[str]:
        """Every run id in the state directory, newest first."""
        names = (entry.name for entry in os.scandir(self.runs) if entry.is_dir())
        return sorted((name for name in names if RUN_ID_PATTERN.fullmatch(name)), reverse=True)

    def find_run(self, prefix: str) -> str:
        """The one run id starting with `prefix` (a whole id works too), or a clear error."""
        if prefix in self.run_ids():
            return prefix
        matches = [run_id for run_id in self.run_ids() if prefix and run_id.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise InputError(
                f"no run matches {prefix!r} in {self.runs}",
                reference="run-not-found",
                hint="see 'remediate history' (and check --state-dir)",
            )
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise InputError(
            f"{prefix!r} matches {len(matches)} runs: {shown}",
            reference="run-ambiguous",
            hint="give more of the run id",
        )
