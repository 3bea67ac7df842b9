"""The layering of DESIGN.md, checked: the import-linter contracts in pyproject.toml (layers,
blueprints independent of each other, no portal module but the composition root importing a
blueprint, no circle inside a package) and, over the whole code base, no import circle between
modules at all, whether the imports sit at the top of a module or inside a function."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _blueprint_registration(importer: str, imported: str) -> bool:
    """A blueprint package and its own parts import each other by design (Flask's idiom): the
    parts take ``bp`` from the package, and the package imports the parts so their routes exist."""
    a, b = importer.split("."), imported.split(".")
    return a[0] == b[0] == "blueprints" and len(a) > 1 and len(b) > 1 and a[1] == b[1] and min(len(a), len(b)) == 2


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    edges = {m: sorted(n for n in graph.find_modules_directly_imported_by(m) if not _blueprint_registration(m, n))
             for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("portal", "blueprints", include_external_packages=False)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    graph = grimp.build_graph("portal", "blueprints", include_external_packages=False)
    graph.add_import(importer="portal.db.base", imported="portal.money.wallets.ledger")
    assert any("portal.db.base" in cycle and "portal.money.wallets.ledger" in cycle for cycle in _cycles(graph))
