"""The embedded KADID-10k default: a small generated test set in the real KADID-10k layout.

Cross-dataset smoke runs (train on the embedded KonIQ-10k default, test on "KADID-10k") have to
run without the real data set. This module writes a small set of graded distortions of real
photographs **exactly as KADID-10k lays out its files**, so that :mod:`lfakit.data.kadid` reads
it the way it reads the real release::

    <root>/
      dmos.csv              dist_img,ref_img,dmos,var   (the published header and number format)
      images/I01.png ..     the undistorted references (512 x 384 PNG, as published)
      images/I01_01_01.png  I<ref>_<type>_<level>.png, 512 x 384 PNG
      embedded_meta.csv     the generator's own record (the loader ignores it)

:func:`write_embedded_kadid` writes such a folder; :func:`embedded_kadid_dir` writes it once
into the cache and returns the existing folder on later calls. Everything here is hand-written
for this kit; nothing is taken from KADID-10k's own generation code.

Contents
--------
Six references (:data:`REFERENCES`), two disjoint 4:3 windows of each of three photographs that
are **not** among the embedded KonIQ-10k default's sources (that set uses scikit-image's
sample photos), so the test contents are new to a model trained there:

======  ==============================================================  =================
name    photo (in the installed package's data folder)                  window
======  ==============================================================  =================
I01     ``china.jpg`` (scikit-learn, ``datasets/images``)               left, 320 x 240
I02     ``china.jpg``                                                   right, 320 x 240
I03     ``flower.jpg`` (scikit-learn, ``datasets/images``)              left, 320 x 240
I04     ``flower.jpg``                                                  right, 320 x 240
I05     ``grace_hopper.jpg`` (matplotlib, ``mpl-data/sample_data``)     top, 400 x 300
I06     ``grace_hopper.jpg``                                            bottom, 400 x 300
======  ==============================================================  =================

A landscape photo wider than 4:3 (china, flower: 640 x 427) is cut into two side-by-side 4:3
windows of half its width, centred vertically; a taller one (grace_hopper: 512 x 600) into two
stacked windows of half its height, centred horizontally. Each window is resized to 512 x 384
(KADID-10k's image size) with Pillow's Lanczos filter; that is the reference ``I0k.png``. The
photos are read as files (located with ``importlib.util.find_spec``, which imports neither
package) and decoded with Pillow; a missing file raises :class:`~lfakit.errors.DataError` naming
it. china.jpg and flower.jpg are CC BY 2.0 photographs by danielbuechele and vultilion on
Flickr (scikit-learn's ``datasets/images/README.txt``); grace_hopper.jpg is a US Navy portrait.

Distortions
-----------
Three of KADID-10k's 25 types, **numbered as KADID-10k numbers them** so that names parse the
same way (``I01_10_03.png``: reference 1, type 10, level 3); each is this module's own simple
version of the type, at levels ``l = 1 .. levels`` (default 5, as published) with ``t = l / levels``,
in float64 numpy rounded to uint8 once (:data:`TYPES`):

=====  ================  ============================================================
type   KADID name        here
=====  ================  ============================================================
01     Gaussian blur     Gaussian blur, sigma = 5 t px (separable, reflected borders)
10     JPEG              a JPEG round trip at quality round(50 * 0.08**t) (30, 18, 11, 7, 4)
11     white noise       additive Gaussian noise, sigma = 40 t (0-255), independent per channel
=====  ================  ============================================================

Every image is saved as a PNG (Pillow, compression level 6), as the release stores them.

Opinion-score model
-------------------
KADID-10k's scores are degradation category ratings of a distorted image shown next to its
reference (5 imperceptible .. 1 very annoying), about 30 per image. Each image ``i`` of reference
``c``, type ``d`` and level ``l`` gets a latent quality::

    latent_i = q_top(c) - S_d * (l / levels) ** G_d + SIGMA_IMG * e_i,    e_i ~ N(0, 1)
    q_top(c) ~ U(4.3, 4.9)                                                 (once per reference)

with ``S = {01: 3.2, 10: 3.0, 11: 2.8}``, ``G = {01: 1.0, 10: 1.5, 11: 1.0}``, ``SIGMA_IMG =
0.15`` (:data:`SEVERITY`, :data:`GAMMA`, :data:`Q_TOP_RANGE`). Each of ``raters`` (default 30)
raters gives ``r = clip(floor(latent_i + n + 1/2), 1, 5)`` with ``n ~ N(0, SIGMA_RATER = 0.7)``.
``dmos`` is the mean rating, written with 2 decimals, and ``var`` the population standard
deviation (ddof = 0) written with 3 decimals -- what the published ``var`` column holds (see
:mod:`lfakit.data.kadid`) -- both without trailing zeros (``4.57``, ``1.1``, ``4``, ``0``). So
the DMOS falls with the level for every type (monotone in expectation; the rater noise makes
single images cross) and saturates near 1 and 5. The references have no row, as published.

Randomness and determinism
--------------------------
Sub-streams as in :mod:`lfakit.data.koniq_embedded` (its ``_rng``: ``SeedSequence(seed,
spawn_key=(crc32(purpose), ...))``, purposes prefixed ``kadid-``), so adding a type leaves every
other image and score unchanged. Its ``_gaussian_blur`` and ``_to_uint8`` are reused too; the
cache key includes that module's ``GENERATOR_VERSION``. Pixel arithmetic is elementwise float64,
Pillow's Lanczos resampling, JPEG and PNG (zlib) coders are integer code, so the same seed and
options give byte-identical files with the same Pillow, zlib and photo files.

With the defaults: 6 references x 3 types x 5 levels = 90 scored images (+ 6 references),
about 25 MB, written in about 6 s on one core. Nothing measured on this set says anything
about KADID-10k: it only shows that the cross-dataset pipeline works.
"""

from __future__ import annotations

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
from pathlib import Path

import numpy as np
from PIL import Image

from lfakit.data import koniq_embedded as _ke
from lfakit.data.image_cache import default_cache_dir
from lfakit.data.kadid import COLUMNS, DMOS_CSV, IMAGE_DIR
from lfakit.errors import DataError, ParameterError, close_matches

__all__ = [
    "GENERATOR_VERSION",
    "PHOTOS",
    "REFERENCES",
    "TYPES",
    "SEVERITY",
    "GAMMA",
    "Q_TOP_RANGE",
    "SIGMA_IMG",
    "SIGMA_RATER",
    "META_CSV",
    "photo_file",
    "write_embedded_kadid",
    "embedded_kadid_dir",
]

#: Bump whenever the generator's output changes for the same options (invalidates the cache).
GENERATOR_VERSION = 1

#: photo -> (package, folder inside it, file)
PHOTOS: dict[str, tuple[str, str, str]] = {
    "china": ("sklearn", "datasets/images", "china.jpg"),
    "flower": ("sklearn", "datasets/images", "flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data", "grace_hopper.jpg"),
}
_DIST_NAMES = {"sklearn": "scikit-learn", "matplotlib": "matplotlib"}
#: reference name -> (photo, window 0 or 1: left/top, right/bottom)
REFERENCES: dict[str, tuple[str, int]] = {
    "I01": ("china", 0), "I02": ("china", 1),
    "I03": ("flower", 0), "I04": ("flower", 1),
    "I05": ("grace_hopper", 0), "I06": ("grace_hopper", 1),
}
#: KADID-10k type number -> its name in the KADID-10k paper
TYPES: dict[int, str] = {1: "gaussian blur", 10: "jpeg", 11: "white noise"}
SEVERITY = {1: 3.2, 10: 3.0, 11: 2.8}
GAMMA = {1: 1.0, 10: 1.5, 11: 1.0}
Q_TOP_RANGE = (4.3, 4.9)
SIGMA_IMG = 0.15
SIGMA_RATER = 0.7
WIDTH, HEIGHT = 512, 384
META_CSV = "embedded_meta.csv"
_DEFAULTS = {"levels": 5, "raters": 30, "types": tuple(TYPES)}
_META_COLUMNS = ["image_name", "ref_img", "photo", "source_file", "window_x", "window_y", "window_w", "window_h",
                 "type", "type_name", "level", "latent", "q_top"]


# ----------------------------------------------------------------------------- photos
def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def photo_file(photo: str) -> Path:
    """The installed file of ``photo`` (:data:`PHOTOS`), found without importing its package."""
    package, sub, name = PHOTOS[photo]
    spec = importlib.util.find_spec(package)
    dist = _DIST_NAMES[package]
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{dist} is not installed; the embedded KADID-10k default reads its sample photo {name}. "
                        f"Install the kit's dependencies (pip install -e .).")
    path = Path(list(spec.submodule_search_locations)[0]) / sub / name
    if not path.is_file():
        raise DataError(f"{dist} {_version(dist)} has no sample photo {name} (expected at {path}); the embedded "
                        f"KADID-10k default needs it. Reinstall {dist}: pip install --force-reinstall {dist}.")
    return path


def _read_photo(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot decode the sample photo {path} ({e}); reinstall the package that ships it.") from None


def _window(size: tuple[int, int], k: int) -> tuple[int, int, int, int]:
    """Window ``k`` (0: left / top, 1: right / bottom) ``(x, y, w, h)`` of the two disjoint 4:3
    windows of a ``(W, H)`` photo: side by side if it is wider than 4:3, else stacked."""
    W, H = size
    if W * 3 >= H * 4:
        w = min(W // 2, (H * 4) // 3)
        h = (w * 3) // 4
        return W // 2 - w + k * w, (H - h) // 2, w, h
    h = min(H // 2, (W * 3) // 4)
    w = (h * 4) // 3
    return (W - w) // 2, H // 2 - h + k * h, w, h


# ----------------------------------------------------------------------------- distortions
def _jpeg_quality(t: float) -> int:
    return max(1, int(math.floor(50.0 * 0.08 ** t + 0.5)))


def _distort(ref: np.ndarray, kind: int, t: float, rng: np.random.Generator) -> np.ndarray:
    """``ref`` (uint8 H x W x 3) distorted by KADID type ``kind`` at strength ``t`` in (0, 1]."""
    if kind == 1:
        return _ke._to_uint8(_ke._gaussian_blur(ref.astype(np.float64), 5.0 * t))
    if kind == 10:
        buf = io.BytesIO()
        Image.fromarray(ref).save(buf, "JPEG", quality=_jpeg_quality(t), subsampling=2)
        buf.seek(0)
        with Image.open(buf) as im:
            return np.asarray(im.convert("RGB")).copy()
    if kind == 11:
        return _ke._to_uint8(ref.astype(np.float64) + (40.0 * t) * rng.standard_normal(ref.shape))
    raise AssertionError(kind)


# ----------------------------------------------------------------------------- scores
def _num(v: float, decimals: int) -> str:
    """``v`` at ``decimals`` decimals without trailing zeros, as the published dmos.csv writes it
    (``4.57``, ``1.1``, ``4``, ``0``)."""
    s = f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _check_options(seed, levels, raters, types) -> list[int]:
    for name, v, lo, hi in (("seed", seed, 0, None), ("levels", levels, 1, 99), ("raters", raters, 1, None)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo or (hi is not None and v > hi):
            raise ParameterError(f"{name} must be an integer >= {lo}" + (f" and <= {hi}" if hi else "") + f", got {v!r}")
    kinds = list(types)
    for k in kinds:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k not in TYPES:
            raise ParameterError(f"unknown distortion type {k!r}; the embedded KADID-10k default has "
                                 f"{', '.join(f'{n} ({TYPES[n]})' for n in TYPES)}." + close_matches(str(k), map(str, TYPES)))
    if not kinds or len(set(kinds)) != len(kinds):
        raise ParameterError(f"types must list distinct types, at least one, got {kinds}")
    return sorted(int(k) for k in kinds)


def write_embedded_kadid(root, *, seed: int = 0, levels: int = 5, raters: int = 30, types=tuple(TYPES),
                         progress: bool = False) -> Path:
    """Write the generated KADID-10k-format folder into ``root`` and return it (see the module
    docstring). ``types`` picks KADID type numbers among :data:`TYPES`; ``progress`` prints one
    summary line."""
    kinds = _check_options(seed, levels, raters, types)
    files = {p: photo_file(p) for p in dict.fromkeys(p for p, _ in REFERENCES.values())}  # all checked first
    t0 = time.perf_counter()
    root = Path(root).expanduser()
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    photos = {p: _read_photo(f) for p, f in files.items()}
    rows, meta = [], []
    for ref_name, (photo, k) in REFERENCES.items():
        img = photos[photo]
        x0, y0, w, h = _window(img.size, k)
        ref = np.asarray(img.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS, box=(x0, y0, x0 + w, y0 + h)))
        ref_file = f"{ref_name}.png"
        Image.fromarray(ref).save(root / IMAGE_DIR / ref_file, "PNG")
        q_top = float(_ke._rng(seed, "kadid-q_top", ref_name).uniform(*Q_TOP_RANGE))
        for kind in kinds:
            for level in range(1, levels + 1):
                name = f"{ref_name}_{kind:02d}_{level:02d}.png"
                t = level / levels
                pixels = _distort(ref, kind, t, _ke._rng(seed, "kadid-pixels", ref_name, kind, level))
                Image.fromarray(pixels).save(root / IMAGE_DIR / name, "PNG")
                score_rng = _ke._rng(seed, "kadid-opinion", ref_name, kind, level)
                latent = q_top - SEVERITY[kind] * t ** GAMMA[kind] + SIGMA_IMG * float(score_rng.standard_normal())
                r = np.clip(np.floor(latent + SIGMA_RATER * score_rng.standard_normal(raters) + 0.5), 1, 5).astype(np.int64)
                s1, s2 = int(r.sum()), int((r * r).sum())
                sd = math.sqrt(max(0, raters * s2 - s1 * s1)) / raters  # ddof = 0; exact integers inside
                rows.append([name, ref_file, _num(s1 / raters, 2), _num(sd, 3)])
                meta.append([name, ref_file, photo, PHOTOS[photo][2], x0, y0, w, h, kind, TYPES[kind], level,
                             repr(latent), repr(q_top)])
    _ke.write_tables(root, ((DMOS_CSV, list(COLUMNS), rows), (META_CSV, _META_COLUMNS, meta)))
    if progress:
        print(f"embedded KADID-10k: {len(rows)} images of {len(REFERENCES)} references written to {root} "
              f"in {time.perf_counter() - t0:.1f} s")
    return root


def embedded_kadid_dir(cache_dir=None, *, seed: int = 0, **options) -> Path:
    """The embedded KADID-10k folder for ``seed`` and ``options`` (those of
    :func:`write_embedded_kadid`), generated once into ``<cache_dir>/kadid_embedded/<key>/``.
    ``key`` hashes :data:`GENERATOR_VERSION`, the reused koniq_embedded helpers' version, the seed,
    the options and the versions of the packages that ship the photos and code the files;
    ``cache_dir`` defaults to :func:`~lfakit.data.image_cache.default_cache_dir`. Written into a
    temporary sibling and renamed into place, so an interrupted generation leaves no partial folder."""
    progress = bool(options.pop("progress", False))
    unknown = [k for k in options if k not in _DEFAULTS]
    if unknown:
        raise ParameterError(f"unknown option(s) {unknown} for the embedded KADID-10k default; allowed: "
                             f"{', '.join(_DEFAULTS)}, progress." + close_matches(unknown[0], _DEFAULTS))
    args = {**_DEFAULTS, **options}
    args["types"] = _check_options(seed, args["levels"], args["raters"], args["types"])
    blob = json.dumps({"generator": GENERATOR_VERSION, "koniq_embedded": _ke.GENERATOR_VERSION, "seed": int(seed),
                       "scikit-learn": _version("scikit-learn"), "matplotlib": _version("matplotlib"),
                       "pillow": _version("pillow"), "levels": int(args["levels"]), "raters": int(args["raters"]),
                       "types": args["types"]}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    base = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "kadid_embedded"
    final = base / key
    if (final / DMOS_CSV).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=base))
    try:
        out = write_embedded_kadid(tmp / "data", seed=int(seed), progress=progress, **args)
        (out / "generator.json").write_text(blob + "\n", encoding="utf-8")
        if final.exists() and not (final / DMOS_CSV).is_file():
            shutil.rmtree(final, ignore_errors=True)  # a leftover without its CSV is not a finished folder
        try:
            os.replace(out, final)
        except OSError:
            if not (final / DMOS_CSV).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
