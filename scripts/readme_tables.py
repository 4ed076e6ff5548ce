"""Rewrite the README's tables of layers, activations, losses, optimizers, schedules, metrics and augmentations
from the registries: `uv run python scripts/readme_tables.py`. tests/test_docs.py fails while they differ.

Each table sits between `<!-- registry: NAME -->` and `<!-- /registry -->`; the prose around it is kept.
"""

import re
import sys
from pathlib import Path

from dlcli.commands.listing import readme_tables

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- registry: (\w+) -->\n)(.*?)(<!-- /registry -->)", re.S)


def rewrite(text: str) -> str:
    tables = readme_tables()
    return BLOCK.sub(lambda m: m.group(1) + tables[m.group(2)] + "\n" + m.group(4), text)


if __name__ == "__main__":
    old = README.read_text()
    new = rewrite(old)
    README.write_text(new)
    print("README.md: tables rewritten" if new != old else "README.md: tables already current", file=sys.stderr)
