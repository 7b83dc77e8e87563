"""remediate.ansible without running Ansible: what it refuses, and scrubbing a private directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediate.ansible import PlaybookError, run_playbook, scrub_private_dir
from remediate.scrub import MASK

PLAYBOOKS = Path(__file__).resolve().parents[1] / "data" / "playbooks"


def test_a_missing_playbook_or_inventory_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match=r"playbook .* does not exist"):
        run_playbook(
            PLAYBOOKS / "nope.yml",
            inventory=PLAYBOOKS / "inventory.yml",
            private_dir=tmp_path / "pd",
            timeout=5,
        )
    with pytest.raises(PlaybookError, match=r"inventory .* does not exist"):
        run_playbook(
            PLAYBOOKS / "ping.yml",
            inventory=tmp_path / "missing-inventory",
            private_dir=tmp_path / "pd",
            timeout=5,
        )
    assert not (tmp_path / "pd").exists()


def test_a_used_private_directory_is_refused(tmp_path: Path) -> None:
    used = tmp_path / "pd"
    used.mkdir(mode=0o700)
    (used / "artifacts").mkdir()
    with pytest.raises(PlaybookError, match="not empty"):
        run_playbook(
            PLAYBOOKS / "ping.yml",
            inventory=PLAYBOOKS / "inventory.yml",
            private_dir=used,
            timeout=5,
        )


def test_a_run_needs_a_bound(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive timeout"):
        run_playbook(
            PLAYBOOKS / "ping.yml",
            inventory=PLAYBOOKS / "inventory.yml",
            private_dir=tmp_path / "pd",
            timeout=0,
        )


def test_scrub_private_dir_leaves_no_trace_of_a_crashed_run(tmp_path: Path) -> None:
    secret = 'GAX"pass-é'
    events = tmp_path / "artifacts" / "run" / "job_events"
    events.mkdir(parents=True)
    (events / "3-partial.json").write_text(json.dumps({"stdout": f"msg: {secret}"}))
    (tmp_path / "artifacts" / "run" / "stdout").write_text(f"ok: [genesys] => {secret}\n")
    (tmp_path / "artifacts" / "run" / "clean").write_text("nothing here\n")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "extravars.yml").write_text(json.dumps({"gax_password": secret}))

    assert scrub_private_dir(tmp_path, [secret]) == 2
    assert not (tmp_path / "tmp" / "extravars.yml").exists()
    everything = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    assert b"GAX" not in everything
    assert MASK.encode() in everything
    assert (tmp_path / "artifacts" / "run" / "clean").read_text() == "nothing here\n"
