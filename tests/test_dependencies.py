"""Every third-party package the code imports is a declared dependency (pyproject.toml).

A package that happens to be installed where the tests run (click, once typer stopped
depending on it) hides a broken fresh install; this test reads the imports instead.
Rules: imports that run when a module is imported (module level) must be core
dependencies; imports inside functions may also come from an optional extra (they are
imported only when used). tests/ may also use the `test` extra.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Import names whose distribution is named otherwise, for packages that may not be installed here.
ALIASES = {"yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn", "skimage": "scikit-image",
           "torch.utils.tensorboard": "tensorboard"}
LOCAL = {"mvae_cli", "tests", "benchmarks"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """The core dependencies and each extra's, as canonical distribution names."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("needs tomllib (Python 3.11+) to read pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(specs):
        return {_canonical(re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0]) for s in specs}

    extras = {k: names(v) for k, v in project.get("optional-dependencies", {}).items()}
    return names(project["dependencies"]), extras


@functools.lru_cache(maxsize=None)
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> list[str]:
    """The canonical names of the distributions that provide top-level module ``module``.

    Several may (mlflow's module comes with ``mlflow``, ``mlflow-skinny`` and ``mlflow-tracing``
    installed); an import is declared when any of them is.
    """
    if module in ALIASES:
        return [_canonical(ALIASES[module])]
    found = _installed().get(module.split(".")[0])
    return sorted({_canonical(d) for d in found}) if found else [_canonical(module.split(".")[0])]


def _imports(tree: ast.Module):
    """(module name, at module level?) for every absolute import in ``tree``."""
    module_level = set()
    for node in tree.body:  # module body, including `if`/`try` blocks at top level
        for inner in ast.walk(node):
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                break
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                module_level.add(id(inner))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in module_level
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            name = node.module
            if name == "torch.utils" and any(a.name == "tensorboard" for a in node.names):
                name = "torch.utils.tensorboard"
            yield name, id(node) in module_level


def undeclared_imports(paths, core: set[str], optional: set[str]) -> list[str]:
    """One line per import that a fresh install of the declared dependencies would not provide."""
    problems = []
    for path in paths:
        for name, at_module_level in _imports(ast.parse(Path(path).read_text(), str(path))):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in LOCAL or top == "__future__":
                continue
            if (Path(path).parent / f"{top}.py").is_file():  # a sibling script's module (benchmarks/)
                continue
            dists = _distributions(name if name in ALIASES else top)
            if core.intersection(dists):
                continue
            extra = sorted(optional.intersection(dists))
            if extra and not at_module_level:
                continue
            dist = extra[0] if extra else dists[0]
            where = "at module level, but only an optional extra provides it" if extra else \
                "not a declared dependency"
            problems.append(f"{path}: import {name} ({dist}) is {where}")
    return problems


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "fixtures" not in p.parts)


def test_the_package_imports_only_declared_dependencies():
    core, extras = declared()
    optional = set().union(*extras.values()) - {"pytest"}
    assert undeclared_imports(_sources("mvae_cli"), core, optional) == []


def test_the_tests_import_only_declared_dependencies_and_the_test_extra():
    core, extras = declared()
    core_and_test = core | extras.get("test", set())
    optional = set().union(*extras.values())
    assert undeclared_imports(_sources("tests") + _sources("benchmarks"), core_and_test, optional) == []


def test_the_check_fails_on_a_module_that_imports_what_is_not_declared(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text(
        "import os\nimport click\nimport yaml\nfrom numpy import random\nimport submitit\n"
        "def lazy():\n    import mlflow\n    import notdeclared.sub\n")
    core = {"pyyaml", "numpy"}
    optional = {"submitit", "mlflow"}
    problems = undeclared_imports([module], core, optional)
    assert len(problems) == 3, problems
    assert "import click (click) is not a declared dependency" in problems[0]
    assert "import submitit (submitit) is at module level, but only an optional extra" in problems[1]
    assert "import notdeclared.sub (notdeclared) is not a declared dependency" in problems[2]


def test_a_module_that_several_distributions_provide_is_declared_by_any_of_them(tmp_path, monkeypatch):
    module = tmp_path / "uses_mlflow.py"
    module.write_text("import yaml\ndef lazy():\n    import mlflow\n")
    providers = {"mlflow": ["mlflow-skinny", "mlflow", "mlflow-tracing"]}  # as pip installs mlflow 3
    monkeypatch.setattr(sys.modules[__name__], "_installed", lambda: providers)
    assert undeclared_imports([module], {"pyyaml"}, {"mlflow"}) == []
    problems = undeclared_imports([module], {"pyyaml"}, set())
    assert problems == [f"{module}: import mlflow (mlflow) is not a declared dependency"]
