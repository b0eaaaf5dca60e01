"""Reading the YAML files users write, keeping line numbers for error messages.

`read_yaml` returns the data and a `Lines` index from a path inside the data (a tuple of
keys and list indexes, as pydantic reports them) to the line it came from, so every
problem can be reported as file:line. `problems_from_validation` turns a pydantic
ValidationError into `Problem`s with a hint ("did you mean ...") for unknown keys.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from labctl import sourcelimits
from labctl.errors import InvalidInputError, Problem

PathKey = tuple[str | int, ...]
# libyaml's parser when PyYAML has it (about ten times faster than the pure-Python one);
# both give every node its line.
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
M = TypeVar("M", bound=BaseModel)


class Lines:
    """Line numbers (1-based) of every key and item of a YAML document."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._lines: dict[PathKey, int] = {}

    def record(self, path: PathKey, line: int) -> None:
        """Remember where `path` starts."""
        self._lines.setdefault(path, line)

    def line(self, path: Sequence[str | int]) -> int:
        """The line of `path`, or of its nearest recorded parent."""
        key = tuple(path)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return self._lines.get((), 1)

    def problem(self, path: Sequence[str | int], message: str, hint: str | None = None) -> Problem:
        """A Problem located at `path`."""
        return Problem(self.file, self.line(path), message, hint)


def _to_python(node: yaml.Node, path: PathKey, lines: Lines, problems: list[Problem],
               budget: sourcelimits.Budget | None = None) -> Any:
    budget = budget or sourcelimits.Budget(lines.file)
    budget.spend(node)
    lines.record(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, lines.file)
            if key in result:
                problems.append(
                    Problem(lines.file, key_node.start_mark.line + 1, f"duplicate key '{key}'",
                            "each key may appear once; merge the two entries")
                )
            lines.record((*path, key), key_node.start_mark.line + 1)
            result[key] = _to_python(value_node, (*path, key), lines, problems, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, problems, budget) for i, item in enumerate(node.value)]
    return _scalar(node, lines.file)


def _scalar(node: yaml.Node, file: str = "<yaml>") -> Any:
    """A scalar's Python value (strings as written, other tags resolved by PyYAML); a value
    PyYAML cannot build (merge key, 5000-digit integer, 2020-99-99) is an InvalidInputError."""
    if node.tag == _STR_TAG:
        return node.value
    if not isinstance(node, yaml.ScalarNode):
        raise sourcelimits.refuse(file, node.start_mark.line + 1, "a key must be a plain value, not a list or mapping")
    return sourcelimits.construct_scalar(node, file)


@lru_cache(maxsize=32)
def _template(text: str) -> Any:
    """`text` compiled once (a room grades many labs of one spec; compiling is most of a render)."""
    import jinja2

    environment = sourcelimits.sandboxed_environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                                     autoescape=False)
    return environment.from_string(text)


def template_line(exc: BaseException) -> int:
    """The line of the template being rendered when `exc` was raised (1 when unknown).

    Jinja rewrites tracebacks so that frames of template code carry the template's own
    line numbers (file name `<template>` for templates compiled from a string); the
    innermost such frame is where the template failed.
    """
    import traceback

    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if frame.filename == "<template>" and frame.lineno]
    return lines[-1] if lines else 1


def render_template(path: Path, text: str, variables: dict[str, Any]) -> str:
    """Fill a file's `{{ name }}` placeholders with a scenario's variant values.

    Placeholders stay on their line, so line numbers in later errors remain right; an error
    while rendering is reported at the template's own line.
    """
    import jinja2
    from jinja2.exceptions import SecurityError

    try:
        return sourcelimits.bounded_render(_template(text), variables)
    except SecurityError as exc:
        raise InvalidInputError([Problem(str(path), template_line(exc), f"template error: {exc}",
                                         "placeholders name the scenario's parameters: {{ name }}")]) from None
    except (OverflowError, MemoryError, RecursionError, ArithmeticError, TypeError, ValueError) as exc:
        raise InvalidInputError([Problem(str(path), template_line(exc),
                                         f"template error: {type(exc).__name__}: {exc}"[:300],
                                         "placeholders name the scenario's parameters: {{ name }}")]) from None
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidInputError([Problem(str(path), exc.lineno or 1, f"template error: {exc.message}",
                                         "placeholders look like {{ name }}")]) from None
    except jinja2.UndefinedError as exc:
        known = ", ".join(sorted(variables)) or "none"
        raise InvalidInputError([Problem(str(path), template_line(exc), f"template error: {exc.message}",
                                         f"the scenario's parameters are: {known}")]) from None


def read_yaml(path: Path, variables: dict[str, Any] | None = None) -> tuple[Any, Lines, list[Problem]]:
    """Parse `path` (a template filled with `variables` when given); return its data,
    the line index, and problems found while reading."""
    lines = Lines(str(path))
    text = sourcelimits.read_text(path)
    if variables is not None and "{{" in text:
        text = render_template(path, text, variables)
    sourcelimits.check_yaml_shape(text, str(path), LOADER)
    try:
        node = yaml.compose(text, Loader=LOADER)
    except yaml.YAMLError:
        refused = _pure_python_error(text)  # the same message whether PyYAML has libyaml or not
        mark = getattr(refused, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise InvalidInputError([Problem(
            str(path), line, f"not valid YAML: {getattr(refused, 'problem', refused)}",
            "check indentation and quoting around this line",
        )]) from None
    if node is None:
        raise InvalidInputError([Problem(str(path), 1, "the file is empty")])
    problems: list[Problem] = []
    data = _to_python(node, (), lines, problems)
    return data, lines, problems


def _pure_python_error(text: str) -> yaml.YAMLError:
    """The error PyYAML's own parser reports for `text` (its messages say what it found)."""
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        return exc
    except RecursionError:
        return yaml.YAMLError(f"nested more than {sourcelimits.MAX_DEPTH} levels deep")
    return yaml.YAMLError("libyaml refused it")  # both parsers refuse the same documents


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int], data: Any) -> list[str]:
    """Field names allowed at the mapping that holds loc[-1] (for 'did you mean')."""
    current: Any = model
    value = data
    for part in loc[:-1]:
        value = _child(value, part)
        current = _field_model(current, part, value)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _child(value: Any, part: str | int) -> Any:
    """value[part] if value is a mapping or list holding it, else None."""
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return None


def _field_model(current: Any, part: str | int, value: Any) -> Any:
    """Walk one step down a model's annotations (models, dicts of models, lists of models)."""
    import typing

    if isinstance(current, type) and issubclass(current, BaseModel):
        field = current.model_fields.get(str(part))
        if field is None:
            # a tagged union member (pydantic puts the tag in the location) or unknown
            return None
        return field.annotation
    origin = typing.get_origin(current)
    args = typing.get_args(current)
    if origin in (list, dict) and args:
        return args[-1]
    if origin in (typing.Union, __import__("types").UnionType):
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return _field_model(arg, part, value)
    return None


def _type_hint(error: Any) -> str | None:
    """A hint for errors whose message says what is expected but not how to write it."""
    kind, value = error["type"], error.get("input")
    if kind == "ip_v4_network":
        try:
            network = ipaddress.IPv4Network(str(value), strict=False)
        except ValueError:
            return f"got {value!r}; write a network as address/prefix, e.g. 10.1.0.0/24"
        return f"{value!r} has host bits set; write the network address, {network}"
    if kind in ("ip_v4_interface", "ip_v4_address"):
        return f"got {value!r}; write an IPv4 address (four numbers 0-255), e.g. 10.1.0.1/24"
    return None


def _clean_message(error: Any) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _is_validator_step(part: str | int) -> bool:
    """Location parts pydantic adds for union members and validators, not data keys."""
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _data_location(raw: Sequence[str | int], data: Any) -> list[str | int]:
    """pydantic's location without the steps it adds for unions and validators; a key of
    the data itself is kept even if it looks like one (`s[cenario`)."""
    loc: list[str | int] = []
    value = data
    for part in raw:
        if (isinstance(value, dict) and part in value) or (isinstance(value, list) and isinstance(part, int)):
            loc.append(part)
            value = _child(value, part)
        elif not _is_validator_step(part):
            loc.append(part)
            value = None
    return loc


def problems_from_validation(
    exc: ValidationError, lines: Lines, model: type[BaseModel], data: Any,
    names: Iterable[str] = (),
) -> list[Problem]:
    """Turn pydantic's errors into Problems at the right lines, with hints."""
    problems: list[Problem] = []
    for error in exc.errors():
        loc = _data_location(error["loc"], data)
        where = ".".join(str(p) for p in loc) or "(top level)"
        kind = error["type"]
        if kind == "extra_forbidden" and loc:
            key = str(loc[-1])
            allowed = _allowed_keys(model, loc, data) or list(names)
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else (
                f"allowed keys here: {', '.join(sorted(allowed))}" if allowed else None)
            problems.append(lines.problem(loc, f"unknown key '{key}' at {where}", hint))
        elif kind == "missing" and loc:
            problems.append(lines.problem(loc[:-1], f"missing required key '{loc[-1]}' at {where}",
                                          f"add '{loc[-1]}:' here"))
        elif kind in ("enum", "literal_error", "union_tag_invalid"):
            ctx = error.get("ctx") or {}
            expected = ctx.get("expected") or ctx.get("expected_tags")
            problems.append(lines.problem(loc, f"{where}: {_clean_message(error)}",
                                          f"use one of {expected}" if expected else None))
        else:
            problems.append(lines.problem(loc, f"{where}: {_clean_message(error)}",
                                          _type_hint(error)))
    return problems


def validate_model(model: type[M], data: Any, lines: Lines) -> M:
    """Validate data against model; raise InvalidInputError with every problem at once."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(problems_from_validation(exc, lines, model, data)) from None
