"""The engine/capability layout: the core reaches capabilities only through the registry."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harbord.capability import STEPS, capabilities, config_sections, pool_setup
from harbord.chain import Handler

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("hnswlib", "sentence_transformers", "guessit", "pymediainfo", "tmdbv3api", "omdb",
             "musicbrainzngs", "handlers", "torch", "imagebind", "exifread", "babelfish")
"""Top-level packages no module under harbord/ may import (the issue's list, plus the other
parser/model libraries the files and search capabilities use)."""


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_core_module_imports_a_capability_or_its_libraries() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "harbord").rglob("*.py"))
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert offenders == []


def test_the_rule_test_sees_every_kind_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import guessit\nfrom handlers.files import parse\n"
                      "def f():\n    import hnswlib.x\n    importlib.import_module('omdb')\n")
    assert [n for _, n in _imports(sample)] == ["guessit", "handlers.files", "hnswlib.x", "omdb"]


def test_loading_the_config_and_the_cli_imports_no_step_and_no_library_of_one() -> None:
    code = ("import sys, harbord.daemon, harbord.cli; from harbord.config import Config; Config(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('hnswlib', 'sentence_transformers', 'guessit', 'pymediainfo', 'torch', 'blake3')"
            " or m.startswith('handlers.') and m.rsplit('.', 1)[-1] not in ('config', 'schema')"
            " and m.count('.') > 1))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_step_is_a_handler_of_its_name() -> None:
    assert list(STEPS) == ["parse", "probe", "checksum", "store", "embed", "index", "enrich"]
    for name in STEPS:
        cls = STEPS[name]
        assert cls.name == name and isinstance(cls, type) and hasattr(cls, "from_context")
        assert Handler in type.mro(cls) or all(hasattr(cls, a) for a in ("handle", "from_context"))


def test_capabilities_contribute_sections_and_pool_modules() -> None:
    assert [c.name for c in capabilities()] == ["files", "search", "enrich", "series"]
    assert sorted(config_sections()) == ["embed", "enrich", "index"]
    setup = pool_setup(["parse", "checksum", "probe"])
    assert setup["preload"] == ["handlers.files.naming", "handlers.files.probe"]
    assert setup["warmups"] == ["handlers.files.naming:warm_worker", "handlers.files.probe:warm_worker"]
    assert pool_setup(["checksum", "store"])["preload"] == []


@pytest.mark.parametrize("name", ["files", "search", "enrich", "series"])
def test_every_contribution_resolves(name: str) -> None:
    from harbord.capability import resolve

    cap = next(c for c in capabilities() if c.name == name)
    for ref in [*cap.commands, *cap.doctor, *cap.text, *(s.target for s in cap.steps)]:
        assert callable(resolve(ref)), ref
