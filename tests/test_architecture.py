"""The import graph runs one way (docs/architecture.md): no module imports a module of a
higher layer, and no two modules import each other, directly or in a circle. Imports
inside functions count too: they were how cycles used to hide."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import qponder

ROOT = Path(qponder.__file__).resolve().parent

# top-level part of the package -> layer (docs/architecture.md keeps the same table)
LAYERS = {
    "errors": 1,
    "answer_format": 1,
    "parsing": 1,
    "prompts": 1,
    "reasoning": 1,
    "data": 2,
    "rewards": 2,
    "runfiles": 2,
    "progress": 2,
    "endpoints": 2,
    "client": 2,
    "config": 3,
    "models": 4,
    "inference": 5,
    "evaluation": 6,
    "train": 7,
    "distill": 7,
    "demo": 8,
    "serve": 8,
    "cli": 9,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ``qponder...`` module imported anywhere in the file (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("qponder")}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("qponder")
        ):
            folder = ROOT.parent / node.module.replace(".", "/")
            found.add(node.module)
            found |= {
                f"{node.module}.{a.name}"
                for a in node.names
                if (folder / a.name).is_dir() or (folder / f"{a.name}.py").is_file()
            }
    return found


def _graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    names = {_module_name(p) for p in files}
    graph = {}
    for path in files:
        me = _module_name(path)
        graph[me] = {m for m in _imports(path) if m in names and m != me}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # the package's face: qponder/__init__.py
        return 0
    return LAYERS[parts[1]]


def test_every_part_of_the_package_has_a_layer():
    code = {p.stem for p in ROOT.glob("*.py") if not p.stem.startswith("_")}
    code |= {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert code <= set(LAYERS), sorted(code - set(LAYERS))


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{me} (layer {_layer(me)}) imports {other} (layer {_layer(other)})"
        for me, others in _graph().items()
        for other in others
        if _layer(me) and _layer(other) > _layer(me)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            # a package importing its own submodules (its face) is not a cycle
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize(("low", "high"), [("inference", "evaluation"), ("models", "distill")])
def test_the_arrows_that_used_to_run_up_are_gone(low, high):
    graph = _graph()
    bad = [m for m, others in graph.items() if m.startswith(f"qponder.{low}") for o in others
           if o.startswith(f"qponder.{high}")]  # fmt: skip
    assert not bad


# --------------------------------------------------------------------------- the records

ARCHITECTURE = ROOT.parent / "docs" / "architecture.md"
_DOTTED = re.compile(r"(?<![\w.])qponder(?:\.\w+)+")


def _module_map() -> str:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    start = text.index("## Module map")
    return text[start : text.index("\n## ", start + 1)]


def test_every_module_is_in_the_module_map():
    """docs/architecture.md's module map names every module by its path (package faces
    that only re-export excepted): a module nobody can find on the map is a module nobody
    knows the concern of."""
    text = _module_map()
    missing = [
        rel
        for path in sorted(ROOT.rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py")
        and (rel := path.relative_to(ROOT).as_posix()) not in text
    ]
    assert not missing, f"not in docs/architecture.md's module map: {missing}"


def _docstrings(tree: ast.AST) -> list[str]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [d for n in ast.walk(tree) if isinstance(n, kinds) and (d := ast.get_docstring(n))]


def _exists(dotted: str) -> bool:
    """Whether ``dotted`` names a module, or an attribute reached from one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_dotted_name_a_docstring_mentions_exists():
    """A docstring that points to ``qponder.x.y`` points to something real (three did not:
    a deleted module, a renamed function, a function that never existed)."""
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        for doc in _docstrings(ast.parse(path.read_text(encoding="utf-8"))):
            for name in sorted(set(_DOTTED.findall(doc))):
                if not _exists(name):
                    wrong.append(f"{path.relative_to(ROOT)}: {name}")
    assert not wrong, "\n".join(wrong)
