"""Checkpoints, `checkpoints/last.pt` and `best.pt`: everything needed to resume a run exactly.

    model, optimizer, schedule    their state_dicts
    grad_scaler                   fp16's gradient scaler, or None
    state                         epochs completed, the history (a row per epoch, as tensors), the best
                                  value and epoch, early stopping
    rng                           torch (CPU and CUDA), numpy, Python and the batch order's generator

A checkpoint is data, never code: it holds tensors and plain Python values only, and is read with
`torch.load(weights_only=True)`, which refuses anything else instead of unpickling it. So a run
directory from someone else ("evaluate my run") cannot run their code on your machine.
"""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import RunError
from ..messages import special_file
from .files import rows_after, write_atomic

REFUSED = "not a dlcli checkpoint, or one that would run code; refusing"


def save_checkpoint(path: Path | list[Path], *, model, optimizer, schedule, grad_scaler, state: dict,
                    generator: torch.Generator, history: HistoryPack | None = None) -> None:
    """The checkpoint written to `path` (or to each of several paths, in order, serialized once); `history` packs
    state["history"] (a training's saves share one)."""
    history = history or HistoryPack()
    buffer = io.BytesIO()
    torch.save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "grad_scaler": grad_scaler.state_dict() if grad_scaler.is_enabled() else None,
        "state": {**state, "history": history.pack(state["history"])} if "history" in state else state,
        "rng": rng_state(generator),
    }, buffer)
    for each in path if isinstance(path, list) else [path]:
        write_atomic(each, buffer.getvalue())


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """A checkpoint's contents, tensors on `device`; RunError for a file that is not one, or would run code."""
    path = Path(path)
    kind = special_file(path)
    if kind:
        raise RunError(f"{path}: is {kind}, not a checkpoint file; it was not read")
    if not path.is_file():
        raise RunError(f"{path}: {'is a folder, not' if path.is_dir() else 'is missing; it is'} a checkpoint file")
    if path.stat().st_size == 0:
        raise RunError(f"{path}: is empty (0 bytes), not a checkpoint")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):  # numpy RNG arrays, as checkpoints before 12-02 held
            saved = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # weights_only met something that is not plain data
        raise RunError(f"{path}: {REFUSED}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise RunError(f"{path}: is truncated or damaged, and cannot be read as a checkpoint "
                       f"({type(exc).__name__})") from None
    if not isinstance(saved, dict) or not {"model", "optimizer", "schedule", "state", "rng"} <= set(saved):
        raise RunError(f"{path}: {REFUSED}")
    if isinstance(saved["state"], dict) and isinstance(saved["state"].get("history"), dict):
        try:
            saved["state"]["history"] = unpack_history(saved["state"]["history"])
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise RunError(f"{path}: its history is damaged, and cannot be read as a checkpoint's") from None
    return saved


# A checkpoint's history: one row per epoch, packed into tensors. As a list of dicts, pickling its every
# number made saving O(epochs) Python objects a save: 29% of a 400-epoch quickstart's time (cProfile).
_FLOAT, _INT, _NONE, _ABSENT = 0, 1, 2, 3


class HistoryPack:
    """A history's rows as {"columns", "values" (float64 [rows, columns]), "kinds"}, where every value is an int
    (|v| < 2**53), a float or None (else the rows as they are). Rows it has packed before are not packed again:
    the saves of one training hold one of these."""

    def __init__(self):
        self.columns: list[str] = []
        self.rows: list[dict] = []  # the rows packed, as they were
        self.values: list[list[float]] = []
        self.kinds: list[list[int]] = []

    def pack(self, rows: list[dict]) -> list[dict] | dict:
        n, columns = rows_after(self.rows, self.columns, rows)
        if n == 0:
            self.__init__()
        self.columns = columns
        for row in rows[n:]:
            vs, ks = [], []
            for k in self.columns:
                v = row.get(k)
                if k not in row:
                    vs.append(0.0), ks.append(_ABSENT)
                elif v is None:
                    vs.append(0.0), ks.append(_NONE)
                elif type(v) is float:
                    vs.append(v), ks.append(_FLOAT)
                elif type(v) is int and abs(v) < 2**53:
                    vs.append(float(v)), ks.append(_INT)
                else:
                    self.__init__()
                    return rows  # a string or another kind: pickled as it is
            self.values.append(vs), self.kinds.append(ks), self.rows.append(row)
        shape = (len(rows), len(self.columns))
        return {"columns": list(self.columns), "values": torch.tensor(self.values, dtype=torch.float64).reshape(shape),
                "kinds": torch.tensor(self.kinds, dtype=torch.uint8).reshape(shape)}


def unpack_history(packed: dict) -> list[dict]:
    columns, values, kinds = packed["columns"], packed["values"].tolist(), packed["kinds"].tolist()
    if len(values) != len(kinds) or any(len(v) != len(columns) or len(k) != len(columns) for v, k in zip(values, kinds)):
        raise ValueError("shapes differ")
    rows = []
    for vs, ks in zip(values, kinds):
        row = {}
        for name, v, kind in zip(columns, vs, ks):
            if kind == _FLOAT:
                row[name] = v
            elif kind == _INT:
                row[name] = int(v)
            elif kind == _NONE:
                row[name] = None
            elif kind != _ABSENT:
                raise ValueError(f"kind {kind}")
        rows.append(row)
    return rows


def rng_state(generator: torch.Generator) -> dict:
    """Every random number generator's state, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _python_rng(),
        "generator": generator.get_state(),
    }


def _python_rng() -> dict:
    """random.getstate() with its 625 numbers as one tensor: pickled one by one, they were a third of a
    quickstart checkpoint's saving time."""
    version, internal, gauss_next = random.getstate()
    return {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next}


def restore_rng(rng: dict, generator: torch.Generator) -> None:
    """Put every random number generator back where the checkpoint left it."""
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    state = rng["numpy"]
    if isinstance(state, dict):
        np.random.set_state((state["kind"], state["keys"].cpu().numpy().astype(np.uint32), state["pos"],
                             state["has_gauss"], state["cached_gaussian"]))
    else:  # a checkpoint before 2026-12-02: numpy's own tuple
        np.random.set_state(state)
    state = rng["python"]
    if isinstance(state, dict):
        state = (state["version"], tuple(state["state"].tolist()), state["gauss_next"])
    random.setstate(tuple(state))  # else a checkpoint before 2026-12-03, with random.getstate()'s own tuple
    generator.set_state(rng["generator"].cpu())


# numpy arrays rebuilt from their dtype and bytes: data only (torch's docs allow them this way).
_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2, numpy 1
_NUMPY_ARRAYS = [_multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
