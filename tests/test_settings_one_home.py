"""Each shared default has one home: a function or dataclass field that defaults a world size, a world
seed or a confidence level names the constant (data.world.CANONICAL_*, stats.CI_LEVEL) instead of
repeating its value, so changing the default is one edit. Read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "factlearn"
# parameter or field name -> the constant its default must name
HOMES = {"n_countries": "CANONICAL_N_COUNTRIES", "data_seed": "CANONICAL_WORLD_SEED",
         "level": "CI_LEVEL", "ci_level": "CI_LEVEL"}
# where the constants themselves are defined
DEFINITIONS = {"data/world.py", "stats.py"}
# a different setting under the same name: the `default` run profile's own world (8 countries, the CPU
# budget), which tests/test_run_units.py keeps equal to configs/run/default.yaml
PROFILE_VALUES = {("run/config.py", "n_countries")}


def _defaults(tree: ast.AST):
    """(name, default node, line) for every defaulted function parameter and annotated class field."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
                yield arg.arg, default, default.lineno
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                if default is not None:
                    yield arg.arg, default, default.lineno
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                    yield stmt.target.id, stmt.value, stmt.lineno


def repeated_defaults(root: Path = SRC) -> tuple[list[str], int]:
    """Literal defaults of the settings in HOMES, and how many defaults of them were seen in all."""
    bad, seen = [], 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for name, default, line in _defaults(ast.parse(path.read_text())):
            if name not in HOMES:
                continue
            seen += 1
            if isinstance(default, ast.Constant) and default.value is not None and rel not in DEFINITIONS \
                    and (rel, name) not in PROFILE_VALUES:
                bad.append(f"{rel}:{line}: {name} = {default.value!r} (name {HOMES[name]})")
    return bad, seen


def test_world_and_level_defaults_name_their_one_home():
    bad, seen = repeated_defaults()
    assert seen >= 10  # the walk finds the settings (a typo in HOMES would make this test vacuous)
    assert bad == []


def test_the_check_finds_a_repeated_literal(tmp_path):
    (tmp_path / "mod.py").write_text("def f(n_countries: int = 20, level: float = CI_LEVEL):\n    pass\n"
                                     "class C:\n    ci_level: float = 0.95\n")
    bad, seen = repeated_defaults(tmp_path)
    assert seen == 3 and [b.split(": ")[1].split(" (")[0] for b in bad] == ["n_countries = 20", "ci_level = 0.95"]
