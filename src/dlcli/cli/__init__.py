"""The `dlcli` command line: the Typer app (app.py) and what it prints (render.py)."""

from .app import main

__all__ = ["main"]
