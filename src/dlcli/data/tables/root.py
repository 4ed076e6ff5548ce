"""ROOT files, through uproot (the optional `hep` extra): no ROOT installation needed.

`tree:` names a TTree (or RNTuple), `branches:` the feature branches; by default every numeric
branch with one value per entry.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import SpecError
from ...messages import did_you_mean
from .columns import Origin
from .table import Table, reading_errors

HEP_INSTALL = 'pip install "dlcli[hep]" (or uv sync --extra hep)'


class RootTable(Table):
    """A TTree's branches (or an RNTuple's fields) through uproot; features are numeric scalar branches."""

    suffixes = (".root",)
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
