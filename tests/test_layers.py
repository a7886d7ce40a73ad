"""The import structure stays as designed (docs/ARCHITECTURE.md, "Layers").

`make test` runs the import-linter contract (pyproject.toml) before pytest; these tests keep
the contract honest and cover what it cannot say: every module of ``payflow/`` is in a
layer, no two modules import each other (directly or round a circle), and an import inside a
function says why it is there.
"""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
APPS = ("payflow", "ledger", "audit", "outbox")


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = [
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    return layers


def test_the_import_linter_contract_holds():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_every_module_of_the_composition_root_is_in_a_layer():
    listed = {
        module.strip()
        for layer in contract_layers()
        for module in layer.replace("|", ":").split(":")
    }
    present = {
        f"payflow.{path.stem if path.is_file() else path.name}"
        for path in (ROOT / "payflow").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert present - listed == set(), "add these modules to a layer in pyproject.toml"


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
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
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_strongly_connected_finds_a_circle_and_nothing_else():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(edges) == [["a", "b", "c"]]


def test_no_modules_import_each_other_round_a_circle():
    graph = grimp.build_graph(*APPS)
    modules = set(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}
    assert strongly_connected(edges) == []


def local_imports_without_a_reason(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for statement in ast.walk(node):
            if not isinstance(statement, ast.Import | ast.ImportFrom):
                continue
            # The reason: a comment on the line, or in the comment block right above the
            # import (or above the run of imports it belongs to).
            number = statement.lineno - 1
            if "#" in lines[number]:
                continue
            above = number - 1
            while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
                above -= 1
            if above >= 0 and lines[above].strip().startswith("#"):
                continue
            found.append(f"{path.relative_to(ROOT)}:{statement.lineno}: {lines[number].strip()}")
    return found


def test_an_import_inside_a_function_says_why():
    sources = [
        path
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.parts
    ]
    unexplained = [line for path in sources for line in local_imports_without_a_reason(path)]
    assert unexplained == []
