"""Limits on the files users write, so a hostile or broken file gets exit 2 and a message, fast.

A topology, grading spec, scenario or roster can come from anyone (a trainer's colleague,
a downloaded exam). Whatever it holds, labctl must answer `file:line: what is wrong`
(exit 2) within a second or so, never an internal error, never a minute of CPU or
gigabytes of memory. This module holds every such limit:

- files: at most `MAX_FILE_BYTES`, UTF-8 (a bad byte is named with its line and column);
- YAML: nesting at most `MAX_DEPTH` deep, at most `MAX_ALIASES` aliases, at most
  `MAX_NODES` values once aliases are expanded (the "billion laughs"), no merge keys `<<`,
  integers of at most `MAX_INT_DIGITS` digits, scalars PyYAML can construct;
- numbers in models (`Seconds`, `ExitCode`, `Port`, ...): bounded, and a boolean is not a
  number (`timeout: true` is refused, not read as 1 s);
- regular expressions: at most `MAX_REGEX` characters, repetition counts Python accepts;
- templates: rendered in Jinja's sandbox, with string/list repetition and the output bounded;
- CSV (rosters): strict quoting, no NUL or control characters, bounded size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator, Field

from labctl.errors import InvalidInputError, Problem

MAX_FILE_BYTES = 1 << 20     # 1 MiB: the largest shipped file is ~20 KiB
MAX_DEPTH = 64               # nesting of mappings and lists
MAX_ALIASES = 100            # `*name` references in one file
MAX_NODES = 200_000          # values in the document once aliases are expanded
MAX_INT_DIGITS = 30          # digits of an integer written in a file
MAX_REGEX = 1000             # characters of a regular expression
MAX_RENDERED = 4 * MAX_FILE_BYTES  # characters a template may produce
MAX_REPEAT = 100_000         # length of a string or list built by `*` in a template


def refuse(file: str, line: int, message: str, hint: str | None = None) -> InvalidInputError:
    """The error for one problem at file:line."""
    return InvalidInputError([Problem(file, line, message, hint)])


# ---- bytes and text -------------------------------------------------------------------------
def decode(raw: bytes, file: str, *, bom: bool = False) -> str:
    """`raw` as UTF-8 text; a bad byte is reported with its line and column."""
    if len(raw) > MAX_FILE_BYTES:
        raise refuse(file, 1, f"file too large: {len(raw)} bytes (at most {MAX_FILE_BYTES})",
                     "split it, or check that this is the file you meant")
    try:
        return raw.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        before = raw[:exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise refuse(file, line, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column}",
                     "save the file as UTF-8") from None


def read_text(path: Any, file: str | None = None, *, bom: bool = False) -> str:
    """Read a user's file: size-limited, UTF-8, errors as InvalidInputError (exit 2)."""
    name = file or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise refuse(name, 1, f"file too large: {size} bytes (at most {MAX_FILE_BYTES})",
                         "split it, or check that this is the file you meant")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise refuse(name, 1, "file not found", "check the path (relative to the current directory)") from None
    except IsADirectoryError:
        raise refuse(name, 1, "is a folder, not a file") from None
    except OSError as exc:
        raise refuse(name, 1, f"cannot read the file: {exc.strerror or exc}") from None
    return decode(raw, name, bom=bom)


def control_characters(text: str, file: str, allowed: str = "\t\n\r") -> list[Problem]:
    """Every line holding a NUL or another control character (other than `allowed`)."""
    problems = []
    for number, line in enumerate(text.split("\n"), start=1):
        bad = next((c for c in line if (ord(c) < 32 or 127 <= ord(c) < 160) and c not in allowed), None)
        if bad is not None:
            problems.append(Problem(file, number, f"control character U+{ord(bad):04X} at column "
                                    f"{line.index(bad) + 1}", "remove it (a NUL or control character "
                                    "is never part of a name or value)"))
    return problems


# ---- YAML -----------------------------------------------------------------------------------
def check_yaml_shape(text: str, file: str, loader: Any) -> None:
    """Refuse documents nested too deep or with too many aliases, from the parser's event
    stream (flat: no recursion, no construction), before anything builds nodes."""
    depth = aliases = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise refuse(file, _line(event), f"nested more than {MAX_DEPTH} levels deep",
                                 "flatten the structure")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise refuse(file, _line(event), f"more than {MAX_ALIASES} aliases (*name)",
                                 "write the values out; aliases are for a few shared blocks")
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's own limit (1000), before ours in its look-ahead
            mark = getattr(exc, "problem_mark", None)
            raise refuse(file, mark.line + 1 if mark is not None else 1,
                         f"nested more than {MAX_DEPTH} levels deep", "flatten the structure") from None
        return  # not valid YAML: the composer reports it with its own message


def _line(event: Any) -> int:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else 1


class Budget:
    """Counts the values built from a document (aliases expanded) and refuses past MAX_NODES."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.used = 0

    def spend(self, node: yaml.Node) -> None:
        self.used += 1
        if self.used > MAX_NODES:
            raise refuse(self.file, node.start_mark.line + 1,
                         f"more than {MAX_NODES} values once aliases are expanded",
                         "an alias of an alias of ... multiplies the document; write it out")


MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"


def scalar_problem(node: yaml.Node) -> str | None:
    """Why a scalar cannot be read, before PyYAML tries (and fails with a Python error)."""
    if node.tag == MERGE_TAG:
        return "merge keys (<<) are not supported: write the keys out"
    if node.tag == _INT_TAG and sum(c.isdigit() for c in str(node.value)) > MAX_INT_DIGITS:
        return f"integer with more than {MAX_INT_DIGITS} digits"
    return None


def construct_scalar(node: yaml.Node, file: str) -> Any:
    """The Python value of a non-string scalar; InvalidInputError if it has none."""
    problem = scalar_problem(node)
    if problem is None:
        try:
            return yaml.constructor.SafeConstructor().construct_object(node)
        except Exception as exc:  # an explicit tag on a bad value (!!timestamp x) fails in many ways
            problem = f"cannot read the value {str(node.value)[:40]!r}: {getattr(exc, 'problem', None) or exc}"
    raise refuse(file, node.start_mark.line + 1, problem, "quote it to keep it as text")


# ---- numbers in models ----------------------------------------------------------------------
def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


NotBool = BeforeValidator(_not_bool)
Seconds = Annotated[float, NotBool, Field(ge=0, le=3600, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, NotBool, Field(gt=0, le=600, allow_inf_nan=False)]
ExitCode = Annotated[int, NotBool, Field(ge=0, le=255)]
Port = Annotated[int, NotBool, Field(ge=1, le=65535)]
HttpStatus = Annotated[int, NotBool, Field(ge=100, le=599)]
SmallCount = Annotated[int, NotBool, Field(ge=1, le=10)]
Weight = Annotated[int, NotBool, Field(ge=1, le=100)]
BoundedInt = Annotated[int, NotBool, Field(ge=-10**9, le=10**9)]
TokenLength = Annotated[int, NotBool, Field(ge=1, le=256)]
SampleSize = Annotated[int, NotBool, Field(ge=1, le=1000)]


# ---- regular expressions --------------------------------------------------------------------
def compile_regex(value: str) -> re.Pattern[str]:
    """`value` compiled; ValueError (a message for the file's author) if it cannot be."""
    if len(value) > MAX_REGEX:
        raise ValueError(f"regular expression longer than {MAX_REGEX} characters")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    except (OverflowError, RecursionError, MemoryError) as exc:
        raise ValueError(f"invalid regular expression: {type(exc).__name__}: {exc}") from None


# ---- templates ------------------------------------------------------------------------------
def sandboxed_environment(**options: Any) -> Any:
    """A Jinja environment in the sandbox (no attribute tricks, bounded range()), whose `*`
    and `**` refuse results beyond MAX_REPEAT (`{{ 'a' * 10**10 }}` is an error, not 10 GB)."""
    from jinja2.sandbox import SandboxedEnvironment

    class Bounded(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**":
                if isinstance(right, (int, float)) and abs(right) > 64:
                    raise OverflowError(f"exponent {right} too large in a template")
                return left ** right
            sizes = [len(x) for x in (left, right) if isinstance(x, (str, list, tuple))]
            counts = [x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)]
            if sizes and counts and sizes[0] * max(counts[0], 0) > MAX_REPEAT:
                raise OverflowError(f"a template repeats a value into more than {MAX_REPEAT} items")
            return left * right

    return Bounded(**options)


def bounded_render(template: Any, variables: dict[str, Any]) -> str:
    """Render a compiled template; OverflowError past MAX_RENDERED characters."""
    pieces: list[str] = []
    size = 0
    for piece in template.generate(**variables):
        size += len(piece)
        if size > MAX_RENDERED:
            raise OverflowError(f"the template produces more than {MAX_RENDERED} characters")
        pieces.append(piece)
    return "".join(pieces)


# ---- CSV ------------------------------------------------------------------------------------
def csv_rows(text: str, file: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of a CSV text with the line each starts on; strict quoting; every problem of
    quoting, NUL and control characters raised at once as InvalidInputError."""
    import csv
    import io

    problems = control_characters(text, file)
    if problems:
        raise InvalidInputError(problems)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            if any("\n" in cell or "\r" in cell for cell in row):
                raise refuse(file, start, "a quoted field runs over several lines (a quote left open?)",
                             'close every " on the line it opens; a name holds no line break')
            rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise refuse(file, start, f"bad CSV: {exc} (a quote left open?)",
                     'a field in quotes must end with a quote: "Dupont, Jean"') from None
    yield from rows
