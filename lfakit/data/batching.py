"""Batch-level reads from the uint8 image caches: what ``__getitems__`` of the image data sets
returns, the collate that passes it through, and the per-batch normalisation (CPU or GPU).

Why. Building a batch item by item (``get`` per image, then ``default_collate``) costs a few
Python-level torch calls per image, a float copy per image for the stack and, at 224 px, float
passes over batches too large for the CPU caches. Measured on one core: the per-item path gives
~20,000 images/s at 32 px and 1,500-3,500 at 224 px; the batch path below several times that
(``benchmarks/bench_loader.py``, ``docs/performance.md``).

What a batch read does (``ArrayImageDataset.__getitems__``, ``PatchDataset.__getitems__``):

1. the random draws of every item, **the same numbers in the same order** as the per-item path
   (:func:`draw`);
2. one loop over the items that copies each uint8 image (or crop) out of the cache into a uint8
   batch, flipped (``cv2.flip``) and shifted (vacated pixels 0) on the way: integer copies only,
   the copy the per-item path makes anyway;
3. the result is a :class:`RawBatch`: uint8 images plus the other fields, not yet float.
   :func:`collate` (the engine's ``collate_fn``) finishes it with :class:`Normalise` on the CPU,
   or, with :class:`Collate` given a CUDA device, after moving the uint8 batch to the GPU (a
   quarter of the float batch's bytes), where the float work is done. Both devices run the same
   :meth:`Normalise.__call__`.

Bit-identical to the per-item path. The float work is the per-item path's elementwise ops in the
same order (uint8 -> float32, ``/ 255``, ``- mean``, ``/ std``; the gray mean of RGB as
``(r + g) + b`` then ``/ 3``): IEEE-rounded elementwise operations give the same bits whether run
one image at a time or on a batch, with AVX2 or AVX-512 (tested), and on CUDA as long as every
divisor is a tensor on the device (a CPU scalar divisor makes CUDA multiply by its reciprocal,
which is not the same bits; :class:`Normalise` never divides by a Python number there).

A :class:`RawBatch` is also a sequence of the per-item items, so a plain ``DataLoader`` with the
default collate still gets exactly what it got before (just without the speed-up).

Written by hand, not torchvision's ``v2`` transforms: those draw their random numbers per batch
(one flip decision for the whole batch) or per item with their own calls, neither of which
reproduces the kit's per-item draws, and the checked notebook outputs depend on those draws.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

__all__ = ["RawBatch", "Normalise", "Collate", "collate", "draw", "copy_augmented"]

_U24 = 1 << 24  # torch.rand (float32) keeps the low 24 bits of one 32-bit draw


# ---------------------------------------------------------------------------- random draws
def _scalar_draws(plan: tuple, n: int, generator) -> np.ndarray:
    """The per-item path's own calls, item after item: ``torch.rand(())`` for ``None`` entries,
    ``torch.randint(lo, hi, ())`` for ``(lo, hi)`` entries."""
    out = np.empty((n, len(plan)), np.float64)
    for k in range(n):
        for j, p in enumerate(plan):
            if p is None:
                out[k, j] = torch.rand((), generator=generator).item()
            else:
                out[k, j] = int(torch.randint(p[0], p[1], (), generator=generator))
    return out


def _modulus(plan: tuple) -> int:
    return math.lcm(*[_U24 if p is None else p[1] - p[0] for p in plan])


def _vector_draws(plan: tuple, n: int, generator) -> np.ndarray:
    """The same numbers from one ``torch.randint(0, M, (n * len(plan),))`` call, M the lcm of the
    draws' ranges: torch's CPU generator maps one 32-bit Mersenne-Twister output ``v`` to
    ``randint(lo, hi)`` as ``v % (hi - lo) + lo`` and to a float32 ``rand()`` as
    ``(v % 2**24) * 2**-24``, and ``randint(0, M)`` with M < 2**32 returns ``v % M``, from which
    both are recovered exactly. Only used for plans :func:`_vector_ok` has checked against the
    scalar calls in this process."""
    m = len(plan)
    v = torch.randint(0, _modulus(plan), (n * m,), generator=generator).view(n, m).numpy()
    out = np.empty((n, m), np.float64)
    for j, p in enumerate(plan):
        if p is None:
            out[:, j] = (v[:, j] % _U24) * (1.0 / _U24)
        else:
            out[:, j] = v[:, j] % (p[1] - p[0]) + p[0]
    return out


@functools.lru_cache(maxsize=64)
def _vector_ok(plan: tuple, default_dtype: torch.dtype) -> bool:
    """Whether :func:`_vector_draws` gives the scalar calls' numbers and leaves the generator in
    the same state, checked once per plan (and default dtype: a float64 default makes
    ``torch.rand`` take 64 bits) on two seeds and 300 items. If a torch release changes how it
    maps its generator's outputs, this says no and the scalar calls are used."""
    if _modulus(plan) >= 1 << 32:
        return False
    try:
        for seed in (0, 12345):
            g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            if not np.array_equal(_scalar_draws(plan, 300, g1), _vector_draws(plan, 300, g2)):
                return False
            if not torch.equal(g1.get_state(), g2.get_state()):
                return False
    except Exception:  # noqa: BLE001 - any surprise means: use the scalar calls
        return False
    return True


def draw(plan: tuple, n: int, generator: torch.Generator | None = None) -> np.ndarray:
    """The random numbers ``n`` items draw one after the other, each the ``plan``'s calls in order
    (``None``: ``torch.rand(())``, a float in [0, 1); ``(lo, hi)``: ``torch.randint(lo, hi, ())``),
    from ``generator`` or torch's global RNG: a float64 array (n, len(plan)) holding exactly the
    numbers those calls return, the generator left where they leave it. One vectorised call where
    that has been checked to be the same (:func:`_vector_ok`; measured ~50x faster than three
    scalar calls per item at 32 px), else the scalar calls."""
    plan = tuple(plan)
    if n == 0 or not plan:
        return np.empty((n, len(plan)), np.float64)
    if _vector_ok(plan, torch.get_default_dtype()):
        return _vector_draws(plan, n, generator if generator is not None else torch.default_generator)
    return _scalar_draws(plan, n, generator)


# ---------------------------------------------------------------------------- uint8 copies
def copy_augmented(dst: np.ndarray, src: np.ndarray, flip: bool, dy: int, dx: int) -> None:
    """``dst[:] = src`` mirrored left-right (if ``flip``) and then translated by ``(dy, dx)``
    pixels, the vacated pixels set to 0: the per-item path's ``img.flip(-1)`` and shift, on
    (H, W) or (H, W, C) uint8 arrays. ``cv2.flip`` for the mirror (a SIMD copy; numpy's reversed
    copy of 3-byte pixels measured ~5x slower at 224 px)."""
    if flip:
        import cv2

        src = cv2.flip(np.ascontiguousarray(src), 1).reshape(src.shape)
    if not (dy or dx):
        dst[...] = src
        return
    h, w = src.shape[:2]
    dst[...] = 0
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    dst[yd, xd] = src[ys, xs]


# ---------------------------------------------------------------------------- normalisation
class Normalise:
    """uint8 images (B, H, W) or (B, H, W, C) -> float32 (B, channels, H, W): ``/ 255``, then
    ``(x - mean) / std`` per channel; one channel is repeated to three, three are averaged to
    one (``(r + g) + b`` then ``/ 3``, the order of the per-item ``mean(0)``).

    Three ways to the same bits, picked by what was measured fastest (one core, see
    ``benchmarks/bench_loader.py``):

    * CPU, images of at least ``LUT_PIXELS`` pixels: a 256-entry table per channel, made once by
      the per-item path's own float ops on the values 0..255, read with ``cv2.LUT`` plane by plane
      (RGB split into planes with ``cv2.split`` first) straight into the output: one pass instead of
      four, 2.6-2.9x faster than batched torch ops at 224 px;
    * CPU, smaller images: the per-item ops on the batch, in chunks of about ``chunk_bytes`` of
      output so that they stay in the CPU cache (1.5x faster than the tables at 32 px, where the
      per-plane calls cost more than the arithmetic);
    * other devices (the GPU): the same table, gathered on the device (exact by construction,
      whatever the device's division does).
    Three channels averaged to one (no table: it depends on three values) use the ops everywhere,
    with every divisor a tensor on the device (see the module docstring)."""

    LUT_PIXELS = 64 * 64

    def __init__(self, mean, std, channels: int, chunk_bytes: int = 1 << 20):
        self.channels = int(channels)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        self.chunk_bytes = int(chunk_bytes)
        values = torch.arange(256, dtype=torch.uint8).to(torch.float32).div_(255.0)
        # the per-item ops on every possible pixel value: row c is channel c's value of 0..255
        self.table = ((values.view(1, 256) - self.mean.view(-1, 1)) / self.std.view(-1, 1)).contiguous()
        self._consts: dict = {}

    def _on(self, device: torch.device):
        key = str(device)
        if key not in self._consts:  # divisors as tensors on the device: see the module docstring
            self._consts[key] = (self.mean.to(device).view(1, -1, 1, 1), self.std.to(device).view(1, -1, 1, 1),
                                 torch.tensor(255.0, device=device), torch.tensor(3.0, device=device),
                                 self.table.to(device))
        return self._consts[key]

    def __call__(self, u8: torch.Tensor, device: torch.device | str | None = None, method: str | None = None) -> torch.Tensor:
        """``u8`` normalised on ``device`` (default: where ``u8`` is). ``method`` (``"gather"``,
        ``"lut"``, ``"ops"``; default: by device and size as above) is for the tests, which check
        that every way gives the per-item bits."""
        device = torch.device(device) if device is not None else u8.device
        if u8.device != device:
            u8 = u8.to(device, non_blocking=True)
        if u8.ndim == 4 and u8.shape[3] == 1:
            u8 = u8[..., 0]
        cin = 1 if u8.ndim == 3 else u8.shape[3]
        b, h, w = u8.shape[:3]
        c = self.channels
        out = torch.empty((b, c, h, w), dtype=torch.float32, device=device)
        if method is None:
            method = "gather" if device.type != "cpu" else "lut" if h * w >= self.LUT_PIXELS else "ops"
        if cin == 3 and c == 1:
            self._ops(u8, out, cin, device)
        elif method == "gather":
            table = self._on(device)[4]
            for k in range(c):
                plane = u8 if cin == 1 else u8[..., k]
                out[:, k] = table[k][plane.long()]
        elif method == "lut" and device.type == "cpu":
            self._lut_cpu(u8.numpy(), out.numpy(), cin)
        else:
            self._ops(u8, out, cin, device)
        return out

    def _lut_cpu(self, u8: np.ndarray, out: np.ndarray, cin: int) -> None:
        import cv2

        table = self.table.numpy()
        planes = np.empty((cin, *u8.shape[1:3]), np.uint8) if cin > 1 else None
        for k in range(len(u8)):
            if cin > 1:
                cv2.split(np.ascontiguousarray(u8[k]), [planes[j] for j in range(cin)])
            for j in range(out.shape[1]):
                src = u8[k] if cin == 1 else planes[j]
                cv2.LUT(np.ascontiguousarray(src), table[j], dst=out[k, j])

    def _ops(self, u8: torch.Tensor, out: torch.Tensor, cin: int, device: torch.device) -> None:
        b, c, h, w = out.shape
        mean, std, d255, d3, _ = self._on(device)
        step = b if device.type != "cpu" else max(1, self.chunk_bytes // max(1, 4 * max(c, cin) * h * w))
        for b0 in range(0, b, step):
            o, src = out[b0:b0 + step], u8[b0:b0 + step]
            if cin == 1:
                g = o[:, 0]
                g.copy_(src)
                g.div_(d255)
                for k in range(1, c):
                    o[:, k].copy_(g)
            elif c == 3:
                o.copy_(src.permute(0, 3, 1, 2))
                o.div_(d255)
            else:  # RGB images, one channel wanted
                x = src.permute(0, 3, 1, 2).to(torch.float32).div_(d255)
                o[:, 0] = x[:, 0] + x[:, 1]
                o[:, 0] += x[:, 2]
                o.div_(d3)
            o.sub_(mean).div_(std)


# ---------------------------------------------------------------------------- the batch
class RawBatch(Sequence):
    """A batch read at once: uint8 ``images`` (already flipped/shifted/cropped), the
    :class:`Normalise` that turns them into ``x``, and the other fields (tensors of B rows).

    ``form`` is ``"tuple"`` (items ``(x, y, index)``; the finished batch is the list
    ``[x, y, index]``, as ``default_collate`` makes of tuples) or ``"dict"`` (items and batch are
    dicts, ``"x"`` first). As a sequence it holds the per-item items (views of the finished CPU
    batch, ``index`` as a Python int), so ``default_collate`` gives the per-item path's batch."""

    def __init__(self, images: torch.Tensor, normalise: Normalise, fields: dict, form: str = "tuple"):
        self.images, self.normalise, self.fields, self.form = images, normalise, dict(fields), form
        self._cpu = None

    def finish(self, device: torch.device | str | None = None):
        """The collated batch; ``x`` made on ``device`` (default: the CPU), the other fields on the CPU."""
        x = self.normalise(self.images, device)
        if self.form == "tuple":
            return [x, *self.fields.values()]
        return {"x": x, **self.fields}

    def _items(self):
        if self._cpu is None:
            self._cpu = self.finish()
        return self._cpu

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        done = self._items()
        if self.form == "tuple":
            return tuple(int(v[k]) if name == "index" else v[k] for name, v in zip(("x", *self.fields), done))
        return {name: int(v[k]) if name == "index" else v[k] for name, v in done.items()}


def collate(data):
    """The DataLoader ``collate_fn`` for data sets with batch reads: a :class:`RawBatch` is
    finished on the CPU; anything else goes to ``default_collate``."""
    if isinstance(data, RawBatch):
        return data.finish()
    return default_collate(data)


class Collate:
    """:func:`collate` that makes ``x`` on ``device`` (``None``: the CPU). Used by the engine
    with a CUDA device and ``num_workers=0``, so that the float work runs on the GPU."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else None

    def __call__(self, data):
        if isinstance(data, RawBatch):
            return data.finish(self.device)
        return default_collate(data)
