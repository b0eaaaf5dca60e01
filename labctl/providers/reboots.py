"""A `reboot` typed inside a local node brings it back, as on a machine; `poweroff` leaves it off.

Nothing on the host supervises systemd-nspawn (no host systemd; labctl commands are
short-lived), and only nspawn's parent sees how it ended: 133 when the node rebooted itself
(systemd's `reboot`, `systemctl reboot`, `shutdown -r`; SIGINT to a light node's stub init),
0 when it powered off or halted. So each node's launcher, the process `LabState` records for
it (ProcessRef) and `down` ends by PID, is a small shell of the host (`launcher_argv`) whose
child is nspawn. It waits (no CPU while the node runs), writes nspawn's exit status in the
node's folder (EXIT_FILE: out of the node's reach), and:

- on 133, execs `python -m labctl.providers.reboots LAB NODE` (`main`): the same process,
  with the same PID and start time, so it is still the node's recorded launcher. It counts
  the node's reboots (a node rebooting in a loop waits longer each time, then is left
  stopped: LOOP_FILE), takes the lab's lock as every command does (so it never races
  `reset`, `down`, `grade` or another command: a grade in progress finishes first, and
  grades wait while the node boots), checks that it is still the node's launcher (a command
  may have started the node meanwhile), then boots the node again from its disk with its
  identity, its links and the plan's addresses (`LocalProvider.reboot_node`, the second half
  of `restart_node`) and exits; the node's new launcher is the next watcher;
- otherwise exits: the node stays stopped and `labctl status` says why (`stopped_state`);
  `labctl restart NODE` boots it again.

What the candidate (root in the node) controls is only the exit status of their own node's
nspawn: the most it can do is relaunch that node, at most REBOOT_BURST times a REBOOT_WINDOW.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

EXIT_FILE = "exit-status"  # nspawn's exit status, written by the launcher when the node ends
LOOP_FILE = "reboot-loop"  # the node rebooted too often: left stopped (why, for status)
COUNT_FILE = "reboots.json"  # when the node last rebooted itself (for the loop limit)
LOG_FILE = "reboot.log"  # what the rebooter did
REBOOT = 133  # systemd-nspawn's exit status when the node's init asked for a reboot
REBOOT_WINDOW = 120.0  # seconds over which a node's own reboots are counted (a loop takes 1-3 s a turn; a person
# rebooting to check their work, logging in again and looking, takes far longer)
REBOOT_BURST = 5  # reboots in a window after which the node is left stopped (a loop)
BACKOFF = 1.0  # the n-th reboot in a window waits BACKOFF * 2**(n-3) s first (none for the first two)
LOCK_RETRY = 30.0  # the rebooter waits for the lab's lock this long at a time, as long as the lab exists


def launcher_argv(lab_id: str, node: str, directory: Path, argv: list[str]) -> list[str]:
    """`argv` (nspawn, in the node's cgroup) run by a shell that records its exit status in
    `directory` and, on a reboot, becomes the node's rebooter (`main`)."""
    status = shlex.quote(str(directory / EXIT_FILE))
    log = shlex.quote(str(directory / LOG_FILE))
    # -P: labctl as installed, never a `labctl` folder in the directory `up` happened to run in
    rebooter = shlex.join([sys.executable, "-P", "-m", "labctl.providers.reboots", lab_id, node])
    run = '"$@"'  # the argv after the script (its programs are the caller's); echo and exec: builtins
    script = (f"{run}; rc=$?; echo $rc > {status}; "
              f"[ $rc -eq {REBOOT} ] && exec {rebooter} >> {log} 2>&1 < /dev/null; exit $rc")
    return ["/bin/sh", "-c", script, "labctl-node", *argv]


def light_commands() -> dict[str, tuple[str, int]]:
    """reboot, poweroff, halt and shutdown for a light node (no systemd: Debian's are systemctl,
    which refuses there): signals to nspawn's stub init, its PID 1, which ends the node with
    133 on SIGINT (a reboot) and 0 on SIGRTMIN+4 (a power-off). In /usr/local/sbin, first in
    root's PATH."""
    head = "#!/bin/sh\n# labctl: a light node has no systemd; its PID 1 (nspawn's stub init) "
    reboot = (head + "reboots it on SIGINT\nexec kill -INT 1\n", 0o755)
    off = (head + "powers it off on SIGRTMIN+4\nexec kill -RTMIN+4 1\n", 0o755)
    shutdown = (head + "reboots it on SIGINT, powers it off on SIGRTMIN+4\n"
                "case \" $* \" in *\" -r \"*|*\" --reboot \"*) exec kill -INT 1;; esac\nexec kill -RTMIN+4 1\n", 0o755)
    return {"/usr/local/sbin/reboot": reboot, "/usr/local/sbin/poweroff": off, "/usr/local/sbin/halt": off,
            "/usr/local/sbin/shutdown": shutdown}


def clear_exit(directory: Path) -> None:
    """A node about to start: it has no exit status (nor loop) any more."""
    for name in (EXIT_FILE, LOOP_FILE):
        (directory / name).unlink(missing_ok=True)


def forget(directory: Path) -> None:
    """Forget a node's own reboots (started on purpose by a command: a new count)."""
    (directory / COUNT_FILE).unlink(missing_ok=True)


def exit_status(directory: Path) -> int | None:
    """How the node's last nspawn ended, if it has."""
    try:
        return int((directory / EXIT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def stopped_state(directory: Path, launcher_alive: bool) -> str:
    """A node whose PID 1 is gone, for `labctl status` (launcher_alive: its launcher still runs)."""
    status = exit_status(directory)
    if (directory / LOOP_FILE).exists():
        return "stopped (reboot loop)"
    if launcher_alive:  # nspawn is ending (no status yet), or the node's rebooter runs
        return "rebooting" if status == REBOOT else "stopping"
    if status == 0:
        return "stopped (powered off)"
    return "stopped"


def _log(message: str) -> None:
    print(time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()) + message, flush=True)


def _count(directory: Path, now: float) -> int:
    """Record this reboot; how many the node made within REBOOT_WINDOW before it."""
    try:
        times = [float(t) for t in json.loads((directory / COUNT_FILE).read_text())]
    except (OSError, ValueError, TypeError):
        times = []
    recent = [t for t in times if now - REBOOT_WINDOW < t <= now]
    (directory / COUNT_FILE).write_text(json.dumps([*recent, now]))
    return len(recent)


def main(lab_id: str, node: str) -> int:
    """Boot again node `node` of lab `lab_id`, which rebooted itself (see the module docstring)."""
    from labctl import locks
    from labctl.errors import BusyError, LabctlError, NotFoundError
    from labctl.providers.local import LocalProvider
    from labctl.state import ProcessRef, load_lab

    me = ProcessRef.of(os.getpid())
    try:
        lab = load_lab(lab_id)
    except NotFoundError:
        return 0
    directory = lab.node_dir(node)
    before = _count(directory, time.time())
    if before >= REBOOT_BURST:
        (directory / LOOP_FILE).write_text(f"{before + 1} reboots within {REBOOT_WINDOW:.0f} s\n")
        _log(f"{node} rebooted {before + 1} times within {REBOOT_WINDOW:.0f} s: left stopped "
             f"(labctl restart {node} --lab {lab.name} starts it again)")
        return 0
    if before >= 2:
        time.sleep(BACKOFF * 2 ** (before - 2))
    while True:
        try:
            with locks.lab(lab.directory, lab.name, f"reboot {node} (the node's own reboot)", wait=LOCK_RETRY):
                current = load_lab(lab_id)
                state = current.nodes.get(node)
                if current.status != "running" or state is None or state.launcher != me:
                    _log(f"{node}: another command took the node over ({current.status}); nothing to do")
                    return 0
                _log(f"{node} rebooted itself: booting it again")
                started = time.monotonic()
                LocalProvider().reboot_node(current, node)
                _log(f"{node} is running again ({time.monotonic() - started:.1f} s)")
                return 0
        except BusyError:
            continue  # a long command (a grade, a playbook): the node boots after it
        except NotFoundError:
            return 0  # the lab was removed meanwhile
        except LabctlError as exc:
            _log(f"{node} could not boot again: {exc}")
            return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
