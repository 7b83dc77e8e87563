"""No secret in anything a whole run writes.

The lab demo, every subcommand, as an operator runs them, with the most verbose settings there
are (`--debug`, ANSIBLE_VERBOSITY=3, i.e. ansible-playbook -vvv): lab up, diagnose, plan, apply
(committed), history, show, verify, rollback, a failing apply that rolls back, lab status, lab
logs, lab down. Each runs as a process of its own with a HOME and a TMPDIR of its own, so that
everything written anywhere (Ansible's local temp and control sockets, ansible-runner's private
directories, reports, JUnit XML, journals, backups, the lab's logs on the controller's side) can
be searched afterwards, with every captured stdout and stderr, for the lab's passwords
(`LabCredentials`, in every encoding a log or a wire format would give them) and the bodies of
its private keys (the SSH client and host keys, the TLS keys): zero hits.

Not searched, and why: the key files themselves, the inventory the lab writes (the operator's
own inventory, which holds the passwords by design, as a vault file would), and the simulated
Windows host's account store (`run/winrm-ntlm-users`: the server side of NTLM, as Windows' own
SAM, not something the controller writes). Backups in
the journal ARE searched: they are copies of the operator's configuration (GAX objects,
extensions.conf), which holds none of these secrets.

On the same run: every directory of the state directory is 0700 and every file in it 0600.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import LabManager
from test_apply_support import inventory_with_short_bounds

from remediate.lab.layout import LabLayout, load_layout, set_fault

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
DNS = ["--dn", "5001", "--dn", "5002"]
PROGRESS = re.compile(r"^\[\s*[\d.]+s\] (?P<step>\S+)")


@dataclass
class Command:
    args: list[str]
    code: int
    stdout: bytes
    stderr: bytes
    seconds: float


@dataclass
class DemoRun:
    layout: LabLayout
    work: Path
    state: Path
    commands: list[Command] = field(default_factory=list)

    def code(self, *prefix: str) -> list[int]:
        return [c.code for c in self.commands if c.args[: len(prefix)] == list(prefix)]


def _environment(work: Path) -> dict[str, str]:
    home, tmp = work / "home", work / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "USER": os.environ.get("USER") or os.environ.get("LOGNAME") or "root",
        "LANG": "C.UTF-8",
        "ANSIBLE_VERBOSITY": "3",
        "ANSIBLE_NOCOLOR": "1",
        "REMEDIATE_STATE_DIR": str(work / "state"),
    }


def _run(demo: DemoRun, *args: str, watch: bool = False) -> Command:
    """`remediate --debug ARGS` as a process. With `watch`, the fix fails as its playbook runs
    (GAX answers 500) and GAX recovers once the rollback starts."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "remediate", "--debug", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=demo.work,
        env=_environment(demo.work),
    )
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    out: list[bytes] = []
    assert process.stdout is not None
    for line in process.stdout:
        out.append(line)
        step = PROGRESS.match(line.decode("utf-8", "replace"))
        if watch and step and step["step"] == "backup":  # said once the backup is taken
            set_fault(demo.layout, "gax-500", True)
        if watch and step and step["step"] == "rollback":
            set_fault(demo.layout, "gax-500", False)
    code = process.wait(timeout=300)
    reader.join()
    seconds = time.monotonic() - started
    command = Command(list(args), code, b"".join(out), b"".join(errors), seconds)
    demo.commands.append(command)
    return command


@pytest.fixture(scope="module")
def demo(lab_manager: LabManager, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    lab_manager.release()  # the ports are ours for the module
    work = tmp_path_factory.mktemp("secrets")
    layout = LabLayout(work / "lab", lab_manager.addresses)
    run = DemoRun(layout, work, work / "state")
    lab_dir = str(layout.root)
    up = _run(
        run, "lab", "up", "--dir", lab_dir,
        "--genesys-host", layout.addresses.genesys_host,
        "--asterisk-host", layout.addresses.asterisk_host,
    )  # fmt: skip
    try:
        assert up.code == 0, up.stderr.decode()
        layout = run.layout = load_layout(layout.root)[0]
        inventory = str(inventory_with_short_bounds(layout, work / "inventory"))
        _run(run, "diagnose", *DNS, "-i", inventory)
        _run(run, "plan", *DNS, "-i", inventory)
        applied = _run(run, "apply", *DNS, "--yes", "--change-id", "SEC-1", "-i", inventory)
        run_id = re.search(rb"\d{8}T\d{6}Z-[0-9a-f]{4}", applied.stdout + applied.stderr)
        assert run_id is not None, applied.stdout.decode()
        committed = run_id.group().decode()
        _run(run, "history")
        _run(run, "show", committed)
        _run(run, "verify", "--run", committed, "-i", inventory)
        _run(run, "rollback", committed, "--yes", "--change-id", "SEC-2", "-i", inventory)
        # After the rollback the diagnosis names no cause it can fix: the fix is named, forced.
        _run(
            run, "apply", *DNS, "--fix", "trusted-gateway", "--force", "--yes",
            "--change-id", "SEC-3", "-i", inventory, watch=True,
        )  # fmt: skip
        _run(run, "lab", "status", "--dir", lab_dir)
        _run(run, "lab", "logs", "--dir", lab_dir, "--lines", "200")
        yield run
    finally:
        set_fault(layout, "gax-500", False)
        down = _run(run, "lab", "down", "--dir", lab_dir)
        assert down.code == 0, down.stderr.decode()


def _secret_shapes(layout: LabLayout) -> dict[str, bytes]:
    """Each secret as text, URL-encoded, UTF-16 (PowerShell's encoding), inside Basic auth,
    and base64-encoded at any alignment."""
    credentials = layout.credentials
    shapes: dict[str, bytes] = {}
    for name, user, password in (
        ("winrm", credentials.winrm_user, credentials.winrm_password),
        ("gax", credentials.gax_user, credentials.gax_password),
    ):
        shapes[f"{name} password"] = password.encode()
        shapes[f"{name} password, URL-encoded"] = urllib.parse.quote(password, safe="").encode()
        shapes[f"{name} password, UTF-16"] = password.encode("utf-16-le")
        shapes[f"{name} Basic auth"] = base64.b64encode(f"{user}:{password}".encode())
        for offset in range(3):
            encoded = base64.b64encode(b"\0" * offset + password.encode())
            # the characters that depend only on the password, whatever precedes it
            start = (offset * 4 + 2) // 3 + 1
            shapes[f"{name} password, base64+{offset}"] = encoded[start:-4]
    return shapes


def _key_files(layout: LabLayout) -> list[Path]:
    keys = [layout.ssh_client_key, layout.ssh_host_key]
    keys += [path for path in layout.tls_dir.glob("*.pem") if b"PRIVATE KEY" in path.read_bytes()]
    return keys


def _key_lines(layout: LabLayout) -> dict[str, bytes]:
    """Every line of every private key's body (a key leaks line by line, whatever the escaping)."""
    lines: dict[str, bytes] = {}
    for path in _key_files(layout):
        for number, line in enumerate(path.read_bytes().splitlines()):
            body = line.strip()
            if len(body) >= 16 and not body.startswith(b"-----"):
                lines[f"{path.name} line {number + 1}"] = body
    assert len(lines) >= 4, lines
    return lines


def _written_files(demo: DemoRun) -> Iterator[Path]:
    """Everything the run wrote on this machine, but the key files and the lab's inventory."""
    excluded = {path.resolve() for path in _key_files(demo.layout)}
    excluded.add((demo.layout.inventory_dir / "hosts.yml").resolve())
    excluded.add((demo.layout.run_dir / "winrm-ntlm-users").resolve())
    for top in (demo.state, demo.work / "home", demo.work / "tmp", demo.layout.root):
        for path in sorted(top.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.resolve() not in excluded:
                yield path


def test_every_command_ran_as_an_operator_expects(demo: DemoRun) -> None:
    results = [
        (c.args[0] if c.args[0] != "lab" else "lab " + c.args[1], c.code) for c in demo.commands
    ]
    assert results == [
        ("lab up", 0),
        ("diagnose", 0),
        ("plan", 0),
        ("apply", 0),
        ("history", 0),
        ("show", 0),
        ("verify", 0),
        ("rollback", 0),
        ("apply", 3),  # failed as it changed GAX, and rolled back
        ("lab status", 0),
        ("lab logs", 0),
    ], [(c.args, c.stderr.decode()[-800:]) for c in demo.commands if c.code]
    for command in demo.commands:
        print(f"{command.seconds:6.1f} s  remediate {' '.join(command.args[:3])}")
    # -vvv reached Ansible: its verbose output is in the run's artifacts or the output
    assert any(b"ESTABLISH SSH CONNECTION" in path.read_bytes() for path in _written_files(demo))


def test_no_secret_in_any_byte_written(demo: DemoRun) -> None:
    needles = {**_secret_shapes(demo.layout), **_key_lines(demo.layout)}
    hits: list[str] = []
    haystacks: list[tuple[str, bytes]] = []
    for command in demo.commands:
        label = "remediate " + " ".join(command.args[:2])
        haystacks += [(f"{label}: stdout", command.stdout), (f"{label}: stderr", command.stderr)]
    files = list(_written_files(demo))
    haystacks += [(str(path), path.read_bytes()) for path in files]
    for where, data in haystacks:
        for what, needle in needles.items():
            if needle in data:
                hits.append(f"{what} in {where} at byte {data.index(needle)}")
    assert len(files) > 50  # the search covered the run's files, not an empty directory
    assert hits == []


def test_every_file_of_the_state_directory_is_private(demo: DemoRun) -> None:
    entries = [demo.state, *demo.state.rglob("*")]
    assert len(entries) > 10
    loose = []
    for path in entries:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            loose.append(f"{oct(mode)} {path.relative_to(demo.state)}")
    assert loose == []
