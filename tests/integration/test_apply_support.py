"""What the apply/rollback/plan integration tests share: an inventory of the lab with short
service bounds, the CLI run in-process, and the estate read from the lab's side (its
configuration store, its files, its status), independently of the product's own readers."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from remediate.cli import main
from remediate.env import Environment
from remediate.lab import control
from remediate.lab.layout import LabLayout

# The restart's waits (role defaults 60 s / 120 s) cut short, so a hung stop fails fast.
SHORT_SERVICE_BOUNDS = {"genesys_service_stop_timeout": 3, "genesys_service_start_timeout": 15}


def inventory_with_short_bounds(layout: LabLayout, directory: Path) -> Path:
    """The lab's own inventory plus group_vars of this test run, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(layout.inventory_dir / "hosts.yml", directory / "hosts.yml")
    (directory / "group_vars").mkdir(exist_ok=True)
    (directory / "group_vars" / "genesys.yml").write_text(yaml.safe_dump(SHORT_SERVICE_BOUNDS))
    return directory


def estate_checksums(layout: LabLayout) -> dict[str, str]:
    """SHA-256 of every configuration object (the lab's store) and of extensions.conf."""
    document = json.loads(layout.cme_file.read_text(encoding="utf-8"))
    sums = {
        f"{obj['type']}/{obj['name']}": hashlib.sha256(
            json.dumps(obj, sort_keys=True).encode()
        ).hexdigest()
        for obj in document["objects"]
    }
    extensions = layout.asterisk_etc / "extensions.conf"
    sums["extensions.conf"] = hashlib.sha256(extensions.read_bytes()).hexdigest()
    return sums


def in_service(layout: LabLayout) -> set[str]:
    """The DNs the simulated SIP Server has in service now (its own status)."""
    return set(control.status(layout).dns_in_service)


def log_since_last_start(layout: LabLayout) -> str:
    """The current log segment: SIP Server opens one at every start."""
    segment = control.newest_log_segment(layout)
    assert segment is not None
    return segment.read_text(encoding="utf-8", errors="replace")


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        document = json.loads(self.out)
        assert isinstance(document, dict)
        return document


def cli(*args: str, state_dir: Path, inventory: Path | None = None) -> CliRun:
    """`remediate ARGS` in-process, without a terminal (as cron or AWX runs it)."""
    out, err = io.StringIO(), io.StringIO()
    arguments = list(args)
    if inventory is not None:
        arguments += ["-i", str(inventory)]
    env = Environment(
        stdin=io.StringIO(""),
        stdout=out,
        stderr=err,
        environ={"REMEDIATE_STATE_DIR": str(state_dir)},
    )
    code = main(arguments, env)
    return CliRun(code, out.getvalue(), err.getvalue())
