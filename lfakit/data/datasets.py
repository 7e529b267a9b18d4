"""Torch datasets over in-memory or memory-mapped uint8 image arrays.

:class:`ArrayImageDataset` reads a whole batch at once when a DataLoader asks for one
(``__getitems__``, see :mod:`lfakit.data.batching`): the same numbers as item by item, several
times faster per image."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch.utils.data import Dataset

from lfakit.data.batching import Normalise, RawBatch, copy_augmented, draw
from lfakit.errors import ParameterError

__all__ = ["ArrayImageDataset", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ArrayImageDataset(Dataset):
    """Items ``(x, y, index)`` from a uint8 image array and float targets.

    images: uint8 array (N, H, W) or (N, H, W, C) with C in {1, 3}; a ``np.memmap`` works and
        is read one item at a time.
    targets: array (N,) or (N, K); returned as float32 tensors.
    channels: 1 or 3. Grayscale images are replicated to 3 channels; 3-channel images are
        averaged to 1 when ``channels=1``.
    x is float32 (channels, H, W), scaled to [0, 1] and normalised with the ImageNet mean/std
    (for ``channels=1`` the means of the three: 0.449 / 0.226). ``index`` is the item's int
    position, so predictions can be matched back to image ids.

    Augmentation (``augment=True``, off by default): horizontal flip with probability
    ``hflip_p`` and a random integer translation of up to ``max_shift`` of the side in each
    direction (vacated pixels are 0, i.e. black). Random numbers come from ``generator`` (a
    ``torch.Generator`` given to the constructor, or per call to :meth:`get`), else from torch's
    global RNG, so results are reproducible under ``torch.manual_seed`` (with DataLoader workers
    torch seeds each worker from the global RNG). Note that a horizontal flip swaps laterality
    (e.g. the heart's side) on chest radiographs.

    Batches: a DataLoader calls :meth:`__getitems__`, which returns the whole batch as a
    :class:`~lfakit.data.batching.RawBatch` (uint8, normalised by the engine's collate on the CPU
    or the GPU): the same random draws in the same order and the same float operations as
    :meth:`get` item by item, so the same bits. A subclass that overrides :meth:`get` or
    ``__getitem__`` is read item by item (its items may differ from this class's), unless it also
    overrides :meth:`batch_targets` to give its own targets for a batch.
    """

    def __init__(self, images, targets, channels: int = 3, augment: bool = False, *,
                 hflip_p: float = 0.5, max_shift: float = 0.05, mean=None, std=None,
                 generator: torch.Generator | None = None):
        if not hasattr(images, "shape") or not hasattr(images, "dtype"):
            images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ParameterError(f"images must be a uint8 array, got dtype {images.dtype}.")
        if images.ndim == 4 and images.shape[3] not in (1, 3):
            raise ParameterError(f"images of shape {images.shape}: the channel axis must be last and hold 1 or 3 channels.")
        if images.ndim not in (3, 4):
            raise ParameterError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}.")
        targets = np.asarray(targets, dtype=np.float32)
        if targets.ndim not in (1, 2) or len(targets) != len(images):
            raise ParameterError(
                f"targets must be (N,) or (N, K) with N = {len(images)} images, got shape {targets.shape}."
            )
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ParameterError(f"channels must be 1 or 3, got {channels!r}.")
        if not isinstance(hflip_p, numbers.Real) or not 0 <= hflip_p <= 1:
            raise ParameterError(f"hflip_p must be in [0, 1], got {hflip_p!r}.")
        if not isinstance(max_shift, numbers.Real) or not 0 <= max_shift < 0.5:
            raise ParameterError(f"max_shift must be in [0, 0.5), got {max_shift!r}.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ParameterError("generator must be a torch.Generator or None.")
        self.images = images
        self.targets = targets
        self.channels = int(channels)
        self.augment = bool(augment)
        self.hflip_p = float(hflip_p)
        self.max_shift = float(max_shift)
        self.generator = generator
        if mean is None:
            mean = IMAGENET_MEAN if self.channels == 3 else (float(np.mean(IMAGENET_MEAN)),)
        if std is None:
            std = IMAGENET_STD if self.channels == 3 else (float(np.mean(IMAGENET_STD)),)
        if len(mean) != self.channels or len(std) != self.channels or min(std) <= 0:
            raise ParameterError(f"mean/std need {self.channels} entries (std > 0), got {mean!r} / {std!r}.")
        self._mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self._normalise = Normalise(self._mean, self._std, self.channels)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.get(index, self.generator)

    def _augment(self, img: torch.Tensor, generator) -> torch.Tensor:
        # img: (C, H, W) uint8
        if self.hflip_p > 0 and torch.rand((), generator=generator).item() < self.hflip_p:
            img = img.flip(-1)
        h, w = img.shape[-2:]
        mh, mw = int(round(self.max_shift * h)), int(round(self.max_shift * w))
        if mh or mw:
            dy = int(torch.randint(-mh, mh + 1, (), generator=generator))
            dx = int(torch.randint(-mw, mw + 1, (), generator=generator))
            if dy or dx:
                out = torch.zeros_like(img)
                ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
                xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
                out[:, yd, xd] = img[:, ys, xs]
                img = out
        return img

    def get(self, index, generator: torch.Generator | None = None):
        """Item ``index``; augmentation draws from ``generator`` (else torch's global RNG)."""
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        i %= len(self)
        arr = np.asarray(self.images[i])
        img = torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True))
        img = img.unsqueeze(0) if img.ndim == 2 else img.permute(2, 0, 1)
        if self.augment:
            img = self._augment(img, generator)
        x = img.to(torch.float32).div_(255.0)
        if x.shape[0] != self.channels:
            x = x.expand(self.channels, -1, -1) if x.shape[0] == 1 else x.mean(0, keepdim=True)
        x = (x - self._mean) / self._std
        y = torch.from_numpy(np.array(self.targets[i], dtype=np.float32, copy=True))
        return x, y, i

    def _plan(self) -> tuple:
        """The random calls :meth:`_augment` makes per item, in order (see :func:`~lfakit.data.batching.draw`)."""
        h, w = self.images.shape[1:3]
        mh, mw = int(round(self.max_shift * h)), int(round(self.max_shift * w))
        plan = (None,) if self.hflip_p > 0 else ()
        return plan + (((-mh, mh + 1), (-mw, mw + 1)) if (mh or mw) else ())

    def batch_targets(self, idx: list[int]) -> torch.Tensor:
        """The ``y`` of a batch read (items ``idx``): what :meth:`get` returns as ``y``, stacked.
        A subclass whose :meth:`get` returns other targets overrides this too, and is then read a
        batch at a time again (e.g. int64 class labels: ``torch.from_numpy(self.labels[idx])``)."""
        return torch.from_numpy(np.ascontiguousarray(self.targets[idx], dtype=np.float32))

    def __getitems__(self, indices):
        cls = type(self)
        own_items = cls.get is not ArrayImageDataset.get or cls.__getitem__ is not ArrayImageDataset.__getitem__
        if own_items and cls.batch_targets is ArrayImageDataset.batch_targets:
            return [self[i] for i in indices]
        return self.get_batch(indices, self.generator)

    def get_batch(self, indices, generator: torch.Generator | None = None) -> RawBatch:
        """Items ``indices`` as one :class:`~lfakit.data.batching.RawBatch` (``.finish()`` gives
        ``[x, y, index]``, equal bit for bit to the items of :meth:`get` stacked); augmentation
        draws from ``generator`` (else torch's global RNG) exactly as :meth:`get` would, item by item."""
        n = len(self)
        idx = []
        for index in indices:
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"index {index} out of range for {n} items")
            idx.append(i % n)
        shape = self.images.shape[1:3] if self.images.ndim == 3 or self.images.shape[3] == 1 else self.images.shape[1:]
        buf = np.empty((len(idx), *shape), np.uint8)
        plan = self._plan() if self.augment else ()
        if plan:
            d = draw(plan, len(idx), generator)
            flip = d[:, 0] < self.hflip_p if self.hflip_p > 0 else np.zeros(len(idx), bool)
            shift = d[:, -2:].astype(np.int64) if len(plan) - (self.hflip_p > 0) else np.zeros((len(idx), 2), np.int64)
            for k, i in enumerate(idx):
                copy_augmented(buf[k], np.asarray(self.images[i]).reshape(shape), bool(flip[k]), int(shift[k, 0]), int(shift[k, 1]))
        elif isinstance(self.images, np.ndarray):
            buf[...] = self.images[idx].reshape(buf.shape)
        else:
            for k, i in enumerate(idx):
                buf[k] = np.asarray(self.images[i]).reshape(shape)
        y = self.batch_targets(idx)
        return RawBatch(torch.from_numpy(buf), self._normalise, {"y": y, "index": torch.tensor(idx, dtype=torch.int64)})


class LabelImageDataset(ArrayImageDataset):
    """:class:`ArrayImageDataset` whose ``y`` is an int64 class index (what the multi-class losses
    take; the base class returns float targets), read a batch at a time like the base class: items
    ``(x, label, index)``; ``labels`` (N,) ints."""

    def __init__(self, images, labels, **kw):
        super().__init__(images, np.zeros(len(labels), np.float32), **kw)
        self.labels = np.asarray(labels, dtype=np.int64)

    def get(self, index, generator=None):
        x, _, i = super().get(index, generator)
        return x, torch.tensor(self.labels[i]), i

    def batch_targets(self, idx):
        return torch.from_numpy(self.labels[idx])
