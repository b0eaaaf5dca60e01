"""The languages labctl prints in: French (the exam's), English, or both, French first.

Every command that prints for people (grade, brief, status, scenario verify, session report)
takes `--lang fr|en|both`; each text it prints exists in both languages and goes through
`say`, so no French survives in `en` and `both` shows the two.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["fr", "en", "both"]
LANGS: tuple[str, ...] = ("fr", "en", "both")


def say(fr: str, en: str, lang: str, sep: str = " / ") -> str:
    """`fr` or `en` as chosen; with both, French then English joined by `sep`."""
    return {"fr": fr, "en": en}.get(lang, f"{fr}{sep}{en}")


def lines(fr: list[str], en: list[str], lang: str) -> list[str]:
    """Whole lines in the chosen language; with both, the French lines then the English ones."""
    return {"fr": fr, "en": en}.get(lang, [*fr, *en])


def languages(lang: str) -> list[str]:
    """The single languages `lang` stands for: ["fr"], ["en"] or ["fr", "en"]."""
    return ["fr", "en"] if lang == "both" else [lang]
