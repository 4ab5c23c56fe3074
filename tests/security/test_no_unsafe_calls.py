"""No code path evaluates, unpickles or fully loads YAML from untrusted input.

The packages read observing blocks, configurations, scenarios, journals and
device replies written by others. This scans every module's syntax tree for
the calls that turn data into code: ``eval``, ``exec``, ``compile``,
``__import__``, anything from ``pickle``/``marshal``/``shelve``/``dill``,
``yaml.load``/``unsafe_load``/``full_load`` and PyYAML's unsafe loaders,
``numpy.load(..., allow_pickle=True)`` and ``subprocess`` with
``shell=True``. Of PyYAML only the ``safe_*`` functions and its error
classes are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sequencer", "drivers", "reduce", "simulators", "benchmarks")

FORBIDDEN_NAMES = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill"}
YAML_ALLOWED = {
    "safe_load",
    "safe_load_all",
    "safe_dump",
    "safe_dump_all",
    "YAMLError",
    "MarkedYAMLError",
    # The duplicate-key-refusing loaders (drivers/safeyaml.py,
    # reduce/safeyaml.py) subclass SafeLoader: its safe constructors only.
    "SafeLoader",
    "ConstructorError",
    "MappingNode",
    "Node",
}


def problems(source: str, name: str) -> list[str]:
    """Every forbidden construct in ``source``, as ``name:line: what``."""
    tree = ast.parse(source, filename=name)
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{name}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    flag(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in FORBIDDEN_MODULES:
                flag(node, f"from {node.module} import ...")
            if module == "yaml":
                for alias in node.names:
                    if alias.name not in YAML_ALLOWED:
                        flag(node, f"from yaml import {alias.name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "yaml" and node.attr not in YAML_ALLOWED:
                flag(node, f"yaml.{node.attr}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES:
                flag(node, f"{func.id}()")
            keywords = {k.arg: k.value for k in node.keywords}
            if isinstance(func, ast.Attribute) and func.attr == "load":
                allow = keywords.get("allow_pickle")
                if isinstance(allow, ast.Constant) and allow.value is True:
                    flag(node, "load(allow_pickle=True)")
            shell = keywords.get("shell")
            if isinstance(shell, ast.Constant) and shell.value is True:
                flag(node, "shell=True")
    return found


def sources() -> list[Path]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50, f"found only {len(files)} modules under {ROOT}"
    return files


def test_no_module_turns_data_into_code() -> None:
    found = [
        problem
        for path in sources()
        for problem in problems(path.read_text("utf-8"), str(path.relative_to(ROOT)))
    ]
    assert found == []


@pytest.mark.parametrize(
    ("snippet", "what"),
    [
        ("eval(text)", "eval()"),
        ("exec(code, {})", "exec()"),
        ("import pickle\npickle.loads(b)", "import pickle"),
        ("from marshal import loads", "from marshal import ..."),
        ("import yaml\nyaml.load(text, Loader=yaml.Loader)", "yaml.load"),
        ("import yaml\nyaml.unsafe_load(text)", "yaml.unsafe_load"),
        ("import yaml\nyaml.full_load(text)", "yaml.full_load"),
        ("from yaml import load", "from yaml import load"),
        ("import numpy as np\nnp.load(f, allow_pickle=True)", "allow_pickle"),
        ("import subprocess\nsubprocess.run(cmd, shell=True)", "shell=True"),
    ],
)
def test_the_scan_catches_each_construct(snippet: str, what: str) -> None:
    found = problems(snippet, "example.py")
    assert len(found) >= 1
    assert what in found[0]


def test_the_scan_allows_safe_yaml() -> None:
    snippet = (
        "import yaml\ntry:\n  yaml.safe_load_all(t)\nexcept yaml.YAMLError:\n  pass"
    )
    assert problems(snippet, "example.py") == []
