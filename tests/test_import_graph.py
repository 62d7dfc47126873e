"""The package's modules import each other without cycles (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hwssl"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _reexports(modules: dict[str, Path]) -> dict[str, dict[str, str]]:
    """{package: {name: submodule}} for names a package's ``__init__`` re-exports, eagerly
    (``from pkg.sub import name``) or lazily (a ``_LAZY = {"name": "pkg.sub"}`` table)."""
    out: dict[str, dict[str, str]] = {}
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        table = out.setdefault(name, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(name + "."):
                table.update({a.asname or a.name: node.module for a in node.names})
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                    and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)):
                for k, v in zip(node.value.keys, node.value.values):
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant):
                        table[str(k.value)] = str(v.value)
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: intra-package modules it imports}, read with ``ast`` (every ``import`` statement,
    at any depth). ``from pkg import name`` counts as importing ``pkg.name`` when that is a module,
    and as importing the submodule a package re-exports ``name`` from (eagerly or lazily). A
    package's ``__init__`` importing its own submodules is not an edge (that is how packages
    re-export), and neither is a submodule importing its own package's ``__init__``."""
    modules = {_module_name(p): p for p in package.rglob("*.py")}
    exports = _reexports(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = name if is_pkg else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules
                           else exports.get(base, {}).get(a.name, base) for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if not t or t == name:
                    continue
                if name.startswith(t + ".") or t.startswith(name + "."):
                    continue  # a package and its own submodules
                graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_reports_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "hwssl.latency.record" in graph["hwssl.evaluate"]      # imported inside a function
    assert "hwssl.config.space" in graph["hwssl.search"] or "hwssl.config.space" in graph.get("hwssl.search.options", set())


def test_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_config_only_parses() -> None:
    """``hwssl.config`` reads and validates files: no driver, socket or PATH probe, no deploy import."""
    probes = {"ctypes", "socket", "shutil", "subprocess"}
    graph = import_graph()
    for path in (PACKAGE / "config").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not names & probes, f"{path.name} imports {sorted(names & probes)}"
        module = _module_name(path)
        assert not {m for m in graph[module] if m.startswith("hwssl.deploy")}, module
