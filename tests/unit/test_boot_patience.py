"""When labctl gives up on a node whose sshd has not started (providers/local.py BootPatience)."""

from __future__ import annotations

from labctl.providers.local import BOOT_TIMEOUT, BOOT_TIMEOUT_BUSY, IDLE_WINDOW, IDLE_WINDOWS, BootPatience


def run(cpu_at_each_window: list[int]) -> tuple[str, float]:
    """Feed the patience one CPU reading per window; when and why it gave up ("" if it did not)."""
    patience = BootPatience(started=0.0, cpu=0)
    now = 0.0
    readings = iter(cpu_at_each_window)
    assert patience.exhausted(BOOT_TIMEOUT - 0.1, lambda: 1 / 0) == ""  # CPU not read inside the budget
    for _ in cpu_at_each_window:
        now = patience.deadline
        why = patience.exhausted(now, lambda: next(readings))
        if why:
            return why, now
    return "", now


def test_a_node_idle_for_one_window_is_waited_for() -> None:
    """A single window without CPU (a booting node waiting on its disk on a loaded machine) is not
    a stuck node: the old rule gave such a node up at once."""
    assert run([0, 5, 9]) == ("", BOOT_TIMEOUT + 2 * IDLE_WINDOW)
    assert run([0, 0, 3, 3, 7]) == ("", BOOT_TIMEOUT + 4 * IDLE_WINDOW)


def test_a_node_idle_for_several_windows_in_a_row_is_given_up() -> None:
    why, when = run([0] * IDLE_WINDOWS + [1])
    assert why == f"had used no CPU for {IDLE_WINDOW * IDLE_WINDOWS:.0f} s"
    assert when == BOOT_TIMEOUT + (IDLE_WINDOWS - 1) * IDLE_WINDOW
    why, _ = run([4, 4, 8, 8, 8, 8])  # progress in between starts the count again
    assert why.startswith("had used no CPU")


def test_a_busy_node_is_given_up_past_its_busy_budget() -> None:
    windows = int(BOOT_TIMEOUT_BUSY / IDLE_WINDOW) + 2
    why, when = run(list(range(1, windows + 1)))
    assert why == "were still busy"
    assert when >= BOOT_TIMEOUT + BOOT_TIMEOUT_BUSY
