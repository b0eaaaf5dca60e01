"""Scenarios: a topology, a starting state, a solution and a grading spec, with a brief.

A scenario is a folder `scenarios/<name>/` with `scenario.yml`; the files it names are
paths relative to that folder (by default the project's conventional places:
`topologies/<name>.yml`, `playbooks/<name>/setup.yml` and `solution.yml`,
`grading/<name>.yml`).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import random
import string
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labctl.errors import InvalidInputError, LabctlError, NotFoundError, Problem
from labctl.sourcefile import Lines, read_yaml, validate_model
from labctl.sourcelimits import BoundedInt, SampleSize, TokenLength, refuse


class Text(BaseModel):
    """A text in French (first) and English."""

    model_config = ConfigDict(extra="forbid")
    fr: str
    en: str


class ImageSpec(BaseModel):
    """What a scenario's nodes need beyond the base image (Debian packages only)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="Image name (default: the scenario's); scenarios "
                             "sharing a name must list the same packages.")
    packages: list[str] = Field(default_factory=list, description="Extra Debian packages for every node.")


class Parameter(BaseModel):
    """A value that varies per candidate: drawn from a seed, or the default without one."""

    model_config = ConfigDict(extra="forbid")
    default: Any = Field(description="The value without a seed (and in the shipped brief).")
    choices: list[Any] | None = Field(default=None, description="Draw one of these.")
    range: tuple[BoundedInt, BoundedInt] | None = Field(default=None, description="Draw an integer in [low, high].")
    token: TokenLength | None = Field(default=None, description="Draw a random lowercase string of this length.")
    hex: TokenLength | None = Field(default=None,
                                    description="Draw this many hexadecimal digits (e.g. a TOTP secret: 40 digits, "
                                                "20 bytes).")
    sample: SampleSize | None = Field(default=None,
                                      description="With choices: draw this many distinct ones (a list).")

    @model_validator(mode="after")
    def _one_way(self) -> Parameter:
        ways = [w for w in (self.choices, self.range, self.token, self.hex) if w is not None]
        if len(ways) > 1:
            raise ValueError("give one of choices, range, token or hex")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"range [{self.range[0]}, {self.range[1]}]: the low end comes first")
        if self.sample is not None and self.choices is None:
            raise ValueError("sample goes with choices")
        if self.sample is not None and self.choices is not None and self.sample > len(self.choices):
            raise ValueError(f"sample {self.sample} is more than the {len(self.choices)} choices")
        return self

    def draw(self, rng: random.Random) -> Any:
        """A value drawn with `rng` (the default when no way to draw is given)."""
        if self.choices is not None:
            return rng.sample(self.choices, self.sample) if self.sample else rng.choice(self.choices)
        if self.range is not None:
            return rng.randint(*self.range)
        if self.token is not None:
            return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(self.token))
        if self.hex is not None:
            return "".join(rng.choice("0123456789abcdef") for _ in range(self.hex))
        return self.default


class Stage(BaseModel):
    """A part of the exam with its own checks (grading-spec checks with `stage: NAME`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    title: Text | None = None
    inject: list[str] = Field(default_factory=list, description="Faults injected when the stage starts.")
    initially_failing: list[str] = Field(default_factory=list,
                                         description="Checks that FAIL when the stage starts.")
    solution: str | None = Field(default=None, description="Playbook solving this stage.")


class Fault(BaseModel):
    """Something that goes wrong on purpose (`labctl inject NAME`, or at a stage's start)."""

    model_config = ConfigDict(extra="forbid")
    description: Text
    playbook: str


class Partial(BaseModel):
    """A partial solution shipped with the scenario, and exactly what it leaves failing."""

    model_config = ConfigDict(extra="forbid")
    playbook: str
    stage: str | None = Field(default=None, description="The stage it is graded in (default: the first).")
    failing: list[str] = Field(description="Checks that must FAIL after it; all others must PASS.")


class ScenarioFile(BaseModel):
    """The content of scenario.yml."""

    model_config = ConfigDict(extra="forbid")
    name: str
    title: Text
    criteria: list[str] = Field(description="Référentiel criteria the scenario evidences.")
    duration: BoundedInt | None = Field(default=None, ge=1, le=24 * 60,
                                        description="Suggested time in minutes (the brief's 'durée conseillée'), "
                                        "shown by `labctl practice list`.")
    topology: str | None = None
    setup: str | None = None
    solution: str | None = None
    grading: str | None = None
    brief: dict[str, str] = Field(default_factory=lambda: {"fr": "brief.fr.md", "en": "brief.en.md"})
    image: ImageSpec = Field(default_factory=ImageSpec)
    parameters: dict[str, Parameter] = Field(default_factory=dict,
                                             description="Values drawn per candidate from a seed.")
    initially_failing: list[str] = Field(
        default_factory=list, description="Check ids that must FAIL in the starting state (no stages).")
    stages: list[Stage] = Field(default_factory=list)
    faults: dict[str, Fault] = Field(default_factory=dict)
    partial: Partial | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioFile:
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stage names must be unique")
        if self.stages and (self.initially_failing or self.solution):
            raise ValueError("with stages, give initially_failing and solution per stage")
        bad = [name for name in self.parameters if not name.isidentifier()]
        if bad:
            raise ValueError(f"parameter names must be identifiers (letters, digits, _): {bad}")
        return self


MAIN_STAGE = "main"


class Scenario:
    """A loaded scenario with its files resolved to absolute paths."""

    def __init__(self, folder: Path, spec: ScenarioFile, lines: Lines | None = None) -> None:
        self.folder = folder
        self.spec = spec
        self.lines = lines  # where each key of scenario.yml is, for problems found later
        root = folder.parent.parent
        name = spec.name
        self.topology = self._path(spec.topology, root / "topologies" / f"{name}.yml")
        self.setup = self._path(spec.setup, root / "playbooks" / name / "setup.yml")
        self.solution = self._path(spec.solution, root / "playbooks" / name / "solution.yml")
        self.grading = self._path(spec.grading, root / "grading" / f"{name}.yml")

    def _path(self, given: str | None, default: Path) -> Path:
        return (self.folder / given).resolve() if given else default.resolve()

    def path(self, relative: str) -> Path:
        """A file named in scenario.yml, resolved from the scenario's folder."""
        return (self.folder / relative).resolve()

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.spec.name

    def brief_path(self, lang: str) -> Path:
        """The brief in `lang` (fr or en)."""
        return self.folder / self.spec.brief[lang]

    def stages(self) -> list[Stage]:
        """The scenario's stages; a scenario without stages has one, `main`."""
        if self.spec.stages:
            return list(self.spec.stages)
        return [Stage(name=MAIN_STAGE, initially_failing=self.spec.initially_failing,
                      solution=str(self.solution))]

    def stage(self, name: str) -> Stage:
        """The stage called `name`."""
        for stage in self.stages():
            if stage.name == name:
                return stage
        raise NotFoundError(f"scenario {self.name} has no stage '{name}'",
                            f"stages: {', '.join(s.name for s in self.stages())}")

    def fault(self, name: str) -> Fault:
        """The fault called `name`."""
        if name not in self.spec.faults:
            close = difflib.get_close_matches(name, self.spec.faults, n=1)
            raise NotFoundError(f"scenario {self.name} has no fault '{name}' (faults: "
                                f"{', '.join(self.spec.faults) or 'none'})",
                                f"did you mean '{close[0]}'?" if close else None)
        return self.spec.faults[name]

    def values(self, seed: str | None) -> dict[str, Any]:
        """The variant values for `seed` (a candidate id): the defaults without one.

        The same scenario and seed always give the same values, so the grader derives
        exactly what the candidate was given.
        """
        if seed is None:
            return {name: p.default for name, p in self.spec.parameters.items()}
        digest = hashlib.sha256(f"{self.name}\0{seed}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        return {name: self.spec.parameters[name].draw(rng) for name in sorted(self.spec.parameters)}


SCENARIOS_ENV = "LABCTL_SCENARIOS"  # colon-separated folders of scenarios, searched after --scenarios
_option_roots: list[Path] = []  # --scenarios DIR, in the order given


def set_option_roots(folders: list[Path]) -> None:
    """Folders given with `labctl --scenarios DIR` (searched first)."""
    _option_roots[:] = [Path(f) for f in folders]


def search_path() -> list[tuple[Path, str]]:
    """Where scenarios are looked for by name, in order, each with where it comes from:
    --scenarios DIR (each, in order), LABCTL_SCENARIOS (each, in order), ./scenarios, then
    the scenarios installed with labctl. A folder listed twice counts once (its first place)."""
    given = [(root, "--scenarios") for root in _option_roots]
    given += [(Path(part), SCENARIOS_ENV) for part in os.environ.get(SCENARIOS_ENV, "").split(":") if part]
    given += [(Path.cwd() / "scenarios", "current directory"),
              (Path(__file__).resolve().parent.parent / "scenarios", "installed with labctl")]
    seen: dict[Path, tuple[Path, str]] = {}
    for root, origin in given:
        seen.setdefault(root.resolve(), (root, origin))
    return list(seen.values())


def search_roots() -> list[Path]:
    """The folders of the search path that exist (an unreadable one is skipped, not an error)."""
    return [root for root, _ in search_path() if os.path.isdir(root)]


def _search_path_text() -> str:
    return "; ".join(f"{root} ({origin}{'' if os.path.isdir(root) else ', not a folder'})"
                     for root, origin in search_path())


def scenario_folders(name: str) -> list[Path]:
    """Every folder of the search path holding a scenario called `name`, in search order."""
    return [root / name for root in search_roots() if (root / name / "scenario.yml").is_file()]


def scenario_names() -> list[str]:
    """Every scenario that can be found by name."""
    return sorted({p.parent.name for root in search_roots() for p in root.glob("*/scenario.yml")})


def scenario_using(file: Path) -> Scenario | None:
    """The scenario whose topology or grading spec `file` is (their templates need its values)."""
    target = file.resolve()
    for name in scenario_names():
        with contextlib.suppress(LabctlError):  # another scenario's problems are not this file's
            scenario = load_scenario(name)
            if target in (scenario.topology.resolve(), scenario.grading.resolve()):
                return scenario
    return None


def is_scenario(reference: str) -> bool:
    """True if `reference` is a scenario folder or a scenario name."""
    path = Path(reference)
    try:
        return (path / "scenario.yml").is_file() or path.name == "scenario.yml" or reference in scenario_names()
    except OSError as exc:  # a folder on the way that this user may not enter
        raise refuse(reference, 1, f"cannot read: {exc.strerror or exc}",
                     "make it readable by the user running labctl (labs need root: sudo labctl ...)") from None


def load_scenario(reference: str) -> Scenario:
    """A scenario by folder, scenario.yml path, or name."""
    path = Path(reference)
    if path.name == "scenario.yml":
        path = path.parent
    if not (path / "scenario.yml").is_file():
        found = scenario_folders(reference) if reference and "/" not in reference else []
        if not found:
            close = difflib.get_close_matches(reference, scenario_names(), n=1)
            where = f"give its folder, or add the folder holding it with --scenarios DIR or {SCENARIOS_ENV}=DIR"
            raise NotFoundError(f"no scenario '{reference}' (known: {', '.join(scenario_names()) or 'none'}; "
                                f"searched: {_search_path_text()})",
                                f"did you mean '{close[0]}'? Or {where}" if close else where[0].upper() + where[1:])
        if len(found) > 1:
            raise InvalidInputError([Problem(str(folder / "scenario.yml"), 1,
                                             f"scenario name '{reference}' is found {len(found)} times in the "
                                             f"search path ({', '.join(str(f) for f in found)}): labctl will not "
                                             "guess which one you mean",
                                             "name it by its folder (labctl up path/to/" + reference + "), or "
                                             "rename one of them (its folder and `name:`)") for folder in found])
        path = found[0]
    file = path / "scenario.yml"
    data, lines, problems = read_yaml(file)
    if problems:
        raise InvalidInputError(problems)
    spec = validate_model(ScenarioFile, data, lines)
    scenario = Scenario(path.resolve(), spec, lines)
    missing = [lines.problem((key,), f"{key}: file not found: {target}",
                             "fix the path (relative to the scenario folder)")
               for key, target in (("topology", scenario.topology), ("grading", scenario.grading))
               if not target.is_file()]
    if missing:
        raise InvalidInputError(missing)
    return scenario
