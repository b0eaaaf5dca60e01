"""Provisioning: Ansible playbooks run through ansible-runner against a live lab.

The inventory is generated from the lab: every node reached out of band (an SSH server
on a pipe inside the node), so playbooks work even when they break a node's network, with
the node's host key pinned. ansible-runner's structured events (not parsed output) feed
the progress display, and a failed task is reported with its host and message.

A node Ansible reports unreachable (slow to answer: a VM just reverted, a machine shared
by a room) is not a failed playbook: the playbook runs again on those nodes only, within
`retries.PROVISIONING` (tries and seconds); a node still silent then is named with how
long it stayed silent (`NodeSilent`, exit 6).
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labctl import paths
from labctl.errors import ProvisionError
from labctl.progress import QUIET, Progress
from labctl.providers.base import Provider
from labctl.retries import PROVISIONING, NodeSilent, RetryPolicy
from labctl.state import LabState

STRATEGY_PLUGINS = Path(__file__).parent / "data" / "ansible" / "strategy"
CONNECT_TIMEOUT = 60  # seconds for Ansible to reach a node and start its interpreter (at least)


def known_hosts(lab: LabState) -> Path:
    """A known_hosts file pinning every node's host key (by node name)."""
    path = lab.directory / "known_hosts"
    text = "".join(f"{name} {node.host_key}\n" for name, node in lab.nodes.items() if node.host_key)
    try:
        current = path.read_text()
    except OSError:
        current = None
    if current != text:  # replaced whole, never rewritten in place: a concurrent ssh reads it
        paths.write_atomic(path, text)
    return path


def inventory(lab: LabState, provider: Provider) -> dict[str, Any]:
    """The Ansible inventory of `lab`: groups by node kind, topology vars as host vars."""
    pinned = known_hosts(lab)
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for node in lab.plan.nodes:
        access = provider.access(lab, node.name)
        ssh_args = [
            "-o", f"ProxyCommand={shlex.join(access.oob_command)}",
            "-o", f"HostKeyAlias={node.name}", "-o", f"UserKnownHostsFile={pinned}",
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
        ]
        interfaces = {i.name: i.address for i in node.interfaces}
        hosts[node.name] = {
            "ansible_host": node.name, "ansible_user": access.user,
            "ansible_ssh_private_key_file": str(access.key_file),
            "ansible_ssh_common_args": shlex.join(ssh_args),
            "ansible_python_interpreter": "/usr/bin/python3",
            # Connecting covers the login and (Mitogen) the interpreter's bootstrap, ~0.5 CPU-s
            # per node: several login steps' worth on an emulated VM, and up to a minute when
            # a room's set-ups share two cores (10 s timed out with 9 labs set up at once).
            "ansible_ssh_timeout": max(CONNECT_TIMEOUT, round(4 * access.ssh_timeout)),
            "labctl_kind": node.kind.value, "labctl_interfaces": interfaces,
            "labctl_interfaces6": {i.name: i.address6 for i in node.interfaces if i.address6},
            "labctl_dhcp_interfaces": [i.name for i in node.interfaces if i.dhcp],
            "labctl_loopbacks": list(node.loopbacks),
            **node.vars,
        }
        groups.setdefault(f"{node.kind.value}s", {"hosts": {}})["hosts"][node.name] = {}
    return {"all": {"hosts": hosts, "children": groups,
                    "vars": {"labctl_lab": lab.name, "labctl_lab_id": lab.id}}}


def strategy_environment() -> dict[str, str]:
    """Ansible's execution strategy: Mitogen's when installed, Ansible's own `linear` otherwise.

    With stock Ansible every task on every node starts a Python that unpacks and compiles the
    module and its module_utils again: about 0.45 CPU-second per task per node, which makes
    setup playbooks, not nodes, the cost of a lab. Mitogen keeps one interpreter per node for
    the run and forks modules from it (measured: msr setup 21 → 11 CPU-seconds). Set
    LABCTL_ANSIBLE_STRATEGY=linear to run stock Ansible.
    """
    chosen = os.environ.get("LABCTL_ANSIBLE_STRATEGY", "mitogen_linear")
    if not chosen.startswith("mitogen"):
        return {"ANSIBLE_STRATEGY": chosen}
    try:
        import ansible_mitogen
    except ImportError:
        return {"ANSIBLE_STRATEGY": "linear"}
    mitogen = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    if chosen == "mitogen_linear":  # labctl's copy, which does not pin every process to one CPU
        chosen = "labctl_mitogen_linear"
    return {"ANSIBLE_STRATEGY_PLUGINS": f"{STRATEGY_PLUGINS}{os.pathsep}{mitogen}", "ANSIBLE_STRATEGY": chosen}


class _Events:
    """Turns ansible-runner events into progress and a record of failures."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.failures: list[str] = []
        self.unreachable: dict[str, str] = {}  # host -> what Ansible said
        self.tasks = 0
        self.changed = 0
        self.ok = 0

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_task_start":
            self.tasks += 1
            self.progress.update(f"task {self.tasks}: {data.get('task', '')}")
        elif kind == "runner_on_ok":
            self.ok += 1
            self.changed += bool(data.get("res", {}).get("changed"))
        elif kind == "runner_on_unreachable" and not data.get("ignore_errors"):
            self.unreachable[str(data.get("host", "?"))] = failure_message(data.get("res", {}))[:500]
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self.failures.append(f"{data.get('host', '?')}: task '{data.get('task', '?')}': "
                                 f"{failure_message(data.get('res', {}))[:500]}")
        return True


def failure_message(result: dict[str, Any]) -> str:
    """What a failed task result says; for a loop, what its failed items say (the task's
    own message is then only "All items completed" or "One or more items failed")."""
    items = [item for item in result.get("results", []) if isinstance(item, dict) and
             (item.get("failed") or item.get("unreachable"))]
    if items:
        return "; ".join(f"item {item.get('item', '?')}: {failure_message(item)}" for item in items)
    parts = [str(result.get("msg") or "").strip(), str(result.get("stderr") or "").strip()]
    if result.get("rc") not in (None, 0):
        parts.append(f"exit code {result['rc']}")
    return ", ".join(p for p in parts if p) or str(result.get("stdout") or "").strip() or "failed"


def run_playbook(lab: LabState, provider: Provider, playbook: Path, *,
                 extravars: dict[str, Any] | None = None, progress: Progress = QUIET,
                 policy: RetryPolicy = PROVISIONING) -> None:
    """Run `playbook` against `lab`; raise ProvisionError naming each failed host and task.
    Nodes Ansible could not reach get the playbook again (only they), within `policy`;
    NodeSilent names those that never answered and for how long."""
    if not playbook.is_file():
        raise ProvisionError(f"playbook not found: {playbook}")
    started = time.monotonic()
    limit: list[str] | None = None
    tries = 0
    while True:
        tries += 1
        events = _run_once(lab, provider, playbook, extravars, progress, limit)
        if not events.unreachable:
            return
        silent = sorted(events.unreachable)
        elapsed = time.monotonic() - started
        pause = policy.pause(tries)
        last = "; ".join(f"{host}: {message}" for host, message in sorted(events.unreachable.items()))
        if tries >= policy.tries or elapsed + pause > policy.budget_s:
            raise NodeSilent(silent, time.monotonic() - started, tries, f"Ansible could not reach them: {last}",
                             "check the nodes (labctl status, labctl ssh NODE); on a busy machine run the "
                             "playbook again: labctl play PLAYBOOK")
        progress.note(f"{playbook.name}: {', '.join(silent)} did not answer ({last[:200]}); "
                      f"again on {'it' if len(silent) == 1 else 'them'} in {pause:g} s")
        time.sleep(pause)
        limit = silent


def _run_once(lab: LabState, provider: Provider, playbook: Path, extravars: dict[str, Any] | None,
              progress: Progress, limit: list[str] | None) -> _Events:
    """One ansible-runner run (on `limit` hosts only, if given); raises ProvisionError for a
    failed task; returns the events, whose `unreachable` the caller retries."""
    import ansible_runner  # heavy import, only when provisioning

    events = _Events(progress)
    bin_dir = str(Path(sys.executable).parent)
    with tempfile.TemporaryDirectory(prefix="labctl-runner-") as private:
        env = {
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "ANSIBLE_PIPELINING": "True", "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_FORKS": str(max(5, len(lab.plan.nodes))),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": private + "/cp",
            "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_LOCALHOST_WARNING": "False", **strategy_environment(),
        }
        result = ansible_runner.run(
            private_data_dir=private, playbook=str(playbook.resolve()),
            inventory=inventory(lab, provider), extravars=extravars or {},
            envvars=env, event_handler=events, quiet=True,
            project_dir=str(playbook.resolve().parent), **({"limit": ",".join(limit)} if limit else {}),
        )
        stdout = result.stdout.read() if result.rc != 0 and not events.failures and not events.unreachable else ""
    if events.failures or ((result.rc != 0 or result.status != "successful") and not events.unreachable):
        failed = events.failures + [f"{host}: unreachable: {message}" for host, message in events.unreachable.items()]
        details = "\n  ".join(failed) or stdout.strip()[-1500:] or result.status
        raise ProvisionError(f"playbook {playbook.name} failed:\n  {details}")
    if not events.unreachable:
        progress.note(f"{playbook.name}: {events.ok} task results ok, {events.changed} changed")
    return events
