"""HDF5 files, through h5py, read slice by slice.

`key:` names a group whose data sets are the columns (1-D, or 2-D giving x[0], x[1], ...), a
compound data set whose fields are the columns, or a plain 2-D data set whose columns are named by
position.
"""

from __future__ import annotations

from typing import Any

from ...errors import SpecError
from ...messages import did_you_mean
from .columns import Origin, listing
from .table import ArrayColumns, reading_errors


class Hdf5Table(ArrayColumns):
    """`key:` names a group (its data sets are the columns), a compound data set or a 2-D data set."""

    suffixes = (".h5", ".hdf5")
    options = ("key",)

    def __init__(self, origin: Origin):
        super().__init__(origin)
        import h5py

        with reading_errors(origin, "HDF5", OSError):
            self.h5 = h5py.File(self.file, "r")
        node = self._node(origin.data.key, h5py)
        self.group = node if isinstance(node, h5py.Group) else None
        if self.group is None:
            self._columns_of(node, f"data set '{node.name}'", "key")
            return
        self.kind, self.structured = "data set", True
        self.names = [k for k, v in node.items() if isinstance(v, h5py.Dataset)]
        self.strings = {k for k in self.names if h5py.check_string_dtype(node[k].dtype) is not None}

    def _node(self, key: str | None, h5py):
        if key is not None:
            if key not in self.h5:
                paths = [p for p, _ in _contents(self.h5, h5py)]
                raise SpecError(f"{self.file} has no group or data set '{key}'{did_you_mean(key, paths)} (it "
                                f"holds {_describe(self.h5, h5py)})", "key")
            return self.h5[key]
        # Without key: the top level when it holds the target as a data set, else its only data set.
        if isinstance(self.h5.get(self.origin.target), h5py.Dataset):
            return self.h5
        datasets = [node for _, node in _contents(self.h5, h5py) if isinstance(node, h5py.Dataset)]
        if len(datasets) == 1:
            return datasets[0]
        raise SpecError(f"{self.file}: name the table with data.key, a group of data sets (one per column), a "
                        f"compound data set or a 2-D data set; the file holds {_describe(self.h5, h5py)}",
                        "key" if self.origin.main else self.origin.key)

    def listing(self) -> str:
        return listing(self.names, self.kind) if self.group is not None else super().listing()

    def flat(self, names):
        if self.group is None:
            return super().flat(names)
        return [n for n in names if self.group[n].ndim == 1]

    def estimated_rows(self) -> int:
        if self.group is None:
            return super().estimated_rows()
        first = self.origin.target if self.origin.target in self.names else self.names[0] if self.names else None
        return len(self.group[first]) if first else 0

    def slice(self, names, start, stop):
        if self.group is None:
            if self.structured and names:  # a compound data set: read only the fields used
                part = self.array.fields(names)[start:stop]
                return {names[0]: part} if len(names) == 1 else {n: part[n] for n in names}
            return super().slice(names, start, stop)
        out = {}
        for n in names:
            data = self.group[n]
            out[n] = data.asstr()[start:stop] if n in self.strings else data[start:stop]
        return out

    def close(self):
        self.h5.close()


def _contents(h5, h5py) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    h5.visititems(lambda path, node: found.append((path, node)))
    return found


def _describe(h5, h5py, limit: int = 12) -> str:
    """What an HDF5 file holds, for a message: "group events (3 data sets), data set x (100, 4) float64"."""
    items = []
    for path, node in _contents(h5, h5py):
        if isinstance(node, h5py.Group):
            count = sum(isinstance(v, h5py.Dataset) for v in node.values())
            items.append(f"group '{path}' ({count} data sets)")
        else:
            kind = "compound" if node.dtype.names else str(node.dtype)
            items.append(f"data set '{path}' {tuple(node.shape)} {kind}")
    if not items:
        return "no data sets"
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")
