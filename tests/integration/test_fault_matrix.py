"""The fault matrix: every fault the lab offers, switched on as each step of the change
transaction starts, until the rollback starts (the estate recovers, as a real one would once the
network or the service is back). `remediate apply --dn 5001 --dn 5002 --fix trusted-gateway` on
the lab must end in one of two states, with the documented exit code:

- applied and verified (exit 0): the fault struck nothing the run still needed;
- byte-identical to the baseline (every configuration object and extensions.conf) with the
  baseline DNs in service: exit 7 when nothing had changed yet, exit 3 once the change had
  started and was rolled back.

Anything else (exit 4, a half-changed estate, a DN lost) fails the cell. One lab per fault kind,
reset to its baseline between cells (a committed cell is rolled back with `remediate rollback`);
bounds are short (WinRM and GAX timeouts of a few seconds, no retries). The matrix is printed as a
table at the end of the run. The controller-SIGKILL column (every step, then `remediate recover`)
is tests/integration/test_recover.py's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_apply_support import estate_checksums, in_service, inventory_with_short_bounds

from remediate import api, engine
from remediate.lab.layout import LabLayout, set_fault
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

BASELINE = {"1002", "1003"}
TARGETS = {"5001", "5002"}
STEPS = ("guards", "preflight", "plan", "backup", "apply", "restart", "verify", "commit")
FAULTS = (
    "winrm-401",
    "winrm-500",
    "winrm-drop",
    "winrm-stall",
    "gax-500",
    "gax-timeout",
    "ssh-drop",
    "service-hang",
    "service-1053",
    "registrar-silent",
)
# Bounds of a few seconds, so a stalled or silent component fails its step fast.
# A cell costs 2 s (refused at preflight) to 25 s (rolled back, or committed then reset): the
# whole matrix (80 cells) took 21 minutes on the 2-core machine, far beyond CI's budget. CI runs
# one cell per fault kind, chosen so that every step is a column at least once and the fault
# bites (test_rollback.py and test_recover.py hold more); REMEDIATE_FAULT_MATRIX=full runs all.
FULL_MATRIX_ENV = "REMEDIATE_FAULT_MATRIX"
COVER: dict[str, tuple[str, ...]] = {
    "gax-timeout": ("guards",),  # bites at preflight
    "winrm-401": ("preflight",),
    "gax-500": ("plan",),
    "ssh-drop": ("backup",),  # bites at the restart's re-registration
    "winrm-500": ("apply",),  # bites at the restart
    "service-hang": ("restart",),
    "service-1053": ("restart",),
    "registrar-silent": ("restart",),
    "winrm-drop": ("verify",),
    "winrm-stall": ("commit",),  # after verification: applied, then reset
}
SHORT_TRANSPORT_BOUNDS = {
    "ansible_winrm_operation_timeout_sec": 2,
    "ansible_winrm_read_timeout_sec": 4,
    "remediate_winrm_retries": 0,
    "remediate_winrm_command_timeout": 20,
    "genesys_gax_timeout": 3,
}
SHORT_SSH_BOUNDS = {"ansible_ssh_timeout": 3, "remediate_ssh_command_timeout": 20}


@dataclass
class Cell:
    fault: str
    step: str
    exit_status: int
    state: str  # "applied" or "baseline" or what went wrong
    seconds: float

    @property
    def text(self) -> str:
        return f"{self.exit_status} {self.state}"


RESULTS: dict[tuple[str, str], Cell] = {}


def _inventory(layout: LabLayout, directory: Path) -> Path:
    inventory = inventory_with_short_bounds(layout, directory)
    genesys = inventory / "group_vars" / "genesys.yml"
    values = yaml.safe_load(genesys.read_text(encoding="utf-8"))
    genesys.write_text(yaml.safe_dump({**values, **SHORT_TRANSPORT_BOUNDS}), encoding="utf-8")
    asterisk = inventory / "group_vars" / "asterisk.yml"
    asterisk.write_text(yaml.safe_dump(SHORT_SSH_BOUNDS), encoding="utf-8")
    return inventory


def _options(change_id: str) -> engine.Options:
    return engine.Options(
        dns=("5001", "5002"),
        fix="trusted-gateway",
        force=True,  # every cell must reach its step, whatever the cells before left in the log
        change_id=change_id,
        yes=True,
        verify_timeout=8.0,
        poll_interval=0.5,
        playbook_timeout=60.0,
    )


def _cell(layout: LabLayout, inventory: Path, state: Path, fault: str, step: str) -> Cell:
    before = estate_checksums(layout)
    assert in_service(layout) >= BASELINE and not in_service(layout) & TARGETS
    struck: list[str] = []

    def on_step(name: str, phase: str) -> None:
        if name == step and phase == "started" and not struck:
            set_fault(layout, fault, True)
            struck.append(name)
        if name == "rollback" and phase == "started":
            set_fault(layout, fault, False)

    started = time.monotonic()
    try:
        report = api.apply(
            inventory, None, _options("CHG-MATRIX"), engine.Hooks(on_step=on_step),
            state_dir=state,
        )  # fmt: skip
    finally:
        set_fault(layout, fault, False)
    seconds = time.monotonic() - started
    status = int(report.exit_status)
    serving = in_service(layout)
    if status == ExitStatus.SUCCESS:
        applied = serving >= TARGETS | BASELINE and estate_checksums(layout) != before
        cell = Cell(fault, step, status, "applied" if applied else "NOT APPLIED", seconds)
        back = api.rollback(
            inventory, None, report.run_id, _options("CHG-RESET"), state_dir=state
        )  # the next cell starts from the baseline again
        assert back.exit_status == ExitStatus.SUCCESS, back.message
    else:
        identical = estate_checksums(layout) == before and serving >= BASELINE
        cell = Cell(fault, step, status, "baseline" if identical else "CHANGED", seconds)
    if not struck:
        cell.state += " (step never ran)"
    return cell


def _expected(cell: Cell) -> bool:
    if cell.exit_status == ExitStatus.SUCCESS:
        return cell.state == "applied"
    return cell.state == "baseline" and cell.exit_status in (
        ExitStatus.VERIFICATION_FAILED,
        ExitStatus.PRECONDITION_FAILED,
    )


def matrix_table(results: dict[tuple[str, str], Cell]) -> str:
    """The matrix as text: one row per fault, one column per step, `exit state` per cell."""
    width = max(len(f"{cell.text}") for cell in results.values()) + 2
    lines = [f"{'fault':18}" + "".join(f"{step:{width}}" for step in STEPS)]
    for fault in FAULTS:
        cells = [results.get((fault, step)) for step in STEPS]
        lines.append(f"{fault:18}" + "".join(f"{c.text if c else '-':{width}}" for c in cells))
    total = sum(cell.seconds for cell in results.values())
    lines.append(f"{len(results)} cells, {total:.0f} s of apply runs (the resets not counted)")
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def _print_matrix(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    capture: Any = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n\nfault matrix: exit code and final state (the fault on from the step's start)")
        print(matrix_table(RESULTS))


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_every_step(
    lab_factory: Callable[[str], LabLayout], tmp_path: Path, fault: str
) -> None:
    layout = lab_factory("untrusted-gateway")
    inventory = _inventory(layout, tmp_path / "inventory")
    state = tmp_path / "state"
    wrong = []
    steps = STEPS if os.environ.get(FULL_MATRIX_ENV) == "full" else COVER[fault]
    for step in steps:
        cell = _cell(layout, inventory, state, fault, step)
        RESULTS[(fault, step)] = cell
        if not _expected(cell):
            wrong.append(f"{step}: exit {cell.exit_status}, {cell.state}")
    assert wrong == []
