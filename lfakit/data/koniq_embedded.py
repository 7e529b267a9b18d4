"""The embedded KonIQ-10k default: a small generated IQA data set in the real KonIQ-10k layout.

The smoke profile of the IQA experiment has to run without the real data set. It runs on a small
set of graded distortions of real photographs, written **exactly as KonIQ-10k lays out its
files**, so that :mod:`lfakit.data.koniq` reads it the same way it reads the real data set::

    <root>/
      koniq10k_distributions_sets.csv   image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set
      512x384/<image_name>              the JPEGs (512 x 384, quality 95)
      embedded_meta.csv                 the generator's own record (the loader ignores it)

:func:`write_embedded` writes such a folder. :func:`embedded_koniq_dir` writes it once into the
cache and returns the existing folder on later calls.

Contents
--------
The photos are the sample photographs bundled in the scikit-image 0.26 wheel (:data:`PHOTOS`:
astronaut, brick, camera, chelsea, clock (``clock_motion.png``), coffee, coins, grass, gravel,
hubble (``hubble_deep_field.jpg``), ihc (immunohistochemistry), moon, motorcycle
(``motorcycle_left.png``), page, retina, rocket, text). They are read as files from the installed
package's ``data`` folder and decoded with Pillow. No scikit-image function is called, so nothing
can be downloaded and ``pooch`` is never imported. A missing file raises
:class:`~lfakit.errors.DataError`, which names the file and the scikit-image version found.

Grayscale photos are replicated to RGB. Each photo gives ``grid * grid`` (default 2 x 2 = 4)
*contents*: the largest centred 4:3 landscape window that fits the photo is cut into a
``grid x grid`` grid of disjoint 4:3 windows, so no two contents share a pixel. Each window is
resized to 512 x 384 (width x height, KonIQ's ``512x384/`` folder) with Pillow's Lanczos filter.
That gives the undistorted reference (level 0). For most photos a window is smaller than 512 x 384
and is enlarged (a 512 x 512 photo gives four 256 x 192 windows, enlarged 2x); the smoke profile
caches the images at 128 x 96.

Distortions
-----------
Each type is applied to the reference at levels ``l = 1 .. levels`` (default 4), with
``t = l / levels``. The arithmetic is float64 numpy, rounded to uint8 once:

============  ==========================================================================
``blur``      Gaussian blur, sigma = 4 t px (separable, reflected borders)
``noise``     additive Gaussian noise, sigma = 30 t (0-255 units), the same on all channels
``jpeg``      a JPEG round trip at quality round(40 * 0.1**t) (22, 13, 7, 4 for 4 levels)
``contrast``  contrast reduction toward the image mean: m + (1 - 0.75 t) (x - m)
``desat``     saturation loss toward Rec. 601 luma Y: Y + (1 - t) (x - Y); colour contents only
============  ==========================================================================

A grayscale content has no colour to lose, so it gets no ``desat`` images: a desaturated gray
image would be identical to its reference and would carry a lower score. Every image, the
reference included, is then saved as a JPEG at quality 95 (4:2:0). The files are named
``<photo>_<window>_<type>_<level>.jpg``, and the reference ``<photo>_<window>_ref.jpg``.

Opinion-score model
-------------------
Each image ``i`` of content ``c``, distortion type ``d`` and level ``l`` gets a latent quality on
the 1-5 rating scale::

    latent_i = q_ref(c) - S_d * (l / levels) ** G_d + e_i,     e_i ~ N(0, SIGMA_IMG)
    q_ref(c) ~ U(3.5, 4.6)                                      (drawn once per content)

where the reference (level 0) takes no drop. The constants are:

============  =======  =======
type          S_d      G_d
============  =======  =======
``blur``      2.4      1.0
``noise``     2.2      1.0
``jpeg``      2.3      1.5
``contrast``  1.8      1.3
``desat``     1.6      1.0
============  =======  =======

with ``SIGMA_IMG = 0.15``. Each of ``R`` raters (default R = 25; KonIQ-10k collected about 120
ratings per image) gives the ordinal rating::

    r_ij = clip(floor(latent_i + n_ij + 1/2), 1, 5),            n_ij ~ N(0, SIGMA_RATER = 0.7)

From the ratings the generator computes:

* ``c1..c5``, the **fractions** of the ratings that were 1..5, and ``c_total = R``, as the
  published sets CSV has them;
* the 1-5 MOS, ``sum_k k c_k`` (fractions);
* ``SD``, the sample standard deviation of the ratings (ddof = 1, as published), on the 1-5 scale;
* the sets CSV's 0-100 ``MOS`` column, computed as the linear rescale ``25 (MOS - 1)``. Real
  KonIQ-10k's 0-100 MOS is a rescaled MOS of z-scored ratings, so it is not exactly linear in the
  raw MOS. The generator uses the linear map, so here both ``mos_scale`` choices give the same
  ranking.

Because of the clipping at 1 and 5, the MOS saturates near both ends of the scale, as real
MOS does. Every number is written as the published file writes it (Python 2's ``str(float)``: 12
significant digits, ``0.0`` for zero).

Splits
------
The ``set`` column (``training`` / ``validation`` / ``test``) is assigned **by content**, as
KonIQ-10k's split is by image: a seeded permutation of the contents goes 70 / 10 / 20 % into the
three sets (rounded, with at least one content in each), and every image of a content (its
distortions and the reference) goes to its content's set. The test set therefore holds only
image regions that no training image shows; a test content may come from the same photograph as
a training content (another, disjoint window of it).

Why windows of photographs, not whole photographs, are the unit: with whole photographs (version
1 of this generator: 17 contents, split by photo, 12 / 2 / 3) the test set held three
photographs, and which three decided what a model could learn. Measured on that set, the L1
baseline of the smoke profile reached test SRCC -0.17 to 0.27, and even gradient-boosted trees
on seven global image statistics (band-pass energies, contrast, saturation, blockiness) reached
only 0.61. With 4 disjoint windows per photo (68 contents, 47 / 7 / 14) the same trees reach
0.72-0.77 and the smoke profile's L1 baseline passes 0.6.

Randomness and determinism
--------------------------
All random numbers come from ``numpy.random.default_rng``. Each purpose gets its own sub-stream,
``SeedSequence(seed, spawn_key=(crc32(purpose), crc32(photo), window, ...))``, the same mechanism as
``SeedSequence.spawn``. Adding a photo or a distortion type therefore leaves every other image,
score and window unchanged. Only the permutation of the split depends on the whole content
list. The pixel arithmetic is elementwise float64 (no reductions whose order depends on SIMD;
image means are exact integer sums), and Pillow's Lanczos resampling of 8-bit images and its JPEG
codec are integer code. The same seed and options therefore give byte-identical CSVs and JPEGs
with the same Pillow (libjpeg) and scikit-image versions.

With the defaults the set holds 17 photos x 4 windows = 68 contents (32 in colour, 36 grayscale)
and 32 x 21 + 36 x 17 = 1,284 images, split 47 / 7 / 14 contents (887 / 135 / 262 images with seed
0). It is generated in about 15 s on one CPU core and takes about 70 MB.

Nothing learned or measured on this set says anything about real photographs: it only shows that
the pipeline works.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import math
import numbers
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from lfakit.data.image_cache import default_cache_dir
from lfakit.data.koniq import RATINGS, SETS_CSV
from lfakit.errors import DataError, ParameterError, close_matches

__all__ = [
    "GENERATOR_VERSION",
    "PHOTOS",
    "TYPES",
    "META_CSV",
    "IMAGE_DIR",
    "SEVERITY",
    "GAMMA",
    "Q_REF_RANGE",
    "SIGMA_IMG",
    "SIGMA_RATER",
    "sample_photo_dir",
    "write_embedded",
    "embedded_koniq_dir",
]

#: Bump whenever the generator's output changes for the same options (invalidates the cache).
GENERATOR_VERSION = 2

#: name -> file in scikit-image's ``data`` folder (all bundled in the 0.26 wheel).
PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "clock": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble": "hubble_deep_field.jpg",
    "ihc": "ihc.png",
    "moon": "moon.png",
    "motorcycle": "motorcycle_left.png",
    "page": "page.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "text": "text.png",
}
TYPES: tuple[str, ...] = ("blur", "noise", "jpeg", "contrast", "desat")
SEVERITY = {"blur": 2.4, "noise": 2.2, "jpeg": 2.3, "contrast": 1.8, "desat": 1.6}
GAMMA = {"blur": 1.0, "noise": 1.0, "jpeg": 1.5, "contrast": 1.3, "desat": 1.0}
Q_REF_RANGE = (3.5, 4.6)
SIGMA_IMG = 0.15
SIGMA_RATER = 0.7
WIDTH, HEIGHT = 512, 384
IMAGE_DIR = f"{WIDTH}x{HEIGHT}"
META_CSV = "embedded_meta.csv"
JPEG_QUALITY = 95
SET_NAMES = ("training", "validation", "test")
SET_FRACTIONS = (0.7, 0.1, 0.2)
_SKIMAGE_WANT = "scikit-image>=0.26,<0.27"
_DEFAULTS = {"grid": 2, "levels": 4, "raters": 25, "photos": None}
_META_COLUMNS = ["image_name", "content", "photo", "source_file", "window", "type", "level", "latent", "q_ref",
                 "colour", "set", "window_x", "window_y", "window_w", "window_h"]


# ----------------------------------------------------------------------------- photos
def _skimage_version() -> str:
    try:
        return importlib.metadata.version("scikit-image")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def sample_photo_dir() -> Path:
    """scikit-image's ``data`` folder, found without importing scikit-image (so nothing in it runs)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("scikit-image is not installed; the embedded KonIQ-10k default reads its sample photos. "
                        f"Install scikit-image 0.26: pip install '{_SKIMAGE_WANT}'.")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _photo_files(names) -> dict[str, Path]:
    folder = sample_photo_dir()
    files = {n: folder / PHOTOS[n] for n in names}
    for n, f in files.items():
        if not f.is_file():
            raise DataError(f"scikit-image {_skimage_version()} has no sample photo {PHOTOS[n]} (expected at {f}); "
                            f"the embedded KonIQ-10k default needs it. Install scikit-image 0.26: "
                            f"pip install '{_SKIMAGE_WANT}'.")
    return files


def _read_photo(path: Path) -> tuple[Image.Image, bool]:
    """The photo in RGB and whether it has colour (a gray photo has three equal channels)."""
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot decode the sample photo {path} ({e}); reinstall scikit-image 0.26: "
                        f"pip install --force-reinstall '{_SKIMAGE_WANT}'.") from None
    a = np.asarray(rgb)
    colour = not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]))
    return rgb, colour


# ----------------------------------------------------------------------------- randomness
def _rng(seed: int, *key) -> np.random.Generator:
    """An independent sub-stream for one purpose, keyed by names and numbers (stable across runs)."""
    spawn_key = tuple(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn_key))


# ----------------------------------------------------------------------------- distortions
def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3.0 * sigma)))
    w = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-r, r + 1)]
    total = math.fsum(w)
    w = [v / total for v in w]
    h, wd = x.shape[:2]
    p = np.pad(x, ((r, r), (0, 0), (0, 0)), mode="reflect")
    rows = np.zeros_like(x)
    for i, v in enumerate(w):
        rows += v * p[i:i + h]
    p = np.pad(rows, ((0, 0), (r, r), (0, 0)), mode="reflect")
    out = np.zeros_like(x)
    for i, v in enumerate(w):
        out += v * p[:, i:i + wd]
    return out


def _jpeg_quality(t: float) -> int:
    return max(1, int(math.floor(40.0 * 0.1 ** t + 0.5)))


def _distort(ref: np.ndarray, kind: str, t: float, rng: np.random.Generator) -> np.ndarray:
    """``ref`` (uint8 H x W x 3) distorted by ``kind`` at strength ``t`` in (0, 1], as uint8."""
    x = ref.astype(np.float64)
    if kind == "blur":
        return _to_uint8(_gaussian_blur(x, 4.0 * t))
    if kind == "noise":
        n = rng.standard_normal(ref.shape[:2])[..., None]
        return _to_uint8(x + (30.0 * t) * n)
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(ref).save(buf, "JPEG", quality=_jpeg_quality(t), subsampling=2)
        buf.seek(0)
        with Image.open(buf) as im:
            return np.asarray(im.convert("RGB")).copy()
    if kind == "contrast":
        m = int(ref.astype(np.int64).sum()) / ref.size  # exact: an integer sum
        return _to_uint8(m + (1.0 - 0.75 * t) * (x - m))
    if kind == "desat":
        y = 0.299 * x[..., 0:1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:3]
        return _to_uint8(y + (1.0 - t) * (x - y))
    raise AssertionError(kind)


def _windows(size: tuple[int, int], grid: int) -> list[tuple[int, int, int, int]]:
    """The ``grid x grid`` disjoint 4:3 windows ``(x, y, w, h)`` that tile the largest centred 4:3
    window of a ``(W, H)`` photo, row-major."""
    W, H = size
    w_max = min(W, (H * 4) // 3)
    h_max = min(H, (w_max * 3) // 4)
    x0, y0 = (W - w_max) // 2, (H - h_max) // 2
    w, h = w_max // grid, h_max // grid
    return [(x0 + c * w, y0 + r * h, w, h) for r in range(grid) for c in range(grid)]


# ----------------------------------------------------------------------------- opinion scores
def _ratings(latent: float, raters: int, rng: np.random.Generator) -> np.ndarray:
    r = np.floor(latent + SIGMA_RATER * rng.standard_normal(raters) + 0.5)
    return np.clip(r, 1, 5).astype(np.int64)


def _fmt(v: float) -> str:
    return repr(float(v))


def _py2(v: float) -> str:
    """A float as the published KonIQ-10k sets CSV writes it (Python 2's ``str``: 12 significant
    digits, a ``.0`` on whole numbers)."""
    t = "%.12g" % float(v)
    return t if any(ch in t for ch in ".en") else t + ".0"


def _split_contents(names: list[str], seed: int) -> dict[str, str]:
    n = len(names)
    n_val = max(1, int(math.floor(SET_FRACTIONS[1] * n + 0.5)))
    n_test = max(1, int(math.floor(SET_FRACTIONS[2] * n + 0.5)))
    order = _rng(seed, "split").permutation(n)
    sets = {}
    for rank, i in enumerate(order):
        sets[names[i]] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "training"
    return sets


# ----------------------------------------------------------------------------- public API
def _check_options(seed, grid, levels, raters, photos) -> list[str]:
    for name, v, lo in (("seed", seed, 0), ("grid", grid, 1), ("levels", levels, 1), ("raters", raters, 2)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise ParameterError(f"{name} must be an integer >= {lo}, got {v!r}")
    names = list(PHOTOS) if photos is None else list(photos)
    for n in names:
        if n not in PHOTOS:
            raise ParameterError(f"unknown photo {n!r}; the embedded KonIQ-10k default has "
                                 f"{', '.join(PHOTOS)}." + close_matches(n, PHOTOS))
    if len(set(names)) != len(names):
        raise ParameterError(f"photos lists a photo twice: {names}")
    if len(names) < 3:
        raise ParameterError(f"photos must name at least 3 photos (one per set), got {names}")
    return names


def write_embedded(root, *, seed: int = 0, grid: int = 2, levels: int = 4, raters: int = 25,
                   photos=None, progress: bool = False) -> Path:
    """Write the generated KonIQ-10k-format folder into ``root`` and return it (see the module
    docstring). ``photos`` picks a subset of :data:`PHOTOS` by name (at least 3), in that order;
    ``progress`` prints one summary line."""
    names = _check_options(seed, grid, levels, raters, photos)
    files = _photo_files(names)  # every photo checked before anything is written
    t0 = time.perf_counter()
    root = Path(root).expanduser()
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    sets = _split_contents([f"{photo}_{k}" for photo in names for k in range(grid * grid)], int(seed))
    rows, meta = [], []
    for photo in names:
        img, colour = _read_photo(files[photo])
        for window, (x0, y0, w, h) in enumerate(_windows(img.size, grid)):
            content = f"{photo}_{window}"
            ref = np.asarray(img.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS, box=(x0, y0, x0 + w, y0 + h)))
            q_ref = float(_rng(seed, "q_ref", photo, window).uniform(*Q_REF_RANGE))
            variants = [("ref", 0)] + [(d, lv) for d in TYPES if colour or d != "desat"
                                       for lv in range(1, levels + 1)]
            for kind, level in variants:
                name = f"{content}_ref.jpg" if kind == "ref" else f"{content}_{kind}_{level}.jpg"
                t = level / levels
                pixels = ref if kind == "ref" else \
                    _distort(ref, kind, t, _rng(seed, "pixels", photo, window, kind, level))
                Image.fromarray(pixels).save(root / IMAGE_DIR / name, "JPEG", quality=JPEG_QUALITY, subsampling=2)
                score_rng = _rng(seed, "opinion", photo, window, kind, level)
                drop = 0.0 if kind == "ref" else SEVERITY[kind] * t ** GAMMA[kind]
                latent = q_ref - drop + SIGMA_IMG * float(score_rng.standard_normal())
                r = _ratings(latent, raters, score_rng)
                counts = [int((r == k).sum()) for k in range(1, 6)]
                s1 = sum(k * c for k, c in zip(range(1, 6), counts))
                s2 = sum(k * k * c for k, c in zip(range(1, 6), counts))
                mos100 = 25.0 * (s1 - raters) / raters
                sd = math.sqrt(max(0, raters * s2 - s1 * s1) / (raters * (raters - 1)))  # ddof = 1; exact integers inside
                rows.append([name, *(_py2(c / raters) for c in counts), raters, _py2(mos100), _py2(sd), sets[content]])
                meta.append([name, content, photo, PHOTOS[photo], window, kind, level, _fmt(latent), _fmt(q_ref),
                             int(colour), sets[content], x0, y0, w, h])
    write_tables(root, ((SETS_CSV, ["image_name", *RATINGS, "c_total", "MOS", "SD", "set"], rows),
                        (META_CSV, _META_COLUMNS, meta)))
    if progress:
        print(f"embedded KonIQ-10k: {len(rows)} images of {len(names) * grid * grid} contents written to "
              f"{root} in {time.perf_counter() - t0:.1f} s")
    return root


def write_tables(root: Path, tables) -> None:
    """Write each ``(file name, header, rows)`` of ``tables`` into ``root`` as the published CSVs are
    laid out: UTF-8, ``\n`` line ends, no quoting unless a cell needs it (also used by
    :mod:`lfakit.data.kadid_embedded`)."""
    for fname, header, table in tables:
        with open(root / fname, "w", newline="", encoding="utf-8") as f:
            wr = csv.writer(f, lineterminator="\n")
            wr.writerow(header)
            wr.writerows(table)


def embedded_koniq_dir(cache_dir=None, *, seed: int = 0, **options) -> Path:
    """The embedded KonIQ-10k folder for ``seed`` and ``options`` (those of :func:`write_embedded`),
    generated once into ``<cache_dir>/koniq_embedded/<key>/``. ``key`` is a short hash of
    :data:`GENERATOR_VERSION`, the seed, the options and the scikit-image version, and
    ``cache_dir`` defaults to :func:`~lfakit.data.image_cache.default_cache_dir`. The folder is
    written into a temporary sibling and renamed into place, so an interrupted generation leaves
    no partial folder. Later calls return the existing folder without regenerating it."""
    progress = bool(options.pop("progress", False))
    unknown = [k for k in options if k not in _DEFAULTS]
    if unknown:
        raise ParameterError(f"unknown option(s) {unknown} for the embedded KonIQ-10k default; allowed: "
                             f"{', '.join(_DEFAULTS)}, progress." + close_matches(unknown[0], _DEFAULTS))
    args = {**_DEFAULTS, **options}
    names = _check_options(seed, args["grid"], args["levels"], args["raters"], args["photos"])
    args["photos"] = names
    blob = json.dumps({"generator": GENERATOR_VERSION, "seed": int(seed), "scikit-image": _skimage_version(),
                       **{k: (int(v) if k != "photos" else v) for k, v in args.items()}}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    base = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "koniq_embedded"
    final = base / key
    if (final / SETS_CSV).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=base))
    try:
        out = write_embedded(tmp / "data", seed=int(seed), progress=progress, **args)  # mkdir: the umask's mode
        (out / "generator.json").write_text(blob + "\n", encoding="utf-8")
        if final.exists() and not (final / SETS_CSV).is_file():
            shutil.rmtree(final, ignore_errors=True)  # a leftover without its CSV is not a finished folder
        try:
            os.replace(out, final)
        except OSError:
            if not (final / SETS_CSV).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
