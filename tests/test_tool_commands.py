"""The laptop tools have one home, scoring_tools/, and each runs as `python -m scoring_tools.X`
from the checkout: every such command that the README, docs/ or the Makefile names is a
module there and answers --help when run exactly that way (a loose script run by its path
would not find the package it imports)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"-m scoring_tools\.(\w+)")


def _named() -> dict[str, list[str]]:
    """tool module -> the pages that name it as a command."""
    pages = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    named: dict[str, list[str]] = {}
    for page in pages:
        for module in COMMAND.findall(page.read_text()):
            named.setdefault(module, []).append(page.relative_to(ROOT).as_posix())
    return named


def test_every_tool_command_the_pages_name_is_a_module_of_scoring_tools():
    named = _named()
    # the README alone names the client, the quick start and the model tools
    assert {"client", "quickstart", "prepare_model"} <= set(named), named
    missing = {module: pages for module, pages in named.items()
               if not (ROOT / "scoring_tools" / f"{module}.py").is_file()}
    assert missing == {}


def test_every_named_tool_answers_help_when_run_as_the_pages_say():
    failed = {}
    for module in sorted(_named()):
        done = subprocess.run([sys.executable, "-m", f"scoring_tools.{module}", "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or "usage:" not in done.stdout:
            failed[module] = (done.returncode, done.stderr[-500:])
    assert failed == {}
