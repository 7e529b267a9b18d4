"""Image transforms shared by the data loaders (CLAHE, resizing)."""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np

from lfakit.errors import ParameterError

__all__ = ["clahe", "resize_square", "check_clahe_params"]


def _tile_grid_tuple(tile_grid) -> tuple[int, int]:
    if isinstance(tile_grid, numbers.Integral) and not isinstance(tile_grid, bool):
        grid = (int(tile_grid), int(tile_grid))
    elif (
        isinstance(tile_grid, (tuple, list))
        and len(tile_grid) == 2
        and all(isinstance(g, numbers.Integral) and not isinstance(g, bool) for g in tile_grid)
    ):
        grid = (int(tile_grid[0]), int(tile_grid[1]))
    else:
        raise ParameterError(
            f"CLAHE tile_grid must be an int or a pair of ints (tiles per side), got {tile_grid!r}."
        )
    if min(grid) < 1 or max(grid) > 256:
        raise ParameterError(f"CLAHE tile_grid must be between 1 and 256 tiles per side, got {tile_grid!r}.")
    return grid


def check_clahe_params(clip_limit, tile_grid) -> tuple[float, tuple[int, int]]:
    """Validate CLAHE parameters; return ``(clip_limit, (gx, gy))``.

    ``clip_limit`` is OpenCV's contrast limit (a positive, finite number; 2.0 is a common
    choice); ``tile_grid`` the number of tiles per side, an int or a pair.
    """
    if isinstance(clip_limit, bool) or not isinstance(clip_limit, numbers.Real):
        raise ParameterError(f"CLAHE clip_limit must be a number, got {clip_limit!r}.")
    clip = float(clip_limit)
    if not math.isfinite(clip) or clip <= 0:
        raise ParameterError(
            f"CLAHE clip_limit must be a positive finite number, got {clip_limit!r} "
            "(the loaders skip CLAHE when their clahe_clip is <= 0)."
        )
    return clip, _tile_grid_tuple(tile_grid)


def clahe(img_u8: np.ndarray, clip_limit: float = 2.0, tile_grid=8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of an 8-bit grayscale image.

    ``img_u8`` must be a ``uint8`` array of shape (H, W) (or (H, W, 1)); the result has shape
    (H, W). Uses ``cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tile_grid)``.
    """
    clip, grid = check_clahe_params(clip_limit, tile_grid)
    img = np.asarray(img_u8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2:
        raise ParameterError(f"clahe() needs a 2-D grayscale image, got an array of shape {img.shape}.")
    if img.dtype != np.uint8:
        raise ParameterError(
            f"clahe() needs a uint8 image, got dtype {img.dtype} (convert with "
            "lfakit.data.chestxray.to_uint8_gray first)."
        )
    if img.size == 0:
        raise ParameterError("clahe() got an empty image.")
    op = cv2.createCLAHE(clipLimit=clip, tileGridSize=grid)
    return op.apply(np.ascontiguousarray(img))


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D image to ``size`` x ``size`` with ``cv2.INTER_AREA`` (no aspect padding)."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ParameterError(f"image_size must be a positive int, got {size!r}.")
    size = int(size)
    if img.shape[0] == size and img.shape[1] == size:
        return np.ascontiguousarray(img)
    return cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=cv2.INTER_AREA)
