"""The import layering a contributor can rely on: each layer imports only the layers below it, and no two modules
import each other, not even lazily or for type hints (a cycle breaks as soon as someone reorders an import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "artextract"
# lower number = lower layer; a module may import its own layer and the layers below
LAYERS = {"errors": 0, "analysis": 0, "core.version": 0, "core": 1, "config": 1, "config_files": 1, "layout": 2,
          "data": 2, "models": 2, "engine": 3, "report": 3, "stages": 4, "predictor": 4, "similar": 4, "serve": 5,
          "cli": 5, "__main__": 5, "": 6}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    for prefix in (".".join(module.split(".")[:2]), module.split(".")[0]):
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"artextract.{module} is in no layer: add it to LAYERS")


def _is_module(name: str) -> bool:
    path = SOURCE.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(tree: ast.Module, load_time_only: bool) -> list[tuple[str, int]]:
    """(imported artextract module without the prefix, line) of every import, or of those run at load time."""
    nodes: list[ast.AST] = []
    if load_time_only:
        for node in tree.body:
            typing_only = (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                           and node.test.id == "TYPE_CHECKING")
            if not typing_only:
                nodes.extend(ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else ())
    else:
        nodes = list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "artextract":
            inner = node.module.removeprefix("artextract").lstrip(".")
            # `from artextract.engine import features` imports the module engine.features (when it is one)
            found += [(f"{inner}.{alias.name}".lstrip(".") if _is_module(f"{inner}.{alias.name}".lstrip("."))
                       else inner, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name.removeprefix("artextract").lstrip("."), node.lineno) for a in node.names
                      if a.name.split(".")[0] == "artextract"]
    return found


def _modules() -> dict[str, ast.Module]:
    return {_module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in SOURCE.rglob("*.py")}


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"artextract.{name} (layer {_layer(name)}) imports artextract.{target} (layer {_layer(target)}) at "
              f"line {line}"
              for name, tree in _modules().items() for target, line in _imports(tree, load_time_only=False)
              if _layer(target) > _layer(name)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("load_time_only", [True, False], ids=["at load time", "counting lazy and typing imports"])
def test_no_import_cycle(load_time_only):
    modules = _modules()
    graph = {name: {t for t, _ in _imports(tree, load_time_only=load_time_only) if t in modules and t != name}
             for name, tree in modules.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target):], target] if target in path else [name, target]
                pytest.fail("import cycle: " + " -> ".join(f"artextract.{m}" for m in cycle))
            if target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_every_module_is_small_enough_to_read():
    """One responsibility per module: none over 300 lines (split it by job when it grows past that)."""
    long = {path.relative_to(SOURCE).as_posix(): count for path in SOURCE.rglob("*.py")
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > 300}
    assert not long, long
