"""Scenarios: a topology, a starting state, a solution and a grading spec, with a brief.

A scenario is a folder `scenarios/<name>/` with `scenario.yml`; the files it names are
paths relative to that folder (by default the project's conventional places:
`topologies/<name>.yml`, `playbooks/<name>/setup.yml` and `solution.yml`,
`grading/<name>.yml`).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from labctl.errors import InvalidInputError, NotFoundError
from labctl.sourcefile import read_yaml, validate_model


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


class ScenarioFile(BaseModel):
    """The content of scenario.yml."""

    model_config = ConfigDict(extra="forbid")
    name: str
    title: Text
    criteria: list[str] = Field(description="Référentiel criteria the scenario evidences.")
    topology: str | None = None
    setup: str | None = None
    solution: str | None = None
    grading: str | None = None
    brief: dict[str, str] = Field(default_factory=lambda: {"fr": "brief.fr.md", "en": "brief.en.md"})
    image: ImageSpec = Field(default_factory=ImageSpec)
    initially_failing: list[str] = Field(
        default_factory=list, description="Check ids that must FAIL in the starting state.")


class Scenario:
    """A loaded scenario with its files resolved to absolute paths."""

    def __init__(self, folder: Path, spec: ScenarioFile) -> None:
        self.folder = folder
        self.spec = spec
        root = folder.parent.parent
        name = spec.name
        self.topology = self._path(spec.topology, root / "topologies" / f"{name}.yml")
        self.setup = self._path(spec.setup, root / "playbooks" / name / "setup.yml")
        self.solution = self._path(spec.solution, root / "playbooks" / name / "solution.yml")
        self.grading = self._path(spec.grading, root / "grading" / f"{name}.yml")

    def _path(self, given: str | None, default: Path) -> Path:
        return (self.folder / given).resolve() if given else default.resolve()

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.spec.name

    def brief_path(self, lang: str) -> Path:
        """The brief in `lang` (fr or en)."""
        return self.folder / self.spec.brief[lang]


def search_roots() -> list[Path]:
    """Where scenarios are looked for: ./scenarios, then the project's own."""
    roots = [Path.cwd() / "scenarios", Path(__file__).resolve().parent.parent / "scenarios"]
    return [r for r in dict.fromkeys(roots) if os.path.isdir(r)]  # False, not an error, if unreadable


def scenario_names() -> list[str]:
    """Every scenario that can be found by name."""
    return sorted({p.parent.name for root in search_roots() for p in root.glob("*/scenario.yml")})


def is_scenario(reference: str) -> bool:
    """True if `reference` is a scenario folder or a scenario name."""
    path = Path(reference)
    return (path / "scenario.yml").is_file() or path.name == "scenario.yml" or reference in scenario_names()


def load_scenario(reference: str) -> Scenario:
    """A scenario by folder, scenario.yml path, or name."""
    path = Path(reference)
    if path.name == "scenario.yml":
        path = path.parent
    if not (path / "scenario.yml").is_file():
        for root in search_roots():
            if (root / reference / "scenario.yml").is_file():
                path = root / reference
                break
        else:
            close = difflib.get_close_matches(reference, scenario_names(), n=1)
            raise NotFoundError(f"no scenario '{reference}' (known: {', '.join(scenario_names()) or 'none'})",
                                f"did you mean '{close[0]}'?" if close else None)
    file = path / "scenario.yml"
    data, lines, problems = read_yaml(file)
    if problems:
        raise InvalidInputError(problems)
    spec = validate_model(ScenarioFile, data, lines)
    scenario = Scenario(path.resolve(), spec)
    missing = [lines.problem((key,), f"{key}: file not found: {target}",
                             "fix the path (relative to the scenario folder)")
               for key, target in (("topology", scenario.topology), ("grading", scenario.grading))
               if not target.is_file()]
    if missing:
        raise InvalidInputError(missing)
    return scenario
