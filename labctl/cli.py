"""The labctl command line. Only this module turns errors into messages and exit codes.

Heavy modules (paramiko, ansible-runner, netmiko, pydantic models) are imported inside
the commands, so `labctl --help` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from labctl.errors import (
    EXIT_FAIL,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_VERIFICATION,
    exit_codes_text,
)

EXEC_TIMEOUT = 600.0  # seconds `labctl exec` lets a command run by default


class Context:
    """Options shared by every command."""

    def __init__(self, debug: bool, quiet: bool) -> None:
        self.debug = debug
        self.quiet = quiet

    def progress(self) -> Any:
        """The progress display for long work."""
        from labctl.progress import Progress

        return Progress(quiet=self.quiet)


lab_option = click.option("--lab", "lab_ref", metavar="NAME", envvar="LABCTL_LAB",
                          help="Lab name or id (default: the only running lab).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="\b\nExit codes:\n" + exit_codes_text())
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.option("--scenarios", "scenario_dirs", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of scenarios (one folder per scenario), searched first for scenario names; "
                   "repeatable. Then LABCTL_SCENARIOS (folders separated by ':'), ./scenarios, and the "
                   "scenarios installed with labctl.")
@click.version_option(package_name="labctl")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool, scenario_dirs: tuple[Path, ...]) -> None:
    """labctl builds practical exam labs from topology files and grades them over SSH.

    \b
    A typical walk:
      labctl up scenarios/multi-site-routing   build the lab, set up its starting state
      labctl status                            nodes, kind, state, addresses
      labctl ssh r1                            log in as the candidate would
      labctl grade                             check the live lab against the criteria
      labctl down                              remove everything the lab made
    """
    ctx.obj = Context(debug, quiet)
    if scenario_dirs:
        from labctl.scenario import set_option_roots

        set_option_roots(list(scenario_dirs))


# ---- labs ------------------------------------------------------------------------------
@cli.command()
@click.argument("source")
@click.option("--provider", help="Where nodes run (default: the topology's, else local).")
@click.option("--name", help="Lab name (default: the scenario or topology name).")
@click.option("--seed", help="Candidate id: draws the scenario's variant values (default: fixed values).")
@click.option("--no-setup", is_flag=True, help="Skip the scenario's setup playbook.")
@click.option("--replace", is_flag=True, help="With --name: remove the lab of that name first, if there is one.")
@click.pass_obj
def up(obj: Context, source: str, provider: str | None, name: str | None, seed: str | None,
       no_setup: bool, replace: bool) -> None:
    """Build a lab from SOURCE: a scenario (folder or name) or a topology file."""
    _up(obj, source, provider, name, seed, no_setup, replace)


def _up(obj: Context, source: str, provider: str | None, name: str | None, seed: str | None,
        no_setup: bool, replace: bool) -> Any:
    """`labctl up` (also `labctl practice start`): the built lab's LabState."""
    from labctl import lab as labs

    started = time.monotonic()
    try:
        built = labs.up(source, provider=provider, name=name, seed=seed, setup=not no_setup,
                        exact_name=True, replace=replace,
                        progress=obj.progress())
    except KeyboardInterrupt:
        click.echo("interrupted: what was built has been removed", err=True)
        raise
    click.echo(f"lab {built.name} ({built.id}) is up with {len(built.plan.nodes)} nodes "
               f"in {time.monotonic() - started:.1f} s; try: labctl status")
    return built


@cli.command()
@lab_option
@click.option("--all", "every", is_flag=True, help="Remove every lab on this machine.")
@click.pass_obj
def down(obj: Context, lab_ref: str | None, every: bool) -> None:
    """Remove a lab and everything it made (safe to repeat, also after a crash)."""
    from labctl import lab as labs
    from labctl.state import all_labs, find_lab

    targets = all_labs() if every else [find_lab(lab_ref)]
    for target in targets:
        with obj.progress().step(f"remove lab {target.name} ({target.id})"), \
                labs.locked(target.id, "down") as current:
            labs.down(current)
    if not targets:
        click.echo("no lab to remove")


STATE_WORDS = {"running": "en marche", "stopped": "arrêté", "missing": "absent", "degraded": "dégradé",
               "broken": "interrompu", "creating": "en création", "resetting": "en réinitialisation",
               "destroying": "en suppression", "out-of-band": "hors bande", "host": "hôte", "router": "routeur",
               "switch": "commutateur", "rebooting": "en redémarrage", "stopping": "en arrêt",
               "stopped (powered off)": "arrêté (éteint)", "stopped (reboot loop)": "arrêté (redémarrages en boucle)"}


def _in_french(state: str) -> str:
    """A lab's or node's state (labctl.lab.condition, provider node states) in French."""
    import re

    word = STATE_WORDS.get
    if match := re.fullmatch(r"degraded \((\d+) of (\d+) nodes running\)", state):
        return f"dégradé ({match[1]} nœuds sur {match[2]} en marche)"
    if match := re.fullmatch(r"broken \(interrupted while (\w+); remove it: (.*)\)", state):
        return f"interrompu (coupé {word(match[1], match[1])} ; supprimez-le : {match[2]})"
    if match := re.fullmatch(r"(\w+) \((.*) in progress\)", state):
        return f"{word(match[1], match[1])} ({match[2]} en cours)"
    return word(state, state)


@cli.command()
@lab_option
@click.option("--all", "every", is_flag=True, help="Every lab on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--lang", type=click.Choice(["fr", "en", "both"]), default="en", show_default=True,
              help="Language of the table (JSON keeps its English values).")
def status(lab_ref: str | None, every: bool, as_json: bool, lang: str) -> None:
    """Nodes of a lab: kind, state, addresses."""
    from labctl import lab as labs
    from labctl.lang import say
    from labctl.providers import get_provider
    from labctl.state import all_labs, find_lab

    def words(text: str) -> str:
        return say(_in_french(text), text, lang)

    targets = all_labs() if every or (not lab_ref and len(all_labs()) != 1) else [find_lab(lab_ref)]
    rows: list[dict[str, Any]] = []
    conditions: dict[str, str] = {}
    for target in targets:
        provider = get_provider(target.provider)
        states = provider.node_states(target)
        conditions[target.id] = labs.condition(target, states)
        for node in target.plan.nodes:
            addresses = [f"lo={a}" for a in node.loopbacks]
            addresses += [f"{i.name}={a}" for i in node.interfaces for a in i.shown_addresses()]
            known = target.nodes.get(node.name)
            rows.append({"lab": target.name, "id": target.id, "lab_status": conditions[target.id],
                         "node": node.name, "kind": node.kind.value, "state": states[node.name],
                         "hypervisor": known.hypervisor if known else None,
                         "mgmt": (provider.access(target, node.name).mgmt_address or "out-of-band") if known else "-",
                         "addresses": addresses})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not targets:
        click.echo(say("aucun labo en marche ; pour en lancer un : labctl up SCÉNARIO",
                       "no lab is running; start one with: labctl up SCENARIO", lang, "\n"))
        return
    for target in targets:
        seed_fr, seed_en = (f", graine {target.seed}", f", seed {target.seed}") if target.seed else ("", "")
        stage_fr, stage_en = (f", étape {target.stage}", f", stage {target.stage}") if target.stage else ("", "")
        click.echo(say(f"labo {target.name} ({target.id}) — {_in_french(conditions[target.id])}, fournisseur "
                       f"{target.provider}, créé le {target.created}{seed_fr}{stage_fr}",
                       f"lab {target.name} ({target.id}) — {conditions[target.id]}, provider {target.provider}, "
                       f"created {target.created}{seed_en}{stage_en}", lang, "\n"))
        lab_rows = [r for r in rows if r["id"] == target.id]
        heads = {key: say(fr, key, lang, "/") for key, fr in (
            ("NODE", "NŒUD"), ("KIND", "TYPE"), ("STATE", "ÉTAT"), ("HYPERVISOR", "HYPERVISEUR"), ("MGMT", "GESTION"),
            ("ADDRESSES", "ADRESSES"))}
        shown = [(row, words(row["kind"]), words(row["state"]), words(row["mgmt"])) for row in lab_rows]
        widths = {"NODE": 10, "KIND": max([7, len(heads["KIND"]), *(len(k) for _, k, _, _ in shown)]),
                  "STATE": max([8, len(heads["STATE"]), *(len(st) for _, _, st, _ in shown)]),
                  "MGMT": max([14, len(heads["MGMT"]), *(len(m) + 1 for _, _, _, m in shown)])}
        width = max((len(r["hypervisor"] or "") for r in lab_rows), default=0)  # 0: local nodes, no column
        width = max(width, len(heads["HYPERVISOR"])) if width else 0
        where = f"{heads['HYPERVISOR']:<{width}} " if width else ""
        click.echo(f"  {heads['NODE']:<{widths['NODE']}} {heads['KIND']:<{widths['KIND']}} "
                   f"{heads['STATE']:<{widths['STATE']}} {where}{heads['MGMT']:<{widths['MGMT']}} {heads['ADDRESSES']}")
        for row, kind, state, mgmt in shown:
            where = f"{row['hypervisor'] or '-':<{width}} " if width else ""
            click.echo(f"  {row['node']:<{widths['NODE']}} {kind:<{widths['KIND']}} {state:<{widths['STATE']}} "
                       f"{where}{mgmt:<{widths['MGMT']}} {' '.join(row['addresses'])}")
        stopped = [row["node"] for row in lab_rows if row["state"].startswith("stopped")]
        if stopped and target.status == "running":
            nodes = " ".join(stopped)
            click.echo(say(f"  pour redémarrer : labctl restart {nodes} --lab {target.name}",
                           f"  to start again: labctl restart {nodes} --lab {target.name}", lang, "\n"))


def _ssh_argv(lab_ref: str | None, node: str, command: tuple[str, ...] = ()) -> list[str]:
    import shlex

    from labctl.errors import NotFoundError
    from labctl.providers import get_provider
    from labctl.provision import known_hosts
    from labctl.state import find_lab

    target = find_lab(lab_ref)
    if node not in target.nodes:
        raise NotFoundError(f"lab {target.name} has no node '{node}' "
                            f"(nodes: {', '.join(n.name for n in target.plan.nodes)})")
    access = get_provider(target.provider).access(target, node)
    return ["ssh", "-i", str(access.key_file), "-o", "IdentitiesOnly=yes",
            "-o", f"ProxyCommand={shlex.join(access.oob_command)}",
            "-o", f"HostKeyAlias={node}", "-o", f"UserKnownHostsFile={known_hosts(target)}",
            "-o", "StrictHostKeyChecking=yes", *access.ssh_client_options(), *(["-t"] if not command else []),
            f"{access.user}@{node}", *command]


@cli.command()
@click.argument("node")
@lab_option
def ssh(node: str, lab_ref: str | None) -> None:
    """Open a shell on NODE as root (out of band: works even if its network is broken)."""
    argv = _ssh_argv(lab_ref, node)
    os.execvp(argv[0], argv)


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@lab_option
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=EXEC_TIMEOUT, show_default=True,
              help="Seconds COMMAND may run (login included); then it is stopped and labctl exits 124.")
def exec_(node: str, command: tuple[str, ...], lab_ref: str | None, timeout: float) -> None:
    """Run COMMAND on NODE and exit with its exit code:  labctl exec h1 -- ip r"""
    import shlex
    import subprocess

    argv = _ssh_argv(lab_ref, node, (shlex.join(command),))
    proc = subprocess.Popen(argv)
    try:
        sys.exit(proc.wait(timeout))
    except subprocess.TimeoutExpired:
        proc.terminate()  # ssh ends its session and the out-of-band helper with it
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        click.echo(f"labctl: {node}: '{shlex.join(command)}' still running after {timeout:g} s: stopped "
                   f"(a login that hangs, e.g. in /root/.bashrc, counts too; --timeout gives it longer)", err=True)
        sys.exit(EXIT_TIMEOUT)


@cli.command()
@lab_option
@click.option("--spec", type=click.Path(path_type=Path), help="Grading spec (default: the scenario's).")
@click.option("--stage", help="Grade this stage's checks (default: the lab's current stage).")
@click.option("--all-stages", is_flag=True, help="Grade the checks of every stage.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--junit", type=click.Path(path_type=Path), help="Also write a JUnit XML report.")
@click.option("--lang", type=click.Choice(["fr", "en", "both"]), default="both", show_default=True,
              help="Language of everything printed: criteria, checks, outcomes, hints, score (both: French "
                   "first, English alongside).")
@click.option("--hints", is_flag=True, help="Practice: under each check that does not PASS, the spec's hint "
              "(where to look). Exam sessions never show them.")
@click.option("--reboot", is_flag=True, help="Restart every node first (as an exam reboots the machines), wait "
              "for them, then grade; checks marked `persist: reboot` are judged only so.")
@click.pass_obj
def grade(obj: Context, lab_ref: str | None, spec: Path | None, stage: str | None, all_stages: bool,
          as_json: bool, junit: Path | None, lang: str, hints: bool, reboot: bool) -> None:
    """Check the live lab; exit 0 all PASS, 1 some FAIL, 10 any ERROR."""
    from labctl import lab as labs

    # never during a reset; a reboot changes the lab: it holds the lock alone
    with labs.locked(lab_ref, "grade --reboot" if reboot else "grade", shared=not reboot) as target:
        _grade(obj, target, spec, stage, all_stages, as_json, junit, lang, hints, reboot)


def _grade(obj: Context, target: Any, spec: Path | None, stage: str | None, all_stages: bool,
           as_json: bool, junit: Path | None, lang: str, hints: bool, reboot: bool = False) -> None:
    from labctl import lab as labs
    from labctl.grading import report as render

    if stage is not None:
        labs.lab_scenario(target).stage(stage)  # a clear error for an unknown stage
    grading_spec = labs.stage_checks(labs.lab_spec(target, spec), None if all_stages else stage or target.stage)
    progress = obj.progress()
    done: list[str] = []

    def show(check: Any) -> None:
        done.append(check.check_id)
        progress.update(f"{len(done)}/{len(grading_spec.checks)} {check.check_id}: {check.outcome.value}")

    if reboot:
        labs.reboot(target, progress)
    with progress.step(f"grade lab {target.name}: {len(grading_spec.checks)} checks"):
        result = labs.grade(target, grading_spec, on_result=show, after_reboot=reboot)
    _practice_record(target, result, None if all_stages else stage or target.stage)
    if junit:
        junit.write_text(render.to_junit(result))
    if as_json:
        click.echo(render.to_json(result))
    else:
        shown = {c.id: c.hint for c in grading_spec.checks if c.hint} if hints else None
        click.echo(render.render_table(result, lang=lang, colour=sys.stdout.isatty(),  # type: ignore[arg-type]
                                       hints=shown))
    sys.exit(result.exit_code)


@cli.command()
@lab_option
@click.pass_obj
def reset(obj: Context, lab_ref: str | None) -> None:
    """Bring a lab back to its starting state (snapshot taken after setup), in seconds."""
    from labctl import lab as labs

    with labs.locked(lab_ref, "reset") as target:
        started = time.monotonic()
        labs.reset(target, obj.progress())
    click.echo(f"lab {target.name} is back to its starting state in {time.monotonic() - started:.1f} s")


@cli.command()
@click.argument("nodes", nargs=-1)
@lab_option
@click.pass_obj
def restart(obj: Context, nodes: tuple[str, ...], lab_ref: str | None) -> None:
    """Restart NODES (default: every node) as a machine reboots: a node stopped by its own
    poweroff, or left stopped after rebooting in a loop, starts again; a running one reboots."""
    from labctl import lab as labs

    with labs.locked(lab_ref, "restart") as target:
        started = time.monotonic()
        labs.reboot(target, obj.progress(), list(nodes) or None)
    click.echo(f"lab {target.name}: {' '.join(nodes) or 'every node'} running again in "
               f"{time.monotonic() - started:.1f} s")


@cli.command()
@lab_option
@click.pass_obj
def snapshot(obj: Context, lab_ref: str | None) -> None:
    """Make the lab's current state the one `labctl reset` goes back to."""
    from labctl import lab as labs

    with labs.locked(lab_ref, "snapshot") as target:
        labs.snapshot(target, obj.progress())
    click.echo(f"lab {target.name}: snapshot taken")


@cli.command()
@click.argument("fault")
@lab_option
@click.pass_obj
def inject(obj: Context, fault: str, lab_ref: str | None) -> None:
    """Inject one of the scenario's FAULTs into the lab (e.g. a simulated ransomware)."""
    from labctl import lab as labs

    with labs.locked(lab_ref, f"inject {fault}") as target:
        labs.inject(target, fault, obj.progress())


@cli.command()
@click.argument("name", required=False)
@lab_option
@click.pass_obj
def stage(obj: Context, name: str | None, lab_ref: str | None) -> None:
    """Show the lab's stage, or move it to stage NAME (injecting that stage's faults)."""
    from labctl import lab as labs
    from labctl.state import find_lab

    if name is None:
        target = find_lab(lab_ref)
        stages = [s.name for s in labs.lab_scenario(target).stages()]
        click.echo(f"lab {target.name}: stage {target.stage} (stages: {', '.join(stages)}); "
                   f"faults injected: {', '.join(target.injected) or 'none'}")
        return
    with labs.locked(lab_ref, f"stage {name}") as target:
        labs.enter_stage(target, name, obj.progress())
    click.echo(f"lab {target.name} is now in stage {name}")


@cli.command()
@click.argument("playbook", type=click.Path(path_type=Path))
@lab_option
@click.pass_obj
def play(obj: Context, playbook: Path, lab_ref: str | None) -> None:
    """Run an Ansible PLAYBOOK against a lab (e.g. a scenario's solution)."""
    from labctl import lab as labs

    progress = obj.progress()
    with labs.locked(lab_ref, f"play {playbook}") as target, progress.step(f"run {playbook}"):
        labs.run_scenario_playbook(target, playbook, progress)


# ---- files -----------------------------------------------------------------------------
@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Check topology files, grading specs or scenarios without building anything."""
    from labctl.errors import InvalidInputError, Problem

    problems: list[Problem] = []
    for file in files:
        try:
            click.echo(f"{file}: ok ({_validate_one(file)})")
        except InvalidInputError as exc:
            problems += exc.problems
    if problems:
        raise InvalidInputError(problems)


def _validate_one(file: Path) -> str:
    from labctl.errors import InvalidInputError
    from labctl.lab import load_spec
    from labctl.references import check_references
    from labctl.scenario import is_scenario, load_scenario, scenario_using
    from labctl.sourcefile import read_yaml
    from labctl.topology import load_topology

    owner = None if is_scenario(str(file)) else scenario_using(file)
    if is_scenario(str(file)) or owner is not None:
        scenario = owner or load_scenario(str(file))
        values = scenario.values(None)  # templates are checked with the parameters' defaults
        topology = load_topology(scenario.topology, values)
        spec = load_spec(scenario, topology, values)
        check_references(scenario, spec, values)
        checks = spec.checks
        what = f"used by scenario {scenario.name}, checked with its default values" if owner else \
            f"scenario {scenario.name}"
        return f"{what}: {len(topology.nodes)} nodes, {len(checks)} checks"
    try:
        head = read_yaml(file)[0] if file.is_file() else None  # with the limits on hostile files
    except InvalidInputError:
        head = None  # load_topology below reports the same problem
    if isinstance(head, dict) and "checks" in head:
        from labctl.grading.loader import load_grading_spec

        return f"grading spec, {len(load_grading_spec(file).checks)} checks"
    topology = load_topology(file)
    return f"topology {topology.name}: {len(topology.nodes)} nodes, {len(topology.links)} links"


@cli.command()
@click.argument("kind", type=click.Choice(["topology", "grading"]), default="topology")
def schema(kind: str) -> None:
    """Print the JSON Schema of topology files or grading specs (for editors)."""
    if kind == "topology":
        from labctl.topology.schema import topology_json_schema as make
    else:
        from labctl.grading.spec import grading_json_schema as make
    click.echo(json.dumps(make(), indent=2))


@cli.command()
@click.option("--provider", default="local", show_default=True)
def doctor(provider: str) -> None:
    """What this machine can run, what is missing, and the fix."""
    from labctl.doctor import kernel_probes
    from labctl.providers import get_provider

    probes = get_provider(provider).preflight() + kernel_probes()
    for probe in probes:
        mark = "ok  " if probe.ok else ("MISS" if probe.required else "warn")
        click.echo(f"[{mark}] {probe.name}: {probe.detail}")
        if not probe.ok and probe.fix:
            click.echo(f"       fix: {probe.fix}")
    missing = [p for p in probes if p.required and not p.ok]
    click.echo(f"{len(probes) - len(missing)}/{len(probes)} requirements met for provider {provider}")
    sys.exit(EXIT_FAIL if missing else EXIT_OK)


@cli.command()
@click.argument("scenario_name", metavar="SCENARIO")
@click.option("--lang", type=click.Choice(["fr", "en", "both"]), default="fr", show_default=True,
              help="Language of the brief; both: the French brief, then the English one.")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("--seed", help="The candidate's id: the brief shows the candidate's own values.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write to this file (Markdown: the diagram goes to an .svg beside it).")
def brief(scenario_name: str, lang: str, fmt: str, seed: str | None, output: Path | None) -> None:
    """Render a scenario's brief for a candidate, with a topology diagram."""
    from labctl import brief as briefs
    from labctl.scenario import load_scenario

    scenario = load_scenario(scenario_name)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        text = briefs.render_html(scenario, lang, seed)
    else:
        diagram = output.with_name(output.stem + "-topology.svg") if output else None
        text = briefs.render_markdown(scenario, lang, seed, diagram)
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


# ---- images ----------------------------------------------------------------------------
@cli.group()
def image() -> None:
    """Node images built from Debian packages (cached)."""


@image.command("build")
@click.argument("kind", type=click.Choice(["node", "vm", "box"]), default="node")
@click.option("--force", is_flag=True, help="Rebuild even if cached.")
@click.pass_obj
def image_build(obj: Context, kind: str, force: bool) -> None:
    """Build the node image (debootstrap; about 80 s once, then cached), with `vm` the
    bootable VM image of the libvirt provider (qcow2 + kernel + initrd; a few minutes once),
    or with `box` a Vagrant box for vagrant-libvirt with labctl and its node image inside
    (offline practice at home: `vagrant box add labctl PATH`; about 4 minutes)."""
    progress = obj.progress()
    if kind == "box":
        from labctl import vagrantbox

        box = vagrantbox.BoxRecipe()
        (vagrantbox.build_box if force else vagrantbox.ensure_box)(box, progress)
        click.echo(f"box {box.name}-{box.digest()} ready: {box.box}")
        click.echo(f"  then: vagrant box add --force labctl {box.box} && LABCTL_BOX=labctl vagrant up")
    elif kind == "vm":
        from labctl import vmimage

        vm = vmimage.VmImageRecipe()
        (vmimage.build_vm_image if force else vmimage.ensure_vm_image)(vm, progress)
        click.echo(f"VM image {vm.name}-{vm.digest()} ready: {vm.disk}")
    else:
        from labctl import image as images

        node = images.ImageRecipe()
        (images.build_image if force else images.ensure_image)(node, progress)
        click.echo(f"image {node.name}-{node.digest()} ready: {node.rootfs}")


@image.command("list")
def image_list() -> None:
    """Cached images (container node images and VM images)."""
    from labctl import image as images

    for item in images.list_images():
        kind = ("vm  " if Path(item["path"], "disk.qcow2").exists() else
                "box " if Path(item["path"], "labctl.box").exists() else "node")
        click.echo(f"{kind}  {item['name']}-{item['digest']}  {item['suite']}  built {item['built']}  {item['path']}")


# ---- scenarios -------------------------------------------------------------------------
@cli.group()
def scenario() -> None:
    """Scenarios: list them, verify that they behave as they declare."""


@scenario.command("list")
def scenario_list() -> None:
    """Scenarios that can be named, with their folder, in search order (labctl --help: --scenarios)."""
    from labctl.errors import LabctlError
    from labctl.scenario import scenario_folders, scenario_names, search_path

    for name in scenario_names():
        folders = scenario_folders(name)
        for folder in folders:
            try:
                found = load_scenario_folder(folder)
                title = f"{found.spec.title.fr} / {found.spec.title.en}"
            except LabctlError as exc:
                title = f"(invalid: {exc.render().splitlines()[0]})"
            twice = f"  [found {len(folders)} times: name it by its folder]" if len(folders) > 1 else ""
            click.echo(f"{name:<24} {title}  ({folder}){twice}")
    click.echo("searched, in order: " + "; ".join(f"{root} ({origin})" for root, origin in search_path()))


def load_scenario_folder(folder: Path) -> Any:
    """A scenario by its folder."""
    from labctl.scenario import load_scenario

    return load_scenario(str(folder))


@scenario.command("verify")
@click.argument("name")
@click.option("--provider", help="Where nodes run.")
@click.option("--seed", help="Verify the variant drawn for this candidate id.")
@click.option("--name", "lab_name", help="Name of the labs it builds (default: verify-SCENARIO); refused if a lab "
              "has that name.")
@click.option("--lang", type=click.Choice(["fr", "en", "both"]), default="en", show_default=True,
              help="Language of the summary (problems quote evidence as observed).")
@click.pass_obj
def scenario_verify(obj: Context, name: str, provider: str | None, seed: str | None, lab_name: str | None,
                    lang: str) -> None:
    """Per stage: listed checks FAIL, solution makes all PASS; partial fails exactly as declared.

    Exit 0 when the scenario behaves as declared, 8 when it does not."""
    from labctl.verify import verify

    outcome = verify(name, provider=provider, seed=seed, progress=obj.progress(), lab_name=lab_name)
    click.echo(outcome.summary(lang))
    sys.exit(EXIT_OK if outcome.ok else EXIT_VERIFICATION)


# ---- the référentiel --------------------------------------------------------------------
@cli.command()
@click.option("--coverage", "show_coverage", is_flag=True,
              help="For every live or partial criterion, the scenarios and checks that evidence it, and which "
                   "have none.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--markdown", is_flag=True, help="With --coverage: the README's table.")
@click.option("--scenario", "names", multiple=True, metavar="NAME",
              help="With --coverage: only these scenarios (repeatable; default: every scenario that can be named).")
def criteria(show_coverage: bool, as_json: bool, markdown: bool, names: tuple[str, ...]) -> None:
    """The référentiel's criteria (id, lab reach, text); --coverage: what evidences each."""
    from labctl import coverage as cov
    from labctl.grading.criteria import all_criteria

    if (markdown or names) and not show_coverage:
        raise click.UsageError("--markdown and --scenario go with --coverage")
    if not show_coverage:
        found = list(all_criteria().values())
        if as_json:
            click.echo(json.dumps([vars(c) for c in found], indent=2, ensure_ascii=False))
            return
        for c in found:
            click.echo(f"{c.id:<8} {c.lab:<7} {c.text}")
        return
    report = cov.coverage(list(names) or None)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    elif markdown:
        click.echo(cov.render_markdown(report), nl=False)
    else:
        click.echo(cov.render_text(report), nl=False)


# ---- practising at home -----------------------------------------------------------------
@cli.group(invoke_without_command=True)
@click.pass_context
def practice(ctx: click.Context) -> None:
    """Practise at home: scenarios, your own variant, your history (no subcommand: list).

    \b
      labctl practice                            the scenarios: title, duration, criteria
      sudo labctl practice start NAME --seed ME  your variant, and its brief
      sudo labctl grade --hints                  grade yourself (kept in your history)
      labctl practice history                    your score over time, what still fails
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(practice_list)


lang_choice = click.option("--lang", type=click.Choice(["fr", "en", "both"]), default="both", show_default=True,
                           help="Language (French first with English alongside by default).")


@practice.command("list")
@lang_choice
def practice_list(lang: str) -> None:
    """The scenarios you can practise: title, suggested time and criteria."""
    from labctl import practice as practising

    click.echo(practising.render_scenarios(lang), nl=False)


@practice.command("start")
@click.argument("scenario_name", metavar="SCENARIO")
@click.option("--seed", help="Your own variant (default: your login name); the same seed gives the same lab.")
@click.option("--lang", type=click.Choice(["fr", "en", "both"]), default="fr", show_default=True,
              help="Language of the brief (both: French, then English).")
@click.option("--provider", help="Where nodes run (default: the topology's, else local).")
@click.pass_obj
def practice_start(obj: Context, scenario_name: str, seed: str | None, lang: str, provider: str | None) -> None:
    """Build SCENARIO with your seed (as `labctl up`), then show its brief; never the solution."""
    from labctl import practice as practising
    from labctl.brief import brief_markdown
    from labctl.scenario import load_scenario
    from labctl.state import all_labs

    scenario = load_scenario(scenario_name)
    seed = seed or practising.default_seed()
    built = _up(obj, scenario_name, provider, None, seed, False, False)
    practising.History().add_lab(built, scenario.name)
    for one in ("fr", "en") if lang == "both" else (lang,):
        click.echo()
        click.echo(brief_markdown(scenario, one, seed)[0].rstrip())
    click.echo()
    others = [lab for lab in all_labs() if lab.id != built.id]
    click.echo(practising.next_steps(built, seed, lang, scenario_name, others))


@practice.command("history")
@click.argument("scenario_name", metavar="[SCENARIO]", required=False)
@lang_choice
@click.option("--json", "as_json", is_flag=True, help="Every run as JSON.")
def practice_history(scenario_name: str | None, lang: str, as_json: bool) -> None:
    """Your grading runs of practice labs: score over time per scenario, what was still failing."""
    from labctl import practice as practising

    runs = practising.History().runs(scenario_name)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in runs], indent=2, ensure_ascii=False))
        return
    click.echo(practising.render_history(runs, lang), nl=False)


@practice.command("solution")
@click.argument("scenario_name", metavar="SCENARIO")
@click.option("--show-solution", is_flag=True, help="Really show it (it spoils the exercise).")
def practice_solution(scenario_name: str, show_solution: bool) -> None:
    """The reference solution of SCENARIO, only with --show-solution."""
    from labctl import practice as practising
    from labctl.scenario import load_scenario

    scenario = load_scenario(scenario_name)
    if not show_solution:
        raise click.UsageError(f"the solution of {scenario.name} is not shown without --show-solution: it spoils "
                               "the exercise / la solution n'est montrée qu'avec --show-solution : elle gâche "
                               "l'exercice")
    click.echo(practising.SPOILER_WARNING, err=True)
    click.echo(practising.render_solution(scenario), nl=False)


def _practice_record(target: Any, result: Any, stage: str | None) -> None:
    """A grading run of a lab `practice start` built goes to the candidate's history."""
    from labctl import practice as practising
    from labctl.errors import LabctlError

    try:
        run = practising.History().record(target, result, stage)
    except LabctlError as exc:  # the grade stands; only its history entry is missing
        click.echo(f"labctl: warning: not kept in your practice history: {exc.render()}", err=True)
        return
    if run is not None:
        click.echo(practising.recorded_line(run), err=True)


# ---- commands living with their subsystems ----------------------------------------------
def _add_subsystem_commands() -> None:
    """Exam sessions and report verification keep their commands in their own package."""
    try:
        from labctl.session.commands import report, session
    except ImportError:  # the session package is not there yet
        return
    cli.add_command(session)
    cli.add_command(report)


_add_subsystem_commands()


# ---- entry point -----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI; map labctl errors to one-line messages and exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="labctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_INPUT)  # usage errors, bad parameters, unreadable files: all bad input
    except click.exceptions.Abort:
        click.echo("labctl: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        if debug:
            raise
        click.echo("labctl: interrupted; if a lab was left behind, remove it with: labctl down --all",
                   err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        from labctl.errors import LabctlError

        if debug:
            raise
        if isinstance(exc, LabctlError):
            click.echo(f"labctl: error: {exc.render()}", err=True)
            sys.exit(exc.exit_code)
        click.echo(f"labctl: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
                   err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(EXIT_OK)
