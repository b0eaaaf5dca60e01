"""Provisioning a real lab whose node does not answer at first, or never: Ansible's
`unreachable` reruns the playbook on that node only; a node silent to the end is named
with how long it stayed silent (NodeSilent, exit 6), not a failed task (exit 7)."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pytest

from labctl.errors import EXIT_PROVIDER
from labctl.progress import Progress
from labctl.providers import get_provider
from labctl.provision import run_playbook
from labctl.retries import NodeSilent, RetryPolicy

from .conftest import pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
FAST = RetryPolicy(tries=3, budget_s=30.0, first_pause_s=0.5, max_pause_s=1.0)


class Notes(Progress):
    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


class Flaky:
    """The local provider, whose out-of-band path to `node` fails its first `failures` times
    (the SSH client sees the connection closed, as from a node not answering yet)."""

    def __init__(self, node: str, failures: int, counter: Path) -> None:
        self.real = get_provider("local")
        self.node, self.failures, self.counter = node, failures, counter

    def access(self, lab: Any, node: str) -> Any:
        access = self.real.access(lab, node)
        if node != self.node:
            return access
        gate = (f'n=$(cat {self.counter} 2>/dev/null || echo 0); echo $((n + 1)) > {self.counter}; '
                f'[ "$n" -ge {self.failures} ] || exit 255; exec "$@"')
        return dataclasses.replace(access, oob_command=("sh", "-c", gate, "sh", *access.oob_command))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _playbook(tmp_path: Path) -> Path:
    playbook = tmp_path / "touch.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                        "    - name: mark the node\n      ansible.builtin.command: touch /root/provisioned\n")
    return playbook


def test_a_node_silent_at_first_is_provisioned_by_a_rerun_on_it_alone(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab()  # type: ignore[operator]
    counter = tmp_path / "h1-connects"
    notes = Notes()
    run_playbook(lab, Flaky("h1", 1, counter), _playbook(tmp_path), progress=notes,  # type: ignore[arg-type]
                 policy=FAST)
    assert int(counter.read_text()) >= 2  # refused once, then reached
    assert any("h1 did not answer" in note and "again on it" in note for note in notes.notes), notes.notes
    session_check = get_provider("local")
    from labctl.connect import open_session

    for node in ("h1", "h2", "r1"):
        session = open_session(session_check.access(lab, node))
        try:
            assert session.run("test -e /root/provisioned", 10).exit_code == 0, node
        finally:
            session.close()


def test_a_node_that_never_answers_is_named_with_how_long(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab()  # type: ignore[operator]
    with pytest.raises(NodeSilent) as silent:
        run_playbook(lab, Flaky("h2", 99, tmp_path / "h2-connects"), _playbook(tmp_path),  # type: ignore[arg-type]
                     policy=FAST)
    assert silent.value.nodes == ["h2"] and silent.value.tries == 3
    assert silent.value.exit_code == EXIT_PROVIDER
    assert f"node h2 did not answer for {silent.value.seconds:.1f} s (3 tries)" in silent.value.message
    assert silent.value.seconds >= 1.0  # the pauses 0.5 + 1.0 s at least
    print(shlex.quote(silent.value.message))
