"""The candidate's brief: the scenario's Markdown filled with the candidate's values, plus a
topology diagram drawn from the topology itself (Graphviz), as Markdown or HTML.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

from labctl import sourcelimits
from labctl.errors import PlatformError
from labctl.lang import languages, say
from labctl.scenario import Scenario
from labctl.sourcefile import render_template
from labctl.topology import load_topology
from labctl.topology.model import NodeKind, Topology

SHAPES = {NodeKind.router: 'shape=box3d, style=filled, fillcolor="#dbe9f6"',
          NodeKind.host: 'shape=box, style="rounded,filled", fillcolor="#eef5e9"',
          NodeKind.switch: 'shape=ellipse, style=filled, fillcolor="#f6f0db"'}
HEADINGS = {"fr": "Schéma du réseau", "en": "Network diagram"}


def _quote(text: str) -> str:
    """A DOT string; backslashes are kept so that `\\n` stays a line break in labels."""
    return '"' + text.replace('"', "'") + '"'


def diagram_dot(topology: Topology) -> str:
    """The topology as a Graphviz graph: nodes by kind, links labelled with interface and address."""
    lines = [f"graph {_quote(topology.name)} {{", "  graph [rankdir=TB, fontname=Helvetica, nodesep=0.9, ranksep=1.0];",
             "  node [fontname=Helvetica, fontsize=11]; edge [fontname=Helvetica, fontsize=8, labeldistance=2.2];"]
    for name, node in topology.nodes.items():
        shown = [str(s) for s in (node.subnet, node.subnet6) if s] if node.kind is NodeKind.switch else \
            [f"lo {a}" for a in (node.loopback, node.loopback6) if a]
        label = "\\n".join([name, *shown])
        lines.append(f"  {_quote(name)} [label={_quote(label)}, {SHAPES[node.kind]}];")
    for link in topology.links:
        a, b = link.endpoints
        ends = ["\\n".join([f"{e.interface} {address}" for address in e.shown_addresses()] or [e.interface or ""])
                for e in (a, b)]
        mtu = f", label={_quote(f'MTU {link.mtu}')}" if link.mtu else ""
        lines.append(f"  {_quote(a.node)} -- {_quote(b.node)} [taillabel={_quote(ends[0])}, "
                     f"headlabel={_quote(ends[1])}{mtu}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def diagram_svg(topology: Topology) -> str:
    """The diagram drawn as SVG by Graphviz's `dot`."""
    if shutil.which("dot") is None:
        raise PlatformError("Graphviz's `dot` is needed to draw the topology diagram", "apt-get install graphviz")
    proc = subprocess.run(["dot", "-Tsvg"], input=diagram_dot(topology), capture_output=True, text=True)
    if proc.returncode != 0:
        raise PlatformError(f"dot failed: {proc.stderr.strip()}")
    svg = proc.stdout
    return svg[svg.index("<svg"):]  # drop the XML prologue and doctype for inline use


def brief_markdown(scenario: Scenario, lang: str, seed: str | None) -> tuple[str, Topology]:
    """The brief's Markdown with the candidate's values, and the candidate's topology."""
    values = scenario.values(seed)
    path = scenario.brief_path(lang)
    text = render_template(path, sourcelimits.read_text(path), values)  # bounded, UTF-8 named by position
    return text, load_topology(scenario.topology, values)


def _briefs(scenario: Scenario, lang: str, seed: str | None) -> tuple[list[tuple[str, str]], Topology, str]:
    """The brief in each language `lang` stands for (both: French, then English), the candidate's
    topology, and the diagram's heading in `lang`."""
    texts = [(one, brief_markdown(scenario, one, seed)[0]) for one in languages(lang)]
    return texts, load_topology(scenario.topology, scenario.values(seed)), say(HEADINGS["fr"], HEADINGS["en"], lang)


def render_markdown(scenario: Scenario, lang: str, seed: str | None, diagram_file: Path | None) -> str:
    """Markdown (both: the French brief, a rule, the English one); the diagram is an SVG file beside
    it when a path is given, else its DOT source."""
    texts, topology, heading = _briefs(scenario, lang, seed)
    if diagram_file is not None:
        diagram_file.write_text(diagram_svg(topology), encoding="utf-8")
        figure = f"![{heading}]({diagram_file.name})"
    else:
        figure = f"```dot\n{diagram_dot(topology)}```"
    text = "\n\n---\n\n".join(body.rstrip() for _, body in texts)
    return f"{text}\n\n## {heading}\n\n{figure}\n"


def render_html(scenario: Scenario, lang: str, seed: str | None) -> str:
    """A standalone, printable HTML page with the diagram inline."""
    import markdown

    texts, topology, heading = _briefs(scenario, lang, seed)
    body = "\n<hr>\n".join(f'<section lang="{one}">\n{markdown.markdown(text, extensions=["tables", "fenced_code"])}'
                           f"\n</section>" for one, text in texts)
    title = html.escape(say(scenario.spec.title.fr, scenario.spec.title.en, lang))
    return f"""<!doctype html>
<html lang="{languages(lang)[0]}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
         line-height: 1.5; color: #1a1a1a; }}
  table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #888; padding: .25rem .5rem; }}
  pre, code {{ background: #f3f3f3; }} pre {{ padding: .5rem; overflow-x: auto; }}
  figure svg {{ max-width: 100%; height: auto; }}
  @media print {{ body {{ margin: 0; }} }}
</style>
</head>
<body>
<main>
{body}
<figure>
<figcaption><h2>{heading}</h2></figcaption>
{diagram_svg(topology)}
</figure>
</main>
</body>
</html>
"""
