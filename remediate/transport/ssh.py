"""SSH to the Asterisk gateway with paramiko: keys only, host keys checked, one connection reused.

Host keys come from the known_hosts file that the inventory names in `ansible_ssh_common_args`
(`-o UserKnownHostsFile=...`), the file Ansible itself uses for the host: a key that is unknown or
has changed is refused, never learnt.
"""

from __future__ import annotations

import logging
import posixpath
import secrets
import select
import socket
import stat
import time

import paramiko

from remediate.errors import InputError
from remediate.transport import CommandResult, TransportError
from remediate.transport.settings import SSHSettings

log = logging.getLogger(__name__)
# paramiko logs a dropped connection's traceback from its transport thread at ERROR; with no
# handler, Python would print it on the operator's terminal. The failure reaches the operator as
# an ssh-* error instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

READ_CHUNK = 65536


class _RefuseUnknownKeys(paramiko.MissingHostKeyPolicy):
    """Refuse keys the known_hosts file does not hold, telling "unknown" from "changed"."""

    def __init__(self, transport: SSHTransport) -> None:
        self.transport = transport

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        known = client.get_host_keys().get(hostname)
        if known:
            raise self.transport.host_key_changed(key)
        raise self.transport.host_key_unknown(hostname, key)


class SSHTransport:
    """One SSH connection (exec and SFTP) to a Linux host."""

    def __init__(self, settings: SSHSettings) -> None:
        self.settings = settings
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # Connection -------------------------------------------------------------------------------

    def _error(self, reference: str, message: str, *, hint: str = "") -> TransportError:
        s = self.settings
        where = f"{s.inventory_host} ({s.user}@{s.address}:{s.port})"
        return TransportError(f"SSH to {where}: {message}", reference=reference, hint=hint)

    def host_key_changed(self, key: paramiko.PKey) -> TransportError:
        return self._error(
            "ssh-host-key-changed",
            f"the host key ({key.get_name()} {key.fingerprint}) does not match "
            f"{self.settings.known_hosts_file}: someone may be impersonating the host, or it was "
            "reinstalled",
            hint="verify the new key out of band, then replace the host's entry in the "
            "UserKnownHostsFile named by ansible_ssh_common_args",
        )

    def host_key_unknown(self, hostname: str, key: paramiko.PKey) -> TransportError:
        return self._error(
            "ssh-host-key-unknown",
            f"{hostname} is not in {self.settings.known_hosts_file} "
            f"(it offered {key.get_name()} {key.fingerprint})",
            hint="verify the key out of band and add it to the UserKnownHostsFile named by "
            "ansible_ssh_common_args (ssh-keyscan prints it)",
        )

    def _connected(self) -> paramiko.SSHClient:
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()
        s = self.settings
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(s.known_hosts_file)
        except FileNotFoundError:
            raise self._error(
                "ssh-host-key-unknown",
                f"the known_hosts file {s.known_hosts_file} does not exist",
                hint="set UserKnownHostsFile in ansible_ssh_common_args to a file that holds "
                "the host's key",
            ) from None
        client.set_missing_host_key_policy(_RefuseUnknownKeys(self))
        try:
            client.connect(
                hostname=s.address,
                port=s.port,
                username=s.user,
                key_filename=s.private_key_file,
                timeout=s.connect_timeout,
                banner_timeout=s.connect_timeout,
                auth_timeout=s.connect_timeout,
                channel_timeout=s.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except TransportError:
            client.close()
            raise
        except paramiko.BadHostKeyException as error:
            client.close()
            raise self.host_key_changed(error.key) from None
        except paramiko.AuthenticationException:
            client.close()
            raise self._error(
                "ssh-auth-failed",
                "the key was refused",
                hint=f"check ansible_user and ansible_ssh_private_key_file for {s.inventory_host}",
            ) from None
        except FileNotFoundError as error:
            client.close()
            raise InputError(
                f"ansible_ssh_private_key_file {s.private_key_file} for {s.inventory_host}: "
                f"{error.strerror}",
                reference="inventory-variable-invalid",
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as error:
            client.close()
            raise self._unreachable(error) from None
        self._client = client
        return client

    def _unreachable(self, error: BaseException) -> TransportError:
        s = self.settings
        if isinstance(error, ConnectionRefusedError):
            message = "the connection was refused"
        elif isinstance(error, socket.timeout | TimeoutError):
            message = f"no answer within {s.connect_timeout:g} s"
        else:
            message = f"the connection failed ({type(error).__name__}: {error})"
        return self._error(
            "ssh-unreachable",
            message,
            hint=f"check ansible_host and ansible_port for {s.inventory_host}, and that sshd runs",
        )

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self._connected().open_sftp()
            except (OSError, paramiko.SSHException, EOFError) as error:
                self.close()
                raise self._unreachable(error) from None
            channel = self._sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.settings.command_timeout)
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SSHTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Commands -----------------------------------------------------------------------------------

    def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        """Run a shell command line; its exit status, stdout and stderr, within `timeout`."""
        cap = self.settings.command_timeout if timeout is None else timeout
        started = time.monotonic()
        client = self._connected()
        try:
            transport = client.get_transport()
            if transport is None:
                raise paramiko.SSHException("the connection is closed")
            channel = transport.open_session(timeout=self.settings.connect_timeout)
            channel.exec_command(command)
        except (OSError, paramiko.SSHException, EOFError) as error:
            self.close()
            raise self._unreachable(error) from None
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        try:
            while True:
                while channel.recv_ready():
                    stdout.append(channel.recv(READ_CHUNK))
                while channel.recv_stderr_ready():
                    stderr.append(channel.recv_stderr(READ_CHUNK))
                # Data sent before the exit status is already buffered when the status arrives.
                if (
                    channel.exit_status_ready()
                    and not channel.recv_ready()
                    and not channel.recv_stderr_ready()
                ):
                    break
                if channel.closed and not channel.exit_status_ready():
                    raise self._error(
                        "ssh-connection-lost", f"the channel closed before {command!r} ended"
                    )
                remaining = started + cap - time.monotonic()
                if remaining <= 0:
                    raise self._error(
                        "ssh-timeout",
                        f"{command!r} did not finish within {cap:g} s",
                        hint="raise remediate_ssh_command_timeout if the host is merely slow",
                    )
                select.select([channel], [], [], min(remaining, 1.0))
            exit_code = channel.recv_exit_status()
        finally:
            channel.close()
        return CommandResult(
            command=command,
            exit_code=exit_code,
            stdout=b"".join(stdout),
            stderr=b"".join(stderr),
            duration=time.monotonic() - started,
        )

    # Files ------------------------------------------------------------------------------------

    def _file_error(self, path: str, error: OSError) -> TransportError:
        if isinstance(error, FileNotFoundError) or getattr(error, "errno", None) == 2:
            return self._error("ssh-file-missing", f"{path} does not exist")
        if isinstance(error, PermissionError) or getattr(error, "errno", None) == 13:
            return self._error(
                "ssh-permission-denied",
                f"{path}: permission denied",
                hint=f"check that {self.settings.user} may read and write it",
            )
        if isinstance(error, socket.timeout | TimeoutError):
            return self._error("ssh-timeout", f"{path}: no answer within the command timeout")
        return self._error("ssh-sftp-failed", f"{path}: {error}")

    def read_file(self, path: str, offset: int = 0) -> bytes:
        """The file's bytes from `offset` on."""
        sftp = self._sftp_client()
        try:
            with sftp.open(path, "rb") as handle:
                if offset:
                    handle.seek(offset)
                handle.prefetch()
                return handle.read()
        except OSError as error:
            raise self._file_error(path, error) from None

    def stat(self, path: str) -> paramiko.SFTPAttributes | None:
        """The file's attributes, or None when it does not exist."""
        sftp = self._sftp_client()
        try:
            return sftp.stat(path)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._file_error(path, error) from None

    def write_file_atomic(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        """Replace `path` with `data` in one rename, keeping the old file's mode and owner.

        The temporary file sits beside the target so the rename stays on one file system; readers
        see either the old or the new content, never a partial one.
        """
        sftp = self._sftp_client()
        directory, name = posixpath.split(path)
        temporary = posixpath.join(directory, f".{name}.remediate-{secrets.token_hex(4)}.tmp")
        existing = self.stat(path)
        try:
            with sftp.open(temporary, "wb") as handle:
                handle.set_pipelined(True)
                handle.write(data)
            if existing is not None and existing.st_mode is not None:
                sftp.chmod(temporary, stat.S_IMODE(existing.st_mode))
            elif mode is not None:
                sftp.chmod(temporary, mode)
            if existing is not None and existing.st_uid is not None and existing.st_gid is not None:
                written = sftp.stat(temporary)
                if (written.st_uid, written.st_gid) != (existing.st_uid, existing.st_gid):
                    sftp.chown(temporary, existing.st_uid, existing.st_gid)
            sftp.posix_rename(temporary, path)
        except OSError as error:
            try:
                sftp.remove(temporary)
            except OSError:
                log.debug("could not remove %s", temporary)
            raise self._file_error(path, error) from None

    def create_file_exclusive(self, path: str, data: bytes, *, mode: int = 0o644) -> bool:
        """Create `path` holding `data` only if nothing is there (SFTP exclusive create, as
        O_EXCL): True when this call created it, False when the path already exists."""
        sftp = self._sftp_client()
        try:
            handle = sftp.open(path, "wxb")  # paramiko: "x" alone opens without write access
        except OSError as error:
            # SFTP v3 reports an existing file as a plain failure: look before saying why.
            if self.stat(path) is not None:
                return False
            raise self._file_error(path, error) from None
        try:
            with handle:
                handle.chmod(mode)
                handle.write(data)
        except OSError as error:
            self.remove_file(path)
            raise self._file_error(path, error) from None
        return True

    def rename_file(self, path: str, new_path: str) -> bool:
        """Rename, never replacing (SFTP rename): False when `path` is gone or `new_path` exists."""
        try:
            self._sftp_client().rename(path, new_path)
        except OSError as error:
            if self.stat(path) is None or self.stat(new_path) is not None:
                return False
            raise self._file_error(path, error) from None
        return True

    def remove_file(self, path: str) -> bool:
        """Remove a file: True when removed, False when it was not there."""
        try:
            self._sftp_client().remove(path)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise self._file_error(path, error) from None
        return True
