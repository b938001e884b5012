"""The house rules of the package, read from its source (ARCHITECTURE.md describes them).

* No import cycle anywhere in ``fastcnn``, counting the imports inside functions (a lazy import
  is still a dependency); imports under ``if TYPE_CHECKING:`` are annotations, not dependencies.
* One door: only ``fastcnn._native`` imports the compiled modules ``_cpu`` / ``_cuda``.
* One direction: ``cli`` -> ``training`` / ``saving`` / ``model`` -> ``layers`` -> ``ops`` ->
  ``_native``; nothing below a layer imports it, and the reference imports only NumPy and the
  pure-Python argument helpers.
* The benchmark harnesses share ``bench.common`` and never reach each other.
* Files stay small (one concept, one home): no module over about 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastcnn

PACKAGE_DIR = Path(fastcnn.__file__).parent
COMPILED = {"fastcnn._cpu", "fastcnn._cuda"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """A .py module, a compiled extension (x.cpython-*.so) or a package under the package dir."""
    path = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists() or any(
        p.name.startswith(path.name + ".") for p in path.parent.glob(f"{path.name}.*"))


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING",
                                                                          "typing.TYPE_CHECKING"):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def _graph() -> dict[str, set[str]]:
    """Module of fastcnn -> the fastcnn modules it imports (anywhere in its source)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        mod = _module_name(path)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for a in node.names:  # `from . import x`: the module x where there is one
                sub = f"{base}.{a.name}"
                deps.add(sub if _is_module(sub) else base)
        graph[mod] = {d for d in deps if d == "fastcnn" or d.startswith("fastcnn.")} - {mod}
    return graph


GRAPH = _graph()


def _reaches(src: str, dst: str) -> bool:
    seen, todo = {src}, [src]
    while todo:
        for dep in GRAPH.get(todo.pop(), ()):
            if dep == dst:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def test_the_graph_sees_the_package() -> None:
    for mod in ("fastcnn", "fastcnn.ops", "fastcnn.model", "fastcnn.training", "fastcnn.saving",
                "fastcnn.layers.conv", "fastcnn.bench.cpu", "fastcnn.bench.cuda"):
        assert mod in GRAPH, sorted(GRAPH)
    assert "fastcnn._cpu" in GRAPH["fastcnn._native"]
    assert "fastcnn.ops" in GRAPH["fastcnn.layers.conv"]


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(GRAPH.get(mod, ())):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*path, dep])}"
            if dep in GRAPH and dep not in state:
                visit(dep, [*path, dep])
        state[mod] = 2

    for mod in sorted(GRAPH):
        if mod not in state:
            visit(mod, [mod])


def test_only_the_door_imports_the_compiled_modules() -> None:
    importers = {mod for mod, deps in GRAPH.items() if deps & COMPILED}
    assert importers == {"fastcnn._native"}, importers


@pytest.mark.parametrize(("lower", "upper"), [
    ("fastcnn.ops", "fastcnn.layers"), ("fastcnn.ops", "fastcnn.model"),
    ("fastcnn.layers", "fastcnn.model"), ("fastcnn.layers", "fastcnn.training"),
    ("fastcnn.model", "fastcnn.cli"), ("fastcnn.training", "fastcnn.model"),
    ("fastcnn.saving", "fastcnn.model"), ("fastcnn._native", "fastcnn.ops"),
    ("fastcnn._geometry", "fastcnn.ops"), ("fastcnn.reference", "fastcnn.ops"),
])
def test_dependencies_run_one_way(lower: str, upper: str) -> None:
    assert not _reaches(lower, upper), f"{lower} reaches {upper}"


def test_the_reference_needs_only_numpy_and_the_argument_helpers() -> None:
    for mod, deps in GRAPH.items():
        if mod == "fastcnn.reference" or mod.startswith("fastcnn.reference."):
            assert {d for d in deps if not d.startswith("fastcnn.reference")} <= {
                "fastcnn._args", "fastcnn._geometry"}, (mod, deps)
    assert GRAPH["fastcnn._geometry"] <= {"fastcnn._args"}


def test_the_benchmark_harnesses_share_common_and_stay_apart() -> None:
    cpu, cuda, common = "fastcnn.bench.cpu", "fastcnn.bench.cuda", "fastcnn.bench.common"
    assert common in GRAPH[cpu] and common in GRAPH[cuda]
    assert not _reaches(cpu, cuda) and not _reaches(cuda, cpu)


def test_modules_are_small() -> None:
    sizes = {p.relative_to(PACKAGE_DIR).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE_DIR.rglob("*.py")}
    big = {k: v for k, v in sizes.items() if v > 650}
    assert not big, f"modules over ~600 lines: {big}"
