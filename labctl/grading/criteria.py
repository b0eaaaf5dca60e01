"""The certification's evaluation criteria, read from labctl's copy of the referentiel."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from labctl.errors import NotFoundError
from labctl.sourcefile import LOADER


@dataclass(frozen=True)
class Criterion:
    """One evaluation criterion: its id (A1.3-c2), French text (the official wording), activity,
    block, lab reach, and our English translation.

    `lab` is live, partial or paper: how far a live lab can evidence the criterion.
    """

    id: str
    text: str
    activity: str
    block: str
    lab: str
    text_en: str = ""


@cache
def all_criteria() -> dict[str, Criterion]:
    """Every criterion of the referentiel by id, in the referentiel's order (read once)."""
    text = files("labctl").joinpath("data/referentiel.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.load(text, Loader=LOADER)
    found: dict[str, Criterion] = {}
    for block in data["blocks"]:
        for activity in block["activities"]:
            for item in activity.get("criteria", []):
                found[item["id"]] = Criterion(
                    id=item["id"], text=" ".join(item["text"].split()),
                    activity=activity["id"], block=block["id"], lab=item["lab"],
                    text_en=" ".join(str(item.get("en", "")).split()),
                )
    return found


def closest_criteria(criterion_id: str, n: int = 3) -> list[str]:
    """Up to `n` existing criterion ids that look like `criterion_id`."""
    return difflib.get_close_matches(criterion_id, list(all_criteria()), n=n, cutoff=0.5)


def criterion(criterion_id: str) -> Criterion:
    """The criterion `criterion_id`; NotFoundError (with the closest ids) if there is none."""
    try:
        return all_criteria()[criterion_id]
    except KeyError:
        close = closest_criteria(criterion_id)
        hint = f"did you mean {', '.join(close)}?" if close else "ids look like A1.3-c2"
        raise NotFoundError(f"no criterion '{criterion_id}' in the referentiel", hint) from None
