"""Mitogen's linear strategy (mitogen_linear), without Mitogen's CPU pinning.

ansible_mitogen pins the processes of a run to fixed CPUs, assuming one ansible-playbook per
machine: on two cores its multiplexer gets CPU 0 and everything else (the strategy, the
workers, the ssh they start and so every node's interpreter behind it) CPU 1 only. labctl runs
many playbooks side by side (a room's set-ups): all of them then shared one core (measured:
55% of two cores busy for most of an 8-lab build). Here placement is left to the kernel.
"""

import ansible_mitogen.affinity
import ansible_mitogen.loaders
import ansible_mitogen.strategy

ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()  # the no-op policy: no pinning

Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Linear):  # type: ignore[misc,valid-type]
    """mitogen_linear, unpinned."""
