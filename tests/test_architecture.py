"""How the package's modules are joined, read from their module-level imports (imports inside a
function are deliberate lazy loads and not counted): no import circles, and the serving path
(the node and what it imports) does not load the research code (training, synthesis, validation,
benchmarks)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ichnode"
RESEARCH = ("ichnode.training", "ichnode.synth", "ichnode.validate", "ichnode.bench")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    body = ast.parse(path.read_text()).body
    for node in body + [n for stmt in body if isinstance(stmt, ast.If) for n in stmt.body]:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ichnode"):
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ichnode"))
    return {m for m in found if m in modules}


GRAPH = {name: _imports(path, _modules()) - {name} for name, path in _modules().items()}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(GRAPH[module])
    return seen


def test_no_import_circles():
    circles = sorted({tuple(sorted(m for m in _reachable(start) if start in _reachable(m)))
                      for start in GRAPH if any(start in _reachable(d) for d in GRAPH[start])})
    assert circles == []


def test_the_node_does_not_load_research_code():
    loaded = _reachable("ichnode.node") | _reachable("ichnode.cli")
    assert sorted(m for m in loaded if m.startswith(RESEARCH)) == []
