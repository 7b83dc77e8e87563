"""The Asterisk host's SSH server (asyncssh), done the way real clients need it (DESIGN 2.6).

- Key authentication only; the lab's client key is the one authorized key, and the user name must
  be the OS user running the server, as sshd would have it.
- Commands run through the user's shell (`$SHELL -c`), in the home directory, in their own session,
  with the lab's `bin/` first on PATH; a requested pty is a real pty (the controlling terminal).
- Stdin and stdout/stderr are copied by this module's own loops; the exit status is sent before
  the channel closes (never after an EOF), and an SFTP session ends with exit status 0 too.
- Env requests are filtered as OpenSSH's `AcceptEnv LANG LC_*` does.
- Fault `ssh-drop`: every new connection is dropped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pty
import pwd
import signal
import struct
import termios
from typing import Any

import asyncssh

from remediate.lab.layout import LabLayout, active_faults

COPY_CHUNK = 65536
# OpenSSH's defaults on Debian (sshd_config(5), _PATH_STDPATH / SUPERUSER_PATH).
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"
SUPERUSER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ACCEPTED_ENV_PREFIXES = ("LC_",)
ACCEPTED_ENV = frozenset({"LANG", "TZ"})
HANGUP_GRACE_SECONDS = 0.2
SIGNALS = {"HUP", "INT", "KILL", "QUIT", "TERM", "USR1", "USR2"}


def os_user() -> pwd.struct_passwd:
    return pwd.getpwuid(os.getuid())


class LabSshServer(asyncssh.SSHServer):
    def __init__(
        self,
        layout: LabLayout,
        authorized: asyncssh.SSHKey,
        connections: set[asyncssh.SSHServerConnection],
    ) -> None:
        self._layout = layout
        self._authorized = authorized.public_data
        self._user = os_user().pw_name
        self._connections = connections
        self._connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        if "ssh-drop" in active_faults(self._layout):
            conn.abort()
            return
        self._connection = conn
        self._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._connections.discard(self._connection)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._user and key.public_data == self._authorized


class HomeSftpServer(asyncssh.SFTPServer):
    """The local file system, relative paths from the home directory; ends with exit status 0."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        super().__init__(chan)
        self._home = os.fsencode(os_user().pw_dir)

    def map_path(self, path: bytes) -> bytes:
        if not path.startswith(b"/"):
            path = os.path.join(self._home, path)
        return path

    def exit(self) -> None:
        # Called before asyncssh closes the channel: send the status first, as sshd does.
        self.channel.exit(0)


def _child_environment(
    layout: LabLayout, process: asyncssh.SSHServerProcess[bytes]
) -> dict[str, str]:
    """sshd's environment: its default PATH (not the server's, which may hold a developer's venv
    or pyenv shims) behind the lab's `bin/`. SSH_CLIENT is left out on purpose: with it Debian's
    bash sources ~/.bashrc, and a developer's rc files could push `bin/` off the front of PATH."""
    user = os_user()
    path = SUPERUSER_PATH if user.pw_uid == 0 else USER_PATH
    peer = process.get_extra_info("peername") or ("", 0)
    local = process.get_extra_info("sockname") or ("", 0)
    env = {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": user.pw_shell or "/bin/sh",
        "PATH": f"{layout.bin_dir}{os.pathsep}{path}",
        "SSH_CONNECTION": f"{peer[0]} {peer[1]} {local[0]} {local[1]}",
    }
    for name in ("LANG", "TZ"):
        if name in os.environ:
            env[name] = os.environ[name]
    for name, value in process.env.items():
        key = name.decode() if isinstance(name, bytes) else str(name)
        text = value.decode() if isinstance(value, bytes) else str(value)
        if key in ACCEPTED_ENV or key.startswith(ACCEPTED_ENV_PREFIXES):
            env[key] = text
    if process.term_type:
        env["TERM"] = process.term_type
    return env


def _set_window_size(fd: int, width: int, height: int, pixwidth: int, pixheight: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


class PtyReaderProtocol(asyncio.StreamReaderProtocol):
    """A pty master reads EIO once the child side is closed: that is the end of the output, and
    what was read before it must still be delivered (a plain StreamReader would drop it)."""

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)


def _take_controlling_terminal() -> None:
    """Run in the child after setsid: make its stdin (the pty slave) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Session:
    """One exec or shell request: a child process and the copy loops around it."""

    def __init__(self, layout: LabLayout, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self.layout = layout
        self.process = process
        self.child: asyncio.subprocess.Process | None = None
        self.master_fd: int | None = None

    def _argv(self) -> list[str]:
        shell = os_user().pw_shell or "/bin/sh"
        if self.process.command is not None:
            return [shell, "-c", self.process.command]
        return [shell, "-l"]

    async def _spawn(self) -> tuple[asyncio.StreamReader, asyncio.StreamReader | None, Any]:
        """Start the child; return (stdout reader, stderr reader or None, stdin writer object)."""
        env = _child_environment(self.layout, self.process)
        home = os_user().pw_dir
        loop = asyncio.get_running_loop()
        if self.process.term_type:
            master, slave = pty.openpty()
            self.master_fd = master
            _set_window_size(slave, *self.process.term_size)
            try:
                self.child = await asyncio.create_subprocess_exec(
                    *self._argv(),
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env=env,
                    cwd=home,
                    start_new_session=True,
                    preexec_fn=_take_controlling_terminal,
                )
            finally:
                os.close(slave)
            reader = asyncio.StreamReader()
            read_file = os.fdopen(os.dup(master), "rb", buffering=0)
            await loop.connect_read_pipe(lambda: PtyReaderProtocol(reader), read_file)
            write_file = os.fdopen(os.dup(master), "wb", buffering=0)
            transport, _ = await loop.connect_write_pipe(asyncio.Protocol, write_file)
            return reader, None, transport
        self.child = await asyncio.create_subprocess_exec(
            *self._argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=home,
            start_new_session=True,
        )
        assert self.child.stdout is not None and self.child.stderr is not None
        return self.child.stdout, self.child.stderr, self.child.stdin

    def signal_child(self, name: str) -> None:
        if self.child is None or self.child.returncode is not None or name not in SIGNALS:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, getattr(signal, f"SIG{name}"))

    async def _copy_stdin(self, sink: Any) -> None:
        """Channel -> child. A child that stops reading only stalls this loop, nothing else."""
        try:
            while True:
                try:
                    data = await self.process.stdin.read(COPY_CHUNK)
                except asyncssh.TerminalSizeChanged as change:
                    if self.master_fd is not None:
                        _set_window_size(
                            self.master_fd, change.width, change.height,
                            change.pixwidth, change.pixheight,
                        )  # fmt: skip
                    continue
                except asyncssh.SignalReceived as received:
                    self.signal_child(received.signal)
                    continue
                except asyncssh.BreakReceived:
                    continue
                if not data:
                    break
                sink.write(data)
                if isinstance(sink, asyncio.StreamWriter):
                    await sink.drain()
        except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
            return
        if isinstance(sink, asyncio.StreamWriter):
            with contextlib.suppress(OSError):
                sink.write_eof()
        elif self.master_fd is not None:
            # EOF on a terminal is the EOF character, as a user would type it.
            sink.write(bytes([termios.tcgetattr(self.master_fd)[6][termios.VEOF][0]]))

    async def _copy_output(self, source: asyncio.StreamReader, sink: Any) -> None:
        while True:
            try:
                data = await source.read(COPY_CHUNK)
            except OSError:  # EIO on the pty master once the child has gone
                return
            if not data:
                return
            sink.write(data)
            await sink.drain()

    async def run(self) -> None:
        process = self.process
        try:
            stdout, stderr, stdin_sink = await self._spawn()
        except OSError as error:
            process.stderr.write(f"{error}\n".encode())
            process.exit(127)
            return
        stdin_task = asyncio.create_task(self._copy_stdin(stdin_sink))
        outputs = [asyncio.create_task(self._copy_output(stdout, process.stdout))]
        if stderr is not None:
            outputs.append(asyncio.create_task(self._copy_output(stderr, process.stderr)))
        assert self.child is not None
        try:
            await self.child.wait()
            await asyncio.gather(*outputs)
        finally:
            stdin_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stdin_task
            for task in outputs:
                task.cancel()
            if self.child.returncode is None:
                self.signal_child("HUP")
            if stdin_sink is not None:
                stdin_sink.close()
            if self.master_fd is not None:
                os.close(self.master_fd)
        code = self.child.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name.removeprefix("SIG")
            process.exit_with_signal(name)
        else:
            process.exit(code or 0)


class SshHost:
    def __init__(self, layout: LabLayout, host_key: asyncssh.SSHKey, client_key: asyncssh.SSHKey):
        self.layout = layout
        self.host_key = host_key
        self.client_key = client_key
        self.server: asyncssh.SSHAcceptor | None = None
        self._sessions: set[Session] = set()
        self._connections: set[asyncssh.SSHServerConnection] = set()

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        if process.subsystem is not None:
            process.stderr.write(
                f"subsystem request failed on channel: {process.subsystem}\n".encode()
            )
            process.exit(1)
            return
        session = Session(self.layout, process)
        self._sessions.add(session)
        try:
            await session.run()
            await process.wait_closed()
        finally:
            self._sessions.discard(session)

    async def listen(self) -> None:
        a = self.layout.addresses
        self.server = await asyncssh.listen(
            a.asterisk_host,
            a.ssh_port,
            server_factory=lambda: LabSshServer(self.layout, self.client_key, self._connections),
            server_host_keys=[self.host_key],
            process_factory=self._handle,
            sftp_factory=HomeSftpServer,
            encoding=None,
            line_editor=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            reuse_address=True,
        )

    async def close(self) -> None:
        """Hang up every session (as sshd does when it stops), kill what survives, disconnect."""
        for session in list(self._sessions):
            session.signal_child("HUP")
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await asyncio.sleep(HANGUP_GRACE_SECONDS if self._sessions else 0)
        for session in list(self._sessions):
            session.signal_child("KILL")
        for connection in list(self._connections):
            connection.close()
