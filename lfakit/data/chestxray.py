"""NIH ChestX-ray14: real-format loader, embedded-default generator and pre-resized cache.

On-disk layout read (and written by the generator)::

    <root>/Data_Entry_2017.csv        (or Data_Entry_2017_v2020.csv)
    <root>/train_val_list.txt         official train+validation image names, one a line
    <root>/test_list.txt              official test image names
    <root>/images_001/images/*.png    ... images_012/images/*.png  (or <root>/images/*.png,
                                      or flat <root>/images_XXX/*.png)

Splits are patient-wise: ``test`` is the official test list; ``val`` is carved from the official
train_val list *by patient* (seeded); no patient is ever on two sides.

The embedded default (``write_synthetic_nih`` / ``ensure_embedded_default``) is a generated data
set written in exactly this format, so the same loader runs in the smoke profile and the tests.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import numbers
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lfakit.data.transforms import check_clahe_params, clahe, resize_square
from lfakit.errors import DataError, ParameterError, close_matches

__all__ = [
    "CLASSES",
    "NIH_COUNTS",
    "NIH_NO_FINDING",
    "NIH_TOTAL_IMAGES",
    "NIH_TOTAL_PATIENTS",
    "CSV_NAMES",
    "SPLITS",
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
    "build_cache",
    "load_chestxray",
    "default_cache_dir",
]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

#: Whole-set image counts per class (NIH ChestX-ray14, all 112,120 images), in ``CLASSES`` order.
NIH_COUNTS: dict[str, int] = {
    "Atelectasis": 11_559,
    "Cardiomegaly": 2_776,
    "Effusion": 13_317,
    "Infiltration": 19_894,
    "Mass": 5_782,
    "Nodule": 6_331,
    "Pneumonia": 1_431,
    "Pneumothorax": 5_302,
    "Consolidation": 4_667,
    "Edema": 2_303,
    "Emphysema": 2_516,
    "Fibrosis": 1_686,
    "Pleural_Thickening": 3_385,
    "Hernia": 227,
}
NIH_NO_FINDING = 60_361
NIH_TOTAL_IMAGES = 112_120
NIH_TOTAL_PATIENTS = 30_805

#: Accepted label-file names, first found wins.
CSV_NAMES: tuple[str, ...] = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
SPLITS: tuple[str, ...] = ("train", "val", "test")

NO_FINDING = "No Finding"
CSV_HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)

CACHE_FORMAT_VERSION = 1
GENERATOR_VERSION = 1


def default_cache_dir() -> Path:
    """``$LFAKIT_CACHE`` if set, else ``~/.cache/lfakit``."""
    env = os.environ.get("LFAKIT_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/lfakit").expanduser()


def _layout_help(root) -> str:
    return (
        f"Expected an NIH ChestX-ray14 folder at {str(root)!r} holding {CSV_NAMES[0]} (or "
        f"{CSV_NAMES[1]}), {TRAIN_VAL_LIST}, {TEST_LIST} and the PNGs in images/ or "
        "images_001/images/ ... images_012/images/ (flat images_XXX/*.png is also accepted). "
        "To run on the embedded default (a generated set written in this same format) leave "
        "data_dir empty, or use the `smoke` profile."
    )


# --------------------------------------------------------------------------------------------
# Data_Entry_2017.csv
# --------------------------------------------------------------------------------------------

_COLUMN_ALIASES = {
    "imageindex": "image_id",
    "findinglabels": "finding_labels",
    "followup": "follow_up",
    "patientid": "patient_id",
    "patientage": "age",
    "patientgender": "sex",
    "patientsex": "sex",
    "viewposition": "view_position",
    "originalimagewidth": "orig_width",
    "originalimageheight": "orig_height",
    "originalimagepixelspacingx": "pixel_spacing_x",
    "originalimagepixelspacingy": "pixel_spacing_y",
}
_CLASS_LOOKUP = {c.lower(): c for c in CLASSES}


def _norm_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _physical_columns(tokens: list[str], path) -> list[str]:
    """Expand the header so that ``Name[a,b]`` becomes two physical columns ``Name a``/``Name b``.

    Works whether the bracketed header was split over two CSV fields (the real file) or kept in
    one quoted field, and whatever the spacing after the comma.
    """
    tokens = [t.strip() for t in tokens]
    while tokens and tokens[-1] == "":
        tokens.pop()  # the 2017 file's trailing comma
    cols: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if "[" in tok:
            prefix, _, rest = tok.partition("[")
            parts = [rest]
            while "]" not in parts[-1]:
                i += 1
                if i >= len(tokens):
                    raise DataError(f"{path}: unbalanced '[' in the header field {tok!r}.")
                parts.append(tokens[i])
            inner = ",".join(parts)
            inner = inner[: inner.index("]")]
            for sub in inner.split(","):
                cols.append(f"{prefix.strip()} {sub.strip()}")
        else:
            cols.append(tok)
        i += 1
    return cols


def _parse_age(raw: str, where: str) -> int:
    s = raw.strip()
    if s == "":
        return -1
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([YyMmWwDd]?)", s)
    if not m:
        raise DataError(f"{where}: cannot read the patient age {raw!r} (expected e.g. 58 or 058Y).")
    value = float(m.group(1))
    unit = m.group(2).upper() or "Y"
    years = {"Y": value, "M": value / 12.0, "W": value / 52.0, "D": value / 365.0}[unit]
    return int(math.floor(years))


def _parse_labels(raw: str, where: str) -> list[str]:
    s = raw.strip()
    if s == "":
        raise DataError(f"{where}: empty 'Finding Labels' (use 'No Finding' for a normal image).")
    names = [p.strip() for p in s.split("|") if p.strip()]
    out: list[str] = []
    for name in names:
        if name.lower() == NO_FINDING.lower():
            if len(names) > 1:
                raise DataError(f"{where}: 'No Finding' combined with other labels in {raw!r}.")
            return []
        key = name.lower().replace(" ", "_")
        if key not in _CLASS_LOOKUP:
            hint = close_matches(name, list(CLASSES) + [NO_FINDING])
            raise DataError(
                f"{where}: unknown finding label {name!r} in {raw!r}; the 14 NIH classes are "
                f"{', '.join(CLASSES)} (or 'No Finding').{hint}"
            )
        out.append(_CLASS_LOOKUP[key])
    return out


def read_data_entry(path) -> pd.DataFrame:
    """Parse ``Data_Entry_2017.csv`` (or a variant) into one row per image.

    Handles the real file's quirks: bracketed headers that span two fields
    (``OriginalImage[Width,Height]``), the trailing comma on every row of the 2017 file (absent
    in the ``_v2020`` file), ``Patient Sex`` instead of ``Patient Gender``, ages written as
    ``058Y`` (months/weeks/days suffixes ``M``/``W``/``D`` are converted to whole years).

    Returns columns ``image_id, patient_id, follow_up, age, sex, view_position,
    finding_labels`` (+ ``orig_width, orig_height, pixel_spacing_x, pixel_spacing_y`` when
    present) and one ``uint8`` column per class in ``CLASSES`` order. ``patient_id`` is an
    8-digit string (from ``Patient ID``, else the first 8 characters of the file name). Ages are
    kept as written (the 2017 file has a few impossible ages > 120); a missing age is -1.
    Unknown finding names raise ``DataError`` naming the label and the image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Label file {str(path)!r} not found.")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    rows = [r for r in rows if any(f.strip() for f in r)]
    if not rows:
        raise DataError(f"{path}: the label file is empty.")
    cols = _physical_columns(rows[0], path)
    keys = [_COLUMN_ALIASES.get(_norm_key(c)) for c in cols]
    for required, shown in (("image_id", "Image Index"), ("finding_labels", "Finding Labels")):
        if required not in keys:
            raise DataError(
                f"{path}: no {shown!r} column in the header {rows[0]!r}; expected the NIH header "
                f"{CSV_HEADER_2017!r}."
            )
    n = len(cols)
    data: dict[str, list[str]] = {k: [] for k in keys if k is not None}
    for lineno, row in enumerate(rows[1:], start=2):
        row = list(row)
        while len(row) > n and row[-1].strip() == "":
            row.pop()  # trailing comma(s)
        if len(row) != n:
            raise DataError(
                f"{path}, line {lineno}: {len(row)} fields where the header gives {n} "
                f"({', '.join(cols)}): {','.join(row)!r}."
            )
        for k, v in zip(keys, row):
            if k is not None:
                data[k].append(v.strip())

    image_ids = data["image_id"]
    n_rows = len(image_ids)
    labels = np.zeros((n_rows, len(CLASSES)), dtype=np.uint8)
    cls_index = {c: i for i, c in enumerate(CLASSES)}
    for r, (img, raw) in enumerate(zip(image_ids, data["finding_labels"])):
        for name in _parse_labels(raw, f"{path.name}, image {img}"):
            labels[r, cls_index[name]] = 1

    if "patient_id" in data:
        pids = []
        for img, p in zip(image_ids, data["patient_id"]):
            pids.append(f"{int(p):08d}" if p.isdigit() else (p or img[:8]))
    else:
        pids = [img[:8] for img in image_ids]
    if "follow_up" in data:
        fups = []
        for img, f in zip(image_ids, data["follow_up"]):
            try:
                fups.append(int(f))
            except ValueError:
                raise DataError(f"{path.name}, image {img}: bad 'Follow-up #' {f!r}.") from None
    else:
        fups = [int(m.group(1)) if (m := re.search(r"_(\d+)\.", img)) else 0 for img in image_ids]
    ages = (
        [_parse_age(a, f"{path.name}, image {img}") for img, a in zip(image_ids, data["age"])]
        if "age" in data
        else [-1] * n_rows
    )

    df = pd.DataFrame(
        {
            "image_id": pd.Series(image_ids, dtype=object),
            "patient_id": pd.Series(pids, dtype=object),
            "follow_up": np.asarray(fups, dtype=np.int64),
            "age": np.asarray(ages, dtype=np.int64),
            "sex": pd.Series(data.get("sex", [""] * n_rows), dtype=object),
            "view_position": pd.Series(data.get("view_position", [""] * n_rows), dtype=object),
            "finding_labels": pd.Series(data["finding_labels"], dtype=object),
        }
    )
    for k, conv in (("orig_width", int), ("orig_height", int), ("pixel_spacing_x", float), ("pixel_spacing_y", float)):
        if k in data:
            try:
                df[k] = [conv(v) if v != "" else (-1 if conv is int else np.nan) for v in data[k]]
            except ValueError:
                df[k] = data[k]  # keep as text rather than fail on an informational column
    for i, c in enumerate(CLASSES):
        df[c] = labels[:, i]
    dup = df["image_id"][df["image_id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: duplicate image names, e.g. {', '.join(dup.head(5))}.")
    return df


def labels_matrix(df: pd.DataFrame) -> np.ndarray:
    """The (N, 14) float32 multi-hot target matrix of an index, in ``CLASSES`` order."""
    missing = [c for c in CLASSES if c not in df.columns]
    if missing:
        raise DataError(f"index has no label columns {missing}; build it with read_data_entry/load_index.")
    return df[list(CLASSES)].to_numpy(dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Folder layout
# --------------------------------------------------------------------------------------------


def _pngs_in(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as it:
            return sorted(
                Path(e.path) for e in it if e.name.lower().endswith(".png") and e.is_file()
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


def find_images(root) -> dict[str, Path]:
    """Map image name (``00000013_005.png``) to its path.

    Looks in ``root/images/``, ``root/images_XXX/images/`` and flat ``root/images_XXX/``; when the
    same name occurs twice the first one in that order (folders sorted) wins.
    """
    root = Path(root)
    found: dict[str, Path] = {}
    folders = [root / "images"]
    if root.is_dir():
        archives = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"images_\d+", p.name))
        folders += [a / "images" for a in archives] + archives
    for folder in folders:
        for p in _pngs_in(folder):
            found.setdefault(p.name, p)
    return found


def _read_list(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig") as fh:
        return [line.strip() for line in fh if line.strip()]


def _pick_patients(order, pos, weight, budget, *, keep_min: int = 0, fits_budget: bool = False,
                   cover: int = 1):
    """Pick patients (indices into ``pos``) in ``order``: first cover every class, then fill.

    pos: (P, C) bool, patient has a positive image of class c. weight: (P,) cost of a patient.
    The cover pass picks, rarest class first, up to ``cover`` positive patients of each class;
    filling stops once the picked weight reaches ``budget`` (``fits_budget``: never exceed it).
    ``keep_min`` > 0: never pick a patient whose removal would leave fewer than ``keep_min``
    positive patients of one of its classes among the unpicked ones (used when carving val or
    test off a pool that must keep positives of every class).
    """
    P, C = pos.shape
    picked = np.zeros(P, dtype=bool)
    rest_counts = pos.sum(axis=0).astype(np.int64)
    got = np.zeros(C, dtype=np.int64)
    total = 0.0

    def allowed(p) -> bool:
        if picked[p]:
            return False
        if fits_budget and total + weight[p] > budget:
            return False
        if keep_min > 0 and np.any(pos[p] & (rest_counts <= keep_min)):
            return False
        return True

    def take(p):
        nonlocal total
        picked[p] = True
        rest_counts[:] = rest_counts - pos[p]
        got[:] = got + pos[p]
        total += weight[p]

    if budget > 0:
        for c in np.argsort(pos.sum(axis=0), kind="stable"):  # rarest class first
            for p in order:
                if got[c] >= cover:
                    break
                if pos[p, c] and allowed(p):
                    take(p)
        for p in order:
            if total >= budget:
                break
            if allowed(p):
                take(p)
    return picked


def _patient_table(df: pd.DataFrame):
    pids = np.array(sorted(df["patient_id"].unique()), dtype=object)
    codes = pd.Index(pids).get_indexer(df["patient_id"])
    pos = np.zeros((len(pids), len(CLASSES)), dtype=bool)
    lab = df[list(CLASSES)].to_numpy(dtype=bool)
    np.logical_or.at(pos, codes, lab)
    sizes = np.bincount(codes, minlength=len(pids)).astype(np.float64)
    return pids, codes, pos, sizes


def load_index(root, val_fraction: float = 0.1, seed: int = 0, max_images: int | None = None,
               allow_missing_images: bool = False) -> pd.DataFrame:
    """Read an NIH ChestX-ray14 folder into an index with a patient-wise ``split`` column.

    ``test`` is the official ``test_list.txt``; ``val`` is carved from ``train_val_list.txt`` by
    patient: about ``round(val_fraction * n_patients)`` patients drawn with ``seed``, first
    making sure every class with positives in train_val has a positive patient in val (and
    keeps one in train). ``max_images`` keeps a deterministic, patient-level subsample of each
    official list (same share of images per list, again covering every class first).

    Raises ``DataError`` for a missing folder/CSV/list/images (the message names the expected
    files and how to use the embedded default), list entries absent from the CSV, a patient on
    both official lists, or listed images missing on disk (unless ``allow_missing_images``, in
    which case they are dropped).

    Returns the ``read_data_entry`` columns plus ``split`` and ``path``, sorted by split
    (train, val, test) then image name.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not 0 <= val_fraction < 1:
        raise ParameterError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}.")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, numbers.Integral) or max_images < 1):
        raise ParameterError(f"max_images must be a positive int or None, got {max_images!r}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"Data folder {str(root)!r} does not exist. " + _layout_help(root))
    csv_path = next((root / n for n in CSV_NAMES if (root / n).is_file()), None)
    missing = [] if csv_path else [CSV_NAMES[0]]
    missing += [n for n in (TRAIN_VAL_LIST, TEST_LIST) if not (root / n).is_file()]
    if missing:
        raise DataError(f"{str(root)!r} lacks {', '.join(missing)}. " + _layout_help(root))
    images = find_images(root)
    if not images:
        raise DataError(f"No PNG images found under {str(root)!r}. " + _layout_help(root))

    df = read_data_entry(csv_path)
    tv, te = _read_list(root / TRAIN_VAL_LIST), _read_list(root / TEST_LIST)
    known = set(df["image_id"])
    for name, lst in ((TRAIN_VAL_LIST, tv), (TEST_LIST, te)):
        unknown = [x for x in lst if x not in known]
        if unknown:
            raise DataError(
                f"{name} names {len(unknown)} image(s) absent from {csv_path.name}, e.g. "
                f"{', '.join(unknown[:5])}."
            )
    both = set(tv) & set(te)
    if both:
        raise DataError(f"{len(both)} image(s) are on both official lists, e.g. {', '.join(sorted(both)[:5])}.")
    official = pd.Series(pd.NA, index=df.index, dtype=object)
    official[df["image_id"].isin(set(tv)).to_numpy()] = "train_val"
    official[df["image_id"].isin(set(te)).to_numpy()] = "test"
    df = df.assign(_official=official)
    df = df[df["_official"].notna()].reset_index(drop=True)
    pat_sides = df.groupby("patient_id")["_official"].nunique()
    leak = pat_sides[pat_sides > 1].index.tolist()
    if leak:
        raise DataError(
            f"{len(leak)} patient(s) have images on both {TRAIN_VAL_LIST} and {TEST_LIST} (the "
            f"official split is patient-wise), e.g. {', '.join(map(str, leak[:5]))}."
        )

    rng = np.random.default_rng(seed)
    if max_images is not None and max_images < len(df):
        keep = np.zeros(len(df), dtype=bool)
        for side in ("train_val", "test"):
            mask = (df["_official"] == side).to_numpy()
            sub = df[mask]
            pids, codes, pos, sizes = _patient_table(sub)
            budget = max(1, round(max_images * mask.sum() / len(df)))
            picked = _pick_patients(rng.permutation(len(pids)), pos, sizes, budget,
                                    fits_budget=True)
            keep[np.flatnonzero(mask)[picked[codes]]] = True
        df = df[keep].reset_index(drop=True)

    split = np.where(df["_official"] == "test", "test", "train").astype(object)
    tv_mask = (df["_official"] == "train_val").to_numpy()
    if val_fraction > 0 and tv_mask.any():
        sub = df[tv_mask]
        pids, codes, pos, _ = _patient_table(sub)
        n_val = max(1, round(val_fraction * len(pids))) if len(pids) > 1 else 0
        picked = _pick_patients(rng.permutation(len(pids)), pos, np.ones(len(pids)), n_val,
                                keep_min=1)
        split[np.flatnonzero(tv_mask)[picked[codes]]] = "val"
    df = df.drop(columns="_official")
    df["split"] = split

    paths = [images.get(i) for i in df["image_id"]]
    absent = [i for i, p in zip(df["image_id"], paths) if p is None]
    if absent:
        if not allow_missing_images:
            raise DataError(
                f"{len(absent)} listed image(s) are missing under {str(root)!r}, e.g. "
                f"{', '.join(absent[:5])}. " + _layout_help(root)
            )
        ok = np.array([p is not None for p in paths])
        df = df[ok].reset_index(drop=True)
        paths = [p for p in paths if p is not None]
    df["path"] = [str(p) for p in paths]
    order = {s: i for i, s in enumerate(SPLITS)}
    df = df.sort_values(["split", "image_id"], key=lambda s: s.map(order) if s.name == "split" else s)
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Image decoding
# --------------------------------------------------------------------------------------------


def to_uint8_gray(img, channel_order: str = "rgb") -> np.ndarray:
    """Convert a decoded image to an 8-bit (H, W) grayscale array.

    Accepts (H, W), (H, W, 1), LA (H, W, 2), RGB/BGR (H, W, 3) and RGBA/BGRA (H, W, 4); alpha is
    ignored. Colour is weighted with ITU-R BT.601 (OpenCV's ``cvtColor``); ``channel_order``
    tells whether colour arrays are ``"rgb"`` (Pillow, numpy) or ``"bgr"`` (OpenCV).
    Integer types wider than 8 bits are scaled by their full range (65535 -> 255 for uint16,
    i.e. ``round(x / 257)``), never clipped. Floats in [0, 1] are scaled by 255; other floats
    are clipped to [0, 255]; NaN becomes 0.
    """
    a = np.asarray(img)
    if channel_order not in ("rgb", "bgr"):
        raise ParameterError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}.")
    if a.ndim == 3 and a.shape[2] in (1, 2):
        a = a[:, :, 0]
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[:, :, :3]
        if channel_order == "bgr":
            a = a[:, :, ::-1]
    elif a.ndim != 2:
        raise DataError(f"cannot convert an array of shape {a.shape} to a grayscale image.")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if a.dtype == np.uint8:
        g = a
    elif np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        g = np.rint((a.astype(np.float64) - info.min) * (255.0 / (float(info.max) - info.min)))
        g = g.astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float64), nan=0.0)
        if f.size and f.min() >= 0.0 and f.max() <= 1.0:
            f = f * 255.0
        g = np.rint(np.clip(f, 0.0, 255.0)).astype(np.uint8)
    else:
        raise DataError(f"cannot convert an image of dtype {a.dtype} to 8-bit grayscale.")
    if g.ndim == 3:
        # BT.601 luma on 8-bit RGB, as cv2.cvtColor(..., COLOR_RGB2GRAY)
        g = cv2.cvtColor(np.ascontiguousarray(g), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(g)


def read_image(path) -> np.ndarray:
    """Decode an image file to an 8-bit (H, W) grayscale array; ``DataError`` naming the file
    when it is missing, unreadable, truncated or not an image."""
    path = Path(path)
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read image file {str(path)!r}: {exc}") from None
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise DataError(f"corrupt or unreadable image file {str(path)!r} ({buf.size} bytes).")
    return to_uint8_gray(img, channel_order="bgr")


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


# --------------------------------------------------------------------------------------------
# Pre-resized cache
# --------------------------------------------------------------------------------------------


def _check_cache_params(image_size, clahe_clip, clahe_grid):
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or not 8 <= image_size <= 4096:
        raise ParameterError(f"image_size must be an int in [8, 4096], got {image_size!r}.")
    if clahe_clip is None or (isinstance(clahe_clip, numbers.Real) and not isinstance(clahe_clip, bool) and clahe_clip <= 0):
        return 0.0, None
    clip, grid = check_clahe_params(clahe_clip, clahe_grid)
    return clip, list(grid)


def _ids_of(index) -> list[str]:
    if isinstance(index, pd.DataFrame):
        if "image_id" not in index.columns:
            raise ParameterError("build_cache: the index DataFrame needs an 'image_id' column.")
        return [str(i) for i in index["image_id"]]
    return [str(i) for i in index]


def _cache_key(ids, files, image_size, clip, grid) -> str:
    h = hashlib.sha256()
    head = {"format": CACHE_FORMAT_VERSION, "image_size": int(image_size), "clahe_clip": clip, "clahe_grid": grid}
    h.update(json.dumps(head, sort_keys=True).encode())
    for i, f in zip(ids, files):
        st = os.stat(f)
        h.update(f"\n{i}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def build_cache(index, image_paths, image_size: int, cache_dir=None, *, clahe_clip: float = 2.0,
                clahe_grid=8, num_workers: int | None = None, progress: bool = True) -> np.memmap:
    """Pre-resized uint8 cache of ``index``'s images, shape (N, image_size, image_size).

    ``index``: a DataFrame with ``image_id`` (row order kept) or a sequence of image names;
    ``image_paths``: mapping name -> file. Per image: decode -> 8-bit gray -> CLAHE at full
    resolution (skipped when ``clahe_clip`` <= 0) -> ``INTER_AREA`` resize.

    Stored as ``<cache_dir>/chestxray/<key>.u8`` (raw C-order bytes) plus ``<key>.json``, with
    ``key`` a hash of the image names in order, each source file's size and mtime, the image
    size, the CLAHE parameters and the cache format version; any change gives a new file. The
    file is built once (threads, tqdm progress) into a temporary name and renamed into place, so
    an interrupted build never leaves a half file; later calls open it read-only.
    """
    clip, grid = _check_cache_params(image_size, clahe_clip, clahe_grid)
    ids = _ids_of(index)
    if not ids:
        raise DataError("build_cache: the index is empty.")
    try:
        files = [Path(image_paths[i]) for i in ids]
    except KeyError as exc:
        raise DataError(f"build_cache: no path for image {exc.args[0]!r}.") from None
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(f"build_cache: {len(missing)} image file(s) missing, e.g. {', '.join(missing[:5])}.")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ParameterError(f"cache_dir must be a path or None, got {cache_dir!r}.")
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = cache_dir / "chestxray"
    folder.mkdir(parents=True, exist_ok=True)
    key = _cache_key(ids, files, image_size, clip, grid)
    data_path, meta_path = folder / f"{key}.u8", folder / f"{key}.json"
    shape = (len(ids), int(image_size), int(image_size))
    nbytes = int(np.prod(shape))

    if data_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if tuple(meta["shape"]) == shape and data_path.stat().st_size == nbytes:
                return np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)
        except (ValueError, KeyError, OSError):
            pass  # unreadable sidecar: rebuild

    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)

        def work(j):
            out[j] = load_preprocessed(files[j], image_size, clip if grid else 0.0, tuple(grid) if grid else 8)

        workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(ids), desc=f"ChestX-ray cache {image_size}px", unit="img")
        try:
            if workers <= 1:
                for j in range(len(ids)):
                    work(j)
                    if bar is not None:
                        bar.update(1)
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for _ in pool.map(work, range(len(ids))):
                        if bar is not None:
                            bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        out.flush()
        del out
        os.replace(tmp, data_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    meta = {
        "format": CACHE_FORMAT_VERSION,
        "shape": list(shape),
        "dtype": "uint8",
        "image_size": int(image_size),
        "clahe_clip": clip,
        "clahe_grid": grid,
        "n_images": len(ids),
        "first_ids": ids[:3],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    fd, tmp_meta = tempfile.mkstemp(prefix=f".{key}.", suffix=".json.tmp", dir=folder)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(tmp_meta, meta_path)
    return np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)


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


# --------------------------------------------------------------------------------------------
# Embedded default: a generated set in the exact NIH format
# --------------------------------------------------------------------------------------------

# Co-occurrence rules applied after sampling: (if this class, then that class, probability).
_COOCCUR = (
    ("Effusion", "Atelectasis", 0.35),
    ("Atelectasis", "Effusion", 0.25),
    ("Cardiomegaly", "Effusion", 0.30),
    ("Edema", "Effusion", 0.40),
    ("Edema", "Cardiomegaly", 0.20),
    ("Pneumonia", "Consolidation", 0.30),
    ("Pneumonia", "Infiltration", 0.30),
    ("Mass", "Nodule", 0.20),
    ("Emphysema", "Pneumothorax", 0.15),
    ("Fibrosis", "Pleural_Thickening", 0.25),
)
_MIN_POSITIVE_PATIENTS = 8
_SIGNAL = 0.6  # global strength of the finding patterns
_UNSEEN = 0.1  # share of positive labels drawn without a visible finding (label noise, as in NIH)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


class _Painter:
    """Draws patient anatomy and per-class findings on an R x R float canvas in [0, 1]."""

    def __init__(self, res: int):
        self.R = res
        g = (np.arange(res, dtype=np.float32) + 0.5) / res
        self.u = g[None, :].repeat(res, 0)  # x, left -> right
        self.v = g[:, None].repeat(res, 1)  # y, top -> bottom

    def gauss(self, cx, cy, sx, sy):
        return np.exp(-0.5 * (((self.u - cx) / sx) ** 2 + ((self.v - cy) / sy) ** 2))

    def disk(self, cx, cy, r, edge=0.006):
        d = np.sqrt((self.u - cx) ** 2 + (self.v - cy) ** 2)
        return _sigmoid((r - d) / edge)

    def ellipse(self, cx, cy, ax, ay, edge=0.12):
        q = ((self.u - cx) / ax) ** 2 + ((self.v - cy) / ay) ** 2
        return _sigmoid((1.0 - q) / edge)

    def lowfreq(self, rng, grid):
        small = rng.standard_normal((grid, grid)).astype(np.float32)
        return cv2.resize(small, (self.R, self.R), interpolation=cv2.INTER_CUBIC)

    def anatomy(self, rng):
        """A patient's stable background: body, two lungs, heart, spine, ribs, slow shading."""
        j = lambda s: rng.uniform(-s, s)  # noqa: E731
        body = self.ellipse(0.5 + j(0.01), 0.56, 0.44 + j(0.02), 0.62 + j(0.02), edge=0.08)
        lw, lh, ly = 0.125 + j(0.015), 0.27 + j(0.03), 0.45 + j(0.03)
        lungs = self.ellipse(0.32 + j(0.02), ly, lw, lh) + self.ellipse(0.68 + j(0.02), ly, lw, lh)
        lungs = np.minimum(lungs, 1.0)
        heart = self.gauss(0.54 + j(0.01), 0.64 + j(0.01), 0.075 + j(0.008), 0.07)
        spine = np.exp(-0.5 * ((self.u - 0.5) / 0.025) ** 2) * _sigmoid((self.v - 0.1) / 0.03)
        freq, phase = 10.5 + j(1.0), rng.uniform(0, 1)
        ribs = np.sin(2 * np.pi * (self.v * freq + phase + 0.6 * (self.u - 0.5) ** 2))
        img = (0.08 + 0.50 * body - 0.30 * lungs + 0.22 * heart * (1 - 0.5 * lungs)
               + 0.14 * spine + 0.04 * ribs * lungs + 0.06 * self.lowfreq(rng, 5))
        return (img * rng.uniform(0.92, 1.08)).astype(np.float32), lungs.astype(np.float32)

    def finding(self, name, rng, amp, lungs):
        j = lambda s: rng.uniform(-s, s)  # noqa: E731
        dx, dy = j(0.025), j(0.025)
        G = self.gauss
        if name == "Atelectasis":  # plate-like horizontal band, lower left of the image
            return 0.40 * amp * G(0.35 + dx, 0.65 + dy, 0.08, 0.022)
        if name == "Cardiomegaly":  # heart silhouette widened (a sharp-edged wider shadow)
            return 0.35 * amp * self.ellipse(0.55 + dx * 0.4, 0.66 + dy * 0.4, 0.14, 0.085, edge=0.1)
        if name == "Effusion":  # basal meniscus, right of the image
            level = 0.70 + dy - 0.12 * (self.u - 0.55)
            window = _sigmoid((self.u - 0.55) / 0.01) * _sigmoid((0.84 - self.u) / 0.01)
            return 0.40 * amp * _sigmoid((self.v - level) / 0.012) * window * _sigmoid((0.84 - self.v) / 0.02)
        if name == "Infiltration":  # patchy opacity, mid left
            patch = np.clip(0.5 + 0.5 * self.lowfreq(rng, 16), 0, 1)
            return 0.35 * amp * G(0.30 + dx, 0.47 + dy, 0.07, 0.08) * (0.5 + patch)
        if name == "Mass":  # one large sharp round opacity, upper right
            return 0.45 * amp * self.disk(0.70 + dx, 0.30 + dy, 0.055 * rng.uniform(0.8, 1.2))
        if name == "Nodule":  # a few small round opacities, upper left
            out = np.zeros((self.R, self.R), np.float32)
            for _ in range(3):
                out += self.disk(0.32 + dx + j(0.05), 0.34 + dy + j(0.05), 0.02, 0.004)
            return 0.50 * amp * np.minimum(out, 1.0)
        if name == "Pneumonia":  # cloudy opacity, lower right
            patch = np.clip(0.5 + 0.5 * self.lowfreq(rng, 10), 0, 1)
            return 0.50 * amp * G(0.64 + dx, 0.60 + dy, 0.06, 0.06) * (0.4 + 0.6 * patch)
        if name == "Pneumothorax":  # lucent apex with a pleural line, upper left edge
            edge_x = 0.25 + dx
            region = G(0.21 + dx, 0.26 + dy, 0.06, 0.10) * _sigmoid((edge_x - self.u) / 0.006)
            line = np.exp(-0.5 * ((self.u - edge_x) / 0.004) ** 2) * G(edge_x, 0.26 + dy, 1.0, 0.09)
            return amp * (-0.32 * region + 0.25 * line)
        if name == "Consolidation":  # dense homogeneous lobe, mid right
            return 0.38 * amp * self.ellipse(0.70 + dx, 0.47 + dy, 0.075, 0.05, edge=0.15)
        if name == "Edema":  # bilateral perihilar haze
            lines = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 30 * self.v))  # septal lines
            return 0.38 * amp * lines * (G(0.43 + dx, 0.46 + dy, 0.045, 0.10) + G(0.57 - dx, 0.46 + dy, 0.045, 0.10))
        if name == "Emphysema":  # hyperlucent apices
            return -0.35 * amp * (G(0.40 + dx, 0.25 + dy, 0.07, 0.07) + G(0.60 - dx, 0.25 + dy, 0.07, 0.07)) * (0.3 + 0.7 * lungs)
        if name == "Fibrosis":  # reticular texture, lower lateral zones
            ret = np.abs(np.sin(2 * np.pi * 40 * self.u) * np.sin(2 * np.pi * 40 * self.v))
            zone = G(0.22 + dx, 0.62 + dy, 0.05, 0.07) + G(0.78 - dx, 0.62 + dy, 0.05, 0.07)
            return 0.45 * amp * zone * (0.5 + 0.5 * ret)
        if name == "Pleural_Thickening":  # bright band along the right lateral wall
            return 0.55 * amp * G(0.83 + dx * 0.4, 0.42 + dy, 0.022, 0.11)
        if name == "Hernia":  # retrocardiac round shadow with an air-fluid level
            cy = 0.80 + dy * 0.5
            d = self.disk(0.50 + dx, cy, 0.05)
            return amp * d * (0.40 * _sigmoid((self.v - cy) / 0.005) - 0.35 * _sigmoid((cy - self.v) / 0.005))
        raise AssertionError(name)


def _sample_labels(rng, n_images_per_patient, min_prevalence):
    """Multi-hot labels per patient (list of (k, 14) arrays): NIH-shaped prevalence, a latent
    patient severity (positive co-occurrence), explicit co-occurrence rules, and persistence of
    findings across follow-ups."""
    C = len(CLASSES)
    prev = np.array([max(NIH_COUNTS[c] / NIH_TOTAL_IMAGES, min_prevalence) for c in CLASSES])
    base = np.log(prev / (1 - prev)) - 0.35
    idx = {c: i for i, c in enumerate(CLASSES)}
    persist = 0.6
    out = []
    for k in n_images_per_patient:
        z = rng.standard_normal()
        lab = np.zeros((k, C), dtype=bool)
        for t in range(k):
            zt = z + 0.3 * rng.standard_normal()
            fresh = rng.random(C) < _sigmoid(base + 0.8 * zt)
            if t == 0:
                lab[t] = fresh
            else:
                keep = rng.random(C) < persist
                lab[t] = np.where(keep, lab[t - 1], fresh)
            for a, b, p in _COOCCUR:
                if lab[t, idx[a]] and rng.random() < p:
                    lab[t, idx[b]] = True
        out.append(lab)
    # every class gets at least a few positive patients (so every split can hold positives)
    n_pat = len(out)
    need = min(_MIN_POSITIVE_PATIENTS, n_pat)
    for c in range(C):
        have = [p for p in range(n_pat) if out[p][:, c].any()]
        if len(have) >= need:
            continue
        lacking = [p for p in rng.permutation(n_pat) if not out[p][:, c].any()]
        for p in lacking[: need - len(have)]:
            t = int(rng.integers(len(out[p])))
            out[p][t:, c] = True  # appears at a follow-up and persists
    return out


def _check_gen_args(n_patients, images_per_patient, image_size, min_prevalence):
    if isinstance(n_patients, bool) or not isinstance(n_patients, numbers.Integral) or n_patients < 2:
        raise ParameterError(f"n_patients must be an int >= 2, got {n_patients!r}.")
    ipp = tuple(images_per_patient) if isinstance(images_per_patient, (tuple, list)) else None
    if not ipp or len(ipp) != 2 or not all(isinstance(v, numbers.Integral) for v in ipp) or not 1 <= ipp[0] <= ipp[1] <= 999:
        raise ParameterError(f"images_per_patient must be a pair (lo, hi) with 1 <= lo <= hi <= 999, got {images_per_patient!r}.")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or not 16 <= image_size <= 4096:
        raise ParameterError(f"image_size must be an int in [16, 4096], got {image_size!r}.")
    if not isinstance(min_prevalence, numbers.Real) or not 0 <= min_prevalence < 0.5:
        raise ParameterError(f"min_prevalence must be in [0, 0.5), got {min_prevalence!r}.")
    return int(n_patients), (int(ipp[0]), int(ipp[1])), int(image_size), float(min_prevalence)


def write_synthetic_nih(root, n_patients: int = 120, images_per_patient=(1, 6), image_size: int = 256,
                        seed: int = 0, min_prevalence: float = 0.04) -> Path:
    """Write the embedded-default ChestX-ray14 stand-in into ``root`` (created; must be empty).

    Layout and formats are those of the real set: ``Data_Entry_2017.csv`` with the 2017 header
    and a trailing comma on every line (11 fields + 1 empty), ``train_val_list.txt`` /
    ``test_list.txt`` (patient-wise, about 80/20) and 8-bit grayscale PNGs named
    ``<patient:08d>_<follow-up:03d>.png`` in ``images_001/images/``. About 2% of the PNGs are
    stored as RGBA and about 2% as 16-bit (at least one of each) to exercise the conversion.

    Content: each patient has a stable smooth anatomy (body, lungs, heart, ribs, shading) shared
    by all their images, so a patient-level leak would inflate scores as it does on the real
    set. Each class draws a distinct pattern at its own region (location, shape, texture; sign
    and intensity vary) plus noise, so a small model beats chance on every class.

    Labels: per-class prevalence follows the NIH whole-set counts but is floored at
    ``min_prevalence`` (Hernia is 0.2% on NIH: without the floor a 400-image set would hold one
    or no positive). Additionally every class is given at least 6 positive patients and the
    test patients are chosen so that each class has positives (two patients where possible) in
    test and keeps at least two
    positive patients in train_val; ``load_index`` then puts one in val and keeps one in train,
    so with the defaults every class has positives in every split. Findings co-occur (a latent
    patient severity raises all of them; rules such as Effusion -> Atelectasis, Edema ->
    Effusion, Pneumonia -> Consolidation) and persist across follow-ups with probability 0.6.
    As on the real set (labels mined from reports) the labels are noisy: 10% of positive labels
    get no visible finding, and finding intensity varies, so scores do not saturate.

    Deterministic: the same arguments give byte-identical files.
    """
    n_patients, ipp, image_size, min_prevalence = _check_gen_args(n_patients, images_per_patient, image_size, min_prevalence)
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise ParameterError(f"write_synthetic_nih: {str(root)!r} exists and is not empty.")
    img_dir = root / "images_001" / "images"
    img_dir.mkdir(parents=True, exist_ok=True)

    ss = np.random.SeedSequence([int(seed), 0x4E1C])
    master = np.random.default_rng(ss.spawn(1)[0])
    counts = master.integers(ipp[0], ipp[1] + 1, size=n_patients)
    labels = _sample_labels(master, counts, min_prevalence)
    pids = np.arange(1, n_patients + 1)

    # patient-wise test split (about 20%), covering every class and protecting train_val
    pos = np.stack([lab.any(axis=0) for lab in labels])
    n_test = max(1, round(0.2 * n_patients))
    order = master.permutation(n_patients)
    # train_val keeps >= 2 positive patients of every class (one for val, one for train)
    is_test = _pick_patients(order, pos, np.ones(n_patients), n_test, keep_min=2, cover=2)

    n_total = int(counts.sum())
    special = master.permutation(n_total)
    n_special = max(1, round(0.02 * n_total))
    rgba_set = set(special[:n_special].tolist())
    u16_set = set(special[n_special: 2 * n_special].tolist())

    res = min(image_size, 256)
    painter = _Painter(res)
    ages = master.integers(18, 88, size=n_patients)
    sexes = master.choice(np.array(["M", "F"]), size=n_patients)
    spacing = 0.143 * 1024 / image_size
    patient_seeds = ss.spawn(n_patients + 1)[1:]

    lines = [CSV_HEADER_2017]
    tv_names, test_names = [], []
    g = 0
    for p in range(n_patients):
        rng = np.random.default_rng(patient_seeds[p])
        anat, lungs = painter.anatomy(rng)
        severity_amp = rng.uniform(0.8, 1.2)
        for t in range(int(counts[p])):
            name = f"{pids[p]:08d}_{t:03d}.png"
            img = anat.copy()
            present = [c for c, on in zip(CLASSES, labels[p][t]) if on]
            for c in present:
                amp = severity_amp * rng.uniform(0.4, 1.2)
                if rng.random() >= _UNSEEN:
                    img += _SIGNAL * painter.finding(c, rng, amp, lungs)
            shift = rng.uniform(-0.02, 0.02, size=2) * res
            M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            img = cv2.warpAffine(img, M, (res, res), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            img = np.clip(img * rng.uniform(0.93, 1.07) + rng.uniform(-0.03, 0.03), 0.0, 1.0) * 255.0
            if image_size != res:
                img = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
            img = img + rng.standard_normal(img.shape, dtype=np.float32) * 8.0
            u8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
            if g in rgba_set:
                out = np.dstack([u8, u8, u8, np.full_like(u8, 255)])
            elif g in u16_set:
                out = u8.astype(np.uint16) * 257
            else:
                out = u8
            ok, buf = cv2.imencode(".png", out)
            if not ok:
                raise DataError(f"could not encode {name}")
            (img_dir / name).write_bytes(buf.tobytes())
            finding = "|".join(sorted(present)) if present else NO_FINDING
            view = "AP" if rng.random() < 0.3 else "PA"
            age = int(ages[p]) + t // 2
            lines.append(
                f"{name},{finding},{t},{pids[p]},{age},{sexes[p]},{view},"
                f"{image_size},{image_size},{spacing:.3f},{spacing:.3f},"
            )
            (test_names if is_test[p] else tv_names).append(name)
            g += 1

    with open(root / CSV_NAMES[0], "w", newline="\n", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    (root / TRAIN_VAL_LIST).write_text("\n".join(sorted(tv_names)) + "\n", encoding="utf-8")
    (root / TEST_LIST).write_text("\n".join(sorted(test_names)) + "\n", encoding="utf-8")
    return root


_GEN_DEFAULTS = {
    k: v.default
    for k, v in __import__("inspect").signature(write_synthetic_nih).parameters.items()
    if k not in ("root", "seed")
}


def ensure_embedded_default(cache_root=None, seed: int = 0, **gen_kwargs) -> Path:
    """Write the generated NIH-format set once into
    ``<cache_root>/embedded/chestxray_nih/<key>/`` (``key`` hashes the generator version and
    arguments) and return that folder; later calls reuse it. Built in a temporary sibling folder
    and renamed into place, so a crash never leaves a partial set."""
    unknown = [k for k in gen_kwargs if k not in _GEN_DEFAULTS]
    if unknown:
        raise ParameterError(
            f"unknown generator argument(s) {unknown}; allowed: {list(_GEN_DEFAULTS)}."
            + close_matches(unknown[0], _GEN_DEFAULTS)
        )
    args = {**_GEN_DEFAULTS, **gen_kwargs}
    args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}
    blob = json.dumps({"generator": GENERATOR_VERSION, "seed": int(seed), **args}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    base = (Path(cache_root).expanduser() if cache_root else default_cache_dir()) / "embedded" / "chestxray_nih"
    final = base / key
    if (final / CSV_NAMES[0]).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=base))
    try:
        write_synthetic_nih(tmp / "data", seed=seed, **gen_kwargs)
        (tmp / "data" / "generator.json").write_text(blob + "\n")
        try:
            os.rename(tmp / "data", final)
        except OSError:
            if not (final / CSV_NAMES[0]).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
