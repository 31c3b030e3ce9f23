"""The layers of docs/architecture.md, held: every module of src/corral belongs to one, imports
only what its layer may (imports inside functions and for type checking count too), and no
modules import each other, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "corral"

# module (or package) -> layer; the longest name that prefixes a module places it
PLACES = {
    "corral": "faces",
    "corral.cli": "faces",
    "corral.report": "faces",
    "corral.simulate": "faces",
    "corral.sweeps": "faces",
    "corral.scenarios": "models",
    "corral.capacity": "models",
    "corral.mechanism": "mechanisms",
    "corral.sim": "mechanisms",
    "corral.live": "mechanisms",
    "corral.scheduling": "policies",
    "corral.capacity.broker": "policies",
    "corral.capacity.demand": "policies",
    "corral.state": "state",
    "corral.plan": "planning",
    "corral.reliability": "reliability",
    "corral.synth": "domain",
    "corral.errors": "domain",
    "corral.config": "domain",
    "corral.hardware": "domain",
    "corral.fleet": "domain",
    "corral.windows": "domain",
    "corral.quota": "domain",
    "corral.workload": "domain",
    "corral.job_columns": "domain",
    "corral.traces": "domain",
    "corral.data": "domain",
}
MAY_IMPORT = {
    "faces": {"faces", "models", "mechanisms", "policies", "state", "planning", "reliability", "domain"},
    "models": {"models", "mechanisms", "policies", "state", "reliability", "domain"},
    "mechanisms": {"mechanisms", "policies", "state", "reliability", "domain"},
    "policies": {"policies", "state", "domain"},
    "state": {"state", "domain"},
    "planning": {"planning", "reliability", "domain"},
    "reliability": {"reliability", "domain"},
    "domain": {"domain"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Each module's imports of corral's modules (a name imported from a package counts as
    the package, unless it is a module of it)."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                wanted = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in wanted:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def place(module: str) -> str:
    name = module
    while name not in PLACES:
        name = name.rpartition(".")[0]
    return PLACES[name]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_modules_import_each_other():
    assert circles(imports()) == []


def test_the_circle_finder_finds_a_circle_through_a_third_module():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_every_import_goes_down_the_layers():
    wrong = [
        f"{module} ({place(module)}) imports {target} ({place(target)})"
        for module, targets in sorted(imports().items())
        for target in sorted(targets)
        if place(target) not in MAY_IMPORT[place(module)]
    ]
    assert wrong == []


def test_every_package_is_placed_in_the_architecture():
    text = (SRC.parent.parent / "docs" / "architecture.md").read_text()
    packages = sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    top_modules = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    missing = [f"{name}/" for name in packages if f"{name}/" not in text]
    missing += [name for name in top_modules if name not in text]
    assert missing == []


def test_no_test_module_imports_another():
    """What tests share lives in conftest.py or tests/support/, never in another test module."""
    tests = SRC.parent.parent / "tests"
    wrong = []
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_"):
                wrong.append(f"{path.name} imports {node.module}")
    assert wrong == []
