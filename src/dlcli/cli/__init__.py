"""The `dlcli` command line: the Typer app (app.py) and what it prints (render.py)."""

from .app import app, main

__all__ = ["app", "main"]
