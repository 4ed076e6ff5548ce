"""What `dlcli tune` prints: a line per trial as it starts and ends, the status table, the best trial."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..messages import relative_paths

STYLE = {"complete": "green", "pruned": "yellow", "failed": "red", "killed": "red", "running": "cyan"}


def value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def seconds(v) -> str:
    return "-" if v is None else f"{v:.1f}s" if v >= 1 else f"{v * 1000:.0f}ms"


def header(key: str, keys: list[str]) -> str:
    """A searched key's column title: without its section where that leaves it unique (lr, batch_size)."""
    short = key.split(".", 1)[-1]
    return short if sum(k.split(".", 1)[-1] == short for k in keys) == 1 else key


def params(p: dict) -> str:
    return " ".join(f"{k}={value(v)}" for k, v in p.items())


def event(out: Console, e: dict) -> None:
    kind = e["event"]
    if kind == "start":
        again = f" (trial {e['resumes']} again, resuming its run)" if e.get("resumes") is not None else ""
        out.print(f"trial {e['number']} started{again}: {escape(params(e['params']))}", soft_wrap=True)
    elif kind == "end":
        state = e["state"]
        head = f"trial {e['number']} [{STYLE.get(state, '')}]{state}[/]"
        if state == "failed":
            out.print(f"{head}: {escape(relative_paths(e['message']))}", soft_wrap=True)
            return
        at = f" at epoch {e['epochs']}" if state == "pruned" else ""
        best = f"  best {value(e['best_value'])} (trial {e['best_number']})" if e.get("best_number") is not None else ""
        out.print(f"{head}{at}  {e['metric']} {value(e['value'])}  {seconds(e['seconds'])}{best}", soft_wrap=True)
    elif kind == "recovered":
        where = f", resuming {relative_paths(str(e['run_dir']))}" if e.get("run_dir") else ""
        out.print(f"trial {e['number']} was killed (its process is gone): marked failed, its parameters tried "
                  f"again{escape(where)}", soft_wrap=True)
    elif kind == "gave_up":
        out.print(f"[red]stopping this worker:[/] {e['failures']} trials in a row failed (the last: "
                  f"{escape(e['message'])})", soft_wrap=True)
    elif kind == "warning":
        out.print(f"[yellow]warning:[/] {escape(e['message'])}", soft_wrap=True)
    elif kind == "error":
        out.print(f"[red]a worker stopped:[/] {escape(e['message'])}", soft_wrap=True)


def finished(out: Console, result) -> None:
    n = result.counts
    out.print(f"study {escape(relative_paths(str(result.study_dir)))}: " + ", ".join(
        f"{n[k]} {k}" for k in ("complete", "pruned", "fail", "running") if n.get(k)).replace("fail", "failed") +
        (f"; its timeout is spent ({seconds(result.spent)} of {seconds(result.timeout)}): raise tune.timeout to "
         "go on" if result.timed_out else ""), soft_wrap=True)
    if result.best is None:
        out.print("no trial completed: no best config")
        return
    b = result.best
    out.print(f"best: trial {b['number']}, {result.metric} {value(b['value'])}: {escape(params(b['params']))}", soft_wrap=True)
    out.print(f"  dlcli train {escape(relative_paths(str(result.study_dir / 'best.yaml')))}", soft_wrap=True)


def status(out: Console, found: dict) -> None:
    rows = found["trials"]
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    table = Table(title=f"{found['study']}: {found['objective']['metric']} ({found['objective']['mode']}), "
                        f"{sum(r['state'] in ('complete', 'pruned') for r in rows)} of {found['n_trials']} trials done")
    for col in ("#", "state", *(header(k, keys) for k in keys), "value", "epochs", "seconds"):
        table.add_column(col, justify="left" if col in ("state",) else "right", overflow="fold")
    for r in rows:
        state = r["state"]
        table.add_row(str(r["number"]), f"[{STYLE.get(state, '')}]{state}[/]",
                      *(value(r["params"].get(k)) for k in keys), value(r["value"]), value(r["epochs"]),
                      seconds(r["seconds"]))
    out.print(table)
    if found["best"] is not None:
        b = found["best"]
        out.print(f"best: trial {b['number']}, {value(b['value'])}")
    for r in rows:
        if r["message"] and r["state"] in ("failed", "killed"):
            out.print(f"trial {r['number']}: {escape(relative_paths(r['message']))}", soft_wrap=True)
