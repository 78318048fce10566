"""The package's layering (DESIGN.md, Layout): no import circles, the core imports nothing above it,
and the gradcheck and train packages keep their modules short.

Imports are read from the source (every ``import``, function-level ones included), so a circle
broken only by a late import still counts as a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxcnn"
CORE = {"jaxcnn", "jaxcnn.convolution", "jaxcnn._windows", "jaxcnn.activations", "jaxcnn.pooling",
        "jaxcnn.dense", "jaxcnn.losses", "jaxcnn.reference", "jaxcnn._checks", "jaxcnn._specs",
        "jaxcnn._lowering", "jaxcnn._fold", "jaxcnn._choice", "jaxcnn._border", "jaxcnn._eq22",
        "jaxcnn._io"}
ABOVE_CORE = ("jaxcnn.models", "jaxcnn.train", "jaxcnn.datasets", "jaxcnn.gradcheck", "jaxcnn.registry")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The jaxcnn modules `name` imports (``from jaxcnn import models`` is the module)."""
    tree = ast.parse(MODULES[name].read_text())
    is_package = MODULES[name].name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{a.name}" for a in node.names} & set(MODULES)
            found |= submodules
            if len(submodules) < len(node.names):  # some names come from `base` itself
                found.add(base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def test_no_import_circles():
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(name):], name]))
        if name in done:
            return
        for dep in sorted(GRAPH[name]):
            visit(dep, [*path, name])
        done.add(name)

    for name in MODULES:
        visit(name, [])


def test_the_core_imports_nothing_above_it():
    assert CORE <= set(MODULES)
    for name in CORE:
        above = sorted(d for d in GRAPH[name] if d.startswith(ABOVE_CORE))
        assert not above, f"{name} imports {above}"


def test_the_oracle_shares_no_computation_with_the_rules():
    """`jaxcnn.reference` reaches only the shared validation (and what that imports): never the
    rules or their lowerings, which a bug there would then corrupt on both sides of a check."""
    reached, todo = set(), ["jaxcnn.reference"]
    while todo:
        for dep in GRAPH[todo.pop()] - reached:
            reached.add(dep)
            todo.append(dep)
    assert reached <= {"jaxcnn._checks", "jaxcnn._specs"}, sorted(reached)


def test_gradcheck_imports_models_normally():
    assert "jaxcnn.models" in GRAPH["jaxcnn.gradcheck.table"]
    assert "importlib" not in MODULES["jaxcnn.gradcheck.table"].read_text()


@pytest.mark.parametrize("package", ["gradcheck", "train"])
def test_package_modules_stay_short(package):
    lengths = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / package).glob("*.py")}
    assert len(lengths) >= 3 and max(lengths.values()) <= 600, lengths
