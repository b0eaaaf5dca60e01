"""SSH sessions to lab nodes: the management network first, out of band as a fallback.

A session is one authenticated SSH transport (paramiko) reused for every command sent to
a node. It first connects over the lab's management network (a socket opened inside the
fabric namespace); if the candidate broke the node's network, it falls back to the
out-of-band path, an SSH server started on a pipe inside the node (no network at all).
The node's host key is always verified against the one labctl generated for it.
Router CLI commands go through netmiko (FRR's vtysh answers as device type cisco_ios).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import shlex
import socket
import subprocess
import time
from typing import Any

import paramiko

from labctl import image, netns
from labctl.errors import ProviderError
from labctl.grading.session import Capped, CommandResult, CommandTimeout, NodeUnreachable
from labctl.providers.base import NodeAccess

CONNECT_TIMEOUT = 3.0  # the TCP connect only: the node's kernel answers it, even on a slow VM
# Opening a channel on a connection that is up, and a router CLI's first prompt: a room graded
# at once on a busy machine (steal, neighbours) has stalled for 20 s. Slow is not unreachable:
# a node whose connection is up is waited for this long before its checks ERROR.
PATIENCE = 30.0
POLL_FIRST = 0.002  # seconds between reads of a running command's output, at first ...
POLL_MAX = 0.05  # ... doubling up to this while nothing arrives
CLI_LIMIT = 16 << 20  # bytes a router CLI connection may send (FRR's biggest outputs: a few MiB)


class CappedSocket:
    """A connection that ends once it has received `limit` bytes: netmiko keeps all a router
    CLI prints until its prompt, so a replaced vtysh that never stops would fill memory.
    The router CLI's connection is wrapped in one (a real CLI sends kilobytes)."""

    def __init__(self, sock: Any, limit: int = CLI_LIMIT) -> None:
        self._sock, self.limit, self.received = sock, limit, 0
        self.cut = ""  # why the connection was cut, once it was

    def recv(self, size: int) -> bytes:
        """Read as the wrapped socket does; past the limit, fail as a broken connection."""
        data: bytes = self._sock.recv(size)
        self.received += len(data)
        if self.received > self.limit:
            self._sock.close()
            self.cut = f"the router CLI sent over {self.limit >> 20} MiB: connection cut"
            raise OSError(errno.EMSGSIZE, self.cut)  # (errno, text): paramiko's reader thread formats both
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class OutOfBand(paramiko.ProxyCommand):
    """paramiko's ProxyCommand (the out-of-band server on a pipe), ended through its own Popen.
    paramiko's close() signals the PID it started whether or not that process was reaped since
    (`SshSession._proxy_gone` polls it): a PID no longer ours, which the machine may have given
    to another process, and a ProcessLookupError in paramiko's reader thread when it has not.
    Here a signal goes only to a process not yet reaped (its PID still ours), which is then reaped."""

    def close(self) -> None:
        """Stop the server and reap it: SIGTERM, then SIGKILL after a grace period."""
        for stop in (self.process.terminate, self.process.kill):
            stop()  # Popen signals only while it has not reaped the process
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
                return


def _expected_key(access: NodeAccess) -> paramiko.PKey:
    kind, blob = access.host_key.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


class SshSession:
    """An open SSH connection to one node (implements grading's NodeSession)."""

    def __init__(self, access: NodeAccess, *, allow_oob: bool = True) -> None:
        self.access = access
        self.path = "mgmt"
        self._cli: Any = None
        self._cli_sock: CappedSocket | None = None
        self._key = paramiko.Ed25519Key.from_private_key_file(str(access.key_file))
        try:
            self.transport = self._open(self._mgmt_socket())
        except (OSError, paramiko.SSHException) as first:
            if not allow_oob:
                raise NodeUnreachable(f"{access.node}: not reachable over management ({first})") from None
            self.path = "out-of-band"
            try:
                self.transport = self._open(OutOfBand(shlex.join(access.oob_command)))
            except (OSError, paramiko.SSHException) as second:
                raise NodeUnreachable(
                    f"{access.node}: unreachable (management: {first}; out of band: {second})") from None

    def _mgmt_socket(self) -> socket.socket:
        if not self.access.mgmt_address:  # e.g. a remote hypervisor's lab network: never routed from here
            raise OSError("no management path from this machine")
        if self.access.mgmt_netns is None:  # e.g. a hypervisor's isolated management network
            sock = socket.create_connection((self.access.mgmt_address, 22), timeout=CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        return netns.connect_in(self.access.mgmt_netns, self.access.mgmt_address, 22, CONNECT_TIMEOUT)

    def _open(self, sock: Any, user: str | None = None) -> paramiko.Transport:
        transport = paramiko.Transport(sock)
        transport.banner_timeout = transport.auth_timeout = self.access.ssh_timeout
        try:
            transport.start_client(timeout=self.access.ssh_timeout)
            if transport.get_remote_server_key() != _expected_key(self.access):
                raise paramiko.SSHException("host key does not match the one labctl gave this node")
            transport.auth_publickey(user or self.access.user, self._key)
        except BaseException:
            transport.close()
            raise
        return transport

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run `command` with the node's shell; raise CommandTimeout or NodeUnreachable."""
        try:
            channel = self.transport.open_session(timeout=max(PATIENCE, self.access.ssh_timeout))
            channel.exec_command(command)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise NodeUnreachable(f"{self.access.node}: connection lost ({exc or type(exc).__name__})") from None
        out, err = Capped(), Capped()  # a node writing gigabytes costs reading time, not memory
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST
        try:
            while True:
                received = out.total + err.total
                while channel.recv_ready():
                    out.add(channel.recv(65536))
                while channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(65536))
                # The exit status may arrive before the last output: stop only once the
                # server has also closed its side (EOF) and nothing is left to read.
                if channel.exit_status_ready() and channel.eof_received and \
                        not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if self._proxy_gone() and not channel.recv_ready() and not channel.exit_status_ready():
                    raise NodeUnreachable(f"{self.access.node}: the out-of-band connection ended while "
                                          "running a command")
                if time.monotonic() > deadline:
                    raise CommandTimeout(f"{self.access.node}: '{command}' ran over {timeout:.0f} s")
                if channel.closed and not self.transport.is_active():
                    raise NodeUnreachable(f"{self.access.node}: connection lost while running a command")
                # The exit status wakes the wait at once; while a long command runs, polls
                # back off (a fixed 5 ms poll cost ~25 ms of CPU per second a command ran).
                pause = POLL_FIRST if out.total + err.total > received else min(POLL_MAX, pause * 2)
                if channel.exit_status_ready():
                    time.sleep(pause)  # only the end of the output is missing
                else:
                    channel.status_event.wait(pause)
            code = channel.recv_exit_status()
        finally:
            with contextlib.suppress(OSError, paramiko.SSHException):  # a dead proxy fails to write
                channel.close()
        if code == -1:
            raise NodeUnreachable(f"{self.access.node}: the command ended without an exit status (node gone?)")
        return CommandResult(code, out.text(), err.text())

    def _proxy_gone(self) -> bool:
        """The out-of-band server (ProxyCommand) has exited: paramiko's ProxyCommand does not
        report the end of its pipe, so a connection whose server was killed would look alive."""
        process = getattr(getattr(self.transport, "sock", None), "process", None)
        return process is not None and process.poll() is not None

    def cli(self, command: str, timeout: float) -> str:
        """Run a router CLI command through netmiko (vtysh as the CLI user's shell).

        A CLI that fails while the node's SSH connection is up is that check's problem (the
        candidate may have broken vtysh; the machine may be slow): the next CLI command
        connects afresh, and the node's other checks go on. NodeUnreachable only when the
        node's connection is down too.
        """
        try:
            if self._cli is None:
                self._cli = self._connect_cli()
            return str(self._cli.send_command(command, read_timeout=timeout))
        except Exception as exc:  # netmiko raises many types; all mean the CLI failed
            cut = self._cli_sock.cut if self._cli_sock is not None else ""
            self._close_cli()
            if not self.transport.is_active():
                raise NodeUnreachable(f"{self.access.node}: router CLI failed: {cut or exc}") from None
            raise ProviderError(cut or str(exc)) from None

    def _connect_cli(self) -> Any:
        from netmiko import ConnectHandler  # heavy import, only when a router check needs it

        sock = self._cli_sock = CappedSocket(self._mgmt_socket() if self.path == "mgmt"
                                             else OutOfBand(shlex.join(self.access.oob_command)))
        try:
            cli = ConnectHandler(
                device_type="cisco_ios", host=self.access.mgmt_address or self.access.node, username=image.CLI_USER,
                use_keys=True, key_file=str(self.access.key_file), allow_agent=False,
                # the socket is connected already: conn_timeout bounds paramiko's key exchange
                sock=sock, conn_timeout=self.access.ssh_timeout, banner_timeout=self.access.ssh_timeout,
                auth_timeout=self.access.ssh_timeout, fast_cli=True,
                # the first prompt: vtysh starting on an emulated VM or a busy machine takes
                # longer than netmiko's 10-20 s
                read_timeout_override=max(PATIENCE, self.access.ssh_timeout * 2),
            )
        except Exception as exc:
            raise ProviderError(f"cannot open the router CLI: {sock.cut or exc}") from None
        cli.read_timeout_override = None  # from here on, each command's own timeout
        return cli

    def _close_cli(self) -> None:
        if self._cli is not None:
            with contextlib.suppress(Exception):  # a dead node's CLI cannot be closed politely
                self._cli.disconnect()
            self._cli = None

    def close(self) -> None:
        """Close the CLI and SSH connections."""
        self._close_cli()
        with contextlib.suppress(OSError, paramiko.SSHException):  # its out-of-band server may be gone
            self.transport.close()


def open_session(access: NodeAccess) -> SshSession:
    """Connect to a node (management network, then out of band)."""
    return SshSession(access)
