"""CIFAR-10 python-batches loader, CIFAR-10-LT profile, digits default, splits and k-fold."""

from __future__ import annotations

import pickle

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


# int(5000 * (1/rho)^(i/9)), i = 0..9: the CIFAR-10-LT class sizes of Cao et al. (rho = 100 as
# listed in the kit's DATA.md; rho = 10 and 50 written out by hand from the same formula)
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
