"""CIFAR-10 python-batches loader (a restricted unpickler), CIFAR-10-LT profile, digits
default, splits, k-fold and the errors for empty splits."""

from __future__ import annotations

import os
import pickle
import pickletools

import numpy as np
import pytest

from lfakit.data import cifar
from lfakit.errors import DataError

NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _batch(rng, n, label_offset=0):
    labels = [(i + label_offset) % 10 for i in range(n)]
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {b"batch_label": b"a tiny batch", b"labels": labels, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def write_tiny_cifar(root, per_batch=20, n_test=30, seed=0):
    """The real layout, written here with pickle (not with the kit's code): 5 training batches,
    a test batch and batches.meta under root/cifar-10-batches-py/."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = _batch(rng, per_batch, label_offset=i)
    batches["test_batch"] = _batch(rng, n_test)
    for name, d in batches.items():
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh, protocol=2)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": NAMES, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, fh, protocol=2)
    return folder, batches


def test_loader_reads_the_tests_own_cifar_file(tmp_path):
    folder, batches = write_tiny_cifar(tmp_path)
    src = cifar.load_cifar10(tmp_path)  # the parent of cifar-10-batches-py/
    assert src.classes == tuple(n.decode() for n in NAMES) == cifar.CIFAR10_CLASSES
    assert src.train_images.shape == (100, 32, 32, 3) and src.train_images.dtype == np.uint8
    assert src.test_images.shape == (30, 32, 32, 3)
    want_labels = np.concatenate([batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(src.train_labels, want_labels)
    np.testing.assert_array_equal(src.test_labels, batches["test_batch"][b"labels"])
    # pixel layout: a row is the R plane, then G, then B, each 32 x 32 row-major
    row = batches["data_batch_2"][b"data"][3]
    img = src.train_images[20 + 3]
    for ch in range(3):
        for (y, x) in [(0, 0), (0, 31), (5, 7), (31, 0), (31, 31)]:
            assert img[y, x, ch] == row[ch * 1024 + y * 32 + x]
    # the batches folder itself works too
    again = cifar.load_cifar10(folder)
    np.testing.assert_array_equal(again.train_images, src.train_images)


def test_missing_data_says_where_it_goes_and_how_to_run_without(tmp_path):
    with pytest.raises(DataError) as e:
        cifar.load_cifar10(tmp_path / "nowhere")
    msg = str(e.value)
    assert "does not exist" in msg and "cifar-10-batches-py" in msg and "data_batch_1" in msg
    assert "--profile smoke" in msg and "cifar-10-python.tar.gz" in msg
    with pytest.raises(DataError, match="needs data_dir"):
        cifar.find_cifar_dir("")


def test_partial_layout_names_missing_files_and_unpacked_archive(tmp_path):
    folder, _ = write_tiny_cifar(tmp_path)
    (folder / "test_batch").unlink()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"lacks test_batch\. cifar-10-python.tar.gz is there but not unpacked"):
        cifar.load_cifar10(tmp_path)


@pytest.mark.parametrize(
    "payload, pattern",
    [
        ({b"labels": [0]}, "no b'data'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"expected \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "expected uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "0..9"),
        ([1, 2, 3], "not the dict"),
    ],
)
def test_bad_batches_raise_clear_errors(tmp_path, payload, pattern):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as fh:
        pickle.dump(payload, fh)
    with pytest.raises(DataError, match=pattern):
        cifar.read_batch(path)


def test_corrupt_batch_file(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read CIFAR-10 file"):
        cifar.read_batch(path)


# ------------------------------------------------------------------------------------------
# the restricted unpickler: the real format loads, anything else is refused unexecuted
# ------------------------------------------------------------------------------------------


def py2_pickle(obj) -> bytes:
    """Protocol 2 as Python 2 with numpy 1.x wrote the official batches: str as BINSTRING (no
    ``_codecs.encode``), arrays through ``numpy.core.multiarray._reconstruct``. Written opcode by
    opcode here (the kit's code does not write pickles)."""
    out = bytearray(b"\x80\x02")

    def string(b: bytes):
        out.extend((b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + len(b).to_bytes(4, "little") + b))

    def emit(v):
        if isinstance(v, bytes):
            string(v)
        elif isinstance(v, bool):
            out.extend(b"\x88" if v else b"\x89")
        elif isinstance(v, int):
            out.extend(b"J" + v.to_bytes(4, "little", signed=True))
        elif isinstance(v, list):
            out.extend(b"](")
            for x in v:
                emit(x)
            out.extend(b"e")
        elif isinstance(v, dict):
            out.extend(b"}(")
            for k, x in v.items():
                emit(k)
                emit(x)
            out.extend(b"u")
        elif isinstance(v, np.ndarray):
            assert v.dtype == np.uint8 and v.flags.c_contiguous
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            out.extend(b"K\x00\x85")  # (0,)
            string(b"b")
            out.extend(b"\x87R(K\x01")  # _reconstruct(ndarray, (0,), 'b'), then its state
            out.extend(b"(" + b"".join(b"J" + d.to_bytes(4, "little") for d in v.shape) + b"t")
            out.extend(b"cnumpy\ndtype\n")
            string(b"u1")
            out.extend(b"K\x00K\x01\x87R(K\x03")  # dtype('u1', 0, 1), state (3, '|', ...)
            string(b"|")
            out.extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")  # ..., fortran=False
            string(v.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(v))

    emit(obj)
    out.extend(b".")
    return bytes(out)


def test_a_python2_format_batch_loads(tmp_path):
    rng = np.random.default_rng(4)
    batch = _batch(rng, 7)
    blob = py2_pickle(batch)
    ops = {op.name for op, _, _ in pickletools.genops(blob)}
    assert "GLOBAL" in ops and "SHORT_BINSTRING" in ops and "STACK_GLOBAL" not in ops
    ref = pickle.loads(blob, encoding="bytes")  # the standard library reads it as the real files
    assert ref[b"batch_label"] == b"a tiny batch" and np.array_equal(ref[b"data"], batch[b"data"])
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    images, labels = cifar.read_batch(path)
    assert images.shape == (7, 32, 32, 3) and labels.tolist() == batch[b"labels"]
    assert np.array_equal(images.transpose(0, 3, 1, 2).reshape(7, -1), batch[b"data"])
    meta = tmp_path / "batches.meta"
    meta.write_bytes(py2_pickle({b"label_names": NAMES, b"num_cases_per_batch": 7, b"num_vis": 3072}))
    assert cifar.read_label_names(meta) == cifar.CIFAR10_CLASSES


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_batches_written_by_python3_load_in_every_protocol(tmp_path, protocol):
    batch = _batch(np.random.default_rng(protocol), 5)
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=protocol)
    images, labels = cifar.read_batch(path)
    assert np.array_equal(images.transpose(0, 3, 1, 2).reshape(5, -1), batch[b"data"])
    assert labels.tolist() == batch[b"labels"]


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_malicious_pickle_is_refused_without_running_anything(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _RunsACommand(marker)}
    with open(path, "wb") as fh:
        pickle.dump(payload, fh, protocol=protocol)
    with pytest.raises(DataError) as err:
        cifar.read_batch(path)
    msg = str(err.value)
    assert str(path) in msg and f"{os.system.__module__}.system" in msg and "nothing in it was run" in msg
    assert "cifar-10-python.tar.gz" in msg
    assert not marker.exists()
    with open(path, "wb") as fh:
        pickle.dump(_Evaluates(), fh, protocol=protocol)
    with pytest.raises(DataError, match=r"(__builtin__|builtins)\.eval"):
        cifar.read_batch(path)
    # control: the standard unpickler does run it
    with open(path, "wb") as fh:
        pickle.dump(_RunsACommand(marker), fh, protocol=protocol)
    with open(path, "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_codecs_encode_is_allowed_for_latin1_only(tmp_path):
    import codecs

    path = tmp_path / "data_batch_1"
    # protocol-2 bytes from Python 3 are _codecs.encode(text, 'latin1'); another codec is refused
    blob = pickle.dumps(b"\xff\x00abc", protocol=2)
    assert b"_codecs" in blob and b"latin1" in blob
    path.write_bytes(blob.replace(b"latin1", b"rot13 "))
    with pytest.raises(DataError, match="latin1"):
        cifar.read_batch(path)
    assert codecs.encode("x", "rot13") == "k"  # the codec exists: refused by the kit, not missing


# int(5000 * (1/rho)^(i/9)), i = 0..9: the CIFAR-10-LT class sizes of Cao et al. (rho = 100 as
# listed in docs/data.md; rho = 10 and 50 written out by hand from the same formula)
CAO_COUNTS = {
    1: [5000] * 10,
    10: [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500],
    50: [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100],
    100: [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50],
}


@pytest.mark.parametrize("rho", sorted(CAO_COUNTS))
def test_long_tail_counts_are_cao_et_al(rho):
    assert cifar.long_tail_counts(5000, rho, 10) == CAO_COUNTS[rho]


@pytest.mark.parametrize("rho", [1, 10, 100])
def test_long_tail_subset_of_a_cifar_sized_training_set(rho):
    labels = np.repeat(np.arange(10), 5000)
    np.random.default_rng(1).shuffle(labels)
    keep = cifar.long_tail_indices(labels, rho, seed=3)
    counts = np.bincount(labels[keep], minlength=10)
    assert counts.tolist() == [int(5000 * (1 / rho) ** (i / 9)) for i in range(10)]
    assert len(np.unique(keep)) == len(keep)
    np.testing.assert_array_equal(keep, cifar.long_tail_indices(labels, rho, seed=3))  # seeded
    if rho > 1:
        assert not np.array_equal(keep, cifar.long_tail_indices(labels, rho, seed=4))


def test_long_tail_scales_by_smallest_class_when_fewer_images():
    labels = np.repeat(np.arange(10), [130, 128, 131, 127, 135, 129, 130, 133, 124, 130])
    keep = cifar.long_tail_indices(labels, 10, seed=0)
    assert np.bincount(labels[keep]).tolist() == [int(124 * 0.1 ** (i / 9)) for i in range(10)]
    keep1 = cifar.long_tail_indices(labels, 1, seed=0)
    assert np.bincount(labels[keep1]).tolist() == [124] * 10  # rho = 1 is exactly balanced
    with pytest.raises(DataError, match="class 1 has 128 training images"):
        cifar.long_tail_indices(labels, 1, seed=0, n_max=130)
    with pytest.raises(DataError, match="at least 2"):
        cifar.long_tail_indices(labels, 100, seed=0)


def test_digits_default_balanced_fixed_test_set():
    a = cifar.load_digits_source(50)
    b = cifar.load_digits_source(50)
    assert a.classes == tuple("0123456789")
    assert a.train_images.shape[1:] == (8, 8) and a.train_images.dtype == np.uint8 and a.train_images.max() == 255
    assert np.bincount(a.test_labels).tolist() == [50] * 10
    assert len(a.train_labels) + len(a.test_labels) == 1797
    np.testing.assert_array_equal(a.test_images, b.test_images)  # fixed, not run-seeded
    # no test image is also a training image (the digits set has no exact duplicates across)
    train_rows = {r.tobytes() for r in a.train_images}
    assert sum(r.tobytes() in train_rows for r in a.test_images) < 3


def test_stratified_split_keeps_every_class_on_both_sides():
    labels = np.repeat(np.arange(4), [100, 40, 10, 2])
    tr, va = cifar.stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va]).tolist() == [20, 8, 2, 1]
    assert np.bincount(labels[tr]).tolist() == [80, 32, 8, 1]
    tr2, va2 = cifar.stratified_split(labels, 0.2, seed=0)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, cifar.stratified_split(labels, 0.2, seed=1)[1])


def test_kfold_partitions_and_stratifies():
    labels = np.repeat(np.arange(3), [50, 20, 10])
    folds = cifar.stratified_kfold(labels, 5, seed=0)
    assert len(folds) == 5
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals.tolist()) == list(range(80))  # validation parts partition the rows
    for tr, va in folds:
        assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 80
        assert np.bincount(labels[va], minlength=3).tolist() == [10, 4, 2]
    with pytest.raises(DataError, match="at least 11 images of every class"):
        cifar.stratified_kfold(labels, 11, seed=0)


def test_make_splits_long_tail_then_validation_balanced_test(tmp_path):
    src = cifar.load_digits_source(50)
    (only,) = cifar.make_splits(src, rho=10, val_fraction=0.2, seed=5)
    n_max = int(np.bincount(src.train_labels).min())
    want = cifar.long_tail_counts(n_max, 10)
    assert (only["train"].counts() + only["val"].counts()).tolist() == want
    assert only["test"].counts().tolist() == [50] * 10
    assert len(np.intersect1d(only["train"].ids, only["val"].ids)) == 0
    np.testing.assert_array_equal(only["train"].images, src.train_images[only["train"].ids])
    assert only["train"].targets.shape == (len(only["train"]), 10)
    np.testing.assert_array_equal(only["train"].targets.argmax(1), only["train"].labels)
    folds = cifar.make_splits(src, rho=1, folds=3, seed=5)
    assert len(folds) == 3
    assert sum(f["val"].counts() for f in folds).tolist() == [n_max] * 10


# ------------------------------------------------------------------------------------------
# make_splits: a class or a split that would be empty is an error naming it, the files, the fix
# ------------------------------------------------------------------------------------------


def _source(train_labels, test_labels, name="cifar10", origin="/data/cifar-10-batches-py"):
    tr, te = np.asarray(train_labels), np.asarray(test_labels)
    return cifar.Source(name, cifar.CIFAR10_CLASSES, np.zeros((len(tr), 4, 4, 3), np.uint8), tr,
                        np.zeros((len(te), 4, 4, 3), np.uint8), te, origin=origin)


def test_class_missing_from_the_training_pool_is_named(tmp_path):
    train = np.repeat([c for c in range(10) if c != 3], 6)  # no 'cat'
    with pytest.raises(DataError) as err:
        cifar.make_splits(_source(train, np.arange(10)), rho=1)
    msg = str(err.value)
    assert "training pool" in msg and "3 ('cat')" in msg and "train and val splits" in msg
    assert "data_batch_1" in msg and "/data/cifar-10-batches-py" in msg and "re-extract cifar-10-python.tar.gz" in msg


def test_class_missing_from_the_test_set_is_named():
    with pytest.raises(DataError) as err:
        cifar.make_splits(_source(np.repeat(np.arange(10), 6), np.arange(9)), rho=1)  # no 'truck'
    msg = str(err.value)
    assert "test split" in msg and "9 ('truck')" in msg and "test_batch in '/data/cifar-10-batches-py'" in msg


def test_empty_test_batch_read_from_disk_is_a_data_error(tmp_path):
    folder, _ = write_tiny_cifar(tmp_path, per_batch=20)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"batch_label": b"empty", b"labels": [], b"data": np.zeros((0, 3072), np.uint8),
                     b"filenames": []}, fh, protocol=2)
    src = cifar.load_source("cifar10", str(tmp_path))
    assert src.origin == str(folder) and len(src.test_labels) == 0
    with pytest.raises(DataError) as err:
        cifar.make_splits(src, rho=1)
    msg = str(err.value)
    assert "test split is empty" in msg and "test_batch" in msg and str(folder) in msg


def test_digits_source_names_its_origin_in_errors():
    src = cifar.load_digits_source(50)
    assert src.origin == "scikit-learn's load_digits"
    keep = src.train_labels != 7
    broken = cifar.Source("digits", src.classes, src.train_images[keep], src.train_labels[keep],
                          src.test_images, src.test_labels, origin=src.origin)
    with pytest.raises(DataError, match=r"7 \('7'\).*scikit-learn's load_digits|scikit-learn's load_digits.*7 \('7'\)"):
        cifar.make_splits(broken)


def test_a_split_left_without_a_class_is_a_data_error(monkeypatch):
    src = cifar.load_digits_source(50)
    real = cifar.stratified_split

    def drops_class_2_from_val(labels, val_fraction, seed=0):
        tr, va = real(labels, val_fraction, seed)
        return np.sort(np.concatenate([tr, va[labels[va] == 2]])), va[labels[va] != 2]

    monkeypatch.setattr(cifar, "stratified_split", drops_class_2_from_val)
    with pytest.raises(DataError) as err:
        cifar.make_splits(src, rho=10, val_fraction=0.2)
    msg = str(err.value)
    assert "the val split (rho=10" in msg and "2 ('2')" in msg and "smaller imbalance ratio" in msg


def test_long_tail_of_a_pool_missing_a_class_says_so():
    labels = np.repeat([0, 1, 3], 5)
    with pytest.raises(DataError, match="class 2 has no training images"):
        cifar.long_tail_indices(labels, 1, num_classes=4)
    with pytest.raises(DataError, match="empty"):
        cifar.long_tail_indices(np.array([], np.int64), 1)


# ------------------------------------------------------------------ batch contents checked before a run


def test_label_error_prints_plain_integers(tmp_path):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": np.array([0, 12, 4], np.int64)}, fh)
    with pytest.raises(DataError) as err:
        cifar.read_batch(path)
    msg = str(err.value)
    assert "found 0..12 (1 out of range, first at row 1)" in msg and "np.int64" not in msg
    assert "cifar-10-python.tar.gz" in msg  # the fix


@pytest.mark.parametrize("edit, pattern", [
    (lambda d: d.update({b"labels": [(i % 10) + (12 if i == 5 else 0) for i in range(len(d[b"labels"]))]}),
     r"data_batch_3'?: labels must be integers 0\.\.9, found 0\.\.17 \(1 out of range, first at row 5\)"),
    (lambda d: d.update({b"data": d[b"data"][:, :100]}), r"data_batch_3'?: b'data' has shape \(20, 100\)"),
    (lambda d: d.update({b"labels": [float(v) for v in d[b"labels"]]}), r"data_batch_3'?: b'labels' holds float64"),
    (lambda d: d.pop(b"data"), r"data_batch_3'? has no b'data'"),
])
def test_check_cifar10_reads_every_batch_before_a_run(tmp_path, edit, pattern):
    folder, batches = write_tiny_cifar(tmp_path)
    assert cifar.check_cifar10(tmp_path) == folder  # the sound layout passes
    d = batches["data_batch_3"]
    edit(d)
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump(d, fh, protocol=2)
    with pytest.raises(DataError, match=pattern):
        cifar.check_cifar10(tmp_path)


def test_check_cifar10_finds_a_class_missing_from_the_test_batch(tmp_path):
    folder, batches = write_tiny_cifar(tmp_path)
    t = batches["test_batch"]
    t[b"labels"] = [v if v != 9 else 8 for v in t[b"labels"]]  # no 'truck' left
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(t, fh, protocol=2)
    with pytest.raises(DataError, match=r"test split .* no images of class 9 \('truck'\)"):
        cifar.check_cifar10(tmp_path)


@pytest.mark.parametrize("experiment", ["cifar_fece", "membership_inference"])
def test_a_bad_batch_stops_lfakit_run_before_torch_and_before_a_run_folder(tmp_path, experiment):
    """In a fresh interpreter: the CLI refuses, names the batch and the fix, makes no run folder,
    leaves the data as they were, and has not imported torch by then."""
    import subprocess
    import sys

    folder, batches = write_tiny_cifar(tmp_path / "data")
    d = batches["data_batch_2"]
    d[b"labels"] = [12] + list(d[b"labels"][1:])
    with open(folder / "data_batch_2", "wb") as fh:
        pickle.dump(d, fh, protocol=2)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    results = tmp_path / "results"
    extra = ["-p", "model=resnet18_cifar"] if experiment == "membership_inference" else []
    code = ("import sys, time; t = time.perf_counter(); from lfakit import cli; "
            f"rc = cli.main(['run', {experiment!r}, '-q', '-p', 'dataset=cifar10', '-p', 'data_dir={tmp_path / 'data'}', *{extra!r}]); "
            "print('RC', rc, 'TORCH', 'torch' in sys.modules, 'SECONDS', round(time.perf_counter() - t, 2))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "LFAKIT_RESULTS": str(results)}, timeout=300)
    assert "RC 2 TORCH False" in r.stdout, r.stdout + r.stderr
    assert "data_batch_2" in r.stderr and "labels must be integers 0..9, found 0..12" in r.stderr
    assert "cifar-10-python.tar.gz" in r.stderr  # the fix
    assert not (results / experiment).exists() or not any((results / experiment).iterdir())
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
