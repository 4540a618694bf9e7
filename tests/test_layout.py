"""The code's shape: one stage table, typed configs, small modules and functions.

Adding a stage must mean one row in llmstack.pipeline, one rule and one module; so no other module
may list stages, and settings are read as typed attributes, never as dict lookups with a default.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from llmstack.pipeline import STAGES

SRC = Path(__file__).resolve().parents[1] / "src" / "llmstack"
TABLE = SRC / "pipeline.py"
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 80
# Generated-text modules: word lists and story/problem templates, data rather than code.
DATA_MODULES = {"data/toyworld_world.py", "data/toyworld_docs.py", "data/toyworld_facts.py", "data/toyworld_math.py"}


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def stage_names_in(node: ast.AST) -> list[str]:
    """Stage names held by a collection literal, or by a string of space-separated stage names."""
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        items = node.elts
    elif isinstance(node, ast.Dict):
        items = [k for k in node.keys if k is not None]
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and " " in node.value:
        words = node.value.split()
        return words if all(w.split("/")[0] in STAGES for w in words) else []
    else:
        return []
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in STAGES]


def stage_lists(source: str) -> list[tuple[int, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = stage_names_in(node)
        if len(set(names)) >= 2:
            found.append((node.lineno, names))
    return found


def test_the_stage_table_is_the_only_list_of_stages():
    offenders = {
        str(p.relative_to(SRC)): hits for p in modules() if p != TABLE and (hits := stage_lists(p.read_text()))
    }
    assert offenders == {}, "list stages through llmstack.pipeline, not by name"
    assert set(STAGES) == {"data", "tokenizer", "pretrain", "base_eval", "midtrain", "sft", "rl", "eval"}


def test_the_detector_finds_a_stage_list():
    assert stage_lists('ORDER = ("pretrain", "sft")\n') == [(1, ["pretrain", "sft"])]
    assert stage_lists('ORDER = "data tokenizer eval/sft".split()\n')
    assert stage_lists('x = {"sft": 1, "model": 2}\n') == []  # one stage name is a reference, not a list


def test_settings_are_read_as_typed_attributes():
    pattern = re.compile(r"\b\w*(cfg|config|section)\w*\.get\(")
    hits = [
        f"{p.relative_to(SRC)}:{i}: {line.strip()}"
        for p in modules()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_modules_and_functions_are_small():
    long_modules, long_functions = [], []
    for p in modules():
        rel = str(p.relative_to(SRC))
        if rel in DATA_MODULES:
            continue
        source = p.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(rel)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.name}")
    assert long_modules == [] and long_functions == []


def test_library_code_does_not_import_snakemake():
    for p in modules():
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] == "snakemake" for n in names), p
