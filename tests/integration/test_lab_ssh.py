"""The Asterisk host's SSH server with the clients operators and the product use.

paramiko (exec, pty, env, SFTP with posix_rename), OpenSSH (strict host key checking, a
ControlMaster reused for several commands), Ansible's ssh connection (ping, copy, command),
testinfra's `ssh://` backend, an unknown key refused, and the `ssh-drop` fault.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest
import testinfra
from test_lab_asterisk import AsteriskHost, os_user, running_host

from remediate.lab.layout import set_fault

pytestmark = pytest.mark.lab

ANSIBLE_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def host(lab_manager: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskHost]:
    with running_host(lab_manager, tmp_path_factory.mktemp("asterisk-ssh")) as running:
        yield running


def ssh_options(host: AsteriskHost) -> list[str]:
    return [
        "-o", f"UserKnownHostsFile={host.layout.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-i", str(host.layout.ssh_client_key),
        "-p", str(host.a.ssh_port),
    ]  # fmt: skip


def scp_options(host: AsteriskHost) -> list[str]:
    options = ssh_options(host)
    options[options.index("-p")] = "-P"
    return options


# --- paramiko --------------------------------------------------------------------------------


def test_exec_reports_exit_status_stdout_stderr_and_reads_all_stdin(host: AsteriskHost) -> None:
    status, stdout, stderr = host.run("echo out; echo err >&2; exit 7")
    assert (status, stdout, stderr) == (7, "out\n", "err\n")
    payload = os.urandom(3_000_000)
    status, stdout, _ = host.run("sha256sum", stdin=payload)
    assert status == 0
    assert stdout.split()[0] == hashlib.sha256(payload).hexdigest()


def test_large_output_arrives_whole_and_an_unread_stdin_is_harmless(host: AsteriskHost) -> None:
    status, stdout, _ = host.run("head -c 4000000 /dev/zero | tr '\\0' x")
    assert (status, len(stdout)) == (0, 4_000_000)
    status, stdout, _ = host.run("echo done", stdin=os.urandom(1_000_000))
    assert (status, stdout) == (0, "done\n")


def test_commands_run_as_the_user_with_the_lab_bin_first_and_filtered_env(
    host: AsteriskHost,
) -> None:
    with host.ssh() as client:
        _, out, _ = client.exec_command(
            'echo "$USER|$HOME|$PWD|$LANG|${SNEAKY:-unset}|${PATH%%:*}"; command -v asterisk',
            environment={"LANG": "C.UTF-8", "SNEAKY": "1"},
        )
        lines = out.read().decode().splitlines()
    home = os.path.expanduser("~")
    assert lines[0] == f"{os_user()}|{home}|{home}|C.UTF-8|unset|{host.layout.bin_dir}"
    assert lines[1] == str(host.layout.bin_dir / "asterisk")


def test_a_requested_pty_is_a_real_terminal(host: AsteriskHost) -> None:
    with host.ssh() as client:
        _, out, _ = client.exec_command("tty; stty size", get_pty=True)
        lines = out.read().decode().splitlines()
        assert out.channel.recv_exit_status() == 0
    assert lines[0].startswith("/dev/pts/")
    assert lines[1] == "24 80"


def test_sftp_put_get_and_posix_rename(host: AsteriskHost, tmp_path: Path) -> None:
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    local = tmp_path / "local.conf"
    local.write_bytes(b"[from-genesys]\n" * 5000)
    with host.ssh() as client, client.open_sftp() as sftp:
        sftp.put(str(local), str(remote_dir / "upload.tmp"))
        sftp.posix_rename(str(remote_dir / "upload.tmp"), str(remote_dir / "extensions.conf"))
        sftp.get(str(remote_dir / "extensions.conf"), str(tmp_path / "back.conf"))
        home = sftp.normalize(".")
        assert sorted(sftp.listdir(str(remote_dir))) == ["extensions.conf"]
    assert (tmp_path / "back.conf").read_bytes() == local.read_bytes()
    assert (remote_dir / "extensions.conf").read_bytes() == local.read_bytes()
    assert home == os.path.expanduser("~")


def test_an_unknown_key_or_another_user_name_is_refused(host: AsteriskHost, tmp_path: Path) -> None:
    stranger = tmp_path / "id_stranger"
    stranger.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))
    stranger.chmod(0o600)
    with pytest.raises(paramiko.AuthenticationException):
        host.ssh(key_file=stranger)
    client = paramiko.SSHClient()
    client.load_host_keys(str(host.layout.known_hosts))
    with pytest.raises(paramiko.AuthenticationException), client:
        client.connect(
            host.a.asterisk_host,
            port=host.a.ssh_port,
            username="not-" + os_user(),
            key_filename=str(host.layout.ssh_client_key),
            look_for_keys=False,
            allow_agent=False,
        )


def test_ssh_drop_fault_drops_every_connection(host: AsteriskHost) -> None:
    set_fault(host.layout, "ssh-drop", True)
    try:
        with pytest.raises((paramiko.SSHException, EOFError, ConnectionError)):
            host.ssh()
        dropped = subprocess.run(
            ["ssh", *ssh_options(host), host.a.asterisk_host, "true"],
            capture_output=True,
            timeout=20,
        )
        assert dropped.returncode == 255
    finally:
        set_fault(host.layout, "ssh-drop", False)
    assert host.run("echo back")[:2] == (0, "back\n")


# --- OpenSSH ---------------------------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 108 bytes: control sockets go in a short directory."""
    directory = Path(tempfile.mkdtemp(prefix="ast-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_openssh_strict_host_key_and_a_control_master_reused(
    host: AsteriskHost, tmp_path: Path, short_dir: Path
) -> None:
    control = [
        "-o", "ControlMaster=auto",
        "-o", f"ControlPath={short_dir}/%C",
        "-o", "ControlPersist=30",
    ]  # fmt: skip
    try:
        for expected in (3, 0, 5):
            result = subprocess.run(
                ["ssh", *ssh_options(host), *control, host.a.asterisk_host, f"exit {expected}"],
                capture_output=True,
                timeout=20,
            )
            assert result.returncode == expected, result.stderr
    finally:
        subprocess.run(
            ["ssh", *ssh_options(host), *control, "-O", "exit", host.a.asterisk_host],
            capture_output=True,
            timeout=20,
        )
    # OpenSSH 9's scp speaks SFTP: it needs the SFTP session's exit status.
    source = tmp_path / "upload.txt"
    source.write_text("over scp\n")
    copied = subprocess.run(
        [
            "scp",
            "-q",
            *scp_options(host),
            str(source),
            f"{host.a.asterisk_host}:{tmp_path}/scp.txt",
        ],
        capture_output=True,
        timeout=20,
    )
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "scp.txt").read_text() == "over scp\n"
    wrong = tmp_path / "known_hosts"
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    wrong.write_text(f"[{host.a.asterisk_host}]:{host.a.ssh_port} {key}")
    options = ssh_options(host)
    options[1] = f"UserKnownHostsFile={wrong}"
    refused = subprocess.run(
        ["ssh", *options, host.a.asterisk_host, "true"], capture_output=True, timeout=20
    )
    assert refused.returncode == 255
    assert b"HOST IDENTIFICATION HAS CHANGED" in refused.stderr


# --- Ansible and testinfra --------------------------------------------------------------------


def ansible_env(tmp_path: Path, control_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
        ANSIBLE_HOST_KEY_CHECKING="True",
        ANSIBLE_PYTHON_INTERPRETER="auto_silent",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CONFIG=str(tmp_path / "none.cfg"),
    )
    return env


def write_inventory(host: AsteriskHost, tmp_path: Path) -> Path:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        f"""all:
  children:
    asterisk:
      hosts:
        asterisk-lab:
          ansible_connection: ssh
          ansible_host: {host.a.asterisk_host}
          ansible_port: {host.a.ssh_port}
          ansible_ssh_private_key_file: {host.layout.ssh_client_key}
          ansible_ssh_common_args: >-
            -o UserKnownHostsFile={host.layout.known_hosts} -o StrictHostKeyChecking=yes
""",
        encoding="utf-8",
    )
    return inventory


def test_ansible_ping_copy_and_command_over_ssh(
    host: AsteriskHost, tmp_path: Path, short_dir: Path
) -> None:
    if shutil.which("ssh") is None:
        pytest.fail(
            "OpenSSH's client is needed by Ansible's ssh connection (apt-get openssh-client)"
        )
    inventory = write_inventory(host, tmp_path)
    env = ansible_env(tmp_path, short_dir)
    ping = subprocess.run(
        [str(ANSIBLE_BIN / "ansible"), "-i", str(inventory), "asterisk", "-m", "ping"],
        capture_output=True,
        text=True,
        env={**env, "ANSIBLE_PIPELINING": "True"},
        cwd=tmp_path,
        timeout=120,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert '"ping": "pong"' in ping.stdout
    source = tmp_path / "extensions-new.conf"
    source.write_text("[from-genesys]\nexten => _5XXX,1,NoOp()\n", encoding="utf-8")
    destination = tmp_path / "remote" / "extensions.conf"
    destination.parent.mkdir()
    playbook = tmp_path / "change.yml"
    playbook.write_text(
        f"""- hosts: asterisk
  gather_facts: false
  tasks:
    - name: put the file
      ansible.builtin.copy:
        src: {source}
        dest: {destination}
        mode: "0640"
    - name: read it back with the remote shell
      ansible.builtin.command: cat {destination}
      register: shown
      changed_when: false
    - name: the remote command saw the new file
      ansible.builtin.assert:
        that: shown.stdout_lines[0] == "[from-genesys]"
""",
        encoding="utf-8",
    )
    play = subprocess.run(
        [str(ANSIBLE_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert play.returncode == 0, play.stdout + play.stderr
    assert "ok=3" in play.stdout and "changed=1" in play.stdout and "unreachable=0" in play.stdout
    assert destination.read_text() == source.read_text()
    assert destination.stat().st_mode & 0o777 == 0o640
    assert list(short_dir.iterdir()), "Ansible's control socket is not where it was told to go"


def test_testinfra_ssh_backend_reads_files_and_runs_asterisk(host: AsteriskHost) -> None:
    target = testinfra.get_host(
        f"ssh://{os_user()}@{host.a.asterisk_host}:{host.a.ssh_port}",
        ssh_identity_file=str(host.layout.ssh_client_key),
        ssh_extra_args=(
            f"-o UserKnownHostsFile={host.layout.known_hosts} -o StrictHostKeyChecking=yes"
        ),
    )
    pjsip = target.file(str(host.layout.asterisk_etc / "pjsip.conf"))
    assert pjsip.exists and pjsip.is_file
    assert pjsip.contains("^user_agent=Asterisk-Genesys-Gateway$")
    result = target.run("asterisk -rx 'pjsip show registrations'")
    assert result.rc == 0
    assert f" genesys_reg_5001/sip:{host.a.genesys_host}:{host.a.sip_port} " in result.stdout
    assert result.stdout.rstrip().endswith("Objects found: 2")
