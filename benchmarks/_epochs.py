"""What the cache benchmarks share: an array-like that decodes on every access (the baseline)
and the epoch timer over a DataLoader."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader


class DecodingArray:
    """Array-like uint8 of ``shape`` whose item ``i`` is ``load(paths[i])``, run on every access:
    what a data set without the pre-resized cache does each epoch."""

    dtype = np.dtype(np.uint8)

    def __init__(self, paths, shape: tuple[int, ...], load: Callable):
        self.paths, self.load = list(paths), load
        self.shape = (len(self.paths), *shape)
        self.ndim = len(self.shape)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.load(self.paths[i])


def time_epochs(dataset, epochs: int, batch_size: int) -> list[float]:
    """Seconds of each of ``epochs`` shuffled passes over ``dataset`` (num_workers=0)."""
    out = []
    for e in range(epochs):
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                            generator=torch.Generator().manual_seed(e))
        t0 = time.perf_counter()
        n = 0
        for x, _, _ in loader:
            n += len(x)
        out.append(time.perf_counter() - t0)
        assert n == len(dataset)
    return out
