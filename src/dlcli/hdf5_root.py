"""HDF5 and ROOT readers (see tables.py for how readers work).

HDF5 (h5py): `key:` names a group whose data sets are the columns (1-D, or 2-D giving x[0], x[1],
...), a compound data set whose fields are the columns, or a plain 2-D data set whose columns are
named by position. ROOT (uproot, the optional `hep` extra): `tree:` names a TTree (or RNTuple),
`branches:` the feature branches; by default every numeric branch with one value per entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .columns import Origin, listing
from .errors import SpecError
from .registry import did_you_mean
from .tables import HEP_INSTALL, ArrayColumns, Table, reading_errors, table_format


@table_format(".h5", ".hdf5")
class Hdf5Table(ArrayColumns):
    """`key:` names a group (its data sets are the columns), a compound data set or a 2-D data set."""

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


@table_format(".root")
class RootTable(Table):
    """A TTree's branches (or an RNTuple's fields) through uproot; features are numeric scalar branches."""

    kind = "branch"
    options = ("tree", "branches")
    TREES = ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple")

    def __init__(self, origin: Origin):
        super().__init__(origin)
        try:
            import uproot
        except ImportError:
            raise SpecError(f"reading ROOT files ({Path(self.file).name}) needs uproot: {HEP_INSTALL}",
                            origin.key) from None
        with reading_errors(origin, "a ROOT file", OSError, ValueError, uproot.deserialization.DeserializationError):
            self.root = uproot.open(self.file)
        trees = list(dict.fromkeys(k.rsplit(";", 1)[0] for k, c in self.root.classnames().items()
                                   if c in self.TREES))
        name, key = origin.data.tree, "tree" if origin.main else origin.key
        if name is None:
            if len(trees) != 1:
                have = f"{len(trees)} trees ({', '.join(trees)})" if trees else "no TTree"
                raise SpecError(f"{self.file} holds {have}; name the one to read with data.tree", key)
            name = trees[0]
        elif name not in trees:
            have = f"its trees: {', '.join(trees)}" if trees else "it holds no TTree"
            raise SpecError(f"{self.file} has no tree '{name}'{did_you_mean(name, trees)} ({have})", key)
        self.tree = self.root[name]
        self.names = list(self.tree.keys())
        # One entry of every branch tells numeric scalars (a number per entry) from jagged or text ones.
        first = self.tree.arrays(self.names, entry_stop=min(1, self.tree.num_entries), library="np")
        self.scalars = [n for n in self.names if first[n].ndim == 1 and first[n].dtype.kind in "biuf"]

    def defaults(self):
        return self.scalars

    def unusable(self, name):
        if name in self.scalars:
            return None
        return (f"branch '{name}' holds {self.tree[name].typename} values, not one number per entry; "
                "features are numeric scalar branches")

    def flat(self, names):
        return [n for n in names if n in self.scalars]

    def estimated_rows(self) -> int:
        return int(self.tree.num_entries)

    def slice(self, names, start, stop):
        return self.tree.arrays(names, entry_start=start, entry_stop=stop, library="np")

    def close(self):
        self.root.close()
