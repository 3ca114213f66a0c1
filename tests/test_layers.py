"""The house plan holds (docs/DESIGN.md, "The layers"): every import in mvae_cli points down the layers,
no modules import each other in a circle, and no function-level import outside ``cli/`` hides a
dependency, unless :data:`FUNCTION_LEVEL` names it with its reason.

Imports are read with :mod:`ast`, not by importing: module-level and function-level ones, relative
ones resolved, ``importlib.import_module("mvae_cli...")`` counted as an import where it is called. An
import under ``if TYPE_CHECKING:`` counts for the layers (a lower layer naming a higher one's type
still knows it) but not for circles: it never runs.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mvae_cli"
DESIGN = ROOT / "docs" / "DESIGN.md"

# The layers, lowest first: the part of a module's name after ``mvae_cli.`` -> its layer. A module may
# import from its own layer and those below. docs/DESIGN.md shows this table (checked below).
LAYERS = {
    "__init__": 0, "errors": 0, "atomic": 0, "streams": 0, "eval_config": 0, "tables": 0, "accel": 0,
    "data": 1,
    "model": 2,
    "objectives": 3,
    "zoo": 4,
    "recipe": 5,
    "engine": 6,
    "evaluate": 7,
    "paper": 8,
    "sweep": 9,
    "figures": 10,
    "cli": 11, "__main__": 11,
}

# Function-level imports of mvae_cli modules outside cli/ that stay, with the reason: an optional
# dependency behind the import, or start-up time. Never to dodge a cycle: fix the cycle instead.
FUNCTION_LEVEL: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import of a package module by another: ``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int
    in_function: bool
    typing_only: bool = False  # under `if TYPE_CHECKING:`

    def where(self) -> str:
        return (f"line {self.line}{', in a function' if self.in_function else ''}"
                f"{', for type checking only' if self.typing_only else ''}")


def find_modules(package: Path) -> dict[str, Path]:
    """``{dotted name: file}`` of every module of ``package`` (a package's ``__init__`` is the package)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _nearest(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` loads: itself, else the closest package above it (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in modules else None


class _Reader(ast.NodeVisitor):
    """Collects the imports of one module, noting those inside a function."""

    def __init__(self, name: str, path: Path, modules: dict[str, Path]):
        self.name, self.modules, self.depth, self.typing, self.found = name, modules, 0, False, []
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        self.package = package.split(".")

    def _add(self, target: str, node: ast.AST) -> None:
        module = _nearest(target, self.modules)
        found = Import(self.name, module, node.lineno, self.depth > 0, self.typing)
        if module is not None and module != self.name and found not in self.found:  # `from m import a, b`: m once
            self.found.append(found)

    def _function(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)) != "TYPE_CHECKING":
            return self.generic_visit(node)
        self.visit(test)
        was, self.typing = self.typing, True
        for statement in node.body:
            self.visit(statement)
        self.typing = was
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: from the module's package, one level up per extra dot
            above = self.package[: len(self.package) - (node.level - 1)]
            base = ".".join(above + ([base] if base else []))
        for alias in node.names:
            member = f"{base}.{alias.name}"
            self._add(member if member in self.modules else base, node)  # a submodule, or a name of base

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if called in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self._add(node.args[0].value, node)
        self.generic_visit(node)


def read_imports(package: Path) -> tuple[dict[str, Path], list[Import]]:
    """Every module of ``package`` and every import between them."""
    modules = find_modules(package)
    found = []
    for name, path in modules.items():
        reader = _Reader(name, path, modules)
        reader.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found += reader.found
    return modules, found


def part_of(module: str) -> str:
    """The key of :data:`LAYERS` a module belongs to: ``mvae_cli.engine.loop`` -> ``engine``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def unplaced(modules: dict[str, Path], layers: dict[str, int] = LAYERS) -> list[str]:
    return sorted(m for m in modules if part_of(m) not in layers)


def upward(imports: list[Import], layers: dict[str, int] = LAYERS) -> list[str]:
    """``a -> b (layer X above layer Y; line N)`` for every import of a higher layer by a lower one."""
    found = []
    for i in imports:
        low, high = part_of(i.source), part_of(i.target)
        if low in layers and high in layers and layers[high] > layers[low]:
            found.append(f"{i.source} -> {i.target} (layer {layers[high]} {high} above layer {layers[low]} {low}; "
                         f"{i.where()})")
    return sorted(found)


def cycles(imports: list[Import]) -> list[str]:
    """One circle ``a -> b -> ... -> a`` per group of modules that import each other (function-level
    imports count too: they only hide the circle; those for type checking only do not: they never run)."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        if not i.typing_only:
            graph.setdefault(i.source, set()).add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    found = []
    for group in groups:  # the shortest circle through the group's first module, by breadth-first search
        members, start = set(group), min(group)
        paths, seen, circle = [[start]], {start}, None
        while paths and circle is None:
            longer = []
            for path in paths:
                for w in sorted(graph.get(path[-1], ()) & members):
                    if w == start:
                        circle = path + [start]
                        break
                    if w not in seen:
                        seen.add(w)
                        longer.append(path + [w])
                if circle:
                    break
            paths = longer
        found.append(" -> ".join(circle) + (f" (and {', '.join(sorted(members - set(circle)))})"
                                            if members - set(circle) else ""))
    return sorted(found)


def in_cli(module: str) -> bool:
    return part_of(module) == "cli"


def hidden(imports: list[Import], allowed: dict[tuple[str, str], str] = FUNCTION_LEVEL) -> list[str]:
    """Function-level imports outside ``cli/`` that :data:`FUNCTION_LEVEL` does not list."""
    return sorted(f"{i.source} -> {i.target} ({i.where()})" for i in imports
                  if i.in_function and not in_cli(i.source) and (i.source, i.target) not in allowed)


def _report(what: str, lines: list[str]) -> str:
    return f"{len(lines)} {what}:\n  " + "\n  ".join(lines)


# --- the checks on mvae_cli ---------------------------------------------------------------------

def test_every_module_has_a_layer():
    modules, _ = read_imports(PACKAGE)
    missing = unplaced(modules)
    assert not missing, _report("modules in no layer (add their package to LAYERS and docs/DESIGN.md)", missing)


def test_no_import_points_up():
    _, imports = read_imports(PACKAGE)
    found = upward(imports)
    assert not found, _report("imports point up (move what both need below both)", found)


def test_no_modules_import_each_other_in_a_circle():
    _, imports = read_imports(PACKAGE)
    found = cycles(imports)
    assert not found, _report("import circles", found)


def test_function_level_imports_only_in_cli_or_with_a_reason():
    _, imports = read_imports(PACKAGE)
    found = hidden(imports)
    assert not found, _report("function-level imports outside cli/ (move them to the top of the module; an "
                              "optional dependency or start-up time goes into FUNCTION_LEVEL with its reason)", found)


def test_every_allowed_function_level_import_still_exists():
    _, imports = read_imports(PACKAGE)
    there = {(i.source, i.target) for i in imports if i.in_function}
    stale = sorted(f"{a} -> {b}" for a, b in FUNCTION_LEVEL if (a, b) not in there)
    assert not stale, _report("FUNCTION_LEVEL entries that no longer exist (remove them)", stale)


def test_design_md_shows_the_same_layers():
    """The table of docs/DESIGN.md's "The layers": ``| N | name | `a`, `b/`, ... | ...``, a row per layer."""
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split("## The layers", 1)[1].split("\n## ", 1)[0]
    shown = {}
    for number, modules in re.findall(r"^\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", section, re.MULTILINE):
        for name in re.findall(r"`([^`]+)`", modules):
            shown[name.rstrip("/").removesuffix(".py")] = int(number)
    assert shown == LAYERS


# --- the checks can fail ------------------------------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "mvae_cli" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "mvae_cli"


def test_an_upward_import_a_circle_and_a_hidden_import_are_each_found(tmp_path):
    package = _write(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "data/__init__.py": "from mvae_cli.data.a import thing\n",
        "data/a.py": "from mvae_cli.engine.b import helper\nthing = 1\n",  # up: data (1) imports engine (6)
        "engine/__init__.py": "",
        "engine/b.py": "from ..errors import *\n\ndef helper():\n    from . import c\n",  # hidden, and a circle
        "engine/c.py": "from .b import helper\n",
        "model/m.py": "import importlib\n\ndef load():\n    return importlib.import_module('mvae_cli.sweep.s')\n",
        "sweep/s.py": "",
        "cli/app.py": "def main():\n    from mvae_cli.engine import b\n",  # the command layer may import lazily
        "plugins/p.py": "import mvae_cli.errors\n",  # a package in no layer
    })
    modules, imports = read_imports(package)
    assert Import("mvae_cli.engine.b", "mvae_cli.errors", 1, False) in imports  # `from ..errors import *`
    assert upward(imports) == [
        "mvae_cli.data.a -> mvae_cli.engine.b (layer 6 engine above layer 1 data; line 1)",
        "mvae_cli.model.m -> mvae_cli.sweep.s (layer 9 sweep above layer 2 model; line 4, in a function)",
    ]
    assert cycles(imports) == ["mvae_cli.engine.b -> mvae_cli.engine.c -> mvae_cli.engine.b"]
    assert hidden(imports) == ["mvae_cli.engine.b -> mvae_cli.engine.c (line 4, in a function)",
                               "mvae_cli.model.m -> mvae_cli.sweep.s (line 4, in a function)"]
    assert hidden(imports, {("mvae_cli.engine.b", "mvae_cli.engine.c"): "a reason"}) == [
        "mvae_cli.model.m -> mvae_cli.sweep.s (line 4, in a function)"]
    assert unplaced(modules) == ["mvae_cli.plugins.p"]


def test_a_longer_circle_is_shown_whole_and_type_checking_imports_count_for_layers_only(tmp_path):
    package = _write(tmp_path, {"__init__.py": "", "data/__init__.py": "",
                                "data/a.py": "from mvae_cli.data import b\n",
                                "data/b.py": "from mvae_cli.data.c import x\n",
                                "data/c.py": "import mvae_cli.data.a\nx = 1\n",
                                "data/u.py": "from mvae_cli.data.v import y\n",
                                "data/v.py": "import typing\n\nif typing.TYPE_CHECKING:\n    from mvae_cli.data import u\n"
                                             "    from mvae_cli.sweep.s import Sweep\nelse:\n    import mvae_cli.data.a\ny = 1\n",
                                "sweep/s.py": ""})
    _, imports = read_imports(package)
    assert cycles(imports) == ["mvae_cli.data.a -> mvae_cli.data.b -> mvae_cli.data.c -> mvae_cli.data.a"]
    assert upward(imports) == ["mvae_cli.data.v -> mvae_cli.sweep.s (layer 9 sweep above layer 1 data; line 5, "
                               "for type checking only)"]
    assert Import("mvae_cli.data.v", "mvae_cli.data.a", 7, False) in imports and hidden(imports) == []
