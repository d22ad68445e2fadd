"""The README and docs/ stay true: the config tables of docs/configuration.md match the schemas, each
command's guide in docs/commands.md names exactly the options that `factlearn COMMAND --help` offers, the
README's Layout names every module of the tree, and every `$ factlearn` line of the README's tour runs."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from factlearn.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMANDS = ROOT / "docs" / "commands.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
GLOBAL_OPTIONS = {"-h", "--help", "--debug", "--version"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_options() -> dict[str, set[str]]:
    """Every command's options as argparse defines them; `data` gathers its actions' options."""
    out = {}
    for name, sub in _subparsers(build_parser()).items():
        parsers = [sub, *_subparsers(sub).values()]
        out[name] = {o for p in parsers for a in p._actions for o in a.option_strings} - GLOBAL_OPTIONS
    return out


def readme_sections() -> dict[str, str]:
    """`### \\`factlearn CMD\\`` sections of docs/commands.md, keyed by CMD."""
    text = COMMANDS.read_text()
    parts = re.split(r"^### `factlearn ([\w-]+)`\s*$", text, flags=re.M)
    sections = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        sections[name] = re.split(r"^##? ", body, maxsplit=1, flags=re.M)[0]
    return sections


def documented_options(section: str) -> set[str]:
    """Options named in the prose, and on the `$ factlearn ...` lines of examples (not in command output)."""
    prose = re.sub(r"```.*?```", "", section, flags=re.S)
    commands = [line for block in re.findall(r"```.*?```", section, flags=re.S)
                for line in block.splitlines() if line.startswith("$ factlearn ")]
    return set(OPTION.findall(prose + "\n" + "\n".join(commands))) - GLOBAL_OPTIONS


def test_readme_is_read_in_ten_minutes():
    """About 300 lines at most: the depth lives in docs/, and every docs/ page the README links exists."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    links = re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text)
    assert links and all((ROOT / link).is_file() for link in links), [l for l in links if not (ROOT / l).is_file()]


def test_lead_paragraph_and_two_commands_come_first():
    text = README.read_text()
    assert text.startswith("# factlearn\n\nTeach a language model new facts by finetuning")
    two = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert "make run     # set up .venv (once), then run the main experiment" in two
    assert "make test    # set up .venv (once), then run the test suite" in two
    assert text.index("## Two commands") < text.index("## A ten-minute tour")


def test_every_command_has_a_guide_with_a_real_example():
    sections, commands = readme_sections(), command_options()
    assert set(sections) == set(commands), f"docs/commands.md guides {sorted(sections)} vs commands {sorted(commands)}"
    for name, body in sections.items():
        assert f"$ factlearn {name}" in body, f"the {name} guide has no example command"


@pytest.mark.parametrize("command", sorted(command_options()))
def test_readme_guide_and_help_name_the_same_options(command):
    in_help = command_options()[command]
    in_readme = documented_options(readme_sections()[command])
    assert in_readme - in_help == set(), f"docs/commands.md names options `factlearn {command}` does not have"
    assert in_help - in_readme == set(), f"`factlearn {command} --help` options missing from docs/commands.md"


def test_every_option_has_help_text():
    for name, sub in _subparsers(build_parser()).items():
        for p in [sub, *_subparsers(sub).values()]:
            for action in p._actions:
                if action.option_strings and action.help != argparse.SUPPRESS:
                    assert action.help and action.help.strip(), f"{p.prog} {action.option_strings} has no help"
            assert p.description or p is sub and _subparsers(sub), f"{p.prog} has no description"


def test_help_runs_for_every_command():
    for name in command_options():
        proc = subprocess.run([sys.executable, "-m", "factlearn", name, "--help"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0 and "usage: factlearn " + name in proc.stdout, proc.stderr


def _config_table_module():
    spec = importlib.util.spec_from_file_location("config_table", ROOT / "scripts" / "config_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_tables_match_the_schemas():
    text = CONFIGURATION.read_text()
    table = _config_table_module()
    assert "<!-- CONFIG-TABLE:train -->" in text and "<!-- CONFIG-TABLE:run -->" in text
    assert table.rewrite(text) == text, "docs/configuration.md tables are stale: run `python scripts/config_table.py --write`"


def test_config_tables_list_every_schema_key_with_a_meaning():
    table = _config_table_module()
    for kind, schema in table.schemas().items():
        rows = {line.split(" | ")[0][3:-1]: line for line in table.table(kind).splitlines()[2:]}
        keys = [key for key, _, _ in table.flat_fields(schema())]
        assert list(rows) == keys
        assert all(not line.endswith("|  |") for line in rows.values()), "a key without a meaning"


def _layout_lines() -> dict[str, set[str]]:
    """The README's Layout list: {package folder or "" for the top level: the `*.py` files its line names}."""
    layout = README.read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    lines = {}
    for line in re.findall(r"^- .*$", layout, flags=re.M):
        m = re.match(r"- `factlearn/(\w+)/`", line)
        key = m.group(1) if m else ("" if line.startswith("- Top-level") else None)
        assert key is not None, f"a Layout line that names no package: {line[:60]}"
        lines[key] = set(re.findall(r"`(\w+\.py)`", line))
    return lines


def test_layout_names_every_package_and_module_of_the_tree():
    """Each package of src/factlearn has one Layout line naming exactly its modules; the top-level line names
    exactly the top-level modules. A module added, moved or removed without the README fails here."""
    src = ROOT / "src" / "factlearn"
    tree = {p.name: {f.name for f in p.glob("*.py")} - {"__init__.py"}
            for p in src.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    tree[""] = {f.name for f in src.glob("*.py")} - {"__init__.py", "__main__.py"}
    assert len(tree) > 1 and all(tree.values())
    named = _layout_lines()
    assert set(named) == set(tree), f"Layout lines {sorted(named)} vs packages {sorted(tree)}"
    for package, modules in tree.items():
        where = f"factlearn/{package}/" if package else "top level"
        assert named[package] == modules, (f"Layout of {where}: missing {sorted(modules - named[package])}, "
                                           f"not in the tree {sorted(named[package] - modules)}")


def test_layout_names_the_import_direction_test():
    """The Layout's claim about imports points at the test that enforces it, and that test exists."""
    layout = README.read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    assert "data → evaluate → train → analyze → run → report" in layout
    assert "tests/test_layout.py" in layout and (ROOT / "tests" / "test_layout.py").is_file()


def tour_commands() -> list[str]:
    """Every `$ ...` line of the console blocks in the README's ten-minute tour, in order."""
    tour = README.read_text(encoding="utf-8").split("## A ten-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:console|bash)\n(.*?)```", tour, flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_the_tour_runs_on_the_tiny_model(run_cli, tiny_model_dir, tmp_path):
    """Each tour command, in order in one folder (later steps read what earlier ones wrote), exits 0 and
    writes what the README shows it writing. `tiny` is the session's tiny model (what the tour's first
    line builds), linked in so the tour's own paths work."""
    import shlex

    commands = tour_commands()
    assert commands[0].startswith("python -c ") and "make_tiny_model('tiny')" in commands[0]
    (tmp_path / "tiny").symlink_to(tiny_model_dir)
    ran = []
    for line in commands[1:]:
        if line.split()[0] in ("ls", "head"):  # looking at what the step before wrote
            proc = subprocess.run(shlex.split(line), cwd=tmp_path, capture_output=True, text=True, timeout=60)
        else:
            assert line.startswith("factlearn "), f"a tour line that is not a factlearn command: {line}"
            proc = run_cli(*shlex.split(line)[1:], cwd=tmp_path)
        assert proc.returncode == 0, f"`{line}` exited {proc.returncode}: {proc.stderr[-2000:]}"
        ran.append(line)
    stages = [c.split()[1] for c in ran if c.startswith("factlearn ")]
    assert stages == ["data"] * 3 + ["train", "eval", "run"], stages
    assert (tmp_path / "runs/tiny-narrative/model.safetensors").is_file()
    assert (tmp_path / "runs/eval-tiny-narrative/results.json").is_file()
    assert not (tmp_path / "runs/tiny-plan").exists(), "--plan wrote something"
