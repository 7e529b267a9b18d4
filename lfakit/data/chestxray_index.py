"""NIH ChestX-ray14: the label file, the official lists, the image folders and the patient-wise splits.

On-disk layout read::

    <root>/Data_Entry_2017.csv        (or Data_Entry_2017_v2020.csv)
    <root>/train_val_list.txt         official train+validation image names, one a line
    <root>/test_list.txt              official test image names
    <root>/images_001/images/*.png    ... images_012/images/*.png  (or <root>/images/*.png,
                                      or flat <root>/images_XXX/*.png)

Splits are patient-wise: ``test`` is the official test list; ``val`` is carved from the official
train_val list *by patient* (seeded); no patient is ever on two sides. :func:`load_index` raises
``DataError`` when a split would be empty (an empty list file, a ``max_images`` too small, too
few patients to carve a validation set from), naming the split, the file and the fix.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from lfakit.errors import DataError, ParameterError, close_matches

__all__ = [
    "CLASSES",
    "NIH_COUNTS",
    "NIH_NO_FINDING",
    "NIH_TOTAL_IMAGES",
    "NIH_TOTAL_PATIENTS",
    "NIH_TRAIN_VAL_IMAGES",
    "NIH_TEST_IMAGES",
    "CSV_NAMES",
    "TRAIN_VAL_LIST",
    "TEST_LIST",
    "SPLITS",
    "NO_FINDING",
    "CSV_HEADER_2017",
    "read_data_entry",
    "labels_matrix",
    "find_images",
    "read_list",
    "pick_patients",
    "load_index",
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
NIH_TRAIN_VAL_IMAGES = 86_524  # lines of the official train_val_list.txt
NIH_TEST_IMAGES = 25_596  # lines of the official test_list.txt

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


def read_list(path) -> list[str]:
    """The image names of an official list file, one a line (blank lines skipped)."""
    with open(path, encoding="utf-8-sig") as fh:
        return [line.strip() for line in fh if line.strip()]


def pick_patients(order, pos, weight, budget, *, keep_min: int = 0, fits_budget: bool = False,
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


_SPLIT_SOURCE = {"train": TRAIN_VAL_LIST, "val": TRAIN_VAL_LIST, "test": TEST_LIST}
_SIDE_SPLIT = {"train_val": "train", "test": "test"}
_SIDE_FILE = {"train_val": TRAIN_VAL_LIST, "test": TEST_LIST}


def _budget(max_images: int, n_side: int, n_total: int) -> int:
    """Images of one official list that ``max_images`` keeps (its share of ``max_images``)."""
    return max(1, round(max_images * n_side / n_total))


def _smallest_max_images(n_side: int, n_total: int, need: int) -> int:
    """The smallest ``max_images`` whose budget for this list reaches ``need`` images."""
    m = max(1, math.floor((need - 0.5) * n_total / n_side))
    while _budget(m, n_side, n_total) < need:
        m += 1
    return m


def load_index(root, val_fraction: float = 0.1, seed: int = 0, max_images: int | None = None,
               allow_missing_images: bool = False) -> pd.DataFrame:
    """Read an NIH ChestX-ray14 folder into an index with a patient-wise ``split`` column.

    ``test`` is the official ``test_list.txt``; ``val`` is carved from ``train_val_list.txt`` by
    patient: about ``round(val_fraction * n_patients)`` patients (at least one, and never all
    of them) drawn with ``seed``, first making sure every class with positives in train_val has
    a positive patient in val (and keeps one in train). ``val_fraction=0`` gives no validation
    split. ``max_images`` keeps a deterministic, patient-level subsample of each official list
    (same share of images per list, again covering every class first).

    Raises ``DataError`` for a missing folder/CSV/list/images (the message names the expected
    files and how to use the embedded default), list entries absent from the CSV, a patient on
    both official lists, listed images missing on disk (unless ``allow_missing_images``, in
    which case they are dropped), and for a split that would be empty: an empty list file, a
    ``max_images`` too small to keep one patient of a list (the message gives the smallest
    value that does), or a train_val list whose patients cannot be carved into train and val.
    Each message names the split, the list file and the fix.

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
    for name, split, n_official in ((TRAIN_VAL_LIST, "train and val", NIH_TRAIN_VAL_IMAGES),
                                    (TEST_LIST, "test", NIH_TEST_IMAGES)):
        if not read_list(root / name):
            raise DataError(
                f"{str(root / name)!r} is empty (no image names), so the {split} split would have "
                f"no images. The official file lists {n_official:,} image names, one a line: "
                "restore it from the NIH ChestX-ray14 download (or leave data_dir empty to run on "
                "the embedded default)."
            )
    images = find_images(root)
    if not images:
        raise DataError(f"No PNG images found under {str(root)!r}. " + _layout_help(root))

    df = read_data_entry(csv_path)
    tv, te = read_list(root / TRAIN_VAL_LIST), read_list(root / TEST_LIST)
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
    sampled = max_images is not None and max_images < len(df)
    if sampled:
        keep = np.zeros(len(df), dtype=bool)
        for side in ("train_val", "test"):
            mask = (df["_official"] == side).to_numpy()
            sub = df[mask]
            pids, codes, pos, sizes = _patient_table(sub)
            budget = _budget(max_images, int(mask.sum()), len(df))
            picked = pick_patients(rng.permutation(len(pids)), pos, sizes, budget, fits_budget=True)
            if not picked.any():
                smallest = int(sizes.min())
                need = _smallest_max_images(int(mask.sum()), len(df), smallest)
                patients = f"{len(pids)} patient{'s' if len(pids) != 1 else ''}"
                raise DataError(
                    f"max_images={max_images} leaves the {_SIDE_SPLIT[side]} split empty: its share "
                    f"for {_SIDE_FILE[side]} ({str(root / _SIDE_FILE[side])!r}, {int(mask.sum())} "
                    f"images of {patients}) is {budget} image(s), and patients are kept whole, the "
                    f"smallest having {smallest} images. Use max_images >= {need}, or 0 (or None) "
                    "for all images."
                )
            keep[np.flatnonzero(mask)[picked[codes]]] = True
        df = df[keep].reset_index(drop=True)

    split = np.where(df["_official"] == "test", "test", "train").astype(object)
    tv_mask = (df["_official"] == "train_val").to_numpy()
    if val_fraction > 0:
        sub = df[tv_mask]
        pids, codes, pos, _ = _patient_table(sub)
        why = None
        after = f" after max_images={max_images} sampling" if sampled else ""
        if len(pids) < 2:
            why = (f"{TRAIN_VAL_LIST} holds {len(pids)} patient{'s' if len(pids) != 1 else ''}{after}, "
                   "and validation is carved by patient (at least one for val and one for train)")
        else:
            n_val = min(max(1, round(val_fraction * len(pids))), len(pids) - 1)
            picked = pick_patients(rng.permutation(len(pids)), pos, np.ones(len(pids)), n_val, keep_min=1)
            if not picked.any():
                why = (f"none of the {len(pids)} patients of {TRAIN_VAL_LIST}{after} can go to val: "
                       "each is the only positive patient of one of its findings, which train must keep")
            split[np.flatnonzero(tv_mask)[picked[codes]]] = "val"
        if why:
            fix = ("Raise max_images (0 or None: all images) so that more patients are kept"
                   if sampled else f"Use a data set with more patients on {TRAIN_VAL_LIST}")
            raise DataError(
                f"the validation carve-out leaves the val split empty ({str(root / TRAIN_VAL_LIST)!r}): "
                f"{why}. {fix}."
            )
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
    for name in SPLITS:
        if name == "val" and val_fraction == 0:
            continue
        if not (df["split"] == name).any():
            if absent:
                raise DataError(
                    f"the {name} split is empty: all its listed images ({_SPLIT_SOURCE[name]}) are "
                    f"missing under {str(root)!r} and allow_missing_images dropped them, e.g. "
                    f"{', '.join(absent[:3])}. Unpack the missing images_XXX archives there. "
                    + _layout_help(root)
                )
            raise DataError(f"the {name} split of {str(root)!r} is empty ({_SPLIT_SOURCE[name]}). "
                            + _layout_help(root))
    order = {s: i for i, s in enumerate(SPLITS)}
    df = df.sort_values(["split", "image_id"], key=lambda s: s.map(order) if s.name == "split" else s)
    return df.reset_index(drop=True)
