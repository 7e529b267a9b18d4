"""Patch sampling for image-quality models: square crops of whole images, with the image's MOS.

IQA networks are trained and tested on crops (224 x 224 for ImageNet backbones) of larger
photos (512 x 384 for KonIQ-10k), as in HyperIQA and its successors:

* training: ``train_patch_num`` crops of every image per epoch, each at a fresh random position
  (and mirrored with probability ``hflip_p``), so the dataset holds ``N * k`` items;
* test: ``test_patch_num`` crops per image whose predictions are **averaged** into the image's
  score; their positions are either ``"random"`` (drawn once from the seed, the same in every
  epoch and on every machine) or ``"grid"`` (evenly spread over the image, corners included).

Item ``j`` is patch ``j % k`` of image ``j // k``, so ``index // k`` recovers the image of a
prediction (:func:`image_of`).

Written by hand: torchvision's ``RandomCrop`` / ``FiveCrop`` transforms give neither seeded
per-image test positions nor evenly spread grids of any count, and cropping the uint8 array
before converting is what keeps a 224 px crop of a 512 x 384 photo cheap.

Batches: a DataLoader calls ``__getitems__``, which crops the whole batch into one uint8 array
and returns a :class:`~lfakit.data.batching.RawBatch` (normalised by the engine's collate, on the
CPU or the GPU): the same draws in the same order and the same float operations as item by item.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from lfakit.data.batching import Normalise, RawBatch, draw
from lfakit.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from lfakit.errors import ParameterError

__all__ = ["PatchDataset", "POSITIONS", "image_of", "grid_positions"]

POSITIONS = ("fresh", "random", "grid")


def grid_positions(height: int, width: int, patch: int, k: int) -> np.ndarray:
    """``k`` top-left corners ``(y, x)`` spread evenly over an ``height x width`` image: a grid of
    ``rows x cols >= k`` cells (rows/cols in the image's aspect), read row by row, first ``k``."""
    span_y, span_x = height - patch, width - patch
    cols = max(1, round(math.sqrt(k * (span_x + 1) / (span_y + 1))))
    cols = min(cols, k)
    rows = math.ceil(k / cols)
    ys = np.linspace(0, span_y, rows).round().astype(int) if rows > 1 else np.array([span_y // 2])
    xs = np.linspace(0, span_x, cols).round().astype(int) if cols > 1 else np.array([span_x // 2])
    grid = np.array([(y, x) for y in ys for x in xs])
    return grid[:k]


def image_of(index, patches_per_image: int) -> np.ndarray:
    """The image of each item ``index`` of a :class:`PatchDataset` with that many patches."""
    return np.asarray(index, dtype=np.int64) // int(patches_per_image)


class PatchDataset(Dataset):
    """``{"x", "y", "index", "std"}`` items: crops of uint8 RGB images, their MOS and opinion SD.

    images: uint8 (N, H, W, 3) (a memmap is read one crop at a time); mos, sd: (N,) floats.
    patch_size: the crop side (at most the image's shorter side). patches_per_image: ``k``.
    positions: ``"fresh"`` (training: a new random position per access, from torch's global RNG,
    which the engine seeds every epoch), ``"random"`` (drawn once from ``seed``) or ``"grid"``.
    hflip_p: probability of a horizontal mirror (``"fresh"`` only; 0 for test sets).
    x is float32 (3, p, p), scaled to [0, 1] and ImageNet-normalised; ``std`` is the image's
    opinion SD, which the engine hands to the loss as a keyword (the fidelity loss uses it).
    """

    def __init__(self, images, mos, sd, patch_size: int, patches_per_image: int, positions: str = "fresh",
                 seed: int = 0, hflip_p: float = 0.0):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ParameterError(f"images must be a uint8 (N, H, W, 3) array, got {images.dtype} {images.shape}")
        n, h, w = images.shape[:3]
        mos = np.asarray(mos, dtype=np.float64)
        sd = np.asarray(sd, dtype=np.float64)
        if mos.shape != (n,) or sd.shape != (n,):
            raise ParameterError(f"mos and sd need one value per image ({n}); got shapes {mos.shape} and {sd.shape}")
        if not 1 <= int(patch_size) <= min(h, w):
            raise ParameterError(f"patch_size={patch_size} does not fit the {h} x {w} images; use a side of at most "
                                 f"{min(h, w)} (or cache the images larger)")
        if int(patches_per_image) < 1:
            raise ParameterError(f"patches_per_image must be at least 1, got {patches_per_image}")
        if positions not in POSITIONS:
            raise ParameterError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
        if not 0.0 <= hflip_p <= 1.0:
            raise ParameterError(f"hflip_p must lie in [0, 1], got {hflip_p}")
        self.images, self.mos, self.sd = images, mos, sd
        self.patch, self.k, self.positions, self.hflip_p = int(patch_size), int(patches_per_image), positions, float(hflip_p)
        if positions == "random":
            rng = np.random.default_rng(seed)
            self._corners = np.stack([rng.integers(0, h - self.patch + 1, size=(n, self.k)),
                                      rng.integers(0, w - self.patch + 1, size=(n, self.k))], axis=-1)
        elif positions == "grid":
            self._corners = np.broadcast_to(grid_positions(h, w, self.patch, self.k), (n, self.k, 2))
        else:
            self._corners = None
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
        self._normalise = Normalise(self._mean, self._std, 3)

    def __len__(self) -> int:
        return len(self.images) * self.k

    def corner(self, index: int) -> tuple[int, int]:
        """Top-left ``(y, x)`` of item ``index`` (``"random"``/``"grid"``: fixed; ``"fresh"``: drawn now)."""
        i, j = divmod(int(index), self.k)
        if self._corners is not None:
            y, x = self._corners[i, j]
            return int(y), int(x)
        h, w = self.images.shape[1:3]
        y = int(torch.randint(0, h - self.patch + 1, ()))
        x = int(torch.randint(0, w - self.patch + 1, ()))
        return y, x

    def __getitem__(self, index):
        if not 0 <= int(index) < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patches")
        i = int(index) // self.k
        y, x = self.corner(index)
        crop = np.ascontiguousarray(self.images[i][y:y + self.patch, x:x + self.patch])  # images[i]: a memmap view, or one decode
        img = torch.from_numpy(crop).permute(2, 0, 1)
        if self.positions == "fresh" and self.hflip_p > 0 and float(torch.rand(())) < self.hflip_p:
            img = img.flip(-1)
        xt = (img.to(torch.float32).div_(255.0) - self._mean) / self._std
        return {"x": xt, "y": torch.tensor(self.mos[i]), "index": int(index), "std": torch.tensor(self.sd[i])}

    def __getitems__(self, indices):
        if type(self).__getitem__ is not PatchDataset.__getitem__ or type(self).corner is not PatchDataset.corner:
            return [self[i] for i in indices]
        n = len(self)
        items = []
        for index in indices:
            if not 0 <= int(index) < n:
                raise IndexError(f"index {index} out of range for {n} patches")
            items.append(int(index))
        h, w = self.images.shape[1:3]
        p, b = self.patch, len(items)
        flip_draw = self.positions == "fresh" and self.hflip_p > 0
        if self._corners is None:  # "fresh": corner() draws y, x, then __getitem__ the mirror, per item
            plan = ((0, h - p + 1), (0, w - p + 1)) + ((None,) if flip_draw else ())
            d = draw(plan, b)
            corners = d[:, :2].astype(np.int64)
            flips = d[:, 2] < self.hflip_p if flip_draw else np.zeros(b, bool)
        else:
            j = np.asarray(items, dtype=np.int64)
            corners = np.asarray(self._corners[j // self.k, j % self.k], dtype=np.int64)
            flips = np.zeros(b, bool)
        buf = np.empty((b, p, p, 3), np.uint8)
        for k, index in enumerate(items):
            y, x = int(corners[k, 0]), int(corners[k, 1])
            crop = self.images[index // self.k][y:y + p, x:x + p]
            if flips[k]:
                import cv2

                crop = cv2.flip(np.ascontiguousarray(crop), 1)
            buf[k] = crop
        img = np.asarray(items, dtype=np.int64) // self.k
        fields = {"y": torch.from_numpy(self.mos[img]), "index": torch.tensor(items, dtype=torch.int64),
                  "std": torch.from_numpy(self.sd[img])}
        return RawBatch(torch.from_numpy(buf), self._normalise, fields, form="dict")
