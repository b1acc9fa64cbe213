"""The project's import graph, from the source (nothing is imported): every edge between its own
modules and the import circles (strongly connected components).

    python tools/import_graph.py            # circles and counts
    python tools/import_graph.py --edges    # every edge, one per line
    python tools/import_graph.py --dot      # Graphviz

Function-level (lazy) imports count: a circle through them is still two modules that need each
other. ``training/`` and ``export/`` are installed as ``abrl_deploy.training``/``.export``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"abrl_deploy": ROOT / "abrl_deploy", "abrl_deploy.training": ROOT / "training",
           "abrl_deploy.export": ROOT / "export"}  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def edges(found: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file)."""
    graph: dict[str, set[str]] = {m: set() for m in found}
    for module, path in found.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in found else base
                           for a in node.names]  # fmt: skip
            for target in targets:
                while target and target not in found:  # a.b.c where only a.b is ours
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


# The layers of docs/architecture.md and what each may import (its own layer included). The core
# is what a production service imports: it imports no other layer. Lazy imports count too.
LAYERS = ("cli", "optimize", "reproduce", "export", "training", "bench", "serve")  # else core
ALLOWED = {
    "core": {"core"},
    "serve": {"core"},
    "training": {"core"},
    # lazily: a run without model.onnx is exported on the fly, a run's test images are read
    "bench": {"core", "export"},
    "export": {"core", "training"},
    "optimize": {"core", "bench", "training", "export"},
    "reproduce": {"core", "bench", "training", "export"},
    "cli": {"core", "serve", "training", "bench", "export", "optimize", "reproduce"},
}


# Named exceptions, each with its reason
EXCEPTIONS = {
    # the torch runner loads a run directory with training's loader, inside open(): a service
    # that runs ONNX files never reaches it
    ("abrl_deploy.runtime.pytorch", "abrl_deploy.training.checkpoint"),
}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every edge that goes against ALLOWED, as 'a (layer) -> b (layer)'."""
    bad = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            la, lb = layer(a), layer(b)
            if la != lb and lb not in ALLOWED[la] and (a, b) not in EXCEPTIONS:
                bad.append(f"{a} ({la}) -> {b} ({lb})")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edges", action="store_true", help="print every edge")
    p.add_argument("--dot", action="store_true", help="print Graphviz dot")
    args = p.parse_args()
    found = modules()
    graph = edges(found)
    if args.dot:
        print("digraph imports {")
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return
    if args.edges:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"{a} -> {b}")
    found_circles = circles(graph)
    print(f"{len(found)} modules, {sum(map(len, graph.values()))} import edges, "
          f"{len(found_circles)} circle(s)")  # fmt: skip
    for c in found_circles:
        print("circle: " + " <-> ".join(c))
    against = layer_violations(graph)
    print(f"{len(against)} import(s) against the layers")
    for v in against:
        print("against the layers: " + v)
    sys.exit(1 if found_circles or against else 0)


if __name__ == "__main__":
    main()
