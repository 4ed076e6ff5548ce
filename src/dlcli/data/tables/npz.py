"""`.npz` archives: each array is a column (a 2-D array x gives x[0], x[1], ...), or the images."""

from __future__ import annotations

import zipfile

import numpy as np

from ...errors import SpecError
from .columns import Origin
from .table import Table


class NpzTable(Table):
    """Arrays are decompressed whole, so an .npz archive is never streamed."""

    suffixes = (".npz",)
    kind = "array"
    streamable = False

    def __init__(self, origin: Origin):
        super().__init__(origin)
        try:
            self.archive = np.load(self.file, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise SpecError(f"cannot read {self.file} as an .npz archive: {exc}", origin.key) from None
        self.names = list(self.archive.files)

    def read(self, names):
        return {n: self._array(n) for n in names}

    def flat(self, names):
        return [n for n in names if self._array(n).ndim == 1]

    def _array(self, key: str) -> np.ndarray:
        try:
            return self.archive[key]
        except ValueError:  # object arrays need pickle, which is never allowed for data files
            where = self.origin.target_key if key == self.origin.target else self.origin.feature_key(key)
            raise SpecError(f"{self.file}: array '{key}' holds Python objects; save numeric or string arrays",
                            where) from None

    def close(self):
        self.archive.close()
