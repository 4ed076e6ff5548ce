"""What the CLI prints: rich tables and lines for each command's result. No logic beyond layout here."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

PREDICT_SHOW_ROWS = 10  # rows printed without -o
PREDICT_SHOW_IDS = 4  # identifying columns printed (all of them go to the CSV)
STATUS_COLOURS = {"completed": "green", "failed": "red", "interrupted": "yellow", "killed": "red", "running": "cyan"}


def trained(out: Console, result) -> None:
    """`train`: how it ended, the run directory, what to run next."""
    best = ""
    if result.best_epoch is not None:
        best = f"; best {result.monitor} {result.best_value:.4g} at epoch {result.best_epoch}"
    early = " (stopped early)" if result.stopped_early else ""
    # soft_wrap: a path is never folded across lines, so it can be copied or parsed from the output.
    n = result.epochs
    out.print(f"[green]completed[/] {n} epoch{'' if n == 1 else 's'}{early}{best}", soft_wrap=True)
    out.print(f"run directory: {escape(str(result.run_dir))}", soft_wrap=True)
    out.print(f"next: dlcli evaluate {escape(str(result.run_dir))}", soft_wrap=True)


def evaluation(out: Console, run_dir: Path, result: dict) -> None:
    """`evaluate`: the metrics, the confusion matrix, where they were written."""
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
    if "evaluation.json" not in result.get("not_saved", {}):
        out.print(f"written to {escape(str(Path(run_dir) / 'evaluation.json'))}", soft_wrap=True)
    if result.get("plots"):
        out.print(f"plots in {escape(str(Path(run_dir) / 'plots'))}: "
                  f"{', '.join(Path(p).name for p in result['plots'])}", soft_wrap=True)


def predictions(out: Console, result, output: Path | None) -> None:
    """`predict`: how many, and without -o the first rows."""
    n = len(result.table)
    where = f"; written to {escape(str(output))}" if output is not None else ""
    out.print(f"{n} prediction{'' if n == 1 else 's'} ({result.checkpoint} checkpoint, epoch {result.epoch})"
              f"{where}", soft_wrap=True)
    if output is not None:
        return
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


def runs(out: Console, found: list[dict], folder: Path) -> None:
    """`runs`: a row per run, newest first."""
    table = Table(title=f"{len(found)} run{'s' if len(found) != 1 else ''} under {escape(str(folder))}, newest first",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # The path is what `evaluate` and `compare` take: it stays on one line while the other cells
    # wrap (a run's name is shown under it when its folder is not named after it). Nothing is cut
    # short with an ellipsis; on a terminal too narrow for the path, it folds.
    table.add_column("run", no_wrap=True, overflow="fold")
    table.add_column("started", no_wrap=True)  # a date folded mid-way reads badly; the other cells fold
    for column in ("status", "best", "evaluation"):
        table.add_column(column, overflow="fold")
    for r in found:
        path = Path(r["path"])
        run = escape(r["path"]) + ("" if r["name"] == path.parent.name else f"\n[dim]({escape(r['name'])})[/]")
        status = f"[{STATUS_COLOURS.get(r['status'], 'default')}]{escape(r['status'])}[/]"
        if r["epochs"] is not None:
            status += f"\n{r['epochs']} epoch{'' if r['epochs'] == 1 else 's'}"
        best = "-" if r["best_epoch"] is None else f"{r['monitor']}\n{number(r['best_value'])} @ {r['best_epoch']}"
        ev = r["evaluation"]
        evaluated = "-" if ev is None else "\n".join(
            [f"{Path(str(ev['split'])).name}:", *(f"{k} {number(v)}" for k, v in ev["metrics"].items())])
        table.add_row(run, escape((r["started"] or "-")[:16].replace("T", "\n")), status, escape(best),
                      escape(evaluated))
    out.print(table)


def comparison(out: Console, labels: list[str], sections: list, plot: str | None) -> None:
    """`compare`: the runs side by side (commands.reports.compare_table), and where the plot went."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("", no_wrap=True)
    for label in labels:
        table.add_column(escape(label), justify="right")
    for title, rows in sections:
        if title != "run":
            table.add_section()
            table.add_row(f"[bold]{escape(title)}[/]")
        for what, values in rows:
            table.add_row(escape(what), *(escape(number(v)) for v in values))
    out.print(table)
    if plot:
        out.print(f"learning curves: {escape(plot)}", soft_wrap=True)
    else:
        out.print("no learning curves yet (no run has finished an epoch): no plot written")


def number(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
