"""The README stays true: its config tables match the schemas, and each command's guide names exactly the
options that `factlearn COMMAND --help` offers."""

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
    """`### \\`factlearn CMD\\`` sections of the README, keyed by CMD."""
    text = README.read_text()
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


def test_lead_paragraph_and_two_commands_come_first():
    text = README.read_text()
    assert text.startswith("# factlearn\n\nTeach a language model new facts by finetuning")
    two = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert "make run     # set up .venv (once), then run the main experiment" in two
    assert "make test    # set up .venv (once), then run the test suite" in two
    assert text.index("## Two commands") < text.index("## Commands")


def test_every_command_has_a_guide_with_a_real_example():
    sections, commands = readme_sections(), command_options()
    assert set(sections) == set(commands), f"README guides {sorted(sections)} vs commands {sorted(commands)}"
    for name, body in sections.items():
        if name == "run":  # filled in from the real `make run` by hand
            assert "<!-- RUN-OUTPUT -->" in body
            continue
        assert f"$ factlearn {name}" in body, f"the {name} guide has no example command"


@pytest.mark.parametrize("command", sorted(command_options()))
def test_readme_guide_and_help_name_the_same_options(command):
    in_help = command_options()[command]
    in_readme = documented_options(readme_sections()[command])
    assert in_readme - in_help == set(), f"README names options `factlearn {command}` does not have"
    assert in_help - in_readme == set(), f"`factlearn {command} --help` options missing from the README"


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
    text = README.read_text()
    table = _config_table_module()
    assert "<!-- CONFIG-TABLE:train -->" in text and "<!-- CONFIG-TABLE:run -->" in text
    assert table.rewrite(text) == text, "README config tables are stale: run `python scripts/config_table.py --write`"


def test_config_tables_list_every_schema_key_with_a_meaning():
    table = _config_table_module()
    for kind, schema in table.schemas().items():
        rows = {line.split(" | ")[0][3:-1]: line for line in table.table(kind).splitlines()[2:]}
        keys = [key for key, _, _ in table.flat_fields(schema())]
        assert list(rows) == keys
        assert all(not line.endswith("|  |") for line in rows.values()), "a key without a meaning"


def test_layout_paragraph_names_every_package_and_matches_the_tree():
    """The README's Layout names each package of src/factlearn in one line, and only packages that exist."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^- `factlearn/(\w+)/`", layout, flags=re.M))
    src = ROOT / "src" / "factlearn"
    packages = {p.name for p in src.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert named == packages
    modules = {p.name for p in src.glob("*.py")} - {"__init__.py", "__main__.py", "models_cli.py"}
    assert all(f"`{m}`" in layout for m in modules), sorted(m for m in modules if f"`{m}`" not in layout)
