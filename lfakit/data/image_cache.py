"""A pre-resized uint8 image cache for any data set, gray or RGB, keyed on its preprocessing.

Decoding a full-size image every epoch makes training data-bound (a 1024 x 1024 PNG costs
~6 ms to decode; a 224 x 224 uint8 row is a memory read). :func:`build_image_cache` decodes each
source file once, applies a preprocessing function at full resolution (e.g. CLAHE, then a
resize), and stores the results as one ``.npy`` file that later calls open as a read-only
memmap::

    from lfakit.data.image_cache import build_image_cache, resize_to

    def preprocess(rgb, size):                  # full-resolution uint8 (H0, W0, 3) -> (h, w, 3)
        return resize_to(rgb, size)

    images = build_image_cache(paths, (384, 512), "RGB", preprocess, "area-resize-v1",
                               cache_dir, namespace="koniq10k")
    images.shape                                # (len(paths), 384, 512, 3), uint8, read-only

The file is ``<cache_dir>/<namespace>/<key>.npy`` with a ``<key>.json`` sidecar. ``key`` hashes
everything the pixels depend on: the cache format and decoder versions, the output size, the
colour mode, the caller's description of its preprocessing (``key`` argument: change it
whenever the function's behaviour changes) and, for every source file in order, its id and
either its size and modification time (``fingerprint="stat"``) or a SHA-256 of its content
(``fingerprint="content"``). Any change gives another file; nothing stale is ever reused.

Writing is atomic: the array is built in a temporary file in the same folder and renamed into
place (then the sidecar), so an interrupted build (Ctrl-C, a corrupt image, a full disk) leaves
no cache behind, and the temporary file is removed. Missing or empty source files and a disk
too small for the cache are reported before anything is written (the temporary file's space is
reserved up front, so a disk filling up meanwhile is an error too, not a crash); a file that
cannot be decoded stops the build with a ``DataError`` naming it and the fix (see
:mod:`lfakit.data.image_decode`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import numbers
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from lfakit.data.image_decode import FIX_HINT, check_mode, read_image
from lfakit.errors import DataError, ParameterError, close_matches

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DECODER_VERSION",
    "FINGERPRINTS",
    "default_cache_dir",
    "resize_to",
    "image_cache_key",
    "build_image_cache",
]

CACHE_FORMAT_VERSION = 2  # 1: the ChestX-ray-only raw .u8 cache
#: Bump when read_image / the 8-bit conversions change what a file decodes to.
DECODER_VERSION = 1
FINGERPRINTS: tuple[str, ...] = ("stat", "content")
DEFAULT_KEY = "resize_to:INTER_AREA"
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DISK_MARGIN = 64 * 2**20

Preprocess = Callable[[np.ndarray, "tuple[int, int]"], np.ndarray]


def default_cache_dir() -> Path:
    """``$LFAKIT_CACHE`` if set, else ``~/.cache/lfakit``."""
    env = os.environ.get("LFAKIT_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/lfakit").expanduser()


def _check_size(size) -> tuple[int, int]:
    def ok(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and 1 <= v <= 16384

    if ok(size):
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(ok(v) for v in size):
        return int(size[0]), int(size[1])
    raise ParameterError(
        f"size must be an int (a square side) or a pair (height, width) of ints in [1, 16384], "
        f"got {size!r}."
    )


def resize_to(image: np.ndarray, size) -> np.ndarray:
    """Resize a uint8 (H, W) or (H, W, C) image to ``size`` (an int for a square, or
    ``(height, width)``) with ``cv2.INTER_AREA``, without keeping the aspect ratio; an image
    already of that size is returned as it is (contiguous). The cache's default preprocessing."""
    h, w = _check_size(size)
    img = np.ascontiguousarray(image)
    if img.shape[0] == h and img.shape[1] == w:
        return img
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    if img.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[:, :, None]
    return out


def _canonical_key(key) -> str:
    if isinstance(key, str):
        if not key.strip():
            raise ParameterError("key must describe the preprocessing; got an empty string.")
        return json.dumps(key)
    try:
        return json.dumps(key, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"key must be a string or JSON-serialisable data (dict, list, numbers, strings) "
            f"describing the preprocessing, got {key!r} ({exc})."
        ) from None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (a checkpoint or an image never has to fit in
    memory); the run record's manifest uses it too."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_sources(paths, ids) -> tuple[list[Path], list[str]]:
    if isinstance(paths, (str, bytes, os.PathLike)) or not isinstance(paths, Iterable):
        raise ParameterError(f"paths must be a list (or other iterable) of image file paths, got {type(paths).__name__}.")
    files = [Path(p) for p in paths]
    if not files:
        raise DataError("build_image_cache: the list of source images is empty.")
    if ids is None:
        ids = [os.path.abspath(f) for f in files]
    else:
        ids = [str(i) for i in ids]
        if len(ids) != len(files):
            raise ParameterError(f"ids has {len(ids)} entries for {len(files)} paths; give one id per path.")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(files)} source image file(s) are missing, e.g. "
            f"{', '.join(repr(m) for m in missing[:5])}. Check the data folder, or leave them out of the index."
        )
    empty = [str(f) for f in files if f.stat().st_size == 0]
    if empty:
        raise DataError(
            f"{len(empty)} source image file(s) are empty (0 bytes), e.g. "
            f"{', '.join(repr(e) for e in empty[:5])}. {FIX_HINT}"
        )
    return files, ids


def image_cache_key(paths, size, mode: str = "L", key=DEFAULT_KEY, *, ids=None,
                    fingerprint: str = "stat") -> str:
    """The cache key :func:`build_image_cache` uses for these arguments (24 hex digits)."""
    h, w = _check_size(size)
    check_mode(mode)
    if fingerprint not in FINGERPRINTS:
        raise ParameterError(f"fingerprint must be one of {', '.join(map(repr, FINGERPRINTS))}, got {fingerprint!r}."
                             + close_matches(str(fingerprint), FINGERPRINTS))
    files, ids = _check_sources(paths, ids)
    return _key(files, ids, (h, w), mode, _canonical_key(key), fingerprint)


def _key(files, ids, size, mode, canon_key, fingerprint) -> str:
    digest = hashlib.sha256()
    head = {"format": CACHE_FORMAT_VERSION, "decoder": DECODER_VERSION, "size": list(size),
            "mode": mode, "preprocess": canon_key, "fingerprint": fingerprint}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for i, f in zip(ids, files):
        if fingerprint == "content":
            mark = file_sha256(f)
        else:
            st = os.stat(f)
            mark = f"{st.st_size}\t{st.st_mtime_ns}"
        digest.update(f"\n{i}\t{mark}".encode())
    return digest.hexdigest()[:24]


def _open_existing(data_path: Path, meta_path: Path, key: str, shape) -> np.memmap | None:
    if not (data_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key or tuple(meta.get("shape", ())) != shape:
            return None
        arr = np.load(data_path, mmap_mode="r", allow_pickle=False)
    except (ValueError, KeyError, OSError, EOFError):
        return None  # unreadable sidecar or array: rebuild
    if arr.shape != shape or arr.dtype != np.uint8:
        return None
    return arr


def _no_room(nbytes: int, folder: Path, free: int | None) -> str:
    have = f"which has {free / 2**30:.2f} GiB free" if free is not None else "which is full"
    return (f"the image cache needs {nbytes / 2**30:.2f} GiB in {str(folder)!r}, {have}. Free some "
            "space, or point cache_dir (or $LFAKIT_CACHE) at a larger disk.")


def _reserve(path: str, nbytes: int, folder: Path) -> None:
    """Allocate the (sparse) array file's blocks now: a disk that fills up during the build
    is then an error here, not a SIGBUS when a page of the memmap is written."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DataError(_no_room(nbytes, folder, None)) from None
            # the file system cannot preallocate: the free-space check above has to do


def _completions(work, n: int, workers: int):
    """Run ``work(j)`` for j in 0..n-1, yielding once per finished item. On the first error
    (or Ctrl-C) the items not yet started are cancelled and the error is raised once the
    running ones (at most ``workers``) have finished."""
    if workers <= 1 or n == 1:
        for j in range(n):
            work(j)
            yield None
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lfakit-cache") as pool:
        pending: set = set()
        nxt = 0
        try:
            while nxt < n or pending:
                while nxt < n and len(pending) < 4 * workers:
                    pending.add(pool.submit(work, nxt))
                    nxt += 1
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    fut.result()
                    yield None
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def build_image_cache(paths: Iterable, size, mode: str = "L", preprocess: Preprocess | None = None,
                      key=None, cache_dir=None, *, namespace: str = "images", ids=None,
                      fingerprint: str = "stat", num_workers: int | None = None,
                      progress: bool = True, desc: str | None = None) -> np.memmap:
    """Decode, preprocess and store ``paths``' images once; return them as a read-only memmap.

    paths: the source image files, in the order of the returned rows.
    size: the output size, an int (square) or ``(height, width)`` -- note the order, that of
        the array's shape (a 512 x 384 photo, landscape, is height 384 and width 512).
    mode: ``"L"`` (8-bit gray, the result is (N, height, width)) or ``"RGB"`` (RGB order, the
        result is (N, height, width, 3)). Decoding and the conversion to 8 bits are
        :func:`lfakit.data.image_decode.read_image`'s.
    preprocess: ``preprocess(image, (height, width)) -> uint8 array`` turns one decoded
        full-resolution image ((H0, W0) or (H0, W0, 3) uint8) into the stored row; it must
        return exactly ``(height, width)`` (``"L"``) or ``(height, width, 3)`` (``"RGB"``).
        None means :func:`resize_to` (``cv2.INTER_AREA``). Called from worker threads.
    key: describes ``preprocess`` and its parameters (a string, or JSON-serialisable data such
        as ``{"op": "clahe+area", "clip": 2.0, "grid": [8, 8]}``); part of the cache key, so it
        must change whenever the function's output would. Required with ``preprocess``.
    cache_dir: the cache root (default :func:`default_cache_dir`); files go to
        ``<cache_dir>/<namespace>/<key>.npy`` and ``<key>.json``.
    ids: one name per path for the key (default: the absolute paths, so a moved data folder
        is rebuilt); e.g. image names make the cache independent of where the data set lives.
    fingerprint: ``"stat"`` (each file's size and modification time, default) or
        ``"content"`` (a SHA-256 of each file: reads every file once per call).
    num_workers: decoding threads (default ``min(8, os.cpu_count())``); ``progress`` shows a
        bar (``lfakit.runtime.progress``) titled ``desc``.

    Raises ``DataError`` before writing anything for missing or empty files and a disk without
    room for the cache, and during the build (leaving no file behind) for an image that cannot
    be decoded, naming the file and the fix; ``ParameterError`` for bad arguments or a
    preprocessing result of the wrong shape or dtype.
    """
    hw = _check_size(size)
    check_mode(mode)
    if preprocess is None:
        preprocess = resize_to
        key = DEFAULT_KEY if key is None else key
    elif not callable(preprocess):
        raise ParameterError(f"preprocess must be a callable (image, (height, width)) -> uint8 array or None, got {preprocess!r}.")
    elif key is None:
        raise ParameterError("build_image_cache: give a key describing preprocess (e.g. its name and "
                             "parameters), so that a change of preprocessing gives a new cache.")
    canon_key = _canonical_key(key)
    if fingerprint not in FINGERPRINTS:
        raise ParameterError(f"fingerprint must be one of {', '.join(map(repr, FINGERPRINTS))}, got {fingerprint!r}."
                             + close_matches(str(fingerprint), FINGERPRINTS))
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ParameterError(f"namespace must be a simple folder name (letters, digits, '_', '.', '-'), got {namespace!r}.")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ParameterError(f"cache_dir must be a path or None, got {cache_dir!r}.")
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 0):
        raise ParameterError(f"num_workers must be a non-negative int or None, got {num_workers!r}.")
    files, ids = _check_sources(paths, ids)

    item_shape = hw if mode == "L" else (*hw, 3)
    shape = (len(files), *item_shape)
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = root / namespace
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the cache folder {str(folder)!r}: {exc.strerror or exc}. "
                        "Point cache_dir (or $LFAKIT_CACHE) at a writable folder.") from None
    cache_key = _key(files, ids, hw, mode, canon_key, fingerprint)
    data_path, meta_path = folder / f"{cache_key}.npy", folder / f"{cache_key}.json"
    found = _open_existing(data_path, meta_path, cache_key, shape)
    if found is not None:
        return found

    nbytes = int(np.prod(shape))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < nbytes + _DISK_MARGIN:
        raise DataError(_no_room(nbytes, folder, free))

    def work(j: int) -> None:
        img = read_image(files[j], mode)
        try:
            res = preprocess(img, hw)
        except Exception as exc:
            if hasattr(exc, "add_note"):
                exc.add_note(f"while preprocessing image file {str(files[j])!r} (preprocessing key {key!r})")
            raise
        res = np.asarray(res)
        if res.dtype != np.uint8 or res.shape != item_shape:
            raise ParameterError(
                f"the preprocessing {key!r} returned an array of dtype {res.dtype} and shape "
                f"{res.shape} for {str(files[j])!r}; it must return uint8 of shape {item_shape}."
            )
        out[j] = res

    workers = num_workers if num_workers else min(8, os.cpu_count() or 1)
    fd, tmp = tempfile.mkstemp(prefix=f".{cache_key}.", suffix=".npy.tmp", dir=folder)
    os.close(fd)
    tmp_meta = out = None
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _reserve(tmp, nbytes, folder)
        steps = _completions(work, len(files), workers)
        if progress:
            from lfakit.runtime import progress as _progress

            steps = _progress(steps, total=len(files), unit="img",
                              desc=desc or f"image cache {namespace} {hw[0]}x{hw[1]} {mode}")
        for _ in steps:
            pass
        out.flush()
        del out
        meta = {
            "format": CACHE_FORMAT_VERSION,
            "decoder": DECODER_VERSION,
            "key": cache_key,
            "shape": list(shape),
            "dtype": "uint8",
            "mode": mode,
            "size": list(hw),
            "preprocess": json.loads(canon_key),
            "fingerprint": fingerprint,
            "n_images": len(files),
            "first_ids": ids[:3],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        fd, tmp_meta = tempfile.mkstemp(prefix=f".{cache_key}.", suffix=".json.tmp", dir=folder)
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh, indent=1)
        os.replace(tmp, data_path)
        os.replace(tmp_meta, meta_path)
    except BaseException:
        out = None  # unmap before removing the file
        for t in (tmp, tmp_meta):
            if t is not None and os.path.exists(t):
                os.unlink(t)
        raise
    return np.load(data_path, mmap_mode="r", allow_pickle=False)
