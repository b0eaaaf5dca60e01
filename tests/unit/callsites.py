"""Every program the controller code and the tests run on the machine, found in their source.

An `ast` walk of the Python files: the argv lists given to subprocess (run, Popen,
check_output, ...), os.exec*, netns.run and the project's own run helpers; lists returned
or named as an argv; names given to shutil.which. Wrappers are looked through (`ip netns
exec NS prog`, `sudo`, `runuser -u U --`, `timeout N`, `env`, `sh -c "prog ..."`), so the
program they start is counted too. `sys.executable` counts as python3.

Programs run *inside* nodes (strings given to an SSH session, argv handed to the node
enter helper) are not the machine's business and are not collected.
"""

from __future__ import annotations

import ast
import functools
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("labctl", "tests", "bench", "scripts")

# functions whose first argument is an argv run on the machine
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "execvp", "execv", "execvpe",
           "create_subprocess_exec", "run_argv", "_run", "_host", "host_run"}
# argv built for something that runs inside a node, not on the machine
INSIDE_NODE = {"node_exec_argv"}
# variable / function names that hold an argv for the machine
ARGV_NAMES = ("argv", "cmd", "command")
# programs that start the rest of their argv in another root filesystem (the node image)
IN_ANOTHER_ROOT = {"chroot", "systemd-nspawn"}
# wrappers: how many fixed words (after the program) precede the wrapped program
WRAPPERS = {"sudo": 0, "env": 0, "nice": 0, "setsid": 0, "chrt": 0, "flock": 1}


@dataclass(frozen=True)
class CallSite:
    """A program named at a place in the source."""

    program: str
    file: str
    line: int

    def render(self) -> str:
        return f"{self.file}:{self.line}: {self.program}"


def _words(node: ast.expr, names: dict[str, ast.expr] | None = None) -> list[str | None]:
    """The argv words of a list/tuple literal: strings, or None where not a constant.

    A variable assigned a string (or f-string) earlier in the same function counts as that text."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return []
    words: list[str | None] = []
    for item in node.elts:
        if isinstance(item, ast.Name) and names and item.id in names:
            words.append(_text(names[item.id]))
        elif isinstance(item, ast.Constant) and isinstance(item.value, str):
            words.append(item.value)
        elif isinstance(item, ast.Attribute) and item.attr == "executable":  # sys.executable
            words.append("python3")
        elif isinstance(item, ast.Starred):
            inner = item.value
            named = inner.id if isinstance(inner, ast.Name) else inner.attr if isinstance(inner, ast.Attribute) else ""
            words.append("labctl" if "labctl" in named.lower() else "*")  # [*LABCTL, "up", ...]
        else:
            words.append(None)
    return words


def programs_of(words: list[str | None]) -> list[str]:
    """The programs an argv starts: its first word and what wrappers inside it start."""
    while words and words[0] == "*":  # [*where, "nft", ...]: the prefix is counted where it is built
        words = words[1:]
    if not words or words[0] is None:
        return []
    first = words[0]
    name = first.rsplit("/", 1)[-1]
    if not name or name.startswith("-") or "{" in name:
        return []
    found = [name]
    rest = words[1:]
    if name in IN_ANOTHER_ROOT:
        return found  # what it starts is the image's (or a node's), not the machine's
    if name == "ip" and rest[:2] == ["netns", "exec"] and len(rest) > 3:
        found += programs_of(rest[3:])
    elif name == "runuser" and "--" in rest:
        found += programs_of(rest[rest.index("--") + 1:])
    elif name == "timeout" and len(rest) > 1:
        found += programs_of(rest[1:])
    elif name in WRAPPERS:
        start = 0
        while start < len(rest) and str(rest[start]).startswith("-"):
            start += 1
        found += programs_of(rest[start + WRAPPERS[name]:])
    elif name == "unshare":
        start = 0
        while start < len(rest) and (str(rest[start]).startswith("-") or
                                     (start and rest[start - 1] in ("--propagation", "--setgroups"))):
            start += 1
        found += programs_of(rest[start:])
    elif name in ("sh", "bash"):
        flags = [i for i, w in enumerate(rest) if w and w.startswith("-") and w.endswith("c")]
        if flags and flags[0] + 1 < len(rest):
            found += shell_programs(rest[flags[0] + 1])
    return found


def shell_programs(script: str | None) -> list[str]:
    """First word of each simple command of a shell line (`a x; b y | c && d`)."""
    if not script:
        return []
    found: list[str] = []
    for part in script.replace("&&", ";").replace("||", ";").replace("|", ";").split(";"):
        try:
            words = shlex.split(part.strip(), comments=True)
        except ValueError:
            continue
        while words and "=" in words[0] and not words[0].startswith("="):  # VAR=value prog
            words = words[1:]
        if words and words[0] not in ("exec", "!", "{", "}", "(", ")", "then", "do", "done", "fi"):
            found += programs_of(list(words))
    return found


def _text(node: ast.expr | None) -> str | None:
    """A string constant, or an f-string's text up to its first placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value.rsplit(" ", 1)[0] if " " in head.value else None
    return None


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


@dataclass
class Helpers:
    """The project's own functions that hand one of their parameters to a runner."""

    argv: dict[str, int]   # function name -> index of the parameter that is an argv
    shell: dict[str, int]  # function name -> index of the parameter that is a shell line


def find_helpers(trees: list[ast.Module]) -> Helpers:
    """Functions whose parameter reaches a runner as an argv, or as `sh -c PARAM`."""
    helpers = Helpers(argv={}, shell={})
    for tree in trees:
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) or func.name in INSIDE_NODE:
                continue
            params = [a.arg for a in func.args.args if a.arg not in ("self", "cls")]
            for call in ast.walk(func):
                if not (isinstance(call, ast.Call) and _callee(call) in RUNNERS and call.args):
                    continue
                first = call.args[0]
                if isinstance(first, ast.Call) and first.args:  # list(argv)
                    first = first.args[0]
                if isinstance(first, ast.Name) and first.id in params:
                    helpers.argv[func.name] = params.index(first.id)
                elif isinstance(first, (ast.List, ast.Tuple)):
                    names = [e.id if isinstance(e, ast.Name) else e.value.id
                             if isinstance(e, ast.Starred) and isinstance(e.value, ast.Name) else None
                             for e in first.elts]
                    consts = [_text(e) for e in first.elts]
                    if "-c" in consts and consts.index("-c") + 1 < len(names) \
                            and names[consts.index("-c") + 1] in params:
                        helpers.shell[func.name] = params.index(names[consts.index("-c") + 1] or "")
                    elif names and names[0] in params and isinstance(first.elts[0], ast.Starred):
                        helpers.argv[func.name] = params.index(names[0] or "")
    for name in RUNNERS:  # too common a name to follow: `session.run("...")` runs on a node
        helpers.argv.pop(name, None)
        helpers.shell.pop(name, None)
    return helpers


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str, helpers: Helpers) -> None:
        self.file = file
        self.helpers = helpers
        self.sites: list[CallSite] = []
        self.function: list[str] = []
        self.names: list[dict[str, ast.expr]] = [{}]

    def add(self, words: list[str | None], line: int) -> None:
        self.sites += [CallSite(p, self.file, line) for p in programs_of(words)]

    def words(self, node: ast.expr) -> list[str | None]:
        return _words(node, self.names[-1])

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.function.append(node.name)
        self.names.append({t.id: a.value for a in ast.walk(node) if isinstance(a, ast.Assign)
                           for t in a.targets if isinstance(t, ast.Name)})
        self.generic_visit(node)
        self.names.pop()
        self.function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee(node)
        if name in INSIDE_NODE:
            return  # neither the argv nor anything below it runs on the machine
        if name == "which" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self.add([node.args[0].value], node.lineno)
        elif name in self.helpers.shell and len(node.args) > self.helpers.shell[name]:
            script = _text(node.args[self.helpers.shell[name]])
            self.sites += [CallSite(p, self.file, node.lineno) for p in shell_programs(script)]
        elif name in self.helpers.argv and len(node.args) > self.helpers.argv[name]:
            self.add(self.words(node.args[self.helpers.argv[name]]), node.lineno)
        elif name in RUNNERS and node.args:
            self.add(self.words(node.args[0]), node.lineno)
            if _is_shell_true(node):
                self.sites += [CallSite(p, self.file, node.lineno) for p in shell_programs(_text(node.args[0]))]
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if any(n.lower().endswith(ARGV_NAMES) for n in names):
            self.add(self.words(node.value), node.lineno)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and self.function and self.function[-1].lower().endswith(ARGV_NAMES) \
                and not any(f in INSIDE_NODE for f in self.function):
            self.add(self.words(node.value), node.lineno)
        self.generic_visit(node)


def _is_shell_true(call: ast.Call) -> bool:
    return any(k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)


def scan_source(text: str, file: str = "<text>") -> list[CallSite]:
    """The programs named in Python source text (for the scanner's own tests)."""
    tree = ast.parse(text)
    scanner = _Scanner(file, find_helpers([tree]))
    scanner.visit(tree)
    return scanner.sites


@functools.cache
def scan(root: Path = ROOT) -> tuple[CallSite, ...]:
    """Every program named by the controller code, the tests, the benches and scripts."""
    files: list[tuple[str, ast.Module]] = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            if ".venv" in path.parts or "data" in path.relative_to(root).parts[:2]:
                continue  # labctl/data and tests/data hold programs run inside nodes
            files.append((str(path.relative_to(root)), ast.parse(path.read_text(encoding="utf-8"), str(path))))
    helpers = find_helpers([tree for _, tree in files])
    sites: list[CallSite] = []
    for file, tree in files:
        scanner = _Scanner(file, helpers)
        scanner.visit(tree)
        sites += scanner.sites
    return tuple(sites)


PROFILES = ("light", "sessions", "libvirt", "dev")  # scripts/bootstrap.sh's arrays; the options add the others


def bootstrap_profiles(root: Path = ROOT) -> dict[str, set[str]]:
    """The Debian packages of each profile of scripts/bootstrap.sh (its `light=(...)`, `sessions=(...)` arrays)."""
    text = (root / "scripts" / "bootstrap.sh").read_text()
    found: dict[str, set[str]] = {}
    for profile in PROFILES:
        start = text.index(f"\n{profile}=(") + len(f"\n{profile}=(")
        body = text[start:text.index(")", start)]
        found[profile] = {word for line in body.splitlines() for word in line.split("#", 1)[0].split()}
    return found


def bootstrap_packages(root: Path = ROOT) -> set[str]:
    """Every Debian package scripts/bootstrap.sh installs with some option."""
    return set().union(*bootstrap_profiles(root).values())


def profile_of(file: str) -> str:
    """The bootstrap profile whose code path runs what `file` runs (the light one: the local provider)."""
    if file.startswith(("tests/", "bench/", "scripts/")):
        return "dev"
    if file.startswith("labctl/session/"):
        return "sessions"
    if file.startswith("labctl/providers/libvirt") or file == "labctl/vmimage.py":
        return "libvirt"
    return "light"


def installed_with(profile: str, root: Path = ROOT) -> set[str]:
    """What `scripts/bootstrap.sh [--PROFILE]` installs: the light profile, plus that one (dev: all)."""
    profiles = bootstrap_profiles(root)
    if profile == "dev":
        return set().union(*profiles.values())
    return profiles["light"] | profiles[profile]
