"""Benchmark: the libvirt provider (real VMs) side by side with the local provider.

Prints, for one topology (default: tests/data/labs/small.yml, 3 nodes) on each provider:
`up` until every node answers SSH (and per VM), `snapshot`, `reset` (revert + clock
resync for VMs), `grade` of a few SSH checks, and `down`; plus the VM image build time
(measured only when the image is not cached yet, or with --rebuild).

    sudo .venv/bin/python bench/libvirt_lifecycle.py
    sudo .venv/bin/python bench/libvirt_lifecycle.py --topology topologies/multi-site-routing.yml
    sudo .venv/bin/python bench/libvirt_lifecycle.py --providers libvirt --rebuild

Needs a libvirtd answering on LABCTL_LIBVIRT_URI (default qemu:///system); start one by
hand with `virtlogd -d && libvirtd -d` where systemd is not PID 1.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labctl import lab as labs
from labctl import vmimage
from labctl.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOPOLOGY = ROOT / "tests" / "data" / "labs" / "small.yml"


@contextmanager
def timed(what: str, figures: dict[str, float]) -> Iterator[None]:
    """Record the wall time of the block under `what`."""
    start = time.monotonic()
    yield
    figures[what] = time.monotonic() - start


def one_provider(provider: str, topology: Path, verbose: bool) -> dict[str, float]:
    """Figures for one provider on `topology`."""
    from labctl.connect import open_session
    from labctl.providers import get_provider

    progress = Progress(quiet=not verbose)
    chosen = get_provider(provider)
    figures: dict[str, float] = {}
    with timed("up (to SSH-ready)", figures):
        lab = labs.up(str(topology), provider=provider, progress=progress)
    nodes = len(lab.plan.nodes)
    figures["up per node"] = figures["up (to SSH-ready)"] / nodes

    def ssh_round() -> None:
        for node in lab.plan.nodes:
            session = open_session(chosen.access(lab, node.name))
            session.run("ip -br addr; hostname", timeout=30)
            session.close()

    try:
        with timed("snapshot", figures):
            labs.snapshot(lab, progress)
        with timed(f"ssh login+command x{nodes}", figures):
            ssh_round()
        with timed("reset", figures):
            labs.reset(lab, progress)
        with timed(f"ssh after reset x{nodes}", figures):
            ssh_round()
    finally:
        with timed("down", figures):
            labs.down(lab)
    return figures


def main() -> None:
    """Parse options, measure, print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--providers", default="local,libvirt", help="comma-separated (default: local,libvirt)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the VM image to time it")
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress")
    options = parser.parse_args()

    providers = [p.strip() for p in options.providers.split(",") if p.strip()]
    if "libvirt" in providers:
        recipe = vmimage.VmImageRecipe()
        if options.rebuild or not recipe.is_built():
            start = time.monotonic()
            vmimage.build_vm_image(recipe, Progress(quiet=not options.verbose))
            print(f"VM image build: {time.monotonic() - start:.1f} s "
                  f"({recipe.disk.stat().st_size / 2**20:.0f} MiB qcow2)")
        else:
            print(f"VM image: cached ({recipe.directory.name}); --rebuild to time the build")

    results = {p: one_provider(p, options.topology, options.verbose) for p in providers}
    keys = list(dict.fromkeys(k for figures in results.values() for k in figures))
    print(f"\n{options.topology.name}: seconds")
    print(f"{'':28}" + "".join(f"{p:>12}" for p in providers))
    for key in keys:
        print(f"{key:28}" + "".join(f"{results[p].get(key, float('nan')):>12.2f}" for p in providers))


if __name__ == "__main__":
    main()
