"""The README cannot drift from the code: its tables come from the registries, and `dlcli list` agrees."""

import re
import sys
from importlib.metadata import requires
from pathlib import Path

from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.commands.listing import SECTIONS, readme_tables

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "scripts"))
from readme_tables import rewrite  # noqa: E402


def test_the_readme_tables_are_the_registries():
    blocks = dict(re.findall(r"<!-- registry: (\w+) -->\n(.*?)\n<!-- /registry -->", README, re.S))
    assert set(blocks) == set(readme_tables())
    assert rewrite(README) == README, "run `uv run python scripts/readme_tables.py` to update README.md"


def test_dlcli_list_names_every_entry_with_its_parameters():
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # long lines fold at the terminal's width
    for title, registry in SECTIONS:
        assert title in words
        for name in registry.names():
            params = ", ".join(registry.get(name).params.model_fields)
            assert f" {name}" + (f" ({params})" if params else "") in words


def test_the_readme_says_why_each_dependency_is_there():
    dev = re.search(r"^dev = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    requirements = [*requires("dlcli"), *re.findall(r'"([^"]+)"', dev)]  # dependencies and extras, dev tools
    names = {re.split(r"[<>=\[ ;]", r)[0].lower() for r in requirements}
    missing = [name for name in sorted(names) if f"**{name}**" not in README.lower()]
    assert missing == []
