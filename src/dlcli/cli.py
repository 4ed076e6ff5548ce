"""The `dlcli` command: parse arguments, call one library function, render the result.

Nothing here imports torch at module level, so `dlcli --help` answers at once.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from .errors import DlcliError, TrainingFailed

app = typer.Typer(
    name="dlcli",
    help="Train feed-forward and convolutional networks from a YAML config. "
    "Add --debug to any command to see a traceback on error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


DEBUG = False  # set by --debug: let tracebacks through


def friendly(command):
    """Input errors become a short message and exit 2; a failed run exits 1; Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DlcliError as exc:
            if DEBUG:
                raise
            err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except TrainingFailed as exc:
            if DEBUG:
                raise
            err.print(f"[red]training failed:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if DEBUG:
                raise
            err.print("interrupted: the run is marked interrupted; continue it with dlcli train --resume RUN_DIR",
                      soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper


def _split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """`cfg.yaml a.b=1 c=2` -> ("cfg.yaml", ["a.b=1", "c=2"])."""
    paths = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if len(paths) > 1:
        raise typer.BadParameter(f"one config file at a time, got {', '.join(paths)}", param_hint="CONFIG")
    return (paths[0] if paths else None), overrides


@app.command()
@friendly
def train(
    args: list[str] = typer.Argument(None, metavar="CONFIG [KEY=VALUE ...]",
                                     help="The YAML config, then overrides such as optimizer.lr=0.01 train.epochs=5."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N (overrides train.device)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Write the run here instead of runs/<name>/<time>/."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue an interrupted or killed run from its last checkpoint."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Live progress bar (default: on a terminal)."),
):
    """Train a model; every run is kept in its own run directory."""
    from .trainer import train as run_training

    config, overrides = _split_args(args or [])
    if config is None and resume is None:
        raise typer.BadParameter("give a config file (or --resume RUN_DIR)", param_hint="CONFIG")
    if config is not None and resume is not None:
        raise typer.BadParameter("--resume continues the run's own config; give overrides only", param_hint="CONFIG")
    run = run_training(config, overrides, run_dir=run_dir, device=device, resume=resume, progress=progress)
    info = json.loads((run / "run.json").read_text())
    best = ""
    if info.get("best_epoch") is not None:
        best = f"; best {info['monitor']} {info['best_value']:.4g} at epoch {info['best_epoch']}"
    early = " (stopped early)" if info.get("stopped_early") else ""
    # soft_wrap: a path is never folded across lines, so it can be copied or parsed from the output.
    n = info["epochs_completed"]
    out.print(f"[green]completed[/] {n} epoch{'' if n == 1 else 's'}{early}{best}", soft_wrap=True)
    out.print(f"run directory: {escape(str(run))}", soft_wrap=True)
    out.print(f"next: dlcli evaluate {escape(str(run))}", soft_wrap=True)


@app.command()
@friendly
def evaluate(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory written by dlcli train."),
    split: str = typer.Option("test", help="test, val or train."),
    data: Path | None = typer.Option(None, "--data", help="Evaluate on every row of this file instead of a split."),
    checkpoint: str = typer.Option("best", help="best or last."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """Metrics of a trained run on a split; also written to RUN_DIR/evaluation.json."""
    from .evaluation import evaluate as run_evaluation

    if split not in ("test", "val", "train"):
        raise typer.BadParameter(f"must be test, val or train, got '{split}'", param_hint="--split")
    if checkpoint not in ("best", "last"):
        raise typer.BadParameter(f"must be best or last, got '{checkpoint}'", param_hint="--checkpoint")
    result = run_evaluation(run_dir, split=split, data=data, checkpoint=checkpoint, device=device)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    from rich.table import Table

    out.print(f"{escape(str(run_dir))}: {result['split']} split, {result['n_samples']} rows, "
              f"{result['checkpoint']} checkpoint (epoch {result['epoch']})", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)
    if "confusion_matrix" in result:
        classes = [str(c) for c in result["classes"]]
        out.print("confusion matrix (rows: true class, columns: predicted class)")
        cm = Table()
        cm.add_column("true \\ pred")
        for c in classes:
            cm.add_column(c, justify="right")
        for c, row in zip(classes, result["confusion_matrix"]):
            cm.add_row(c, *map(str, row))
        out.print(cm)
    out.print(f"written to {escape(str(Path(run_dir) / 'evaluation.json'))}", soft_wrap=True)


@app.command()
@friendly
def summarize(
    target: Path = typer.Argument(..., metavar="CONFIG|RUN_DIR", help="A YAML config or a run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """The model's layers, output shapes and parameter counts, as Keras' model.summary()."""
    from .build import prepare, section
    from .config import load_config
    from .models import build_model
    from .summary import summary_dict, summary_table

    path = target / "config.yaml" if target.is_dir() else target
    cfg = load_config(path)
    if cfg.model.input_shape or cfg.data is None:
        with section(cfg, "model"):
            model = build_model(cfg)
    else:
        model = prepare(cfg).model
    name = cfg.name or (path.parent.parent.name if target.is_dir() else path.stem)
    if as_json:
        print(json.dumps(summary_dict(model, name), indent=2))
        return
    table, totals = summary_table(model, name)
    out.print(table)
    for line in totals:
        out.print(line)


@app.command()
@friendly
def validate(
    args: list[str] = typer.Argument(..., metavar="CONFIG [KEY=VALUE ...]", help="The YAML config, then overrides."),
):
    """Check a config, its data and its model without training; print ok or every problem."""
    from .build import prepare
    from .config import load_config
    from .summary import summary_dict

    config, overrides = _split_args(args)
    if config is None:
        raise typer.BadParameter("give a config file", param_hint="CONFIG")
    cfg = load_config(config, overrides)
    setup = prepare(cfg)
    s = summary_dict(setup.model)
    rows = ", ".join(f"{k} {len(v[0])}" for k, v in setup.data.splits.items())
    out.print(f"[green]ok[/] {escape(config)}: {setup.task} task, {len(s['layers'])} layers, "
              f"{s['total_params']:,} parameters; data {escape(setup.data.source)}: {rows} rows", soft_wrap=True)


@app.command("list")
@friendly
def list_names():
    """Every layer type, activation, loss, optimizer, schedule and metric a config may name."""
    from .activations import ACTIVATIONS
    from .losses import LOSSES
    from .metrics import METRICS
    from .models import LAYERS
    from .optim import OPTIMIZERS, SCHEDULES

    for title, registry in (("layers", LAYERS), ("activations", ACTIVATIONS), ("losses", LOSSES),
                            ("optimizers", OPTIMIZERS), ("schedules", SCHEDULES), ("metrics", METRICS)):
        out.print(f"[bold]{title}[/]")
        for name in registry.names():
            entry = registry.get(name)
            params = ", ".join(entry.params.model_fields)
            out.print(f"  {name}" + (f" ({params})" if params else ""))


def main() -> None:
    global DEBUG
    if "--debug" in sys.argv:
        DEBUG = True
        sys.argv.remove("--debug")
    app()


if __name__ == "__main__":
    main()
