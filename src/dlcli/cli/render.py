"""What the CLI prints: rich tables and lines for each command's result. No logic beyond layout here."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table

from ..messages import relative_paths, short_name

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
    split = result["split"]  # a split's name, or the --data file's path
    data = f"{split} split" if split in ("train", "val", "test") else relative_paths(split)
    what = f"{data}, {result['n_samples']} rows, {result['checkpoint']} checkpoint (epoch {result['epoch']})"
    if result.get("weighted"):
        what += f", weighted (sum of weights {result['sum_of_weights']:.4g})"
    if len(f"{run_dir}: {what}") <= out.width:
        out.print(escape(f"{run_dir}: {what}"), soft_wrap=True)
    else:  # the path whole on a line of its own, rather than folded
        out.print(escape(str(run_dir)), soft_wrap=True)
        out.print(escape(f"  {what}"), soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)
    for name, ks in result.get("overtraining", {}).items():
        out.print(f"overtraining check, {escape(name)}: KS p-value {ks['p_value']:.3g} (train vs {result['split']})")
    if "confusion_matrix" in result:
        _confusion(out, [str(c) for c in result.get("class_names") or result["classes"]], result["confusion_matrix"],
                   weighted=bool(result.get("weighted")))
    if "evaluation.json" not in result.get("not_saved", {}):
        out.print(f"written to {escape(str(Path(run_dir) / 'evaluation.json'))}", soft_wrap=True)
    if result.get("plots"):
        out.print(f"plots in {escape(str(Path(run_dir) / 'plots'))}:", soft_wrap=True)
        out.print(Padding(escape("  ".join(Path(p).name for p in result["plots"])), (0, 0, 0, 2), expand=False))


def _confusion(out: Console, classes: list[str], matrix: list[list[int]], *, weighted: bool = False) -> None:
    """The confusion matrix, headed by the class names; where they make it too wide, by class numbers (the
    rows keep the names); where even that is too wide, only where to find it."""
    for headers in (classes, [str(i) for i in range(len(classes))]):
        cm = Table()
        cm.add_column("true \\ pred")
        for c in headers:
            cm.add_column(escape(c), justify="right")
        for i, (c, row) in enumerate(zip(classes, matrix)):
            cm.add_row(escape(c if headers is classes else f"{i} {c}"),
                       *(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))  # weighted: sums
        if fits(out, cm):
            numbered = "" if headers is classes else " by number"
            sums = ", sums of weights" if weighted else ""
            out.print(f"confusion matrix{sums} (rows: true class, columns: predicted class{numbered})")
            out.print(cm)
            return
    out.print(f"confusion matrix: {len(classes)} classes are too many for this terminal's width; it is in "
              "evaluation.json and the plots")


def predictions(out: Console, result, output: Path | None) -> None:
    """`predict`: how many, and without -o the first rows; on a narrow terminal, a classifier's rows show the
    predicted class and its probability instead of every class's."""
    from ..commands.predict import PREDICTED  # loaded by the command already; here it would slow --help

    n = len(result.table)
    where = f"; written to {escape(str(output))}" if output is not None else ""
    out.print(f"{n} prediction{'' if n == 1 else 's'} ({result.checkpoint} checkpoint, epoch {result.epoch})"
              f"{where}", soft_wrap=True)
    if output is not None:
        return
    ids = [c for c in result.table.columns if c not in result.outputs]
    head = result.table.head(PREDICT_SHOW_ROWS)
    shown = ids[:PREDICT_SHOW_IDS]
    table = _frame_table(head, shown + result.outputs)
    probs = [c for c in result.outputs if c.startswith("prob_")]  # (predict --split adds `true` and `weight`)
    outputs = result.outputs
    narrowed = not fits(out, table) and PREDICTED in result.outputs
    if narrowed:  # the probability of the class shown: the largest of the row's
        head = head.assign(probability=head[probs].max(axis=1))
        outputs = [PREDICTED, "probability"] + [c for c in ("true",) if c in result.outputs]
        table = _frame_table(head, shown + outputs)
        if not fits(out, table):  # the true class is in the file's own target column too
            outputs = [PREDICTED, "probability"]
            table = _frame_table(head, shown + outputs)
    while not fits(out, table) and len(shown) > 1:  # rather than numbers cut short (an event ID as 1234567…)
        shown = shown[:-1]
        table = _frame_table(head, shown + outputs)
    out.print(table)
    more = [f"{n - PREDICT_SHOW_ROWS} more rows"] if n > PREDICT_SHOW_ROWS else []
    hidden = len(ids) - len(shown)
    more += [f"{hidden} more column{'s' if hidden > 1 else ''}"] if hidden > 0 else []
    more += [f"{len(probs)} class probabilities a row"] if narrowed else []
    if more:
        out.print(f"({', '.join(more)}; write them all with -o FILE.csv)")


def _frame_table(frame, columns: list[str]) -> Table:
    table = Table()
    for name in columns:
        numbers = frame[name].dtype.kind in "fiu"
        table.add_column(escape(str(name)), justify="right" if numbers else "left")
    for row in zip(*(frame[name].tolist() for name in columns)):  # each column's own type: an int ID stays one
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else escape(str(v)) for v in row))
    return table


def runs(out: Console, found: list[dict], folder: Path) -> None:
    """`runs`: a row per run, newest first; on a terminal too narrow for the table, a few lines per run."""
    title = f"{len(found)} run{'s' if len(found) != 1 else ''} under {escape(str(folder))}, newest first"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # The path is what `evaluate` and `compare` take: it stays on one line (a run's name is shown
    # under it when its folder is not named after it). Nothing is cut short with an ellipsis.
    table.add_column("run", no_wrap=True, overflow="fold")
    table.add_column("started", no_wrap=True)
    for column in ("status", "best", "evaluation"):
        table.add_column(column, no_wrap=True)
    changed = changed_columns(found)
    for header in changed.values():
        table.add_column(escape(header), no_wrap=True)
    for r in found:
        path = Path(r["path"])
        run = escape(r["path"]) + ("" if r["name"] == path.parent.name else f"\n[dim]({escape(r['name'])})[/]")
        status = _status(r)
        if r["epochs"] is not None:
            status += f"\n{r['epochs']} epoch{'' if r['epochs'] == 1 else 's'}"
        best = "-" if r["best_epoch"] is None else f"{r['monitor']}\n{number(r['best_value'])} @ {r['best_epoch']}"
        ev = r["evaluation"]
        evaluated = "-" if ev is None else "\n".join(
            [f"{Path(str(ev['split'])).name}:", *(f"{k} {number(v)}" for k, v in ev["metrics"].items())])
        table.add_row(run, escape((r["started"] or "-")[:16].replace("T", "\n")), status, escape(best),
                      escape(evaluated), *(escape(_value(r.get("changed", {}).get(k))) for k in changed))
    if fits(out, table):
        out.print(table)
        return
    out.print(title, soft_wrap=True)
    for r in found:
        _run_lines(out, r)


def _run_lines(out: Console, r: dict) -> None:
    """One run of `runs` on a narrow terminal: its path on a line of its own, then what the table's columns hold."""
    name = "" if r["name"] == Path(r["path"]).parent.name else f" [dim]({escape(r['name'])})[/]"
    out.print(escape(r["path"]) + name, soft_wrap=True)
    epochs = "" if r["epochs"] is None else f", {r['epochs']} epoch{'' if r['epochs'] == 1 else 's'}"
    parts = [_status(r) + epochs, f"started {escape((r['started'] or '-')[:16].replace('T', ' '))}"]
    if r["best_epoch"] is not None:
        parts.append(f"best {escape(r['monitor'])} {number(r['best_value'])} @ {r['best_epoch']}")
    out.print(Padding("  ".join(parts), (0, 0, 0, 2), expand=False))
    if r.get("changed"):
        out.print(Padding(escape("  ".join(f"{k} {_value(v)}" for k, v in r["changed"].items())), (0, 0, 0, 2),
                          expand=False))
    ev = r["evaluation"]
    if ev is not None:
        metrics = "  ".join(f"{short_name(k)} {number(v)}" for k, v in ev["metrics"].items())
        out.print(Padding(escape(f"{Path(str(ev['split'])).name}: {metrics}"), (0, 0, 0, 2), expand=False))


def _status(r: dict) -> str:
    return f"[{STATUS_COLOURS.get(r['status'], 'default')}]{escape(r['status'])}[/]"


def fits(out: Console, renderable) -> bool:
    """Whether `renderable` fits the console's width without wrapping or cutting a cell."""
    return Measurement.get(out, out.options.update_width(10_000), renderable).maximum <= out.width


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


def exported(out: Console, result) -> None:
    """`export`: the file, what it takes and gives, how it was checked."""
    meta = result.metadata
    shape = ", ".join(str(d) for d in meta["input"]["shape"])
    out.print(f"[green]exported[/] {escape(str(result.path))}", soft_wrap=True)
    out.print(f"  {result.checkpoint} checkpoint (epoch {result.epoch}), {result.format}"
              + (f" opset {meta['opset']}" if meta.get("opset") else "")
              + f"; preprocessing {meta['preprocessing']}", soft_wrap=True)
    out.print(escape(f"  input '{meta['input']['name']}' float32 [{shape}] -> '{meta['output']['name']}' "
                     f"({meta['output']['meaning']})"), soft_wrap=True)
    batches = ", ".join(str(n) for n in result.checked_batches)
    out.print(f"  checked on batches of {batches} rows: largest difference from dlcli {result.max_difference:.2g}",
              soft_wrap=True)
    if meta.get("external_data"):
        out.print(f"  weights in {escape(str(result.path.with_name(meta['external_data'])))} (ONNX external data: "
                  "over 2 GB); keep it beside the model", soft_wrap=True)
    out.print(f"  description: {escape(str(result.metadata_path))}", soft_wrap=True)


CHANGED_COLUMNS = 4  # config keys shown as columns of `runs` (`--json` has them all)


def changed_columns(found: list[dict]) -> dict[str, str]:
    """The changed config keys shown as columns: key -> header (its last part, or the whole key where two
    keys share their last part)."""
    keys = list(next((r["changed"] for r in found if r.get("changed")), {}))[:CHANGED_COLUMNS]
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}


def _value(v) -> str:
    return "-" if v is None else number(v) if isinstance(v, float) else str(v)
