"""Benchmark: the libvirt provider (real VMs) side by side with the local provider.

Prints, for one lab source on each provider: `up` until every node answers SSH (with a
scenario: its setup playbook and snapshot too), each VM's SSH-ready time, `grade` of the
scenario's checks (or an SSH round on a bare topology), `reset` (revert + clock resync for
VMs) and `down`; plus the VM image build time (measured only when the image is not cached
yet, or with --rebuild).

    sudo .venv/bin/python bench/libvirt_lifecycle.py                       # tests/data/labs/small.yml
    sudo .venv/bin/python bench/libvirt_lifecycle.py --source multi-site-routing
    sudo .venv/bin/python bench/libvirt_lifecycle.py --providers libvirt --rebuild

Needs a libvirtd answering on LABCTL_LIBVIRT_URI (default qemu:///system); start one by
hand with `virtlogd -d && libvirtd -d` where systemd is not PID 1.
"""

from __future__ import annotations

import argparse
import json
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


def one_provider(provider: str, source: str, verbose: bool) -> dict[str, float]:
    """Figures for one provider on `source` (a scenario or a topology file)."""
    from labctl.connect import open_session
    from labctl.providers import get_provider

    progress = Progress(quiet=not verbose)
    chosen = get_provider(provider)
    figures: dict[str, float] = {}
    with timed("up (SSH-ready, setup, snapshot)", figures):
        lab = labs.up(source, provider=provider, name=f"bench-{provider}", progress=progress)
    if provider == "libvirt":
        ready = json.loads((lab.directory / "libvirt.json").read_text()).get("ready_seconds", {})
        figures["SSH-ready: first VM"] = min(ready.values(), default=float("nan"))
        figures["SSH-ready: last VM"] = max(ready.values(), default=float("nan"))
    nodes = len(lab.plan.nodes)

    def check() -> None:
        if lab.scenario:
            labs.grade(lab, labs.lab_spec(lab))
            return
        for node in lab.plan.nodes:
            session = open_session(chosen.access(lab, node.name))
            session.run("ip -br addr; hostname", timeout=60)
            session.close()

    what = "grade (scenario checks)" if lab.scenario else f"ssh login+command x{nodes}"
    try:
        with timed(what, figures):
            check()
        with timed("reset", figures):
            labs.reset(lab, progress)
        with timed(f"{what} after reset", figures):
            check()
    finally:
        with timed("down", figures):
            labs.down(lab)
    return figures


def main() -> None:
    """Parse options, measure, print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(DEFAULT_TOPOLOGY), help="a scenario name or a topology file")
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

    results = {p: one_provider(p, options.source, options.verbose) for p in providers}
    keys = list(dict.fromkeys(k for figures in results.values() for k in figures))
    print(f"\n{Path(options.source).name}: seconds")
    width = max(len(key) for key in keys) + 2
    print(" " * width + "".join(f"{p:>12}" for p in providers))
    for key in keys:
        print(f"{key:{width}}" + "".join(f"{results[p].get(key, float('nan')):>12.2f}" for p in providers))


if __name__ == "__main__":
    main()
