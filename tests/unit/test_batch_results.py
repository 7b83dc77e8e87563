"""One site's share of a batched playbook run, and the playbooks' fitness for batching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from remediate.ansible import HostStats, PlaybookResult, PlaybookStatus, TaskChange, TaskFailure

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
NORTH = ("genesys-north", "asterisk-north")
SOUTH = ("genesys-south", "asterisk-south")


def batch_result(
    status: PlaybookStatus, *, recap: bool = True, south_fails: bool = True
) -> PlaybookResult:
    failures = (
        (TaskFailure("genesys-south", "Restart", "genesys_service", "error 1053", False),)
        if south_fails
        else ()
    )
    return PlaybookResult(
        status=status,
        rc=2 if status is not PlaybookStatus.SUCCESSFUL else 0,
        hosts={
            "genesys-north": HostStats(ok=3, changed=1),
            "asterisk-north": HostStats(ok=1),
            "genesys-south": HostStats(ok=1, failed=int(south_fails)),
        },
        changes=(
            TaskChange("genesys-north", "Restart", "genesys_service", (), None, None, {}),
            TaskChange("genesys-south", "Annex", "genesys_annex_option", (), None, None, {}),
        ),
        failures=failures,
        duration=4.0,
        check=False,
        private_dir=Path("/state/runs/r1/ansible/restart"),
        artifact_dir=Path("/state/runs/r1/ansible/restart/artifacts/run"),
        output_tail="fatal: [genesys-south]: FAILED!",
        recap=recap,
    )


def test_another_sites_failure_is_not_this_sites() -> None:
    north = batch_result(PlaybookStatus.FAILED).for_hosts(NORTH)
    assert north.succeeded
    assert set(north.hosts) == set(NORTH)
    assert [change.host for change in north.changes] == ["genesys-north"]
    assert north.failures == () and north.output_tail == ""


def test_the_failed_site_gets_its_failure_and_its_own_changes_only() -> None:
    south = batch_result(PlaybookStatus.FAILED).for_hosts(SOUTH)
    assert south.status is PlaybookStatus.FAILED
    assert [failure.message for failure in south.failures] == ["error 1053"]
    assert [change.host for change in south.changes] == ["genesys-south"]
    assert "genesys-south" in south.output_tail


def test_an_unreachable_host_makes_its_site_unreachable() -> None:
    result = batch_result(PlaybookStatus.FAILED)
    unreachable = TaskFailure("asterisk-north", "Register", "command", "ssh: refused", True)
    result = PlaybookResult(**{**result.__dict__, "failures": (unreachable,)})
    assert result.for_hosts(NORTH).status is PlaybookStatus.UNREACHABLE
    assert result.for_hosts(SOUTH).succeeded


@pytest.mark.parametrize(
    ("status", "recap"),
    [
        (PlaybookStatus.FAILED, False),  # Ansible stopped before its recap: nobody is known done
        (PlaybookStatus.TIMEOUT, True),
        (PlaybookStatus.CANCELED, True),
    ],
)
def test_a_run_stopped_as_a_whole_fails_every_site(status: PlaybookStatus, recap: bool) -> None:
    result = batch_result(status, recap=recap, south_fails=False)
    for hosts in (NORTH, SOUTH):
        share = result.for_hosts(hosts)
        assert share.status is status
        assert share.output_tail, "the reason Ansible stopped stays with every site"


def _settings(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        found.update(key for key in node if key in ("any_errors_fatal", "max_fail_percentage"))
        for value in node.values():
            found |= _settings(value)
    elif isinstance(node, list):
        for item in node:
            found |= _settings(item)
    return found


CONTENT = sorted(
    [*PLAYBOOKS.glob("*.yml"), *(PLAYBOOKS.parent / "roles").rglob("*.yml")],
)


@pytest.mark.parametrize("path", CONTENT, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_play_lets_one_site_stop_the_others(path: Path) -> None:
    """A fleet runs each step of all its sites as one ansible-playbook: a failure on one site's
    host must fail that site alone, never abort the other sites' hosts half-way."""
    assert _settings(yaml.safe_load(path.read_text(encoding="utf-8"))) == set()
