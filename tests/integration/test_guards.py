"""Issue 7's guards and outputs on the lab, through the CLI without a terminal: the change window
(exit 6, nothing touched), the webhook (delivered to a local HTTP server with the run's JSON; no
hang when nobody listens), `apply --verify` (the suite's JUnit XML in the run's record; a failing
suite rolls back, exit 3), `report --html`, and `lock break`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_apply_support import cli, estate_checksums, in_service, inventory_with_short_bounds

from remediate import api, engine
from remediate.inventory import load_site
from remediate.lab.layout import LabLayout, set_fault
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

APPLY = ["apply", "--dn", "5001", "--dn", "5002", "--fix", "auto", "--yes"]
APPLY += ["--change-id", "CHG-GUARD", "--verify-timeout", "20s", "--output", "json"]


def window(start: timedelta, end: timedelta) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    return f"{(now + start).isoformat()}/{(now + end).isoformat()}"


class Receiver:
    """A local webhook receiver: keeps each POSTed JSON body."""

    def __init__(self) -> None:
        bodies: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/remediate?token=s3"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def closed_port_url() -> str:
    hook = Receiver()
    url = hook.url
    hook.close()  # nobody listens there any more: connections are refused
    return url


def test_outside_the_window_nothing_is_touched_and_a_dead_webhook_does_not_hang(
    lab: LabLayout, tmp_path: Path
) -> None:
    before = {name: path.read_bytes() for name, path in _estate_files(lab).items()}
    state = tmp_path / "state"
    started = time.monotonic()
    refused = cli(
        *APPLY, "--window", window(-timedelta(hours=3), -timedelta(hours=1)),
        "--notify", closed_port_url(),
        state_dir=state, inventory=lab.inventory_dir,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert refused.code == ExitStatus.OUTSIDE_WINDOW, refused.err
    assert "error: outside-change-window" in refused.err
    document = refused.json()
    assert document["status"] == "failed-before-change" and document["exit_code"] == 6
    assert document["window"]["allowed"] is False and document["lock"] is None
    notification = document["notification"]
    assert notification["delivered"] is False and notification["attempts"] == 3
    assert "token" not in notification["url"]  # the URL's path and query are not shown
    assert elapsed < notification["bound_seconds"] + 10
    assert {name: path.read_bytes() for name, path in _estate_files(lab).items()} == before
    shown = cli("show", document["run_id"], "--output", "json", state_dir=state).json()
    (guards,) = [step for step in shown["steps"] if step["name"] == "guards"]
    assert guards["outcome"] == "failed" and "outside every change window" in guards["error"]
    assert guards["data"]["window"]["reason"] == "outside"

    # a window that closes before the run's worst case could end: refused too
    short = cli(
        *APPLY, "--window", window(-timedelta(minutes=5), timedelta(minutes=10)),
        state_dir=state, inventory=lab.inventory_dir,
    )  # fmt: skip
    assert short.code == ExitStatus.OUTSIDE_WINDOW and "window-too-short" in short.err

    # the inventory's recurring windows: one that opened and closed yesterday
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_bytes((lab.inventory_dir / "hosts.yml").read_bytes())
    (inventory / "group_vars").mkdir()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%a").lower()
    (inventory / "group_vars" / "genesys.yml").write_text(
        yaml.safe_dump(
            {"remediate_change_windows": [
                {"days": [yesterday], "start": "01:00", "end": "02:00", "tz": "UTC"}
            ]}
        )
    )  # fmt: skip
    recurring = cli(*APPLY, state_dir=state, inventory=inventory)
    assert recurring.code == ExitStatus.OUTSIDE_WINDOW
    assert f"{yesterday} 01:00-02:00 UTC" in recurring.err
    assert {name: path.read_bytes() for name, path in _estate_files(lab).items()} == before

    # no change id without a terminal: exit 1 with a hint
    bare = cli("apply", "--dn", "5001", "--yes", state_dir=state, inventory=lab.inventory_dir)
    assert bare.code == ExitStatus.ERROR and "hint: pass --change-id" in bare.err


def _estate_files(layout: LabLayout) -> dict[str, Path]:
    return {"cme": layout.cme_file, "extensions": layout.asterisk_etc / "extensions.conf"}


def test_apply_verify_notify_report_and_lock_break(
    lab_factory: Callable[[str], LabLayout], tmp_path: Path, receiver: Receiver
) -> None:
    layout = lab_factory("untrusted-gateway")
    inventory = inventory_with_short_bounds(layout, tmp_path / "inventory")
    state = tmp_path / "state"
    applied = cli(
        *APPLY, "--verify", "--notify", receiver.url,
        "--window", window(-timedelta(hours=1), timedelta(hours=3)),
        state_dir=state, inventory=inventory,
    )  # fmt: skip
    assert applied.code == 0, applied.err
    document = applied.json()
    assert document["status"] == "committed" and document["window"]["reason"] == "inside"
    verification = document["verification"]
    assert verification["passed"] is True and verification["run_id"] == document["run_id"]
    junit = Path(verification["junit"])
    assert junit.parent == state / "runs" / document["run_id"] and "<testsuite" in junit.read_text()
    assert document["notification"]["delivered"] is True
    (body,) = receiver.bodies  # the run's JSON, as the scheduler would read it
    assert body["run_id"] == document["run_id"] and body["change_id"] == "CHG-GUARD"
    assert body["status"] == "committed" and body["kind"] == "apply-run"
    assert in_service(layout) >= {"5001", "5002", "1002", "1003"}

    page = tmp_path / "run.html"
    made = cli(
        "report", document["run_id"], "--html", str(page), "--output", "json", state_dir=state
    )
    assert made.code == 0, made.err
    assert made.json()["registration_states"] > 0
    html = page.read_text()
    assert "<svg" in html and "verify-suite" in html and "restart" in html
    assert "5001" in html and "in service" in html

    # A run's lock left by a dead controller elsewhere is broken on purpose, and journaled.
    lock_file = Path(load_site(inventory).lock_path)
    lock_file.write_text(
        json.dumps(
            {"kind": "remediate-site-lock", "schema_version": 1, "site": "lab",
             "run_id": "20261205T160000Z-dead", "change_id": None, "owner": "ops@ctl2",
             "pid": 4242, "process": {"host": "ctl2", "pid": 4242, "operator": "ops",
                                      "boot_id": None, "pid_start": None},
             "acquired": "2026-12-05T16:00:00Z", "expires": "2099-01-01T00:00:00Z",
             "state_dir": "/var/lib/remediate"}
        )
    )  # fmt: skip
    blocked = cli(*APPLY, state_dir=state, inventory=inventory)
    assert blocked.code == ExitStatus.LOCKED and "ops@ctl2, pid 4242" in blocked.err
    broke = cli(
        "lock", "break", "lab", "--reason", "ctl2 died", "--output", "json", "-i", str(inventory),
        state_dir=state,
    )  # fmt: skip
    assert broke.code == 0, broke.err
    assert broke.json()["target"]["run_id"] == "20261205T160000Z-dead"
    assert not lock_file.exists()
    runs = cli("history", "--output", "json", state_dir=state).json()["runs"]
    assert runs[0]["action"] == "lock-break" and "ctl2 died" in runs[0]["message"]


def test_a_failing_verification_suite_rolls_back(
    lab_factory: Callable[[str], LabLayout], tmp_path: Path
) -> None:
    layout = lab_factory("untrusted-gateway")
    inventory = inventory_with_short_bounds(layout, tmp_path / "inventory")
    before = estate_checksums(layout)

    def on_step(step: str, phase: str) -> None:
        # SIP Server stops answering once the engine's own verification passed: the suite's
        # OPTIONS probe fails; the estate recovers before the rollback starts
        if phase == "started" and step in ("verify-suite", "rollback"):
            set_fault(layout, "registrar-silent", step == "verify-suite")

    options = engine.Options(
        dns=("5001", "5002"),
        change_id="CHG-SUITE",
        yes=True,
        verify_timeout=20.0,
        poll_interval=0.5,
        verify_suite=True,
        suite_timeout=120.0,
    )
    try:
        report = api.apply(
            inventory, None, options, engine.Hooks(on_step=on_step), state_dir=tmp_path / "state"
        )
    finally:
        set_fault(layout, "registrar-silent", False)
    assert report.exit_status is ExitStatus.VERIFICATION_FAILED, report.message
    assert report.status.value == "rolled-back"
    assert report.verification is not None and report.verification["passed"] is False
    failed = [c for c in report.verification["checks"] if c["outcome"] != "passed"]
    assert failed and any("OPTIONS" in c["message"] for c in failed), failed
    assert Path(report.verification["junit"]).is_file()
    assert estate_checksums(layout) == before
    assert in_service(layout) >= {"1002", "1003"}
