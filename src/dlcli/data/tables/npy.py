"""`.npy` arrays: a structured array's fields, or a plain 2-D array's columns named by position."""

from __future__ import annotations

import numpy as np

from ...errors import SpecError
from .columns import Origin
from .table import ArrayColumns


class NpyTable(ArrayColumns):
    """Memory-mapped, so a chunk reads only its rows."""

    suffixes = (".npy",)

    def __init__(self, origin: Origin):
        super().__init__(origin)
        try:
            array = np.load(self.file, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc).lower():  # object arrays need pickle, never allowed for data files
                raise SpecError(f"{self.file} holds Python objects; save a numeric or structured array",
                                origin.key) from None
            raise SpecError(f"cannot read {self.file} as an .npy array: {exc}", origin.key) from None
        except OSError as exc:
            raise SpecError(f"cannot read {self.file} as an .npy array: {exc}", origin.key) from None
        self._columns_of(array, "the array", origin.key)
