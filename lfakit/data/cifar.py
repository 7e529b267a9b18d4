"""CIFAR-10 / CIFAR-10-LT (real python-batches layout) and the embedded digits default.

On-disk layout read (the ``cifar-10-python.tar.gz`` archive, unpacked)::

    <data_dir>/cifar-10-batches-py/data_batch_1 ... data_batch_5   (or <data_dir>/data_batch_1 ...)
    <data_dir>/cifar-10-batches-py/test_batch
    <data_dir>/cifar-10-batches-py/batches.meta

Each batch is a pickled dict with ``b"data"`` (uint8, N x 3072: the red, green and blue 32 x 32
planes one after the other, each row-major) and ``b"labels"`` (N ints in 0..9);
``batches.meta`` holds ``b"label_names"``. Images come back as uint8 (N, 32, 32, 3).
The pickles are read by a restricted unpickler (:class:`BatchUnpickler`) that builds only what
these files hold -- dicts, lists, bytes, strings, numbers and numpy arrays -- and refuses any
other global with a ``DataError`` naming the file, so a foreign or malicious pickle executes
nothing.

Long tail (Cao et al. 2019, "LDAM"): class ``i`` of ``K`` keeps
``int(n_max * (1/rho) ** (i / (K - 1)))`` training images, ``rho`` being the imbalance ratio
(head / tail). For CIFAR-10 ``n_max = 5000`` and ``K = 10``, which gives the usual
``int(5000 * (1/rho) ** (i / 9))`` (rho = 100: 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50).
With fewer images per class (the digits default) ``n_max`` is the largest count that *every*
class can supply (the smallest per-class count of the training pool), so ``rho = 1`` is exactly
balanced and every class can meet its quota. Which images a class keeps is a seeded random
subset. The test set stays balanced. (The LFA CIFAR-10 study's "CIFAR10_LT" table lists
different, non-monotone counts; the kit uses the Cao et al. profile above.)

Validation is carved from the (long-tailed) training set, stratified by class and seeded, with
at least one image of every class on each side; ``folds >= 2`` instead gives stratified k-fold
cross-validation of that training set (each fold once the validation set), as in the LFA
protocol.

Embedded default (``dataset="digits"``): scikit-learn's bundled ``load_digits`` -- 1,797 real
8 x 8 grayscale handwritten digits, 10 classes -- scaled from 0..16 to uint8 0..255. It has no
official test set: a balanced test set of ``test_per_class`` images per class is drawn once with
a fixed seed (0, independent of the run seed, so it plays the role of CIFAR's fixed
``test_batch``); the rest is the training pool, to which the same long-tail rule applies.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lfakit.errors import DataError, ParameterError

__all__ = [
    "CIFAR10_CLASSES",
    "DIGITS_CLASSES",
    "FOLDER",
    "TRAIN_BATCHES",
    "TEST_BATCH",
    "META",
    "DATASETS",
    "Source",
    "Split",
    "BatchUnpickler",
    "find_cifar_dir",
    "check_cifar10",
    "read_batch",
    "read_label_names",
    "load_cifar10",
    "load_digits_source",
    "load_source",
    "long_tail_counts",
    "long_tail_indices",
    "stratified_split",
    "stratified_kfold",
    "make_splits",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
ARCHIVE = "cifar-10-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
DATASETS = ("digits", "cifar10")
DIGITS_TEST_SEED = 0  # the digits test set is fixed, like CIFAR's test_batch


@dataclass
class Source:
    """A data set before any run-specific choice: the training pool and the fixed test set."""

    name: str
    classes: tuple[str, ...]
    train_images: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3)
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    origin: str = ""  # where it was read from (a folder, or the package), named in errors


@dataclass
class Split:
    """One split: images, integer labels and ``ids`` (row numbers in the source's training pool
    for train/val, in its test set for test)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    classes: tuple[str, ...] = field(default=CIFAR10_CLASSES)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def targets(self) -> np.ndarray:
        """One-vs-rest float32 targets (N, K): the one-hot labels a sigmoid head is trained on."""
        return np.eye(len(self.classes), dtype=np.float32)[self.labels]

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))


# --------------------------------------------------------------------------------------------
# CIFAR-10 python batches
# --------------------------------------------------------------------------------------------


def _layout_help(where) -> str:
    return (
        f"Expected CIFAR-10 in the python-batches layout at {str(where)!r}: the folder {FOLDER}/ "
        f"(or the folder itself) holding {', '.join(TRAIN_BATCHES)}, {TEST_BATCH} and {META}. "
        f"Download {ARCHIVE} from {URL}, unpack it there (tar xzf {ARCHIVE} -C <data_dir>) and pass "
        "-p data_dir=<data_dir>. To run without CIFAR-10, use the embedded digits default: "
        "lfakit run cifar_fece --profile smoke (or lfakit run membership_inference --profile smoke)"
    )


def find_cifar_dir(data_dir) -> Path:
    """The folder holding the batches: ``data_dir/cifar-10-batches-py`` or ``data_dir`` itself.

    Raises ``DataError`` naming the missing files, where they go, and how to run without them.
    """
    if data_dir is None or str(data_dir).strip() == "":
        raise DataError("dataset 'cifar10' needs data_dir. " + _layout_help("<data_dir>"))
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"CIFAR-10 data folder {str(root)!r} does not exist. " + _layout_help(root))
    for cand in (root / FOLDER, root):
        if cand.is_dir() and all((cand / f).is_file() for f in (*TRAIN_BATCHES, TEST_BATCH, META)):
            return cand
    cand = root / FOLDER if (root / FOLDER).is_dir() else root
    missing = [f for f in (*TRAIN_BATCHES, TEST_BATCH, META) if not (cand / f).is_file()]
    hint = f" {ARCHIVE} is there but not unpacked." if (root / ARCHIVE).exists() else ""
    raise DataError(f"{str(cand)!r} lacks {', '.join(missing)}.{hint} " + _layout_help(root))


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles written by Python 3 use it for ``bytes``
    (``encode(text, "latin1")``); any other codec is refused."""
    if not isinstance(obj, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode is allowed for latin1 text only, not {encoding!r}")
    return obj.encode("latin-1")


def _empty_or_copied_bytes(*args):
    """``bytes`` as protocol-2 pickles written by Python 3 call it (``bytes()`` for ``b""``); only
    no argument or a bytes-like one is accepted."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise pickle.UnpicklingError("bytes() is allowed without arguments or on bytes only")


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The numpy callables a pickled ndarray refers to, found through numpy's public pickling
    (``ndarray.__reduce__``), under the module names numpy 1.x and 2.x write."""
    probe = np.zeros(1, np.uint8)
    reconstruct = probe.__reduce__()[0]  # multiarray._reconstruct (protocols 0-4)
    frombuffer = probe.__reduce_ex__(5)[0]  # numeric._frombuffer (protocol 5)
    out: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for pkg in ("numpy.core", "numpy._core"):
        out[(f"{pkg}.multiarray", "_reconstruct")] = reconstruct
        out[(f"{pkg}.numeric", "_frombuffer")] = frombuffer
    return out


class BatchUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` for CIFAR-10 python batches: ``find_class`` resolves only numpy's
    array reconstruction (``ndarray``, ``dtype``, ``_reconstruct`` / ``_frombuffer``), and
    ``_codecs.encode`` for latin1 text and ``bytes()`` for empty bytes (how Python 3 writes
    ``bytes`` in protocol 2); any other global -- ``os.system``, ``builtins.eval``,
    a class of some package -- raises ``DataError`` naming ``path`` before it is called.
    Persistent ids are refused too. Read as the official Python 2 files need:
    ``encoding="bytes"`` (their keys and strings come back as ``bytes``)."""

    _ALLOWED: dict[tuple[str, str], object] | None = None

    def __init__(self, file, path=""):
        super().__init__(file, encoding="bytes")
        self.path = str(path)
        if BatchUnpickler._ALLOWED is None:
            BatchUnpickler._ALLOWED = {
                **_numpy_globals(),
                ("_codecs", "encode"): _latin1_encode,
                ("__builtin__", "bytes"): _empty_or_copied_bytes,  # the name protocol 2 writes
                ("builtins", "bytes"): _empty_or_copied_bytes,
            }

    def find_class(self, module, name):
        allowed = self._ALLOWED.get((module, name))
        if allowed is None:
            raise DataError(
                f"{self.path!r} is not a CIFAR-10 batch: its pickle asks for {module}.{name}, and the "
                "CIFAR-10 python batches hold only dicts, lists, bytes, numbers and numpy arrays, so "
                "the kit refuses to load it (nothing in it was run). Replace the file with the one "
                f"from the official {ARCHIVE} ({URL})."
            )
        return allowed

    def persistent_load(self, pid):
        raise DataError(f"{self.path!r} is not a CIFAR-10 batch: its pickle uses persistent ids. "
                        f"Replace the file with the one from the official {ARCHIVE} ({URL}).")


def _unpickle(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read CIFAR-10 file {str(path)!r} ({e.strerror or e}).") from None
    try:
        obj = BatchUnpickler(io.BytesIO(data), path).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure means a corrupt or foreign file
        raise DataError(f"cannot read CIFAR-10 file {str(path)!r} ({type(e).__name__}: {e}); re-extract {ARCHIVE}.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{str(path)!r} holds a {type(obj).__name__}, not the dict of a CIFAR-10 batch.")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (uint8 images (N, 32, 32, 3), int64 labels (N,))."""
    path = Path(path)
    d = _unpickle(path)
    for key in ("data", "labels"):
        if key not in d:
            raise DataError(f"{str(path)!r} has no b{key!r} entry (keys: {sorted(d)}); not a CIFAR-10 batch.")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{str(path)!r}: b'data' has shape {data.shape}; expected (N, 3072).")
    if data.dtype != np.uint8:
        raise DataError(f"{str(path)!r}: b'data' has dtype {data.dtype}; expected uint8.")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{str(path)!r}: {labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images.")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{str(path)!r}: b'labels' holds {labels.dtype} values; CIFAR-10 labels are integers 0..9. "
                        f"Replace the file with the one from the official {ARCHIVE} ({URL}).")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = np.flatnonzero((labels < 0) | (labels > 9))
        raise DataError(f"{str(path)!r}: labels must be integers 0..9, found {int(labels.min())}..{int(labels.max())} "
                        f"({bad.size} out of range, first at row {int(bad[0])}). Replace the file with the one from "
                        f"the official {ARCHIVE} ({URL}).")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def read_label_names(path) -> tuple[str, ...]:
    """``batches.meta`` -> the 10 class names."""
    path = Path(path)
    d = _unpickle(path)
    names = d.get("label_names")
    if names is None or len(names) != 10:
        raise DataError(f"{str(path)!r} has no 10 b'label_names' (got {names!r}).")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def check_cifar10(data_dir) -> Path:
    """Everything :func:`load_cifar10` and the splits read, checked before a run: the files
    (:func:`find_cifar_dir`), each batch's keys, dtype, shape and labels, the 10 class names,
    and every class present in the training pool and in the test batch. ``DataError`` names the
    file and the fix. Returns the folder. (Reads the 180 MB once, about a second.)"""
    _check_source(load_cifar10(data_dir))
    return find_cifar_dir(data_dir)


def load_cifar10(data_dir) -> Source:
    """Read CIFAR-10 from ``data_dir`` (see the module docstring for the layout)."""
    folder = find_cifar_dir(data_dir)
    parts = [read_batch(folder / b) for b in TRAIN_BATCHES]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = read_batch(folder / TEST_BATCH)
    classes = read_label_names(folder / META)
    return Source("cifar10", classes, x_train, y_train, x_test, y_test, origin=str(folder))


# --------------------------------------------------------------------------------------------
# Embedded default: scikit-learn's digits
# --------------------------------------------------------------------------------------------


def load_digits_source(test_per_class: int = 50) -> Source:
    """scikit-learn's bundled digits as a ``Source``: a fixed balanced test set of
    ``test_per_class`` images per class (seed 0), the rest as training pool."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = d.target.astype(np.int64)
    smallest = int(np.bincount(labels).min())
    if not 1 <= test_per_class <= smallest - 2:
        raise ParameterError(
            f"test_per_class={test_per_class} must be between 1 and {smallest - 2} (the smallest digits "
            f"class has {smallest} images and needs 2 left for training and validation)."
        )
    rng = np.random.default_rng(DIGITS_TEST_SEED)
    test = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:test_per_class] for c in range(10)]))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return Source("digits", DIGITS_CLASSES, images[train], labels[train], images[test], labels[test],
                  origin="scikit-learn's load_digits")


def load_source(dataset: str, data_dir: str = "", test_per_class: int = 50) -> Source:
    if dataset == "cifar10":
        return load_cifar10(data_dir)
    if dataset == "digits":
        return load_digits_source(test_per_class)
    raise ParameterError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


# --------------------------------------------------------------------------------------------
# Long tail, validation split, k-fold
# --------------------------------------------------------------------------------------------


def long_tail_counts(n_max: int, rho: float, num_classes: int = 10) -> list[int]:
    """Images kept per class: ``int(n_max * (1/rho) ** (i / (K - 1)))`` for i = 0..K-1."""
    if rho < 1:
        raise ParameterError(f"imbalance ratio rho must be >= 1 (head/tail), got {rho!r}")
    if num_classes < 2:
        raise ParameterError(f"num_classes must be >= 2, got {num_classes}")
    return [int(n_max * (1.0 / rho) ** (i / (num_classes - 1))) for i in range(num_classes)]


def long_tail_indices(labels, rho: float, seed: int = 0, n_max: int | None = None,
                      num_classes: int | None = None) -> np.ndarray:
    """Sorted row numbers of a long-tailed subset of ``labels`` (class i keeps
    ``long_tail_counts(n_max, rho, K)[i]`` rows, a seeded random choice).

    ``n_max`` defaults to the smallest class count (5000 for CIFAR-10): the largest head size
    every class can supply. A class with fewer rows than its quota raises ``DataError``.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise DataError("long_tail_indices: the training pool is empty (no labels).")
    k = int(num_classes or labels.max() + 1)
    have = np.bincount(labels, minlength=k)
    if not have.all():
        raise DataError(f"class {int(np.argmin(have))} has no training images; every class needs at least 2 "
                        "(one for training, one for validation).")
    if n_max is None:
        n_max = int(have.min())
    want = long_tail_counts(n_max, rho, k)
    short = [c for c in range(k) if have[c] < want[c]]
    if short:
        c = short[0]
        raise DataError(f"class {c} has {have[c]} training images but the long tail (rho={rho}, n_max={n_max}) asks for {want[c]}.")
    if min(want) < 2:
        raise DataError(
            f"rho={rho} with n_max={n_max} leaves class {int(np.argmin(want))} with {min(want)} image(s); every class "
            "needs at least 2 (one for training, one for validation). Use a smaller rho."
        )
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[: want[c]] for c in range(k)]
    return np.sort(np.concatenate(keep))


def stratified_split(labels, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified (train, val) row numbers: per class ``round(val_fraction * n_c)``
    rows go to validation, clipped so every class keeps at least one row on each side."""
    labels = np.asarray(labels)
    if not 0 < val_fraction < 1:
        raise ParameterError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        if len(rows) < 2:
            raise DataError(f"class {c} has {len(rows)} training image(s); a validation split needs at least 2.")
        n_val = min(max(int(round(val_fraction * len(rows))), 1), len(rows) - 1)
        val.append(rows[:n_val])
        train.append(rows[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_kfold(labels, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold (scikit-learn's ``StratifiedKFold``, shuffled with ``seed``):
    ``folds`` (train, val) pairs whose validation parts partition the rows."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if folds < 2:
        raise ParameterError(f"k-fold needs folds >= 2, got {folds}")
    smallest = int(np.bincount(labels).min()) if labels.size else 0
    if smallest < folds:
        raise DataError(
            f"{folds}-fold cross-validation needs at least {folds} images of every class; the smallest class has "
            f"{smallest}. Use fewer folds or a smaller imbalance ratio."
        )
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(va)) for tr, va in skf.split(np.zeros(len(labels)), labels)]


def _files_of(source: Source, part: str) -> str:
    """The files a part (``train`` pool or ``test``) of a source comes from, for messages."""
    if source.name == "cifar10":
        names = ", ".join(TRAIN_BATCHES) if part == "train" else TEST_BATCH
        return f"{names} in {source.origin!r}" if source.origin else names
    return source.origin or f"the {source.name} source"


def _fix_of(source: Source) -> str:
    if source.name == "cifar10":
        return (f"The official files hold 5,000 training and 1,000 test images of every class: "
                f"re-extract {ARCHIVE} ({URL}) into data_dir.")
    if source.name == "digits":
        return "Lower digits_test_per_class, or use the official scikit-learn digits."
    return "Give the source images of every class in both its training pool and its test set."


def _check_source(source: Source) -> None:
    """Every class in the training pool and in the test set, labels in range."""
    k = len(source.classes)
    for part, labels in (("train", source.train_labels), ("test", source.test_labels)):
        labels = np.asarray(labels)
        what = "training pool" if part == "train" else "test split"
        if labels.size == 0:
            raise DataError(f"the {source.name} {what} is empty ({_files_of(source, part)} hold no images). "
                            + _fix_of(source))
        if labels.min() < 0 or labels.max() >= k:
            raise DataError(f"the {source.name} {what} ({_files_of(source, part)}) has labels "
                            f"{int(labels.min())}..{int(labels.max())} outside 0..{k - 1}. " + _fix_of(source))
        counts = np.bincount(labels, minlength=k)
        empty = [c for c in range(k) if counts[c] == 0]
        if empty:
            names = ", ".join(f"{c} ({source.classes[c]!r})" for c in empty)
            raise DataError(
                f"the {source.name} {what} ({_files_of(source, part)}) has no images of class "
                f"{names}, so the {'train and val splits' if part == 'train' else 'test split'} "
                f"would lack {'it' if len(empty) == 1 else 'them'}. " + _fix_of(source)
            )


def _check_splits(splits: dict[str, Split], source: Source, rho: float, fold: int | None) -> None:
    where = f" (rho={rho}{f', fold {fold + 1}' if fold is not None else ''})"
    for name, sp in splits.items():
        counts = sp.counts()
        empty = [c for c in range(len(sp.classes)) if counts[c] == 0]
        if empty:
            names = ", ".join(f"{c} ({sp.classes[c]!r})" for c in empty)
            raise DataError(
                f"the {name} split{where} has no images of class {names} ({len(sp)} images in all; "
                f"from {_files_of(source, 'test' if name == 'test' else 'train')}). Use a smaller "
                "imbalance ratio rho, fewer folds or another val_fraction, so that every class keeps "
                "images on each side."
            )


def make_splits(source: Source, rho: float = 1.0, val_fraction: float = 0.1, folds: int = 0,
                seed: int = 0) -> list[dict[str, Split]]:
    """Train / val / test splits for one imbalance ratio: one dict per fold (a single one when
    ``folds`` is 0). The long tail is drawn from the training pool (seeded), then validation is
    carved from it (stratified); the test set is the source's, untouched.

    ``DataError`` (naming the split, the class, the source's files and the fix) when the
    training pool or the test set is empty or lacks a class, or a split would end up without
    images of some class."""
    k = len(source.classes)
    _check_source(source)
    pool = long_tail_indices(source.train_labels, rho, seed, num_classes=k)
    y = source.train_labels[pool]
    if folds:
        pairs = stratified_kfold(y, folds, seed)
    else:
        pairs = [stratified_split(y, val_fraction, seed)]
    test = Split("test", source.test_images, source.test_labels, np.arange(len(source.test_labels)), source.classes)
    out = []
    for f, (tr, va) in enumerate(pairs):
        rows = {"train": pool[tr], "val": pool[va]}
        splits = {name: Split(name, source.train_images[r], source.train_labels[r], r, source.classes) for name, r in rows.items()}
        splits["test"] = test
        _check_splits(splits, source, rho, f if folds else None)
        out.append(splits)
    return out
