"""The out-of-band server's pipe (paramiko's ProxyCommand) is ended through its own Popen: a PID
is signalled only while it is still labctl's (not reaped), and the server is reaped."""

from __future__ import annotations

import paramiko

from labctl.connect import OutOfBand


def test_a_server_that_ended_and_was_reaped_is_not_signalled() -> None:
    """`SshSession._proxy_gone` polls the server, which reaps it once it has ended: paramiko's own
    close() then signalled a PID no longer its own (ProcessLookupError in its reader thread, or
    another process once the PID is reused). OutOfBand's does not."""
    proxy = OutOfBand("true")
    proxy.process.wait()  # ended and reaped, as _proxy_gone's poll() does
    proxy.close()
    proxy.close()  # paramiko's transport closes its socket more than once
    assert proxy.process.returncode == 0
    plain = paramiko.ProxyCommand("true")
    plain.process.wait()
    try:
        plain.close()
    except ProcessLookupError:
        pass  # what paramiko's close() does here: why OutOfBand exists
    else:  # pragma: no cover - paramiko changed: OutOfBand may no longer be needed
        raise AssertionError("paramiko's ProxyCommand.close() no longer signals a reaped PID")


def test_a_running_server_is_ended_and_reaped() -> None:
    proxy = OutOfBand("sleep 60")
    proxy.close()
    assert proxy.process.returncode is not None  # reaped: no zombie left behind
    assert proxy.closed


def test_a_server_that_ignores_sigterm_is_killed() -> None:
    proxy = OutOfBand("sh -c 'trap \"\" TERM; echo ready; sleep 60'")
    assert proxy.recv(6) == b"ready\n"  # its trap is set
    proxy.close()
    assert proxy.process.returncode == -9
