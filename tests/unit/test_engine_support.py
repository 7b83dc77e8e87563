"""A site on paper and a simulated estate behind the engine's seams, so that the transaction's
logic (guards, rollback at each step, the failed rollback's report, `rollback RUN_ID`) is tested
without a lab. The engine itself, the journal, the fixes and the change sets are the real ones;
only reading targets, running playbooks and reading registrations are replaced."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediate import engine
from remediate.ansible import PlaybookResult, PlaybookStatus, TaskChange
from remediate.diagnose import Diagnosis, DnDiagnosis, Finding, Fix, Recommendation, RootCause
from remediate.fixes import FileTarget, ObjectTarget
from remediate.inventory import Site, load_site
from remediate.lock import SiteLock
from remediate.state import StateDir

# Nothing listens there: a test that reaches a host by mistake fails at once.
UNREACHABLE = "127.0.9.81"
CLOSED_PORT = 1
HOST_ZONE = timezone(timedelta(hours=5, minutes=30))


def write_inventory(directory: Path, **genesys_vars: Any) -> Path:
    """An inventory that loads (and reaches nothing: every port is closed)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    key.write_text("not a key\n")
    known_hosts = directory / "known_hosts"
    known_hosts.write_text("")
    document = {
        "all": {
            "children": {
                "site_paper": {
                    "vars": {"remediate_lab": True},
                    "children": {
                        "genesys": {
                            "hosts": {
                                "genesys-paper": {
                                    "ansible_connection": "winrm",
                                    "ansible_host": UNREACHABLE,
                                    "ansible_port": CLOSED_PORT,
                                    "ansible_winrm_scheme": "http",
                                    "ansible_winrm_transport": "basic",
                                    "ansible_user": "remediate",
                                    "ansible_password": "Paper-Secret-1!",
                                    "remediate_winrm_retries": 0,
                                    "genesys_log_dir": "D:\\gcti_logs\\SIP_P",
                                    "genesys_gax_url": f"http://{UNREACHABLE}:{CLOSED_PORT}/gax/api",
                                    "genesys_gax_user": "default",
                                    "genesys_gax_password": "Paper-GAX-2!",
                                    **genesys_vars,
                                }
                            }
                        },
                        "asterisk": {
                            "hosts": {
                                "asterisk-paper": {
                                    "ansible_connection": "ssh",
                                    "ansible_host": UNREACHABLE,
                                    "ansible_port": CLOSED_PORT,
                                    "ansible_user": "remediate",
                                    "ansible_ssh_private_key_file": str(key),
                                    "ansible_ssh_common_args": (
                                        f"-o UserKnownHostsFile={known_hosts}"
                                    ),
                                    "asterisk_sip_address": "127.0.9.54",
                                    "asterisk_extensions_conf": "/etc/asterisk/extensions.conf",
                                    "asterisk_dn_registrations": {"5001": "reg_5001"},
                                }
                            }
                        },
                    },
                }
            }
        }
    }
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def dn_diagnosis(dn: str, cause: RootCause, fix: Fix, *alternatives: Fix) -> DnDiagnosis:
    return DnDiagnosis(
        dn=dn,
        in_service=cause is RootCause.IN_SERVICE,
        since=None,
        root_cause=Finding(cause, f"{dn}: {cause.value}", ()),
        recommendation=Recommendation(fix, "why", f"do something about {dn}", alternatives),
        transactions=[],
    )


def diagnosis(*items: DnDiagnosis) -> Diagnosis:
    return Diagnosis(dns=list(items), sources=[], since=None, log_start=None, log_end=None)


SWITCH_BEFORE = {
    "dbid": 101,
    "type": "CfgSwitch",
    "name": "SIP_P",
    "state": "CFGEnabled",
    "userproperties": {"property": [{"section": "TServer", "key": "sip-port", "value": "5060"}]},
}
TRUSTED = [
    {"section": "sip", "key": "trusted-gateways", "value": "127.0.9.54"},
    {"section": "sip", "key": "gateway-ip-auth-mode", "value": "enabled"},
]


@dataclass
class PaperEstate:
    """The estate behind the seams: objects, files, which DNs register, what fails."""

    objects: dict[str, Any] = field(default_factory=lambda: {"CfgSwitch/SIP_P": SWITCH_BEFORE})
    files: dict[str, bytes] = field(
        default_factory=lambda: {"/etc/asterisk/extensions.conf": b"[general]\nstatic=yes\n"}
    )
    failing: dict[str, str] = field(default_factory=dict)
    """playbook name -> error message: its next run fails (after changing nothing)."""
    unreadable: bool = False
    """Reading targets fails (GAX down)."""
    registers: bool = True
    """DNs register once the gateway is trusted."""
    playbooks: list[str] = field(default_factory=list)
    restarts: int = 0
    diagnosis: Diagnosis = field(
        default_factory=lambda: diagnosis(
            dn_diagnosis("5001", RootCause.UNTRUSTED_GATEWAY, Fix.TRUSTED_GATEWAY, Fix.TRUNK)
        )
    )

    @property
    def trusted(self) -> bool:
        properties = self.objects["CfgSwitch/SIP_P"]["userproperties"]["property"]
        return any(p["key"] == "trusted-gateways" for p in properties)

    def read(self, site: Site, target: Any) -> tuple[bytes, bool]:
        if self.unreadable:
            raise engine.TransportError("GAX answers 500", reference="gax-server-error")
        if isinstance(target, ObjectTarget):
            obj = self.objects.get(target.key)
            return engine.canonical_object(obj), obj is None
        assert isinstance(target, FileTarget)
        return self.files[target.path], False

    def run(self, name: str, extravars: dict[str, Any], check: bool) -> list[TaskChange]:
        self.playbooks.append(name + (" --check" if check else ""))
        if name in self.failing and not check:
            raise engine.StepFailed(self.failing.pop(name))
        if name == "trusted_gateway.yml":
            before = self.objects["CfgSwitch/SIP_P"]
            after = copy.deepcopy(before)
            if not self.trusted:
                after["userproperties"]["property"] += TRUSTED
            if not check:
                self.objects["CfgSwitch/SIP_P"] = after
            if after == before:
                return []
            return [
                TaskChange("genesys-paper", "trust", "genesys_annex_option", (), before, after, {})
            ]
        if name == "restart.yml":
            self.restarts += 1
        if name == "rollback.yml":
            for item in extravars["remediate_rollback_objects"]:
                self.objects[f"{item['cfg_type']}/{item['name']}"] = item["before"]
            for item in extravars["remediate_rollback_files"]:
                self.files[item["path"]] = Path(item["backup"]).read_bytes()
        return []

    def registrations(self, dns: list[str]) -> dict[str, engine.DnState]:
        ok = {"1002", "1003"} | ({"5001", "5002"} if self.trusted and self.registers else set())
        return {
            dn: engine.DnState(dn, dn in ok, f"{dn}: {'ok' if dn in ok else 'refused'}")
            for dn in dns
        }


def install(monkeypatch: pytest.MonkeyPatch, estate: PaperEstate) -> None:
    """Put `estate` behind the engine's seams."""

    def preflight(ctx: Any, fix_name: str, force: bool) -> engine.Plan:
        chosen = engine.choose_fix(estate.diagnosis, list(ctx.options.dns), fix_name, force)
        plan = engine.Plan(
            site=ctx.site.name,
            dns=list(ctx.options.dns),
            requested_fix=fix_name,
            fix=engine.build_fix(chosen, ctx.site) if chosen else None,
            diagnosis=estate.diagnosis,
            baseline=["1002", "1003"],
            changes=[],
        )
        if chosen is None:
            plan.note = "nothing to do: in service"
        return plan

    def playbook(
        ctx: Any, name: str, private_dir: Path, extravars: Any, *, check: bool = False
    ) -> PlaybookResult:
        changes = estate.run(name, dict(extravars), check)
        return PlaybookResult(
            status=PlaybookStatus.SUCCESSFUL,
            rc=0,
            hosts={},
            changes=tuple(changes),
            failures=(),
            duration=0.0,
            check=check,
            private_dir=private_dir,
            artifact_dir=private_dir / "artifacts",
        )

    # The paper site's lock lives in its state directory only: the lock on the Asterisk host is
    # tested against the lab (tests/integration/test_lock_lab.py, test_guards.py).
    monkeypatch.setattr(engine, "target_lock", lambda site: None)
    monkeypatch.setattr(engine, "_preflight", preflight)
    monkeypatch.setattr(engine._Context, "playbook", playbook)
    monkeypatch.setattr(engine, "read_target", estate.read)
    monkeypatch.setattr(
        engine, "host_clock", lambda transport: datetime(2026, 11, 28, 20, 0, tzinfo=HOST_ZONE)
    )
    monkeypatch.setattr(
        engine,
        "registration_states",
        lambda site, transport, dns, since: estate.registrations(list(dns)),
    )
    monkeypatch.setattr(
        engine,
        "route_states",
        lambda site, transport, dns: {dn: engine.DnState(dn, True, dn) for dn in dns},
    )


def options(**overrides: Any) -> engine.Options:
    values: dict[str, Any] = {
        "dns": ("5001",),
        "fix": "auto",
        "change_id": "CHG-UNIT",
        "yes": True,
        "verify_timeout": 0.3,
        "poll_interval": 0.05,
    }
    values.update(overrides)
    return engine.Options(**values)


StepSpy = Callable[[str, str], None]


def hold_site_lock(state_dir: Path, run_id: str) -> SiteLock:
    """The paper site's lock, taken as another run would take it (local only, like the runs)."""
    lock = SiteLock(
        StateDir.open(state_dir),
        "paper",
        run_id=run_id,
        change_id="CHG-OTHER",
        ttl=timedelta(minutes=5),
        target=None,
    )
    lock.acquire()
    return lock


def load(tmp_path: Path, **genesys_vars: Any) -> Site:
    return load_site(write_inventory(tmp_path / "inventory", **genesys_vars), environ={})


def journal_lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
