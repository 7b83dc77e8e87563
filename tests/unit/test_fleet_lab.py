"""The fleet lab's plan, offline: addresses per site, one inventory that Ansible and remediate
read as one site per `site_<name>` group, each with its own hosts and DNs."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader

from remediate.inventory import load_site
from remediate.lab import fleet
from remediate.lab.control import LabError
from remediate.lab.layout import LabAddresses

FIRST = LabAddresses(genesys_host="127.0.13.81", asterisk_host="127.0.14.54")


def test_each_site_adds_its_index_to_the_first_sites_last_octet() -> None:
    assert fleet.site_addresses(FIRST, 0) == FIRST
    third = fleet.site_addresses(FIRST, 2)
    assert (third.genesys_host, third.asterisk_host) == ("127.0.13.83", "127.0.14.56")
    assert third.sip_port == FIRST.sip_port and third.ssh_port == FIRST.ssh_port


def test_a_fleet_never_leaves_the_first_addresses_slash_24() -> None:
    with pytest.raises(LabError, match="outside"):
        fleet.site_addresses(LabAddresses(genesys_host="127.0.13.250"), 10)


def test_sites_whose_addresses_overlap_are_refused(tmp_path: Path) -> None:
    close = LabAddresses(genesys_host="127.0.13.81", asterisk_host="127.0.13.83")
    with pytest.raises(LabError, match=r"overlap: 127\.0\.13\.83"):
        fleet.plan_fleet(tmp_path, 3, close)


def test_the_inventory_has_one_group_per_site_with_its_own_two_hosts(tmp_path: Path) -> None:
    planned = fleet.plan_fleet(tmp_path / "fleet", 3, FIRST, dns=("5001", "5002", "5003"))
    path = fleet.write_inventory(planned)
    manager = InventoryManager(loader=DataLoader(), sources=[str(path)])
    for index, name in enumerate(["lab01", "lab02", "lab03"]):
        members = sorted(host.name for host in manager.groups[f"site_{name}"].get_hosts())
        assert members == [f"asterisk-{name}", f"genesys-{name}"]
        site = load_site(path, name)
        assert site.genesys.sip_address == f"127.0.13.{81 + index}"
        assert site.asterisk.sip_address == f"127.0.14.{54 + index}"
        assert site.asterisk.dn_registrations == {
            dn: f"genesys_reg_{dn}" for dn in ("5001", "5002", "5003")
        }
        assert site.asterisk.pjsip_conf == str(
            tmp_path / "fleet" / name / "asterisk/etc/pjsip.conf"
        )
    assert len(manager.groups["genesys"].get_hosts()) == 3


def test_a_saved_fleet_loads_back(tmp_path: Path) -> None:
    planned = fleet.plan_fleet(tmp_path, 2, FIRST, dns=("5001", "5002", "5003", "5004"))
    fleet.save_fleet(planned)
    assert fleet.is_fleet(tmp_path)
    assert fleet.load_fleet(tmp_path) == planned
