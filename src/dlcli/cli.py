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
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write plots to RUN_DIR/plots/ (default: on)."),
):
    """Metrics of a trained run on a split; also written to RUN_DIR/evaluation.json, plots to RUN_DIR/plots/."""
    from .evaluation import evaluate as run_evaluation

    if split not in ("test", "val", "train"):
        raise typer.BadParameter(f"must be test, val or train, got '{split}'", param_hint="--split")
    if checkpoint not in ("best", "last"):
        raise typer.BadParameter(f"must be best or last, got '{checkpoint}'", param_hint="--checkpoint")
    result = run_evaluation(run_dir, split=split, data=data, checkpoint=checkpoint, device=device, plots=plots)
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
    if result.get("plots"):
        out.print(f"plots in {escape(str(Path(run_dir) / 'plots'))}: "
                  f"{', '.join(Path(p).name for p in result['plots'])}", soft_wrap=True)


PREDICT_SHOW_ROWS = 10  # rows printed without -o
PREDICT_SHOW_IDS = 4  # identifying columns printed (all of them go to the CSV)


@app.command()
@friendly
def predict(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory written by dlcli train."),
    input: Path = typer.Argument(..., metavar="INPUT", help="A table file, an image, or a folder of images."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write every row to this CSV file."),
    checkpoint: str = typer.Option("best", help="best or last."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Rows per batch (default: train.eval_batch_size)."),
):
    """Class probabilities and predicted labels (or regression values) for every row of INPUT."""
    from .predictions import predict as run_prediction

    if checkpoint not in ("best", "last"):
        raise typer.BadParameter(f"must be best or last, got '{checkpoint}'", param_hint="--checkpoint")
    result = run_prediction(run_dir, input, output=output, checkpoint=checkpoint, device=device,
                            batch_size=batch_size)
    for note in result.notes:
        err.print(f"note: {escape(note)}", soft_wrap=True)
    n = len(result.table)
    where = f"; written to {escape(str(output))}" if output is not None else ""
    out.print(f"{n} prediction{'' if n == 1 else 's'} ({result.checkpoint} checkpoint, epoch {result.epoch})"
              f"{where}", soft_wrap=True)
    if output is not None:
        return
    from rich.table import Table

    ids = [c for c in result.table.columns if c not in result.outputs]
    shown = ids[:PREDICT_SHOW_IDS] + result.outputs
    table = Table()
    for name in shown:
        numbers = result.table[name].dtype.kind in "fiu"
        table.add_column(escape(str(name)), justify="right" if numbers else "left")
    for _, row in result.table[shown].head(PREDICT_SHOW_ROWS).iterrows():
        # float32 probabilities are numpy scalars, not floats
        table.add_row(*(f"{v:.4f}" if getattr(v, "dtype", None) is not None and v.dtype.kind == "f"
                        or isinstance(v, float) else escape(str(v)) for v in row))
    out.print(table)
    more = [f"{n - PREDICT_SHOW_ROWS} more rows"] if n > PREDICT_SHOW_ROWS else []
    more += [f"{len(ids) - PREDICT_SHOW_IDS} more columns"] if len(ids) > PREDICT_SHOW_IDS else []
    if more:
        out.print(f"({', '.join(more)}; write them all with -o FILE.csv)")


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
    rows = ", ".join(f"{k} {n}" for k, n in setup.data.rows().items())
    for note in setup.data.notes:
        out.print(escape(note), soft_wrap=True)
    out.print(f"[green]ok[/] {escape(config)}: {setup.task} task, {len(s['layers'])} layers, "
              f"{s['total_params']:,} parameters; data {escape(setup.data.source)}: {rows} rows", soft_wrap=True)


@app.command("list")
@friendly
def list_names():
    """Every layer type, activation, loss, optimizer, schedule, metric and augmentation a config may name."""
    from .activations import ACTIVATIONS
    from .augment import AUGMENTS
    from .losses import LOSSES
    from .metrics import METRICS
    from .models import LAYERS
    from .optim import OPTIMIZERS, SCHEDULES

    for title, registry in (("layers", LAYERS), ("activations", ACTIVATIONS), ("losses", LOSSES),
                            ("optimizers", OPTIMIZERS), ("schedules", SCHEDULES), ("metrics", METRICS),
                            ("augmentations (data.augment)", AUGMENTS)):
        out.print(f"[bold]{title}[/]")
        for name in registry.names():
            entry = registry.get(name)
            params = ", ".join(entry.params.model_fields)
            out.print(f"  {name}" + (f" ({params})" if params else ""))


@app.command("runs")
@friendly
def list_runs(
    folder: Path = typer.Argument(Path("runs"), metavar="[DIR]", help="Where to look for runs (default: runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
):
    """The runs under DIR, newest first: status, epochs, best validation value, evaluation metrics."""
    from rich import box
    from rich.table import Table

    from .reports import runs_table

    found = runs_table(folder)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if not found:
        out.print(f"no runs under {escape(str(folder))} (a run is a folder holding run.json)", soft_wrap=True)
        return
    table = Table(title=f"{len(found)} run{'s' if len(found) != 1 else ''} under {escape(str(folder))}, newest first",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # The path is what `evaluate` and `compare` take: it stays on one line while the other cells
    # wrap (a run's name is shown under it when its folder is not named after it). Nothing is cut
    # short with an ellipsis; on a terminal too narrow for the path, it folds.
    table.add_column("run", no_wrap=True, overflow="fold")
    table.add_column("started", no_wrap=True)  # a date folded mid-way reads badly; the other cells fold
    for column in ("status", "best", "evaluation"):
        table.add_column(column, overflow="fold")
    colours = {"completed": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
    for r in found:
        path = Path(r["path"])
        run = escape(r["path"]) + ("" if r["name"] == path.parent.name else f"\n[dim]({escape(r['name'])})[/]")
        status = f"[{colours.get(r['status'], 'default')}]{escape(r['status'])}[/]"
        if r["epochs"] is not None:
            status += f"\n{r['epochs']} epoch{'' if r['epochs'] == 1 else 's'}"
        best = "-" if r["best_epoch"] is None else f"{r['monitor']}\n{_number(r['best_value'])} @ {r['best_epoch']}"
        ev = r["evaluation"]
        evaluated = "-" if ev is None else "\n".join(
            [f"{Path(str(ev['split'])).name}:", *(f"{k} {_number(v)}" for k, v in ev["metrics"].items())])
        table.add_row(run, escape((r["started"] or "-")[:16].replace("T", "\n")), status, escape(best),
                      escape(evaluated))
    out.print(table)


@app.command()
@friendly
def compare(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR RUN_DIR ...", help="Run directories to compare."),
    output: Path = typer.Option(Path("compare.png"), "-o", "--output",
                                help="Where to write the overlaid learning curves (default: compare.png here)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
):
    """Overlay runs' learning curves in one PNG and print their metrics side by side."""
    from rich import box
    from rich.table import Table

    from .reports import compare as compare_runs
    from .reports import compare_table, load_runs

    if output.suffix.lower() != ".png" or output.is_dir():
        raise typer.BadParameter(f"must be a .png file name, got '{output}'", param_hint="-o/--output")
    records = load_runs(run_dirs)  # checks every run directory before matplotlib loads
    from .plots import write_comparison

    result = {**compare_runs(records), "plot": str(output) if write_comparison(records, output) else None}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    labels, sections = compare_table(result)
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("", no_wrap=True)
    for label in labels:
        table.add_column(escape(label), justify="right")
    for title, rows in sections:
        if title != "run":
            table.add_section()
            table.add_row(f"[bold]{escape(title)}[/]")
        for what, values in rows:
            table.add_row(escape(what), *(escape(_number(v)) for v in values))
    out.print(table)
    if result["plot"]:
        out.print(f"learning curves: {escape(result['plot'])}", soft_wrap=True)
    else:
        out.print("no learning curves yet (no run has finished an epoch): no plot written")


def _number(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main() -> None:
    global DEBUG
    if "--debug" in sys.argv:
        DEBUG = True
        sys.argv.remove("--debug")
    app()


if __name__ == "__main__":
    main()
