"""KADID-10k in its real on-disk layout: index, DMOS, cached RGB images -- a test-only IQA set.

KADID-10k (Lin, Hosu and Saupe, QoMEX 2019) is used here for cross-dataset testing: models
trained on KonIQ-10k are evaluated on it, so the whole set is one test split. Its release
(``kadid10k.zip``) unpacks to::

    kadid10k/
      dmos.csv          dist_img,ref_img,dmos,var     (10,125 rows, one per distorted image)
      images/           I01.png .. I81.png            (the 81 pristine references)
                        I01_01_01.png .. I81_25_05.png (I<ref>_<type>_<level>.png: 81 references
                                                        x 25 distortion types x 5 levels)

All images are 512 x 384 PNGs. Only the distorted images are scored; the references are in
``images/`` too, named in the ``ref_img`` column, but have no row of their own, and this loader
never reads them (a no-reference model sees only ``dist_img``).

The columns, as the published file holds them:

* ``dist_img``, ``ref_img``: file names in ``images/``.
* ``dmos``: the mean of about 30 crowd ratings on a 5-point degradation category scale
  (5 imperceptible .. 1 very annoying), so **higher is better** despite the "D"; written with at
  most 2 decimals and no trailing zeros (``4.57``, ``1.1``, ``4``, ``1``).
* ``var``: despite its name, the **standard deviation** of those ratings (population SD, ddof = 0),
  at most 3 decimals (``0.496``, ``0.3``, ``0``). Checked by arithmetic on published rows:
  ``4.57, 0.496`` is 17 ratings of 5 and 13 of 4 (mean 4.567, SD 0.4955, variance 0.2456), and
  ``1.1, 0.3`` is 27 ones and 3 twos (SD 0.3, variance 0.09). Of 17 published rows tried, every
  (dmos, var) pair is the (mean, ddof-0 SD) of 27-33 integer ratings in 1..5, while only two of
  them (``1, 0`` and ``1.1, 0.3``) could be a (mean, variance) pair. pyiqa names the column
  ``std``. So ``sd`` is the ``var`` column as it stands (not its square root), on the
  1-5 scale, and must lie in [0, 2] (the SD of ratings in 1..5 is at most 2).

Sources read for the layout (public repositories, read through the code index; nothing copied):

* chaofengc/IQA-PyTorch (pyiqa) ``scripts/process_kadid10k.py``: reads ``datasets/kadid10k/dmos.csv``
  with ``csv.reader``, skips the header, takes ``row[0]`` dist name, ``row[1]`` ref name,
  ``row[2]`` dmos, ``row[3]`` as ``std``, and writes the strings unchanged into
  ``pyiqa/data/meta_info/meta_info_KADID10kDataset.txt`` -- so that file shows the published
  number formats verbatim (``I01.png  I01_01_01.png  4.57  0.496`` .. ``I02_02_05.png  1  0``).
* chaofengc/IQA-PyTorch ``pyiqa/data/meta_info/meta_info_KADID10kDataset.csv``
  (``ref_name,dist_name,dmos,std``; first row ``I01.png,I01_01_01.png,4.57,0.496``, last row
  ``I81.png,I81_25_05.png,3.27,0.772``, rows ordered by reference, type, level) and
  ``pyiqa/dataset_info.py`` (``"kadid": score_range (1, 5), mos_type "mos"``: higher is better).
* Other loaders found by the search index (file names not shown by it) read ``dmos.csv`` with the
  header ``dist_img,ref_img,dmos,var`` next to an ``images/`` folder holding both ``I01.png`` and
  ``I01_01_01.png`` (e.g. a test fixture zipping ``kadid10k/images/I01.png``,
  ``kadid10k/images/I01_01_01.png`` and ``kadid10k/dmos.csv``).

Scale: KADID-10k's DMOS is on 1-5 (higher = better); KonIQ-10k's MOS is on 1-5 or 0-100
(:mod:`lfakit.data.koniq`, ``mos_scale``). Cross-dataset SRCC (and KRCC) are rank statistics,
so a model trained on either KonIQ scale is compared on KADID without any rescaling; PLCC is
comparable after the usual monotone (logistic) fit, raw RMSE is not.

Every problem of the folder stops with a :class:`~lfakit.errors.DataError` naming the file and
(where there is one) the CSV row -- row numbers count the header as row 1, as a spreadsheet shows
them -- before any image is decoded: a missing folder, ``dmos.csv`` or ``images/``, a missing
column, an empty or duplicated name, a reference image listed as a scored image, text (or an
empty cell) in a number column, a ``dmos`` outside [1, 5], a negative ``var`` (or one above 2),
a listed image absent. A corrupt PNG is found while the cache is built, naming the file.

This module does not import torch: :func:`check_folder` and :func:`read_index` only read the CSV
and list the folder. The generated default in this layout
is :mod:`lfakit.data.kadid_embedded` (:func:`write_embedded_kadid`, :func:`embedded_kadid_dir`).
Everything here is hand-written for this kit.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lfakit.data.image_cache import build_image_cache, default_cache_dir
from lfakit.data.koniq import Split, check_listed_images
from lfakit.errors import DataError, ParameterError

__all__ = [
    "DMOS_CSV",
    "IMAGE_DIR",
    "COLUMNS",
    "DMOS_RANGE",
    "SD_RANGE",
    "PUBLISHED_COUNTS",
    "NAME_PATTERN",
    "KadidIndex",
    "find_layout",
    "read_csv",
    "read_index",
    "load_index",
    "check_folder",
    "load_kadid",
    "write_embedded_kadid",
    "embedded_kadid_dir",
]

DMOS_CSV = "dmos.csv"
IMAGE_DIR = "images"
COLUMNS = ("dist_img", "ref_img", "dmos", "var")
DMOS_RANGE = (1.0, 5.0)
SD_RANGE = (0.0, 2.0)  # the ``var`` column is the ratings' SD; ratings in 1..5 have an SD of at most 2
#: the published release: 81 references x 25 distortion types x 5 levels
PUBLISHED_COUNTS = {"references": 81, "types": 25, "levels": 5, "images": 10125}
#: ``I<ref>_<type>_<level>.png``, as every published ``dist_img`` is named
NAME_PATTERN = re.compile(r"I(\d+)_(\d+)_(\d+)\.png")
_TOL = 1e-9


@dataclass
class KadidIndex:
    """The scored images of a KADID-10k folder: ``table`` has ``image_name`` (``dist_img``),
    ``mos`` (the ``dmos`` column, 1-5, higher = better), ``sd`` (the ``var`` column: the ratings'
    SD on 1-5), ``ref_img``, ``type`` and ``level`` (from the name; ``<NA>`` for a name not of
    the form ``I01_01_01.png``) and ``row`` (the CSV row, the header being row 1)."""

    table: pd.DataFrame
    csv: Path
    image_dir: Path


def _layout_help() -> str:
    return (f"A KADID-10k folder (the unpacked kadid10k.zip) holds {DMOS_CSV} "
            f"({','.join(COLUMNS)}) and the PNGs in {IMAGE_DIR}/. To run without it, use the embedded "
            f"default in this layout (lfakit.data.kadid.embedded_kadid_dir).")


def find_layout(folder) -> tuple[Path, Path]:
    """``(dmos.csv, images/)`` of a KADID-10k folder; a DataError naming what is missing."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"KADID-10k folder {root} does not exist. {_layout_help()}")
    csv, images = root / DMOS_CSV, root / IMAGE_DIR
    if not csv.is_file():
        inner = root / "kadid10k"
        hint = (f" It holds a kadid10k/ folder with {DMOS_CSV}: give that folder ({inner})."
                if (inner / DMOS_CSV).is_file() else "")
        raise DataError(f"{root} has no {DMOS_CSV}.{hint} {_layout_help()}")
    if not images.is_dir():
        raise DataError(f"{root} has no image folder {IMAGE_DIR}/ next to {DMOS_CSV}. {_layout_help()}")
    return csv, images


def _bad_rows(csv: Path, df: pd.DataFrame, mask, what: str, column: str, fix: str = "Fix or remove those rows.") -> DataError:
    rows = df.index[np.asarray(mask)]
    shown = ", ".join(f"row {r + 2} ({df.loc[r, 'dist_img']!s}: {df.loc[r, column]!r})" for r in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return DataError(f"{csv}: {what} in column {column!r}: {shown}{more}. {fix}")


def read_csv(csv) -> pd.DataFrame:
    """The rows of a ``dmos.csv`` as ``image_name, mos, sd, ref_img, type, level, row``, checked
    (see the module docstring); no image is looked at."""
    csv = Path(csv)
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{csv} is not a readable CSV ({e}). {_layout_help()}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{csv} lacks the column(s) {', '.join(map(repr, missing))}; KADID-10k's {DMOS_CSV} has "
                        f"the header {','.join(COLUMNS)} (found: {','.join(df.columns)}).")
    if df.empty:
        raise DataError(f"{csv} lists no images.")
    for c in ("dist_img", "ref_img"):
        df[c] = df[c].str.strip()
        blank = df[c] == ""
        if blank.any():
            raise _bad_rows(csv, df, blank, "an empty image name", c)
    dup = df["dist_img"].duplicated(keep=False)
    if dup.any():
        raise _bad_rows(csv, df, dup, "an image listed twice", "dist_img")
    is_ref = df["dist_img"].isin(set(df["ref_img"]))
    if is_ref.any():
        raise _bad_rows(csv, df, is_ref, "a reference image (named in ref_img) listed as a scored image", "dist_img",
                        fix="Only the distorted images have rows; remove those rows.")
    values = {}
    for c in ("dmos", "var"):
        v = pd.to_numeric(df[c].str.strip(), errors="coerce")
        bad = v.isna() | ~np.isfinite(v)
        if bad.any():
            raise _bad_rows(csv, df, bad, "a value that is not a finite number", c)
        values[c] = v.to_numpy(float)
    lo, hi = DMOS_RANGE
    out = (values["dmos"] < lo - _TOL) | (values["dmos"] > hi + _TOL)
    if out.any():
        raise _bad_rows(csv, df, out, f"a DMOS outside KADID-10k's scale [{lo:g}, {hi:g}]", "dmos",
                        fix="Fix or remove those rows; KADID-10k's dmos is the mean of ratings 1..5 (higher = better).")
    neg = values["var"] < SD_RANGE[0]
    if neg.any():
        raise _bad_rows(csv, df, neg, "a negative spread of the ratings", "var")
    big = values["var"] > SD_RANGE[1] + _TOL
    if big.any():
        raise _bad_rows(csv, df, big, f"a spread above {SD_RANGE[1]:g}", "var",
                        fix="Fix or remove those rows; the published var column holds the standard deviation of "
                            "ratings in 1..5 (0 to 2), not a variance.")
    parts = df["dist_img"].str.fullmatch(NAME_PATTERN.pattern)
    parsed = df["dist_img"].str.extract(NAME_PATTERN.pattern)
    type_ = pd.array([int(t) if ok else pd.NA for t, ok in zip(parsed[1], parts)], dtype="Int64")
    level = pd.array([int(t) if ok else pd.NA for t, ok in zip(parsed[2], parts)], dtype="Int64")
    return pd.DataFrame({"image_name": df["dist_img"].to_numpy(), "mos": values["dmos"], "sd": values["var"],
                         "ref_img": df["ref_img"].to_numpy(), "type": type_, "level": level,
                         "row": df.index.to_numpy() + 2})


def _check_max_images(max_images) -> None:
    if max_images is None:
        return
    if isinstance(max_images, bool) or not isinstance(max_images, numbers.Integral) or max_images < 1:
        raise ParameterError(f"max_images must be a positive integer or None (all images), got {max_images!r}")


def load_index(folder, max_images: int | None = None, seed: int = 0) -> KadidIndex:
    """Read and check a KADID-10k folder (no image is decoded): every row of ``dmos.csv``, or a
    ``seed``-ed uniform sample of ``max_images`` of them (kept in file order), and each kept image
    present in ``images/``."""
    _check_max_images(max_images)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ParameterError(f"seed must be an integer >= 0, got {seed!r}")
    csv, folder = find_layout(folder)
    t = read_csv(csv)
    if max_images is not None and max_images < len(t):
        keep = np.random.default_rng(seed).choice(len(t), size=max_images, replace=False)
        t = t.iloc[np.sort(keep)].reset_index(drop=True)
    check_listed_images(t, csv, folder, "Put the PNGs there (the whole images/ folder of kadid10k.zip), or remove "
                        "their rows.")
    return KadidIndex(t, csv, folder)


def read_index(folder, max_images: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The checked index table of a KADID-10k folder (see :class:`KadidIndex` for its columns)."""
    return load_index(folder, max_images, seed).table


def check_folder(folder) -> pd.DataFrame:
    """Every check of a KADID-10k folder that needs no image decoded (layout, columns, values,
    every listed image present), for a caller that must fail before it creates anything; returns
    the full index table. Torch-free and quick (one CSV read and one folder listing)."""
    return read_index(folder)


def load_kadid(folder, cache_dir=None, image_size=(384, 512), seed: int = 0, max_images: int | None = None,
               progress: bool = True) -> Split:
    """The scored images of a KADID-10k folder as one test :class:`~lfakit.data.koniq.Split`:
    uint8 RGB images (N, H, W, 3) from the generic pre-resized cache (namespace ``kadid``,
    keyed on the size and the image names), ``mos`` = DMOS (1-5, higher = better), ``sd`` = the
    ``var`` column, in ``dmos.csv``'s order. ``image_size``: an int for a square or ``(height,
    width)``; KADID's images are 512 x 384 landscape, so (384, 512) keeps them whole.
    ``max_images``: a ``seed``-ed sample (see :func:`load_index`)."""
    idx = load_index(folder, max_images, seed)
    t = idx.table
    images = build_image_cache([idx.image_dir / n for n in t["image_name"]], image_size, mode="RGB",
                               cache_dir=cache_dir or default_cache_dir(), namespace="kadid",
                               ids=[f"{IMAGE_DIR}/{n}" for n in t["image_name"]],
                               progress=progress, desc="KADID-10k cache")
    return Split(images, t["mos"].to_numpy(float), t["sd"].to_numpy(float), t["image_name"].tolist())


def write_embedded_kadid(root, **options) -> Path:
    """Write the generated KADID-10k-format folder (:func:`lfakit.data.kadid_embedded.write_embedded_kadid`)."""
    from lfakit.data.kadid_embedded import write_embedded_kadid as write

    return write(root, **options)


def embedded_kadid_dir(cache_dir=None, **options) -> Path:
    """The generated KADID-10k-format folder, written once into the cache
    (:func:`lfakit.data.kadid_embedded.embedded_kadid_dir`)."""
    from lfakit.data.kadid_embedded import embedded_kadid_dir as get

    return get(cache_dir, **options)
