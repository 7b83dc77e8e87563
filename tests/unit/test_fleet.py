"""The fleet scheduler, without hosts: the bound on concurrent sites, the --max-failed brake,
Ctrl-C, the exit-code order, the choice of sites, and the refusal of two sites on one host."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from remediate import engine, fleet
from remediate.errors import InputError, RemediateError, UsageError
from remediate.fleet import Outcome, SiteResult, Stop
from remediate.inventory import read_inventory
from remediate.lab import fleet as lab_fleet
from remediate.lab.layout import LabAddresses
from remediate.status import ExitStatus

NAMES = ["a", "b", "c", "d", "e", "f"]


def _result(site: str, code: ExitStatus) -> SiteResult:
    outcome = Outcome.SUCCEEDED if code is ExitStatus.SUCCESS else Outcome.FAILED
    return SiteResult(site=site, outcome=outcome, status="x", exit_status=code, message="")


class Recorder:
    """A site runner that takes `seconds`, fails the sites in `failing`, and records how many
    sites ran at once."""

    def __init__(self, failing: dict[str, ExitStatus], seconds: float = 0.05) -> None:
        self.failing = failing
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.started: list[str] = []

    def __call__(self, site: str) -> SiteResult:
        with self.lock:
            self.started.append(site)
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        return _result(site, self.failing.get(site, ExitStatus.SUCCESS))


def test_at_most_parallel_sites_run_at_once_and_all_run() -> None:
    recorder = Recorder({})
    results, stopped = fleet.run_sites(NAMES, recorder, parallel=3, max_failed=None)
    assert stopped is None
    assert recorder.peak == 3
    assert [r.site for r in results] == NAMES
    assert all(r.outcome is Outcome.SUCCEEDED for r in results)


def test_without_a_brake_every_site_runs_whatever_fails() -> None:
    recorder = Recorder({"a": ExitStatus.VERIFICATION_FAILED, "b": ExitStatus.PRECONDITION_FAILED})
    results, stopped = fleet.run_sites(NAMES, recorder, parallel=1, max_failed=None)
    assert stopped is None and recorder.started == NAMES
    assert fleet.exit_status_of(r.exit_status for r in results) is ExitStatus.VERIFICATION_FAILED


def test_the_brake_starts_no_site_after_max_failed_failures() -> None:
    recorder = Recorder({"b": ExitStatus.VERIFICATION_FAILED, "d": ExitStatus.VERIFICATION_FAILED})
    results, stopped = fleet.run_sites(NAMES, recorder, parallel=1, max_failed=1)
    assert stopped is Stop.MAX_FAILED
    assert recorder.started == ["a", "b"]  # d, which would fail too, never started
    outcomes = {r.site: r.outcome for r in results}
    assert outcomes == {
        "a": Outcome.SUCCEEDED,
        "b": Outcome.FAILED,
        **{name: Outcome.SKIPPED for name in "cdef"},
    }
    skipped = results[2]
    assert skipped.exit_status is None and "--max-failed 1" in skipped.message


def test_started_sites_finish_after_the_brake() -> None:
    """With 3 in flight, the first failure brakes: the two others still end with their own
    result, and nothing new starts."""
    failing = {"a": ExitStatus.VERIFICATION_FAILED}
    slow = Recorder(failing, seconds=0.2)

    def runner(site: str) -> SiteResult:
        if site == "a":  # fails at once, while b and c are running
            with slow.lock:
                slow.started.append(site)
            return _result(site, failing["a"])
        return slow(site)

    results, stopped = fleet.run_sites(NAMES, runner, parallel=3, max_failed=1)
    assert stopped is Stop.MAX_FAILED
    assert sorted(slow.started) == ["a", "b", "c"]
    assert [r.outcome for r in results[:3]] == [
        Outcome.FAILED,
        Outcome.SUCCEEDED,
        Outcome.SUCCEEDED,
    ]
    assert all(r.outcome is Outcome.SKIPPED for r in results[3:])


def test_max_failed_two_lets_the_second_failure_happen() -> None:
    recorder = Recorder({"b": ExitStatus.LOCKED, "d": ExitStatus.OUTSIDE_WINDOW})
    results, stopped = fleet.run_sites(NAMES, recorder, parallel=1, max_failed=2)
    assert stopped is Stop.MAX_FAILED and recorder.started == ["a", "b", "c", "d"]
    assert fleet.exit_status_of(r.exit_status for r in results) is ExitStatus.LOCKED


def test_a_site_that_raises_is_a_failed_site_not_a_crashed_fleet() -> None:
    def runner(site: str) -> SiteResult:
        if site == "b":
            raise InputError("site b must have one genesys host", reference="inventory-bad")
        if site == "c":
            raise KeyError("bug")
        return _result(site, ExitStatus.SUCCESS)

    results, _ = fleet.run_sites(["a", "b", "c"], runner, parallel=2, max_failed=None)
    assert results[1].exit_status is ExitStatus.ERROR
    assert results[1].error is not None and results[1].error.reference == "inventory-bad"
    assert results[2].error is not None and results[2].error.reference == "unexpected-error"
    assert results[0].outcome is Outcome.SUCCEEDED


def test_ctrl_c_brakes_and_waits_for_the_started_sites(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder({}, seconds=0.1)
    real_wait = fleet.wait
    calls = {"n": 0}

    def interrupted_once(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real_wait(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fleet, "wait", interrupted_once)
    results, stopped = fleet.run_sites(NAMES, recorder, parallel=2, max_failed=None)
    assert stopped is Stop.INTERRUPTED
    assert recorder.started == ["a", "b"]
    assert [r.outcome for r in results[:2]] == [Outcome.SUCCEEDED, Outcome.SUCCEEDED]
    assert all(r.outcome is Outcome.SKIPPED for r in results[2:])


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([0, 0], 0),
        ([0, 1, 6, 5, 7, 3, 4], 4),
        ([1, 6, 5, 7, 3], 3),
        ([1, 6, 5, 7], 7),
        ([1, 6, 5], 5),
        ([1, 6], 6),
        ([0, 1], 1),
        ([0, 2], 2),
        ([2, 1], 1),
        ([3, 130], 130),
        ([4, 130], 4),
    ],
)
def test_the_fleet_exits_with_the_worst_sites_code(codes: list[int], expected: int) -> None:
    found = fleet.exit_status_of(ExitStatus(code) for code in codes)
    assert found is ExitStatus(expected)


def test_skipped_sites_do_not_count_in_the_exit_code() -> None:
    assert fleet.exit_status_of([ExitStatus.SUCCESS, None]) is ExitStatus.SUCCESS


@pytest.mark.parametrize(
    ("sites", "expected"),
    [(None, False), (["uat"], False), (["all"], True), (["uat", "prod"], True)],
)
def test_a_fleet_is_several_sites_or_all(sites: list[str] | None, expected: bool) -> None:
    assert fleet.is_fleet_request(sites) is expected


def test_bounds_are_checked() -> None:
    with pytest.raises(UsageError, match="--parallel"):
        fleet.run_sites(NAMES, Recorder({}), parallel=0, max_failed=None)
    with pytest.raises(UsageError, match="--max-failed"):
        fleet.run_sites(NAMES, Recorder({}), parallel=1, max_failed=0)


# Choosing sites from an inventory --------------------------------------------------------------


@pytest.fixture
def fleet_inventory(tmp_path: Path) -> Path:
    """The inventory of a 3-site lab fleet, written without starting it."""
    planned = lab_fleet.plan_fleet(
        tmp_path / "fleet", 3, LabAddresses(genesys_host="127.0.13.81", asterisk_host="127.0.14.54")
    )
    return lab_fleet.write_inventory(planned)


def test_all_is_every_site_group_sorted(fleet_inventory: Path) -> None:
    assert fleet.select_sites(read_inventory(fleet_inventory), ["all"]) == [
        "lab01",
        "lab02",
        "lab03",
    ]


def test_named_sites_keep_their_order_once_each(fleet_inventory: Path) -> None:
    assert fleet.select_sites(read_inventory(fleet_inventory), ["lab03", "lab01", "lab03"]) == [
        "lab03",
        "lab01",
    ]


def test_an_unknown_site_is_refused_naming_the_known_ones(fleet_inventory: Path) -> None:
    with pytest.raises(InputError, match="lab01, lab02, lab03") as error:
        fleet.select_sites(read_inventory(fleet_inventory), ["lab01", "nowhere"])
    assert error.value.reference == "site-unknown"


def test_all_with_names_is_a_usage_error(fleet_inventory: Path) -> None:
    with pytest.raises(UsageError):
        fleet.select_sites(read_inventory(fleet_inventory), ["all", "lab01"])


def _options(**overrides: object) -> engine.Options:
    values: dict[str, object] = {"dns": ("5001",), "change_id": "CHG1", "yes": True}
    values.update(overrides)
    return engine.Options(**values)  # type: ignore[arg-type]


def test_two_sites_on_one_sip_server_are_refused(fleet_inventory: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(fleet_inventory.read_text())
    hosts = document["all"]["children"]["genesys"]["hosts"]
    hosts["genesys-lab02"]["genesys_sip_address"] = hosts["genesys-lab01"]["genesys_sip_address"]
    fleet_inventory.write_text(yaml.safe_dump(document))
    with pytest.raises(InputError, match="lab01 and lab02 share the SIP Server") as error:
        fleet.apply(fleet_inventory, ["all"], _options(), state_dir=tmp_path / "state")
    assert error.value.reference == "fleet-shared-host"
    assert not (tmp_path / "state" / "runs").exists() or not any(
        (tmp_path / "state" / "runs").iterdir()
    )


def test_a_fleet_apply_needs_yes_and_a_change_id(fleet_inventory: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as error:
        fleet.apply(fleet_inventory, ["all"], _options(yes=False), state_dir=tmp_path)
    assert error.value.reference == "fleet-confirmation-required"
    with pytest.raises(UsageError) as error:
        fleet.apply(fleet_inventory, ["all"], _options(change_id=None), state_dir=tmp_path)
    assert error.value.reference == "change-id-required"


def test_the_report_is_one_json_document_and_a_table() -> None:
    results = [
        SiteResult(
            site="lab01",
            outcome=Outcome.SUCCEEDED,
            status="committed",
            exit_status=ExitStatus.SUCCESS,
            message="applied",
            fix="trusted-gateway",
            in_service=("1002", "5001"),
            run_id="20261128T143501Z-5f2a",
            elapsed=12.34,
            document={"kind": "apply-run", "run_id": "20261128T143501Z-5f2a"},
        ),
        SiteResult.from_error(
            "lab02", RemediateError("boom", reference="x", hint="do y"), elapsed=0.5
        ),
        SiteResult.skipped("lab03", "not started: the brake"),
    ]
    report = fleet.FleetReport(
        action="apply",
        dns=("5001",),
        change_id="CHG1",
        parallel=2,
        max_failed=1,
        sites=tuple(results),
        stopped=Stop.MAX_FAILED,
        elapsed=13.0,
        exit_status=ExitStatus.ERROR,
    )
    document = report.to_json()
    assert document["schema_version"] == 1 and document["kind"] == "fleet"
    assert document["counts"] == {"succeeded": 1, "failed": 1, "skipped": 1}
    assert document["stopped"] == "max-failed" and document["exit_code"] == 1
    assert document["sites"][0]["run"]["run_id"] == "20261128T143501Z-5f2a"
    assert document["sites"][1]["error"]["reference"] == "x"
    assert document["sites"][2]["exit_code"] is None and document["sites"][2]["run"] is None
    table = fleet.render(report).splitlines()
    assert table[0].split() == [
        "SITE",
        "FIX",
        "STATUS",
        "EXIT",
        "DNS",
        "IN",
        "SERVICE",
        "RUN",
        "ID",
        "ELAPSED",
    ]
    assert table[1].split() == [
        "lab01", "trusted-gateway", "committed", "0", "1002,5001", "20261128T143501Z-5f2a", "12.3s"
    ]  # fmt: skip
    assert table[3].split() == ["lab03", "-", "skipped", "-", "-", "-", "-"]
    assert "1 succeeded, 1 failed, 1 skipped of 3 site(s)" in table[4]
    assert "brake stopped the fleet" in table[5]
    assert "lab02: failed-before-change: boom" in fleet.render(report)
