"""NIH ChestX-ray14 for the kit's experiments: index, embedded default, CLAHE cache, splits.

This module puts the three parts together and is what the experiments import:

* :mod:`lfakit.data.chestxray_index` -- ``Data_Entry_2017.csv`` (and its variants), the
  official ``train_val_list.txt`` / ``test_list.txt``, the image folders and the patient-wise
  ``train`` / ``val`` / ``test`` index (:func:`load_index`);
* :mod:`lfakit.data.chestxray_embedded` -- the embedded default, a small generated set written
  in the exact NIH layout (:func:`write_synthetic_nih`, :func:`ensure_embedded_default`);
* :mod:`lfakit.data.image_cache` -- the generic pre-resized uint8 cache; here its
  preprocessing is the ChestX-ray one (:func:`preprocess_image`: 8-bit gray, CLAHE at full
  resolution, ``INTER_AREA`` resize), keyed on the CLAHE clip limit and tile grid
  (:func:`build_cache`).

:func:`load_chestxray` returns the three splits as :class:`Split` objects over the cache.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lfakit.data.chestxray_embedded import GENERATOR_VERSION, ensure_embedded_default, write_synthetic_nih
from lfakit.data.chestxray_index import (
    CLASSES,
    CSV_HEADER_2017,
    CSV_NAMES,
    NIH_COUNTS,
    NIH_NO_FINDING,
    NIH_TEST_IMAGES,
    NIH_TOTAL_IMAGES,
    NIH_TOTAL_PATIENTS,
    NIH_TRAIN_VAL_IMAGES,
    NO_FINDING,
    SPLITS,
    TEST_LIST,
    TRAIN_VAL_LIST,
    find_images,
    labels_matrix,
    load_index,
    read_data_entry,
)
from lfakit.data.image_cache import CACHE_FORMAT_VERSION, build_image_cache, default_cache_dir, resize_to
from lfakit.data.image_decode import read_image, to_uint8_gray
from lfakit.data.transforms import check_clahe_params, clahe, resize_square
from lfakit.errors import DataError, ParameterError

__all__ = [
    "CLASSES",
    "NIH_COUNTS",
    "NIH_NO_FINDING",
    "NIH_TOTAL_IMAGES",
    "NIH_TOTAL_PATIENTS",
    "NIH_TRAIN_VAL_IMAGES",
    "NIH_TEST_IMAGES",
    "CSV_NAMES",
    "CSV_HEADER_2017",
    "TRAIN_VAL_LIST",
    "TEST_LIST",
    "NO_FINDING",
    "SPLITS",
    "CACHE_FORMAT_VERSION",
    "GENERATOR_VERSION",
    "Split",
    "read_data_entry",
    "labels_matrix",
    "find_images",
    "load_index",
    "write_synthetic_nih",
    "ensure_embedded_default",
    "to_uint8_gray",
    "read_image",
    "preprocess_image",
    "load_preprocessed",
    "cache_preprocessing",
    "build_cache",
    "load_chestxray",
    "default_cache_dir",
]

CACHE_NAMESPACE = "chestxray"


# --------------------------------------------------------------------------------------------
# ChestX-ray preprocessing
# --------------------------------------------------------------------------------------------


def preprocess_image(gray_u8: np.ndarray, image_size: int, clahe_clip: float = 2.0, clahe_grid=8) -> np.ndarray:
    """CLAHE on the full-resolution uint8 image (skipped when ``clahe_clip`` <= 0 or None), then
    resize to ``image_size`` x ``image_size`` with ``cv2.INTER_AREA``."""
    img = gray_u8
    if clahe_clip is not None and clahe_clip > 0:
        img = clahe(img, clahe_clip, clahe_grid)
    return resize_square(img, image_size)


def load_preprocessed(path, image_size: int, clahe_clip: float = 2.0, clahe_grid=8) -> np.ndarray:
    """``read_image`` + ``preprocess_image``: what the cache stores for one file."""
    return preprocess_image(read_image(path), image_size, clahe_clip, clahe_grid)


def _check_cache_params(image_size, clahe_clip, clahe_grid):
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or not 8 <= image_size <= 4096:
        raise ParameterError(f"image_size must be an int in [8, 4096], got {image_size!r}.")
    if clahe_clip is None or (isinstance(clahe_clip, numbers.Real) and not isinstance(clahe_clip, bool) and clahe_clip <= 0):
        return 0.0, None
    clip, grid = check_clahe_params(clahe_clip, clahe_grid)
    return clip, list(grid)


def cache_preprocessing(clahe_clip: float = 2.0, clahe_grid=8):
    """``(preprocess, key)`` for :func:`lfakit.data.image_cache.build_image_cache`: CLAHE at
    full resolution (none when ``clahe_clip`` <= 0 or None), then an ``INTER_AREA`` resize; the
    key names the operation and its CLAHE parameters."""
    clip, grid = _check_cache_params(8, clahe_clip, clahe_grid)

    def preprocess(gray: np.ndarray, size) -> np.ndarray:
        img = clahe(gray, clip, tuple(grid)) if grid else gray
        return resize_to(img, size)

    key = {"op": "chestxray: clahe then resize INTER_AREA", "clahe_clip": clip, "clahe_grid": grid}
    return preprocess, key


def _ids_of(index) -> list[str]:
    if isinstance(index, pd.DataFrame):
        if "image_id" not in index.columns:
            raise ParameterError("build_cache: the index DataFrame needs an 'image_id' column.")
        return [str(i) for i in index["image_id"]]
    return [str(i) for i in index]


def build_cache(index, image_paths, image_size: int, cache_dir=None, *, clahe_clip: float = 2.0,
                clahe_grid=8, num_workers: int | None = None, progress: bool = True) -> np.memmap:
    """Pre-resized uint8 cache of ``index``'s images, shape (N, image_size, image_size).

    ``index``: a DataFrame with ``image_id`` (row order kept) or a sequence of image names;
    ``image_paths``: mapping name -> file. Per image: decode -> 8-bit gray -> CLAHE at full
    resolution (skipped when ``clahe_clip`` <= 0) -> ``INTER_AREA`` resize.

    Built by :func:`lfakit.data.image_cache.build_image_cache` into
    ``<cache_dir>/chestxray/<key>.npy`` (+ ``<key>.json``), keyed on the image names in order
    (so a moved data folder keeps its cache), each file's size and mtime, the image size and
    the CLAHE parameters; written atomically, opened read-only on later calls.
    """
    clip, grid = _check_cache_params(image_size, clahe_clip, clahe_grid)
    ids = _ids_of(index)
    if not ids:
        raise DataError("build_cache: the index is empty.")
    try:
        files = [Path(image_paths[i]) for i in ids]
    except KeyError as exc:
        raise DataError(f"build_cache: no path for image {exc.args[0]!r}.") from None
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ParameterError(f"cache_dir must be a path or None, got {cache_dir!r}.")
    preprocess, key = cache_preprocessing(clip if grid else 0.0, tuple(grid) if grid else 8)
    return build_image_cache(files, int(image_size), "L", preprocess, key, cache_dir,
                             namespace=CACHE_NAMESPACE, ids=ids, num_workers=num_workers,
                             progress=progress, desc=f"ChestX-ray cache {image_size}px")


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


@dataclass
class Split:
    """One patient-wise split: images (uint8 N x H x W), multi-hot targets (float32 N x 14)."""

    images: np.ndarray
    targets: np.ndarray
    image_ids: list[str]
    patient_ids: np.ndarray
    name: str = ""
    classes: tuple[str, ...] = field(default=CLASSES)

    def __len__(self) -> int:
        return len(self.image_ids)


def load_chestxray(data_dir=None, cache_dir=None, image_size: int = 224, clahe_clip: float = 2.0,
                   clahe_grid=8, val_fraction: float = 0.1, seed: int = 0,
                   max_images: int | None = None, *, progress: bool = True,
                   embedded_kwargs: dict | None = None) -> dict[str, Split]:
    """Load ChestX-ray14 (real folder, or the embedded default when ``data_dir`` is empty) into
    ``{"train", "val", "test"}`` splits backed by the pre-resized cache.

    The cache holds the selected images ordered by official list then name, so it does not
    depend on ``seed``/``val_fraction``; ``test`` is a read-only memmap slice of it, ``train``
    and ``val`` are in-memory copies of their rows (~3.9 GB for the full NIH train split at
    224 px). ``seed`` drives the val carve and subsampling only; the embedded data set itself is
    always generated with seed 0 (override with ``embedded_kwargs``).
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if data_dir is None or str(data_dir).strip() == "":
        root = ensure_embedded_default(cache_dir, **(embedded_kwargs or {}))
    else:
        root = Path(data_dir).expanduser()
    index = load_index(root, val_fraction=val_fraction, seed=seed, max_images=max_images)
    # seed-independent cache order: official side (test last), then name
    cache_order = index.assign(_t=(index["split"] == "test").astype(int)).sort_values(["_t", "image_id"])
    paths = dict(zip(index["image_id"], index["path"]))
    cache = build_cache(cache_order, paths, image_size, cache_dir, clahe_clip=clahe_clip,
                        clahe_grid=clahe_grid, progress=progress)
    row_of = pd.Series(np.arange(len(cache_order)), index=cache_order["image_id"].to_numpy())
    out: dict[str, Split] = {}
    for name in SPLITS:
        part = index[index["split"] == name]
        rows = row_of[part["image_id"].to_numpy()].to_numpy()
        if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
            images = cache[rows[0]: rows[0] + len(rows)]
        else:
            # train/val rows interleave in the cache (seed-independent order): copy them
            images = np.array(cache[rows]) if len(rows) else np.zeros((0, image_size, image_size), np.uint8)
        out[name] = Split(
            name=name,
            images=images,
            targets=labels_matrix(part),
            image_ids=part["image_id"].tolist(),
            patient_ids=part["patient_id"].to_numpy(dtype=str),
        )
    return out
