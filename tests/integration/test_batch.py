"""A fleet's batched playbook runs, with real ansible-playbook runs against the controller itself.

Each "site" is a group `site_<name>` of two local hosts, one in `genesys` and one in `asterisk`,
as in a remediate inventory; the playbook writes, on each host, the variables it got.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediate.ansible import PlaybookEvent, PlaybookResult, PlaybookStatus, kill_run_processes
from remediate.batch import PlaybookBatcher, PlaybookRequest

SITES = ("north", "south", "east")

PLAYBOOK = """\
- name: Genesys side
  hosts: genesys
  gather_facts: false
  tasks:
    - name: Fail where asked
      ansible.builtin.fail:
        msg: "{{ inventory_hostname }} was made to fail"
      when: remediate_fail | default(false)
    - name: Sleep where asked
      ansible.builtin.command:
        argv: [sleep, "{{ remediate_sleep | default(0) }}"]
      changed_when: false
    - name: Write what the host got
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}"
        content: "{{ remediate_dns | join(',') }} {{ remediate_run_id }} {{ remediate_note }}"
        mode: "0600"
- name: Asterisk side
  hosts: asterisk
  gather_facts: false
  tasks:
    - name: Write what the host got
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}"
        content: "{{ remediate_dns | join(',') }} {{ remediate_run_id }}"
        mode: "0600"
"""


@pytest.fixture
def estate(tmp_path: Path) -> dict[str, Path]:
    """An inventory of three local sites, the playbook, and the directory it writes to."""
    out = tmp_path / "out"
    out.mkdir()
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    }
    inventory = {
        "all": {
            "vars": {"out_dir": str(out)},
            "children": {
                "genesys": {"hosts": {f"genesys-{site}": local for site in SITES}},
                "asterisk": {"hosts": {f"asterisk-{site}": local for site in SITES}},
                **{
                    f"site_{site}": {"hosts": {f"genesys-{site}": {}, f"asterisk-{site}": {}}}
                    for site in SITES
                },
            },
        }
    }
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    return {"inventory": tmp_path / "inventory", "playbook": tmp_path / "site.yml", "out": out}


def request(
    estate: dict[str, Path],
    site: str,
    private_dir: Path,
    on_event: Callable[[PlaybookEvent], None] | None = None,
    **extravars: Any,
) -> PlaybookRequest:
    return PlaybookRequest(
        playbook=estate["playbook"],
        inventory=estate["inventory"],
        private_dir=private_dir,
        timeout=120,
        limit=f"site_{site}",
        hosts=(f"genesys-{site}", f"asterisk-{site}"),
        extravars={
            "remediate_dns": [f"50{index}1" for index in range(SITES.index(site) + 1)],
            "remediate_run_id": f"run-{site}",
            "remediate_note": "{{ kept as written }}",
            **extravars,
        },
        secrets=(),
        check=False,
        diff=True,
        on_event=on_event,
        vault_password_file=None,
        environment={},
    )


def run_sites(
    batcher: PlaybookBatcher, requests: dict[str, PlaybookRequest]
) -> dict[str, PlaybookResult | BaseException]:
    """Each request from its own thread, as a fleet's sites ask: they all start (join the
    batcher) before the first asks, as a fleet's sites do (their preflight comes first)."""
    results: dict[str, PlaybookResult | BaseException] = {}
    started = threading.Barrier(len(requests))

    def site(name: str) -> None:
        with batcher.member():
            started.wait(timeout=30)
            try:
                results[name] = batcher(requests[name])
            except BaseException as error:
                results[name] = error

    threads = [threading.Thread(target=site, args=(name,)) for name in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return results


def test_three_sites_run_as_one_playbook_each_with_its_own_variables_and_result(
    estate: dict[str, Path], tmp_path: Path
) -> None:
    events: dict[str, list[PlaybookEvent]] = {site: [] for site in SITES}
    requests = {
        site: request(
            estate,
            site,
            tmp_path / site / "apply",
            events[site].append,
            remediate_fail=site == "south",
        )
        for site in SITES
    }
    results = run_sites(PlaybookBatcher(), requests)

    first = tmp_path / "east" / "apply"  # the first site by name keeps the artifacts
    artifacts = list((first / "artifacts").glob("*/command"))
    assert len(artifacts) == 1, "one ansible-playbook run for the three sites"
    command = artifacts[0].read_text()
    assert "site_east:site_north:site_south" in command
    for site in ("north", "south"):
        assert (tmp_path / site / "apply" / "batch").resolve() == first.resolve()
    assert not list(tmp_path.glob("*/apply.hostvars")), "the host vars are removed after the run"

    north, south, east = (results[site] for site in SITES)
    assert isinstance(north, PlaybookResult) and isinstance(south, PlaybookResult)
    assert isinstance(east, PlaybookResult)
    assert north.status is PlaybookStatus.SUCCESSFUL and east.status is PlaybookStatus.SUCCESSFUL
    assert south.status is PlaybookStatus.FAILED
    assert [failure.host for failure in south.failures] == ["genesys-south"]
    assert "genesys-south was made to fail" in south.failures[0].message
    assert not north.failures and not east.failures
    assert {change.host for change in north.changes} == {"genesys-north", "asterisk-north"}
    assert set(north.hosts) == {"genesys-north", "asterisk-north"}

    out = estate["out"]
    assert (out / "genesys-north").read_text() == "5001 run-north {{ kept as written }}"
    assert (out / "asterisk-east").read_text() == "5001,5011,5021 run-east"
    assert not (out / "genesys-south").exists(), "the failed host stopped at its failure"
    assert (out / "asterisk-south").read_text() == "5001,5011 run-south"

    for site in SITES:
        hosts = {event.host for event in events[site] if event.host}
        assert hosts == {f"genesys-{site}", f"asterisk-{site}"}, "each site sees its own hosts"


def test_a_site_that_never_asks_holds_the_others_for_the_linger_only(
    estate: dict[str, Path], tmp_path: Path
) -> None:
    batcher = PlaybookBatcher(linger=1.0)
    busy = threading.Event()
    result: list[PlaybookResult] = []

    def slow_site() -> None:
        with batcher.member():
            busy.wait(timeout=60)

    slow = threading.Thread(target=slow_site)
    slow.start()
    try:
        with batcher.member():
            started = time.monotonic()
            result.append(batcher(request(estate, "north", tmp_path / "north" / "plan")))
            waited = time.monotonic() - started
    finally:
        busy.set()
        slow.join()
    assert result[0].status is PlaybookStatus.SUCCESSFUL
    assert (estate["out"] / "genesys-north").read_text().startswith("5001 run-north")
    assert 1.0 <= waited < 60, "it waited for the linger, not for the busy site"


def test_recover_of_any_site_of_a_batch_finds_its_processes(
    estate: dict[str, Path], tmp_path: Path
) -> None:
    requests = {
        site: request(estate, site, tmp_path / site / "restart", remediate_sleep=60)
        for site in ("north", "south")
    }
    batcher = PlaybookBatcher()
    killed: list[int] = []

    def kill_when_running() -> None:
        second = tmp_path / "south" / "restart"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if (second / "batch").exists():
                count = kill_run_processes(second)
                if count:
                    killed.append(count)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    started = time.monotonic()
    results = run_sites(batcher, requests)
    killer.join()
    assert killed and killed[0] >= 1
    assert time.monotonic() - started < 50, "the sleeping run was killed, not waited for"
    for site in ("north", "south"):
        outcome = results[site]
        assert isinstance(outcome, PlaybookResult)
        assert outcome.status is not PlaybookStatus.SUCCESSFUL


def test_different_playbooks_at_the_same_step_run_side_by_side(
    estate: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.yml"
    other.write_text(textwrap.dedent(PLAYBOOK).replace("Write what the host got", "Write it"))
    requests = {
        "north": request(estate, "north", tmp_path / "north" / "apply"),
        "south": PlaybookRequest(
            **{**request(estate, "south", tmp_path / "south" / "apply").__dict__, "playbook": other}
        ),
    }
    results = run_sites(PlaybookBatcher(), requests)
    for site in ("north", "south"):
        outcome = results[site]
        assert isinstance(outcome, PlaybookResult) and outcome.succeeded
        assert not (tmp_path / site / "apply" / "batch").exists(), "each ran alone"
        assert len(list((tmp_path / site / "apply" / "artifacts").glob("*/command"))) == 1
