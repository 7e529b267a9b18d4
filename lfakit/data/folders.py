"""Your own images in the layouts users already have, read into the kit's image caches.

Layouts (``task``):

* ``multiclass``: torchvision's ImageFolder, ``root/<class>/<image>`` or with ``train/``,
  ``val/`` and ``test/`` folders above the class folders (``val``/``test`` optional: what is
  missing is carved from ``train``); or a CSV ``path,label``;
* ``multilabel``: a CSV whose label column holds ``|``-separated labels (NIH style:
  ``Effusion|Mass``, an empty cell or ``No Finding``-like label allowed) or one 0/1 column per
  label (CheXpert style, ``label_columns``);
* ``score``: a CSV ``path,score[,sd]`` (IQA-like regression targets).

A CSV may carry a ``split`` column (train / val / test); otherwise the split is seeded and
stratified: by class (multi-class), iteratively by label (multi-label, Sechidis et al. 2011),
by score quintile (score). Paths in a CSV are relative to ``data_dir`` (or the CSV's folder).

:func:`read_index` reads and checks everything without decoding an image (and without torch):
a missing folder or CSV, an empty class folder, a missing image file, a label column with one
value, a score column with text stop with a :class:`~lfakit.errors.DataError` saying what to
fix. :func:`load_splits` decodes the images once into the uint8 cache
(:func:`lfakit.data.image_cache.build_image_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lfakit.errors import DataError, ParameterError

TASKS = ("multiclass", "multilabel", "score")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class Index:
    """What a layout holds: one row per image."""

    task: str
    paths: list[Path]
    ids: list[str]  # paths relative to the data folder (the record's sample ids)
    targets: np.ndarray  # multiclass: (N,) int64; multilabel: (N, C) float32 0/1; score: (N,) float32
    classes: list[str]  # class / label names; score: ["score"]
    split: np.ndarray | None  # (N,) train | val | test, from the layout, else None
    sd: np.ndarray | None = None  # score: the ratings' SD, if the CSV has one
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)


def _few(items, n: int = 5) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(root: Path, where: str) -> dict[str, list[Path]]:
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{where} has no class folders: the ImageFolder layout is {root}/<class>/<image> "
                        f"(or {root}/train/<class>/<image>); or give a CSV of path,label (csv=...)")
    out = {d.name: _images_in(d) for d in classes}
    empty = [c for c, files in out.items() if not files]
    if empty:
        raise DataError(f"class folder(s) {_few(empty)} in {where} hold no image ({', '.join(IMAGE_SUFFIXES)}); "
                        "add images or remove the empty folder(s)")
    return out


def read_image_folder(root) -> Index:
    """``root/<class>/...`` or ``root/{train,val,test}/<class>/...``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist (an ImageFolder layout: {root}/<class>/<image>)")
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    if split_dirs and "train" not in split_dirs:
        raise DataError(f"{root} has {', '.join(split_dirs)}/ but no train/ folder; add train/<class>/ folders")
    parts = {s: _class_folders(root / s, f"{root}/{s}") for s in split_dirs} if split_dirs else {None: _class_folders(root, str(root))}
    classes = sorted({c for folders in parts.values() for c in folders})
    if len(classes) < 2:
        raise DataError(f"{root} has one class folder ({classes[0]}); a classifier needs at least two classes")
    paths, labels, split = [], [], []
    for s, folders in parts.items():
        for c, files in folders.items():
            paths += files
            labels += [classes.index(c)] * len(files)
            split += [s] * len(files)
    missing_train = [c for c in classes if split_dirs and c not in parts["train"]]
    if missing_train:
        raise DataError(f"class(es) {_few(missing_train)} have images in {root}/val or test/ but none in train/")
    return Index("multiclass", paths, [str(p.relative_to(root)) for p in paths], np.asarray(labels, np.int64),
                 classes, np.asarray(split) if split_dirs else None, source=str(root))


def _read_csv(csv: Path) -> pd.DataFrame:
    if not csv.is_file():
        raise DataError(f"CSV file {csv} does not exist; give csv= as a path (absolute, or relative to data_dir)")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 -- a parser error names the line
        raise DataError(f"{csv} cannot be read as a CSV: {e}") from None
    if df.empty:
        raise DataError(f"{csv} has a header but no rows")
    return df


def _column(df: pd.DataFrame, csv: Path, name: str, what: str) -> pd.Series:
    if name not in df.columns:
        from lfakit.errors import close_matches

        raise DataError(f"{csv} has no {what} column {name!r}.{close_matches(name, list(df.columns))} "
                        f"Its columns: {', '.join(df.columns)}")
    return df[name].str.strip()


def read_csv_index(task: str, csv, data_dir="", *, path_column: str = "path", label_column: str = "label",
                   label_separator: str = "|", label_columns=(), score_column: str = "score",
                   sd_column: str = "") -> Index:
    """A CSV layout of ``task``; see the module docstring."""
    if task not in TASKS:
        raise ParameterError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    base = Path(data_dir).expanduser() if data_dir else None
    csv = Path(csv).expanduser()
    if not csv.is_absolute() and base is not None:
        csv = base / csv
    df = _read_csv(csv)
    root = base if base is not None else csv.parent
    rel = _column(df, csv, path_column, "path")
    if (rel == "").any():
        rows = list(np.flatnonzero((rel == "").to_numpy()) + 2)
        raise DataError(f"{csv}: empty {path_column!r} on line(s) {_few(rows)}")
    paths = [Path(p) if Path(p).is_absolute() else root / p for p in rel]
    missing = [str(r) for r, p in zip(rel, paths) if not p.is_file()]
    if missing:
        raise DataError(f"{csv}: {len(missing)} of {len(paths)} image file(s) do not exist (paths are relative to "
                        f"{root}): {_few(missing)}")
    split = None
    if "split" in df.columns:
        split = df["split"].str.strip().str.lower().to_numpy()
        bad = sorted(set(split) - set(SPLITS))
        if bad:
            raise DataError(f"{csv}: the split column holds {_few(bad)}; use train, val or test")
        if "train" not in set(split):
            raise DataError(f"{csv}: the split column names no train row")
    sd = None
    if task == "multiclass":
        lab = _column(df, csv, label_column, "label")
        classes = sorted(set(lab))
        if "" in classes:
            rows = list(np.flatnonzero((lab == "").to_numpy()) + 2)
            raise DataError(f"{csv}: empty {label_column!r} on line(s) {_few(rows)}")
        if len(classes) < 2:
            raise DataError(f"{csv}: the label column {label_column!r} holds one value ({classes[0]!r}) in all "
                            f"{len(df)} rows; a classifier needs at least two classes")
        targets = np.asarray([classes.index(v) for v in lab], np.int64)
    elif task == "multilabel":
        if label_columns:
            cols = list(label_columns)
            for c in cols:
                _column(df, csv, c, "label")
            raw = df[cols].apply(lambda s: s.str.strip())
            bad = ~raw.isin(["0", "1", "0.0", "1.0"])
            if bad.to_numpy().any():
                r, c = np.argwhere(bad.to_numpy())[0]
                raise DataError(f"{csv}: label column {cols[c]!r} holds {raw.iat[r, c]!r} on line {r + 2}; "
                                "every label column must hold 0 or 1")
            targets = raw.astype(float).to_numpy(np.float32)
            classes = cols
        else:
            lab = _column(df, csv, label_column, "label")
            sets = [[t.strip() for t in v.split(label_separator) if t.strip()] for v in lab]
            classes = sorted({t for s in sets for t in s})
            if not classes:
                raise DataError(f"{csv}: the label column {label_column!r} names no label")
            targets = np.zeros((len(df), len(classes)), np.float32)
            for i, s in enumerate(sets):
                targets[i, [classes.index(t) for t in s]] = 1.0
        const = [c for c, col in zip(classes, targets.T) if col.min() == col.max()]
        if const:
            raise DataError(f"{csv}: label(s) {_few(const)} hold one value in all {len(df)} rows (every image "
                            "positive, or none); nothing to learn or test for them: drop the label or add images")
    else:
        raw = _column(df, csv, score_column, "score")
        num = pd.to_numeric(raw, errors="coerce")
        bad = list(np.flatnonzero(~np.isfinite(num.to_numpy(float))))
        if bad:
            raise DataError(f"{csv}: the score column {score_column!r} holds text or no number on line(s) "
                            f"{_few([b + 2 for b in bad])} (e.g. {raw.iat[bad[0]]!r}); every score must be a finite number")
        targets = num.to_numpy(np.float32)
        if np.ptp(targets) == 0:
            raise DataError(f"{csv}: the score column {score_column!r} holds one value ({targets[0]:g}) in all rows")
        classes = ["score"]
        if sd_column:
            s = pd.to_numeric(_column(df, csv, sd_column, "sd"), errors="coerce").to_numpy(float)
            if not (np.isfinite(s) & (s >= 0)).all():
                raise DataError(f"{csv}: the sd column {sd_column!r} must hold finite numbers >= 0")
            sd = s.astype(np.float32)
    return Index(task, paths, [str(r) for r in rel], targets, classes, split, sd, source=str(csv))


def read_index(task: str, data_dir, csv: str = "", **csv_options) -> Index:
    """The layout of ``task`` in ``data_dir``: a CSV if ``csv`` is given, else (multi-class) an ImageFolder."""
    if csv:
        return read_csv_index(task, csv, data_dir, **csv_options)
    if task != "multiclass":
        raise DataError(f"task={task!r} reads a CSV (csv=...): "
                        + ("path and a '|'-separated label column, or one 0/1 column per label (label_columns)"
                           if task == "multilabel" else "path,score[,sd]"))
    return read_image_folder(data_dir)


# ------------------------------------------------------------------------------------------ splits


def _iterative_stratification(y: np.ndarray, fractions: list[float], rng: np.random.Generator) -> np.ndarray:
    """Sechidis et al. (2011): give the rarest label's examples first to the fold that wants it
    most. Returns the fold of every row."""
    n = len(y)
    want = np.asarray(fractions)[:, None] * y.sum(0)[None, :]
    want_n = np.asarray(fractions) * n
    fold = np.full(n, -1)
    left = np.ones(n, bool)
    while left.any():
        counts = y[left].sum(0)
        if counts.max() == 0:  # rows without labels: by the folds' remaining size
            for i in rng.permutation(np.flatnonzero(left)):
                f = int(np.argmax(want_n + rng.random(len(want_n)) * 1e-9))
                fold[i], want_n[f] = f, want_n[f] - 1
            break
        lab = int(np.argmin(np.where(counts > 0, counts, np.inf)))
        for i in rng.permutation(np.flatnonzero(left & (y[:, lab] > 0))):
            best = np.flatnonzero(want[:, lab] == want[:, lab].max())
            if len(best) > 1:
                best = best[want_n[best] == want_n[best].max()]
            f = int(rng.choice(best))
            fold[i] = f
            want[f] -= y[i]
            want_n[f] -= 1
            left[i] = False
    return fold


def split_index(index: Index, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Row indices of train / val / test: the layout's own split where it has one (a missing val
    or test carved from train, stratified), else a seeded stratified split of every row."""
    rng = np.random.default_rng(seed)
    n = len(index)
    fold = np.zeros(n, int)  # 0 train, 1 val, 2 test
    given = index.split
    todo = np.arange(n) if given is None else np.flatnonzero(given == "train")
    if given is not None:
        fold[given == "val"], fold[given == "test"] = 1, 2
    fr = [val_fraction if given is None or not (given == "val").any() else 0.0,
          test_fraction if given is None or not (given == "test").any() else 0.0]
    fracs = [1.0 - sum(fr), *fr]
    if sum(fr) > 0:
        y = index.targets[todo]
        if index.task == "multilabel":
            part = _iterative_stratification(y, fracs, rng)
        else:
            strata = y if index.task == "multiclass" else np.digitize(y, np.quantile(y, [0.2, 0.4, 0.6, 0.8]))
            part = np.zeros(len(todo), int)
            for s in np.unique(strata):
                rows = rng.permutation(np.flatnonzero(strata == s))
                k = len(rows)
                cut = np.round(np.cumsum(fracs) * k).astype(int)
                n_test = max(cut[2] - cut[1], 1 if fr[1] and k >= 3 else 0)
                n_val = max(cut[1] - cut[0], 1 if fr[0] and k >= 3 else 0)
                part[rows[:n_test]] = 2
                part[rows[n_test:n_test + n_val]] = 1
        fold[todo] = part
    out = {s: np.flatnonzero(fold == i) for i, s in enumerate(SPLITS)}
    for s, rows in out.items():
        if len(rows) == 0:
            raise DataError(f"the {s} split of {index.source} is empty ({n} images); add images or change "
                            "val_fraction / test_fraction")
    if index.task == "multiclass":
        absent = [index.classes[c] for c in range(len(index.classes)) if not (index.targets[out["train"]] == c).any()]
        if absent:
            raise DataError(f"class(es) {_few(absent)} have no training image after the split; add images")
    return out


# ------------------------------------------------------------------------------------------ images


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3), a memmap of the cache
    targets: np.ndarray
    image_ids: list[str]
    sd: np.ndarray | None = None


def load_splits(index: Index, rows: dict[str, np.ndarray], image_size: int, mode: str = "RGB", cache_dir=None,
                progress: bool = True) -> dict[str, Split]:
    """Decode and resize every image once into the uint8 cache (keyed on the files, the side
    and the mode) and cut it into the splits."""
    from lfakit.data.image_cache import build_image_cache

    images = build_image_cache(index.paths, image_size, mode=mode, cache_dir=cache_dir, namespace="own_data",
                               ids=index.ids, progress=progress, desc="images")
    out = {}
    for s, r in rows.items():
        out[s] = Split(np.asarray(images[r]), index.targets[r], [index.ids[i] for i in r],
                       None if index.sd is None else index.sd[r])
    return out


# ------------------------------------------------------------------------------------------ embedded


def embedded_digits_folder(cache_dir=None) -> Path:
    """scikit-learn's bundled 8x8 digits (1,797 images) written once as an ImageFolder of PNGs
    (``<cache>/own_data/digits_imagefolder/<digit>/<n>.png``, upscaled to 16 px), the
    experiment's embedded default."""
    import os

    import cv2
    from sklearn.datasets import load_digits

    from lfakit.data.image_cache import default_cache_dir

    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = root / "own_data" / "digits_imagefolder"
    done = folder / ".complete"
    if done.exists():
        return folder
    d = load_digits()
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        px = np.clip(np.round(img * 255.0 / 16.0), 0, 255).astype(np.uint8)
        px = cv2.resize(px, (16, 16), interpolation=cv2.INTER_NEAREST)
        out = tmp / str(label) / f"{i:04d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), px)
    (tmp / ".complete").write_text("sklearn.datasets.load_digits, 16 px PNGs\n")
    if not done.exists():
        import shutil

        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    return folder
