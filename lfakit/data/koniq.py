"""KonIQ-10k in its real on-disk layout: index, MOS on one chosen scale, splits, cached RGB images.

A KonIQ-10k folder holds one of the two CSVs the data set ships and one of its image folders:

* ``koniq10k_distributions_sets.csv`` (the KonIQ-10k repository's ``metadata/`` folder):
  ``image_name, c1..c5, c_total, MOS, SD, set``. ``c1..c5`` are the **fractions** of the
  ratings that were 1..5 (each row sums to 1), ``c_total`` the number of ratings (93-157),
  ``MOS`` the data set's z-score MOS on **0-100**, ``SD`` the opinion SD on the **1-5** rating
  scale, and ``set`` the official split (``training`` 7,058 / ``validation`` 1,000 / ``test``
  2,015 images).
* ``koniq10k_scores_and_distributions.csv``: ``image_name, c1..c5, c_total, MOS, SD,
  MOS_zscore``; ``c1..c5`` are rating **counts**, ``MOS`` is on 1-5, ``MOS_zscore`` on 0-100; no
  split, so the kit draws a seeded 70/10/20 split of the images.
* ``512x384/`` or ``1024x768/``: the JPEGs, named as in ``image_name``.

Fractions or counts are told apart by the data, row by row: a row whose ``c1..c5`` sum to 1
within 1e-6 is a row of fractions; a row of whole numbers that add up to ``c_total`` is a row of
counts. The file is read as the kind most of its rows are; a row that is not of that kind stops
the load, named. Either way the 1-5 mean rating is ``sum_k k * c_k / sum_k c_k``.

The MOS scale is chosen explicitly (``mos_scale``) so that both CSVs give the same targets:

* ``"1-5"``: the mean rating, computed from ``c1..c5`` (the scores CSV's ``MOS`` column holds the
  same number); ``SD`` is on this scale already.
* ``"0-100"``: the data set's rescaled z-score MOS (``MOS`` in the sets CSV, ``MOS_zscore`` in
  the scores CSV); ``SD`` is rescaled by 100/4 = 25, an approximation (the z-score map is not
  exactly linear in the raw MOS), said so wherever it is used.

The scale of every MOS column read is checked against the value range: a column whose values all
lie in [1, 5] is on the 1-5 scale (the published 0-100 MOS spans 3.9-88.4), and a 1-5 column may
not exceed 5. So a 1-5 MOS in the sets CSV under ``mos_scale="0-100"`` -- which would otherwise
pass (1-5 lies inside 0-100) and have its SD multiplied by 25 against an unscaled MOS -- stops
with the column, the range found and the fix; so does a 0-100 MOS in the scores CSV's 1-5
``MOS`` column. ``SD`` is read on the 1-5 scale (at most 2; the published file: 0.30-1.10).

The official split's sizes are compared with :data:`OFFICIAL_SIZES`; a ``set`` column that gives
other sizes loads with a warning naming both (results on it are not comparable with the published
ones). ``max_images`` samples each official split in proportion to its size.

Images are decoded once, in RGB, into the generic pre-resized cache
(:func:`lfakit.data.image_cache.build_image_cache`) keyed on the size and the image names.

Every problem of the folder stops with a :class:`~lfakit.errors.DataError` naming the file and
(where there is one) the CSV row -- row numbers count the header as row 1, as a spreadsheet
shows them -- before any image is decoded: a missing CSV or image folder, a missing column, a
duplicated name, ratings that are neither fractions nor counts, a MOS or SD outside its scale,
an unknown ``set`` value, an empty split, a listed image absent. A corrupt JPEG is found while
the cache is built, naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lfakit.data.image_cache import build_image_cache, default_cache_dir
from lfakit.errors import DataError, ParameterError

SETS_CSV = "koniq10k_distributions_sets.csv"
SCORES_CSV = "koniq10k_scores_and_distributions.csv"
IMAGE_DIRS = ("512x384", "1024x768")
OFFICIAL_SIZES = {"training": 7058, "validation": 1000, "test": 2015}
SET_TO_SPLIT = {"training": "train", "validation": "val", "test": "test"}
MOS_SCALES = ("1-5", "0-100")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
RATINGS = [f"c{k}" for k in range(1, 6)]
_REQUIRED = {
    SETS_CSV: ["image_name", *RATINGS, "c_total", "MOS", "SD", "set"],
    SCORES_CSV: ["image_name", *RATINGS, "c_total", "MOS", "SD", "MOS_zscore"],
}
_RANGES = {"1-5": (1.0, 5.0), "0-100": (0.0, 100.0)}
_SD_RANGE = (0.0, 2.0)  # the standard deviation of ratings on 1..5 is at most 2
_TOL = 1e-6
EMBEDDED_MARK = "embedded_meta.csv"  # = lfakit.data.koniq_embedded.META_CSV: the generated default's folder
FRACTION_TOL = 1e-6  # a row of fractions sums to 1 within this (the published file: within 1.4e-12)


@dataclass
class KonIQIndex:
    """The images of a KonIQ-10k folder with their targets on one MOS scale and their split."""

    table: pd.DataFrame  # image_name, mos, sd, split, row (the CSV row number)
    csv: Path
    image_dir: Path
    mos_scale: str
    official_split: bool

    def split(self, name: str) -> pd.DataFrame:
        return self.table[self.table["split"] == name]


@dataclass
class Split:
    """One split: uint8 RGB images (N, H, W, 3), MOS and SD on the chosen scale, image names."""

    images: np.ndarray
    mos: np.ndarray
    sd: np.ndarray
    image_names: list[str]


def _layout_help(root: Path) -> str:
    return (f"A KonIQ-10k folder holds {SETS_CSV} (official split) or {SCORES_CSV}, and the JPEGs in "
            f"{IMAGE_DIRS[0]}/ or {IMAGE_DIRS[1]}/ (docs/data.md). To run without it, leave data_dir empty "
            f"(the embedded default, written in this format).")


def find_layout(root, image_dir: str | None = None) -> tuple[Path, Path]:
    """``(csv, image folder)`` of a KonIQ-10k folder: the sets CSV when both are there, and the
    first image folder present (or ``image_dir``, one of :data:`IMAGE_DIRS`)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"KonIQ-10k folder {root} does not exist. {_layout_help(root)}")
    csvs = [root / n for n in (SETS_CSV, SCORES_CSV) if (root / n).is_file()]
    if not csvs:
        raise DataError(f"{root} holds neither {SETS_CSV} nor {SCORES_CSV}. {_layout_help(root)}")
    if image_dir is not None and image_dir not in IMAGE_DIRS:
        raise ParameterError(f"image_dir must be one of {', '.join(IMAGE_DIRS)} (or empty: the first present), got {image_dir!r}")
    dirs = [root / d for d in ((image_dir,) if image_dir else IMAGE_DIRS) if (root / d).is_dir()]
    if not dirs:
        want = image_dir or " or ".join(f"{d}/" for d in IMAGE_DIRS)
        raise DataError(f"{root} has no image folder {want}. {_layout_help(root)}")
    return csvs[0], dirs[0]


def _bad_rows(csv: Path, df: pd.DataFrame, mask, what: str, column: str, values=None, fix: str = "Fix or remove those rows.") -> DataError:
    rows = df.index[np.asarray(mask)]

    def value(r):
        v = df.loc[r, column] if values is None else values[df.index.get_loc(r)]
        return v.item() if hasattr(v, "item") else v

    shown = ", ".join(f"row {r + 2} ({df.loc[r, 'image_name']!s}: {value(r)!r})" for r in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return DataError(f"{csv}: {what} in column {column!r}: {shown}{more}. {fix}")


def rating_kind(csv: Path, df: pd.DataFrame) -> tuple[str, np.ndarray]:
    """``("fractions" | "counts", the 1-5 mean rating per row)`` of ``c1..c5`` (numeric columns),
    told apart by the data (module docstring); a row of neither kind raises a DataError naming it."""
    c = df[RATINGS].to_numpy(float)
    total = df["c_total"].to_numpy(float)
    neg = (c < 0).any(1)
    if neg.any():
        col = RATINGS[int(np.argmax((c[neg][0] < 0)))]
        raise _bad_rows(csv, df, neg, "a negative rating count or fraction", col)
    bad_total = (total <= 0) | (np.abs(total - np.round(total)) > 1e-9)
    if bad_total.any():
        raise _bad_rows(csv, df, bad_total, "a number of ratings that is not a positive whole number", "c_total")
    s = c.sum(1)
    is_frac = np.abs(s - 1.0) <= FRACTION_TOL
    is_count = (np.abs(c - np.round(c)) <= 1e-9).all(1) & (np.abs(s - total) <= 1e-9)
    kind = "fractions" if (is_frac & ~is_count).sum() > (is_count & ~is_frac).sum() else "counts"
    bad = ~(is_frac if kind == "fractions" else is_count)
    if bad.any():
        sums = [f"c1..c5 sum to {v:.12g}, c_total {t:g}" for v, t in zip(s, total)]
        if kind == "fractions":
            what = (f"c1..c5 are fractions of the ratings in this file (its rows sum to 1), but these rows do not sum "
                    f"to 1 within {FRACTION_TOL:g}")
        else:
            what = "c1..c5 are rating counts in this file, but these rows are not whole numbers adding up to c_total"
        raise _bad_rows(csv, df, bad, what, "c1..c5", values=sums,
                        fix="Write each row as fractions summing to 1 or as counts summing to c_total, or remove it.")
    return kind, c @ np.arange(1, 6) / s


def _span(v) -> str:
    return f"{np.min(v):.4g} to {np.max(v):.4g}"


def _check_mos_scales(csv: Path, df: pd.DataFrame, kind: str, mos_scale: str) -> None:
    """The scale of the MOS columns against their documented scale and ``mos_scale``."""
    z_col = "MOS" if kind == SETS_CSV else "MOS_zscore"
    z = df[z_col].to_numpy(float)
    if mos_scale == "0-100" and z.min() >= 1 - _TOL and z.max() <= 5 + _TOL:
        raise DataError(
            f"{csv}: mos_scale=0-100 takes column {z_col!r} as the 0-100 MOS, but its values span {_span(z)}, "
            f"the 1-5 scale (the published 0-100 MOS spans 3.9 to 88.4; on 1-5 its SD, multiplied by 25, would "
            f"no longer match the MOS). Fix: run with mos_scale=1-5 (the mean rating, computed from c1..c5), "
            f"or write the 0-100 MOS into {z_col!r}.")
    if kind == SCORES_CSV:
        m = df["MOS"].to_numpy(float)
        if np.median(m) > 5 + _TOL:  # a stray row above 5 is named by the row check below
            raise DataError(
                f"{csv}: column 'MOS' holds the 1-5 mean rating in this file (the scores CSV's layout), "
                f"but its values span {_span(m)}, the 0-100 scale. Fix: write the 1-5 mean rating into 'MOS' and "
                f"the 0-100 MOS into 'MOS_zscore' (run with mos_scale=0-100 to train on the latter).")


def read_csv(csv: Path, mos_scale: str) -> pd.DataFrame:
    """The CSV's rows as ``image_name, mos, sd[, set]`` on ``mos_scale``, checked (see the module docstring)."""
    if mos_scale not in MOS_SCALES:
        raise ParameterError(f"mos_scale must be one of {', '.join(MOS_SCALES)}, got {mos_scale!r}")
    try:
        df = pd.read_csv(csv, dtype={"image_name": str})
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{csv} is not a readable CSV ({e}).") from None
    kind = csv.name if csv.name in _REQUIRED else SETS_CSV if "set" in df.columns else SCORES_CSV
    missing = [c for c in _REQUIRED[kind] if c not in df.columns]
    if missing:
        raise DataError(f"{csv} lacks the column(s) {', '.join(map(repr, missing))}; a {kind} has "
                        f"{', '.join(_REQUIRED[kind])}.")
    if df.empty:
        raise DataError(f"{csv} lists no images.")
    names = df["image_name"].astype(str).str.strip()
    blank = names.isin(["", "nan"])
    if blank.any():
        raise _bad_rows(csv, df, blank, "an empty image name", "image_name")
    dup = names.duplicated(keep=False)
    if dup.any():
        raise _bad_rows(csv, df, dup, "an image listed twice", "image_name")
    num_cols = [c for c in _REQUIRED[kind] if c not in ("image_name", "set")]
    for c in num_cols:
        v = pd.to_numeric(df[c], errors="coerce")
        bad = v.isna() | ~np.isfinite(v)
        if bad.any():
            raise _bad_rows(csv, df, bad, "a value that is not a finite number", c)
        df[c] = v.astype(float)
    _, raw_mos = rating_kind(csv, df)
    _check_mos_scales(csv, df, kind, mos_scale)
    # the columns on their documented scales
    z_col = "MOS" if kind == SETS_CSV else "MOS_zscore"
    for col, scale in ((z_col, "0-100"), *((("MOS", "1-5"),) if kind == SCORES_CSV else ())):
        lo, hi = _RANGES[scale]
        out = (df[col] < lo - _TOL) | (df[col] > hi + _TOL)
        if out.any():
            raise _bad_rows(csv, df, out, f"a MOS outside its scale {scale} (in {kind})", col)
    sd_out = (df["SD"] < _SD_RANGE[0]) | (df["SD"] > _SD_RANGE[1] + _TOL)
    if sd_out.any():
        raise _bad_rows(csv, df, sd_out, "an opinion SD outside [0, 2] (the 1-5 rating scale)", "SD",
                        fix=f"Fix or remove those rows; SD is read on the 1-5 rating scale (column range found: "
                            f"{_span(df['SD'])}; the published file: 0.30 to 1.10): an SD on 0-100 must be divided by 25.")
    if mos_scale == "1-5":
        mos, sd = raw_mos, df["SD"].to_numpy(float)
    else:
        mos, sd = df[z_col].to_numpy(float), df["SD"].to_numpy(float) * 25.0
    out = pd.DataFrame({"image_name": names.to_numpy(), "mos": mos, "sd": sd, "row": df.index.to_numpy() + 2})
    if kind == SETS_CSV:
        sets = df["set"].astype(str).str.strip()
        unknown = ~sets.isin(list(SET_TO_SPLIT))
        if unknown.any():
            raise _bad_rows(csv, df, unknown, f"an unknown set (expected {', '.join(SET_TO_SPLIT)})", "set")
        out["split"] = sets.map(SET_TO_SPLIT).to_numpy()
    return out


def _proportional(sizes: list[int], n: int) -> list[int]:
    """``n`` split among groups in proportion to ``sizes`` (largest remainders), at least 1 per
    non-empty group."""
    total = sum(sizes)
    exact = [n * k / total for k in sizes]
    take = [max(1 if k else 0, int(np.floor(e))) for k, e in zip(sizes, exact)]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - np.floor(exact[i])), i))
    i = 0
    while sum(take) < n:
        j = order[i % len(order)]
        if take[j] < sizes[j]:
            take[j] += 1
        i += 1
    while sum(take) > n:  # the floor of 1 per group overshot: take from the largest
        j = max(range(len(sizes)), key=lambda g: take[g])
        take[j] -= 1
    return take


def check_official_sizes(csv: Path, t: pd.DataFrame) -> dict[str, int]:
    """The sizes the ``set`` column gives; a warning naming them and the official ones when they differ."""
    sizes = {name: int((t["split"] == s).sum()) for name, s in SET_TO_SPLIT.items()}
    if sizes != OFFICIAL_SIZES:
        got = " / ".join(f"{k} {v:,}" for k, v in sizes.items())
        want = " / ".join(f"{k} {v:,}" for k, v in OFFICIAL_SIZES.items())
        warnings.warn(f"{csv}: its set column gives {got} images, not the official KonIQ-10k split's {want}; "
                      "results on it are not comparable with results reported on the official split.",
                      UserWarning, stacklevel=3)
    return sizes


def load_index(root, mos_scale: str = "1-5", seed: int = 0, image_dir: str | None = None,
               max_images: int | None = None, official_sizes: bool | None = None) -> KonIQIndex:
    """Read and check a KonIQ-10k folder (no image is decoded): targets on ``mos_scale``, the
    official split (sets CSV) or a ``seed``-ed 70/10/20 split (scores CSV), and every listed
    image present. ``max_images`` keeps a seeded sample of that many images: uniform before
    splitting the scores CSV; from each official split in proportion to its size (largest
    remainders, at least one image each) for the sets CSV. ``official_sizes``: warn when the
    ``set`` column's sizes are not :data:`OFFICIAL_SIZES` (checked on the whole file, before
    ``max_images``); ``None``: warn unless the folder is the embedded default (it holds
    :data:`EMBEDDED_MARK`), which is small by design."""
    csv, folder = find_layout(root, image_dir)
    t = read_csv(csv, mos_scale)
    official = "split" in t.columns
    if official_sizes is None:
        official_sizes = not (csv.parent / EMBEDDED_MARK).is_file()
    if official and official_sizes:
        check_official_sizes(csv, t)
    rng = np.random.default_rng(seed)
    if max_images is not None and max_images < len(t):
        if max_images < 3:
            raise ParameterError(f"max_images={max_images} cannot fill a train, a val and a test split; use at least 3")
        if official:
            groups = [np.flatnonzero((t["split"] == s).to_numpy()) for s in SPLITS]
            take = _proportional([len(g) for g in groups], max_images)
            keep = np.concatenate([rng.choice(g, size=k, replace=False) for g, k in zip(groups, take)])
        else:
            keep = rng.choice(len(t), size=max_images, replace=False)
        t = t.iloc[np.sort(keep)].reset_index(drop=True)
    if not official:
        order = rng.permutation(len(t))
        n_train, n_val = int(round(SPLIT_FRACTIONS[0] * len(t))), int(round(SPLIT_FRACTIONS[1] * len(t)))
        split = np.empty(len(t), dtype=object)
        split[order[:n_train]] = "train"
        split[order[n_train:n_train + n_val]] = "val"
        split[order[n_train + n_val:]] = "test"
        t["split"] = split
    for s in SPLITS:
        if not (t["split"] == s).any():
            how = "its set column" if official else f"the seeded {SPLIT_FRACTIONS} split of {len(t)} images"
            raise DataError(f"{csv}: the {s} split is empty after {how}; list more images"
                            + (" or raise max_images" if max_images else "") + ".")
    check_listed_images(t, csv, folder, "Put the JPEGs there, or remove their rows.")
    return KonIQIndex(t.reset_index(drop=True), csv, folder, mos_scale, official)


def check_listed_images(t: pd.DataFrame, csv: Path, folder: Path, fix: str) -> None:
    """Every ``image_name`` of the index table ``t`` (CSV line numbers in ``row``) is a file in
    ``folder``; else a DataError naming the first five missing rows, the count and ``fix``.
    KonIQ-10k's and KADID-10k's readers share it."""
    absent = ~np.array([(folder / n).is_file() for n in t["image_name"]], dtype=bool)
    if absent.any():
        rows = t[absent]
        shown = ", ".join(f"row {r} ({n})" for r, n in zip(rows["row"][:5], rows["image_name"][:5]))
        more = f" and {absent.sum() - 5} more" if absent.sum() > 5 else ""
        raise DataError(f"{csv}: {absent.sum()} listed image(s) are not in {folder}/: {shown}{more}. {fix}")


def load_koniq(data_dir, cache_dir=None, image_size=(384, 512), mos_scale: str = "1-5", seed: int = 0,
               image_dir: str | None = None, max_images: int | None = None, progress: bool = True,
               official_sizes: bool | None = None) -> dict[str, Split]:
    """The train / val / test splits of a KonIQ-10k folder, images from the RGB pre-resized cache
    (``image_size``: an int for a square, or ``(height, width)``; KonIQ's photos are 4:3
    landscape, so (384, 512) keeps them whole)."""
    idx = load_index(data_dir, mos_scale, seed, image_dir, max_images, official_sizes)
    # cache rows ordered train, val, test, so that each split is a slice of the memmap (no copy)
    order = np.concatenate([np.flatnonzero((idx.table["split"] == s).to_numpy()) for s in SPLITS])
    t = idx.table.iloc[order].reset_index(drop=True)
    images = build_image_cache([idx.image_dir / n for n in t["image_name"]], image_size, mode="RGB",
                               cache_dir=cache_dir or default_cache_dir(), namespace="koniq",
                               ids=[f"{idx.image_dir.name}/{n}" for n in t["image_name"]],
                               progress=progress, desc="KonIQ-10k cache")
    out, start = {}, 0
    for s in SPLITS:
        n = int((t["split"] == s).sum())
        sl = slice(start, start + n)
        out[s] = Split(images[sl], t["mos"].to_numpy(float)[sl], t["sd"].to_numpy(float)[sl], t["image_name"].iloc[sl].tolist())
        start += n
    return out
