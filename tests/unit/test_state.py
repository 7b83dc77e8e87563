"""The state directory: where it is, who may use it, and the run ids in it."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remediate.errors import InputError
from remediate.state import (
    RUN_ID_PATTERN,
    StateDir,
    StateDirError,
    default_state_dir,
    new_run_id,
    resolve_state_dir,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_option_wins_then_the_variable_then_xdg_then_home(tmp_path: Path) -> None:
    environ = {
        "REMEDIATE_STATE_DIR": str(tmp_path / "from-env"),
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "HOME": str(tmp_path / "home"),
    }
    assert resolve_state_dir(tmp_path / "opt", environ) == tmp_path / "opt"
    assert resolve_state_dir(None, environ) == tmp_path / "from-env"
    del environ["REMEDIATE_STATE_DIR"]
    assert resolve_state_dir(None, environ) == tmp_path / "xdg" / "remediate"
    del environ["XDG_STATE_HOME"]
    assert default_state_dir(environ) == tmp_path / "home" / ".local" / "state" / "remediate"


def test_a_relative_xdg_state_home_is_ignored_as_the_spec_says(tmp_path: Path) -> None:
    environ = {"XDG_STATE_HOME": "relative/state", "HOME": str(tmp_path)}
    assert default_state_dir(environ) == tmp_path / ".local" / "state" / "remediate"


def test_a_relative_option_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_state_dir("state", {}) == tmp_path / "state"


def test_open_creates_private_directories_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        state = StateDir.open(tmp_path / "a" / "state")
    finally:
        os.umask(old)
    assert mode(state.path) == 0o700
    assert mode(state.runs) == 0o700
    assert mode(tmp_path / "a") == 0o700  # XDG: create missing parents 0700 too
    run_id, run_dir = state.new_run()
    assert mode(run_dir) == 0o700
    assert run_dir == state.runs / run_id


@pytest.mark.parametrize("unsafe_mode", [0o777, 0o770, 0o702])
def test_a_state_dir_others_can_write_is_refused(tmp_path: Path, unsafe_mode: int) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    directory.chmod(unsafe_mode)
    with pytest.raises(StateDirError, match="writable by other users") as error:
        StateDir.open(directory)
    assert error.value.reference == "state-dir-unsafe"
    assert mode(directory) == unsafe_mode  # refused, not silently "fixed"


def test_a_runs_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    state.runs.chmod(0o777)
    with pytest.raises(StateDirError, match="writable by other users"):
        StateDir.open(state.path)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_a_state_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(StateDirError, match="owned by uid 65534"):
        StateDir.open(directory)


def test_others_read_access_is_taken_away(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    directory.chmod(0o755)
    StateDir.open(directory)
    assert mode(directory) == 0o700


def test_a_file_in_place_of_the_state_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(StateDirError):
        StateDir.open(tmp_path / "state")


def test_run_ids_sort_by_time_and_are_unique_within_a_second(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    moment = datetime(2026, 11, 28, 14, 35, 1, tzinfo=UTC)
    same_second = {state.new_run(moment)[0] for _ in range(200)}
    assert len(same_second) == 200
    later, _ = state.new_run(moment + timedelta(seconds=1))
    earlier, _ = state.new_run(moment - timedelta(days=1))
    assert all(RUN_ID_PATTERN.fullmatch(run_id) for run_id in same_second)
    ids = state.run_ids()
    assert ids[0] == later and ids[-1] == earlier  # newest first
    assert later.startswith("20261128T143502Z-")


def test_new_run_id_is_in_utc() -> None:
    local = datetime(2026, 2, 2, 13, 54, 59, tzinfo=UTC).astimezone()
    assert new_run_id(local).startswith("20260202T135459Z-")


def test_a_run_is_found_by_a_unique_prefix(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    first, _ = state.new_run(datetime(2026, 11, 28, 14, 35, 1, tzinfo=UTC))
    second, _ = state.new_run(datetime(2026, 11, 29, 9, 0, 0, tzinfo=UTC))
    assert state.find_run(first) == first
    assert state.find_run("20261129") == second
    with pytest.raises(InputError, match="matches 2 runs") as ambiguous:
        state.find_run("2026112")
    assert ambiguous.value.reference == "run-ambiguous"
    with pytest.raises(InputError) as missing:
        state.find_run("2025")
    assert missing.value.reference == "run-not-found"


@pytest.mark.parametrize("bad", ["../../etc", "20261128T143501Z-5f2a/..", "", "x" * 21])
def test_run_path_refuses_what_is_not_a_run_id(tmp_path: Path, bad: str) -> None:
    state = StateDir.open(tmp_path / "state")
    with pytest.raises(InputError) as error:
        state.run_path(bad)
    assert error.value.reference == "bad-run-id"
