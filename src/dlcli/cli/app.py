"""The `dlcli` command: parse arguments, call one library function (commands/), render the result (render.py).

Nothing here imports torch at module level, so `dlcli --help` answers at once.
"""

from __future__ import annotations

import functools
import json
import shlex
import signal
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import DlcliError, TrainingFailed
from ..messages import relative_paths
from . import render

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
SKIP_TEARDOWN = False  # set by a command whose process may end without the interpreter's teardown
ERROR = "[red]error:[/]"


def say(label: str, text: str, console: Console = err) -> None:
    """A message for the user, each of its lines after `label` (error:, note:, warning:), so a report of
    several problems reads as several errors; paths under the current directory written relative to it."""
    for line in relative_paths(text).splitlines() or [""]:
        console.print(f"{label} {escape(line)}", soft_wrap=True)


def friendly(command):
    """Input errors become a short message and exit 2; a failed run exits 1; Ctrl-C exits 130, SIGTERM 143."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DlcliError as exc:
            if DEBUG:
                raise
            say(ERROR, str(exc))
            raise typer.Exit(exc.exit_code) from None
        except TrainingFailed as exc:
            if DEBUG:
                raise
            say("[red]training failed:[/]", str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            for s in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut this message short
                signal.signal(s, signal.SIG_IGN)
            if DEBUG:
                raise
            run_dir = getattr(exc, "run_dir", None)
            if run_dir is None:  # before the run folder existed: nothing to continue
                err.print("interrupted")
            else:
                err.print("interrupted: the run is marked interrupted; continue it with")
                err.print(f"  {escape(resume_command(run_dir))}", soft_wrap=True)  # on a line of its own, to copy
            raise typer.Exit(getattr(exc, "exit_code", 130)) from None

    return wrapper


def resume_command(run_dir) -> str:
    """The command that continues a run, ready to paste (the path quoted if the shell needs it)."""
    return f"dlcli train --resume {shlex.quote(relative_paths(str(run_dir)))}"


def chosen_run(run_dir: Path) -> Path:
    """The run a command uses: RUN_DIR itself, or the newest run in a folder of runs (saying which)."""
    from ..commands.reports import newest_run

    chosen, note = newest_run(run_dir)
    if note:
        say("note:", note)
    return chosen


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
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (overrides train.threads; default auto)."),
    nproc: int | None = typer.Option(None, "--nproc", min=1, help="Data-parallel: N processes on this machine (torchrun --standalone)."),
    track: list[str] = typer.Option([], "--track", help="Also track the run in mlflow (or tensorboard); repeatable. "
                                    "Adds to the config's tracking: list."),
):
    """Train a model; every run is kept in its own run directory."""
    from ..commands.train import train as run_training

    config, overrides = _split_args(args or [])
    overrides += [f"train.threads={threads}"] if threads is not None else []
    if config is None and resume is None:
        raise typer.BadParameter("give a config file (or --resume RUN_DIR)", param_hint="CONFIG")
    if config is not None and resume is not None:
        raise typer.BadParameter("--resume continues the run's own config; give overrides only", param_hint="CONFIG")
    for name in track:
        if name not in ("mlflow", "tensorboard"):
            raise typer.BadParameter(f"must be mlflow or tensorboard, got '{name}'", param_hint="--track")
    if nproc is not None:  # N ranks, each running this command without --nproc
        from .launch import check, launch, worker_args

        check(config, overrides, resume, nproc, device)
        code = launch(nproc, worker_args(sys.argv[sys.argv.index("train"):]))
        if code:
            raise typer.Exit(code)
        return
    result = run_training(config, overrides, run_dir=run_dir, device=device, resume=resume, progress=progress,
                          track=track)
    render.trained(out, result)


@app.command()
@friendly
def evaluate(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory written by dlcli train."),
    split: str = typer.Option("test", help="test, val or train."),
    data: Path | None = typer.Option(None, "--data", help="Evaluate on every row of this file instead of a split."),
    checkpoint: str = typer.Option("best", help="best or last."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write plots to RUN_DIR/plots/ (default: on)."),    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: the run's train.threads)."),
):
    """Metrics of a trained run on a split; also written to RUN_DIR/evaluation.json, plots to RUN_DIR/plots/.
    A folder of runs (runs/NAME) means its newest completed run."""
    from ..commands.evaluate import evaluate as run_evaluation

    if split not in ("test", "val", "train"):
        raise typer.BadParameter(f"must be test, val or train, got '{split}'", param_hint="--split")
    if checkpoint not in ("best", "last"):
        raise typer.BadParameter(f"must be best or last, got '{checkpoint}'", param_hint="--checkpoint")
    run_dir = chosen_run(run_dir)
    result = run_evaluation(run_dir, split=split, data=data, checkpoint=checkpoint, device=device, plots=plots,
                            note=lambda text: say("note:", text), threads=threads)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        render.evaluation(out, run_dir, result)
    for problem in result.get("not_saved", {}).values():  # the metrics are printed; what was not saved fails
        say(ERROR, problem)
    if result.get("not_saved"):
        raise typer.Exit(2)


@app.command()
@friendly
def predict(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory written by dlcli train."),
    input: Path | None = typer.Argument(None, metavar="[INPUT]", help="A table file, an image, or a folder of images."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write every row to this file: .csv, "
                                       ".parquet or .root (a TTree, with the hep extra)."),
    split: str | None = typer.Option(None, "--split", help="Instead of INPUT, the run's own train, val or test "
                                     "split: every event with scores, predicted and true class, weight."),
    checkpoint: str = typer.Option("best", help="best or last."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Rows per batch (default: train.eval_batch_size)."),    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: the run's train.threads)."),
):
    """Class probabilities and predicted labels (or regression values) for every row of INPUT. A folder of runs
    (runs/NAME) means its newest completed run."""
    from ..commands.predict import predict as run_prediction

    if checkpoint not in ("best", "last"):
        raise typer.BadParameter(f"must be best or last, got '{checkpoint}'", param_hint="--checkpoint")
    if (input is None) == (split is None):
        raise typer.BadParameter("give INPUT (a file to predict on) or --split train|val|test, one of them",
                                 param_hint="INPUT")
    run_dir = chosen_run(run_dir)
    if split is not None:
        from ..commands.split_outputs import predict_split

        result = predict_split(run_dir, split, output=output, checkpoint=checkpoint, device=device,
                               batch_size=batch_size, threads=threads)
    else:
        result = run_prediction(run_dir, input, output=output, checkpoint=checkpoint, device=device,
                                batch_size=batch_size, threads=threads)
    for note in result.notes:
        say("note:", note)
    render.predictions(out, result, output)


@app.command()
@friendly
def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory written by dlcli train."),
    checkpoint: str = typer.Option("best", help="best or last."),
    format: str = typer.Option("onnx", "--format", help="onnx (for ONNX Runtime, CMSSW, Athena, SOFIE) or torch "
                               "(a torch.export .pt2)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="The file (default: RUN_DIR/export/model.onnx "
                                       "or model.pt2)."),
    include_preprocessing: bool = typer.Option(True, "--include-preprocessing/--no-include-preprocessing",
                                               help="Fold the scaler and missing: mean's fill values into the "
                                               "model, so it takes raw features (default: on)."),
):
    """The run's network as an ONNX file (or a torch.export program) that outputs probabilities, checked
    against dlcli's predictions before it is written; model.json beside it says what goes in and out."""
    from ..commands.export import export as run_export

    if checkpoint not in ("best", "last"):
        raise typer.BadParameter(f"must be best or last, got '{checkpoint}'", param_hint="--checkpoint")
    if format not in ("onnx", "torch"):
        raise typer.BadParameter(f"must be onnx or torch, got '{format}'", param_hint="--format")
    run_dir = chosen_run(run_dir)
    result = run_export(run_dir, checkpoint=checkpoint, format=format, output=output,
                        include_preprocessing=include_preprocessing)
    for note in result.notes:
        say("note:", note)
    render.exported(out, result)


@app.command()
@friendly
def summarize(
    target: Path = typer.Argument(..., metavar="CONFIG|RUN_DIR", help="A YAML config or a run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """The model's layers, output shapes and parameter counts, as Keras' model.summary()."""
    from ..commands.summarize import summarize as run_summary
    from ..commands.summarize import summary_table
    from ..nn.summary import summary_dict

    model, name = run_summary(target)
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
    from ..commands.validate import validate as run_validation

    config, overrides = _split_args(args)
    if config is None:
        raise typer.BadParameter("give a config file", param_hint="CONFIG")
    result = run_validation(config, overrides)
    for note in result.notes:
        out.print(escape(relative_paths(note)), soft_wrap=True)
    rows = ", ".join(f"{k} {n}" for k, n in result.rows.items())
    out.print(f"[green]ok[/] {escape(config)}: {result.task} task, {result.layers} layers, "
              f"{result.parameters:,} parameters; data {escape(relative_paths(result.source))}: {rows} rows", soft_wrap=True)


@app.command("list")
@friendly
def list_names():
    """Every layer type, activation, loss, optimizer, schedule, metric and augmentation a config may name."""
    from ..commands.listing import catalogue

    for title, entries in catalogue():
        out.print(f"[bold]{title}[/]")
        for name, params in entries:
            out.print(f"  {name}" + (f" ({', '.join(params)})" if params else ""))


@app.command("runs")
@friendly
def list_runs(
    folder: Path = typer.Argument(Path("runs"), metavar="[DIR]", help="Where to look for runs (default: runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
):
    """The runs under DIR, newest first: status, epochs, best validation value, evaluation metrics."""
    from ..commands.reports import runs_table

    found = runs_table(folder)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if not found:
        out.print(f"no runs under {escape(str(folder))} (a run is a folder holding run.json)", soft_wrap=True)
        return
    render.runs(out, found, folder)


@app.command()
@friendly
def compare(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR RUN_DIR ...", help="Run directories to compare (a folder of runs, runs/<name>: all of them)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Where to write the overlaid learning curves "
                                       "(default: runs/compare-<date-time>.png)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
):
    """Overlay runs' learning curves in one PNG and print their metrics side by side."""
    from ..commands.reports import compare as compare_runs
    from ..commands.reports import compare_table, load_runs

    if output is None:  # beside the runs, named like them, so that compares do not pile up in the current folder
        output = Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}.png"
    if output.suffix.lower() != ".png" or output.is_dir():
        raise typer.BadParameter(f"must be a .png file name, got '{output}'", param_hint="-o/--output")
    skipped: list[str] = []
    records = load_runs(run_dirs, skipped)  # checks every run directory before matplotlib loads
    for line in skipped:
        say("warning:", line)
    from ..commands.plots import write_comparison

    result = {**compare_runs(records), "plot": str(output) if write_comparison(records, output) else None}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    render.comparison(out, *compare_table(result), result["plot"])


@app.command()
@friendly
def tune(
    args: list[str] = typer.Argument(..., metavar="CONFIG [KEY=VALUE ...] | status STUDY_DIR | best STUDY_DIR",
                                     help="A config with a tune: section (then overrides); or status / best and a "
                                          "study folder, runs/tune/<study>."),
    n_trials: int | None = typer.Option(None, "--n-trials", min=1, help="Complete + pruned trials in all (overrides tune.n_trials)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Trial processes at once (overrides tune.workers)."),
    new: bool = typer.Option(False, "--new", help="Start a fresh study in a new folder instead of continuing this one."),
    output: Path | None = typer.Option(None, "-o", "--output", help="best: where to write the winning config."),
    as_json: bool = typer.Option(False, "--json", help="status: print the trials as JSON."),
):
    """Search hyperparameters over any config key (Optuna); run again to continue the study."""
    from . import tune_render

    if args[0] in ("status", "best") and len(args) == 2 and Path(args[1]).is_dir():
        from ..commands import tune_report

        if args[0] == "status":
            found = tune_report.status(Path(args[1]))
            if as_json:
                print(json.dumps(found, indent=2, default=str))
            else:
                tune_render.status(out, found)
            return
        path, best = tune_report.best(Path(args[1]), output)
        out.print(f"trial {best['number']} ({tune_render.value(best['value'])}): "
                  f"{escape(tune_render.params(best['params']))}", soft_wrap=True)
        out.print(f"wrote {escape(relative_paths(str(path)))}; train it with dlcli train "
                  f"{escape(shlex.quote(relative_paths(str(path))))}", soft_wrap=True)
        return
    from ..commands.tune import tune as run_tuning

    config, overrides = _split_args(args)
    if config is None:
        raise typer.BadParameter("give a config file with a tune: section", param_hint="CONFIG")
    try:  # the config is checked inside, after its workers are spawned (their imports overlap the checks)
        result = run_tuning(config, overrides, n_trials=n_trials, workers=workers, new=new,
                            progress=lambda e: tune_render.event(out, e))
    except KeyboardInterrupt as exc:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        if getattr(exc, "study_dir", None) is None:  # still checking the config: no trial had begun
            err.print("interrupted")
        else:
            err.print("interrupted: the trials that were running are marked interrupted; continue the study with")
            err.print(f"  dlcli tune {escape(' '.join(shlex.quote(a) for a in args))}", soft_wrap=True)
        raise typer.Exit(getattr(exc, "exit_code", 130)) from None
    tune_render.finished(out, result)
    global SKIP_TEARDOWN
    SKIP_TEARDOWN = True  # the study's files are closed; freeing torch's modules would take 1-2.5 s more


def main() -> None:
    global DEBUG
    if "--debug" in sys.argv:
        DEBUG = True
        sys.argv.remove("--debug")
    try:
        app()
    except SystemExit as exc:
        if SKIP_TEARDOWN:
            from ..commands.tune import skip_teardown

            skip_teardown(exc.code if isinstance(exc.code, int) else 1)
        raise
