"""NIH ChestX-ray14 loader (index, splits, empty-split errors), embedded-default generator,
conversions, the ChestX-ray cache and the dataset."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from lfakit.data import chestxray as cx
from lfakit.data import chestxray_embedded, image_cache
from lfakit.data.datasets import IMAGENET_MEAN, IMAGENET_STD, ArrayImageDataset
from lfakit.data.transforms import clahe
from lfakit.errors import DataError, ParameterError

HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The embedded default exactly as the smoke profile gets it (default arguments, seed 0)."""
    return cx.write_synthetic_nih(tmp_path_factory.mktemp("nih") / "data")


@pytest.fixture(scope="module")
def generated_index(generated) -> pd.DataFrame:
    return cx.load_index(generated)


def _png(path: Path, value: int = 100, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size), value, np.uint8))


def _hand_written_set(root: Path, with_images: bool = True) -> dict:
    """9 patients with 1-3 images each; patients 1-7 on train_val, 8-9 on test."""
    rows, tv, te = [], [], []
    labels = ["Effusion", "No Finding", "Atelectasis|Effusion", "Mass", "Nodule|Mass", "No Finding",
              "Hernia", "Pneumonia", "Cardiomegaly|Edema"]
    for p in range(1, 10):
        for f in range(1 + p % 3):
            name = f"{p:08d}_{f:03d}.png"
            rows.append(f"{name},{labels[p - 1]},{f},{p},{40 + p},M,PA,2500,2048,0.143,0.143,")
            (te if p >= 8 else tv).append(name)
            if with_images:
                _png(root / "images_001" / "images" / name, 10 * p + f)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017.csv").write_text(HEADER_2017 + "\n" + "\n".join(rows) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(tv) + "\n")
    (root / "test_list.txt").write_text("\n".join(te) + "\n")
    return {"train_val": tv, "test": te}


def _assert_patient_disjoint(index: pd.DataFrame) -> None:
    sides = index.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all(), f"patients on two splits: {sides[sides > 1].index.tolist()}"


# ------------------------------------------------------------------------------------------
# generator: layout and format
# ------------------------------------------------------------------------------------------


def test_generator_writes_the_nih_layout_and_csv_format(generated):
    assert (generated / "Data_Entry_2017.csv").is_file()
    pngs = sorted((generated / "images_001" / "images").glob("*.png"))
    assert len(pngs) > 300
    assert all(re.fullmatch(r"\d{8}_\d{3}\.png", p.name) for p in pngs)

    lines = (generated / "Data_Entry_2017.csv").read_text().splitlines()
    assert lines[0] == HEADER_2017
    for line in lines[1:]:
        fields = next(csv.reader([line]))
        assert len(fields) == 12 and fields[-1] == "" and all(f != "" for f in fields[:11]), line
        name, labels, follow_up, pid = fields[:4]
        assert name == f"{int(pid):08d}_{int(follow_up):03d}.png"
        assert labels == "No Finding" or all(lab in cx.CLASSES for lab in labels.split("|"))
    csv_names = {next(csv.reader([line]))[0] for line in lines[1:]}

    tv = (generated / "train_val_list.txt").read_text().split()
    te = (generated / "test_list.txt").read_text().split()
    assert not set(tv) & set(te)
    assert set(tv) | set(te) == csv_names == {p.name for p in pngs}
    # ~80/20 by patient, and no patient on both official lists
    tv_p, te_p = {n[:8] for n in tv}, {n[:8] for n in te}
    assert not tv_p & te_p
    assert 0.15 <= len(te_p) / (len(tv_p) + len(te_p)) <= 0.25
    # several images per patient, follow-ups numbered from 0
    per_patient = pd.Series([n[:8] for n in csv_names]).value_counts()
    assert per_patient.max() >= 4 and per_patient.mean() > 2

    kinds = {"gray8": 0, "rgba": 0, "gray16": 0}
    for p in pngs:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img.ndim == 3 and img.shape[2] == 4:
            kinds["rgba"] += 1
        elif img.dtype == np.uint16:
            kinds["gray16"] += 1
        else:
            assert img.ndim == 2 and img.dtype == np.uint8 and img.shape == (256, 256)
            kinds["gray8"] += 1
    assert kinds["rgba"] >= 1 and kinds["gray16"] >= 1 and kinds["gray8"] > 0.9 * len(pngs)


def test_generator_is_deterministic(tmp_path):
    kw = dict(n_patients=10, images_per_patient=(1, 3), image_size=64, seed=3)
    a = cx.write_synthetic_nih(tmp_path / "a", **kw)
    b = cx.write_synthetic_nih(tmp_path / "b", **kw)
    c = cx.write_synthetic_nih(tmp_path / "c", **{**kw, "seed": 4})

    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_generator_label_prevalence_is_nih_shaped(generated_index):
    prev = generated_index[list(cx.CLASSES)].mean()
    # the most frequent NIH classes stay the most frequent; every class reaches the floor
    assert set(prev.nlargest(3).index) & {"Infiltration", "Effusion", "Atelectasis"}
    assert prev.min() >= 0.02
    no_finding = (generated_index[list(cx.CLASSES)].sum(axis=1) == 0).mean()
    assert 0.3 < no_finding < 0.7
    # co-occurrence: Atelectasis is more frequent among Effusion images than overall
    eff = generated_index["Effusion"] == 1
    assert generated_index.loc[eff, "Atelectasis"].mean() > 1.5 * generated_index["Atelectasis"].mean()


# ------------------------------------------------------------------------------------------
# loader: CSV parsing
# ------------------------------------------------------------------------------------------


def test_loader_reads_the_generated_set(generated, generated_index):
    idx = generated_index
    raw = pd.read_csv(generated / "Data_Entry_2017.csv", index_col=False)  # 12 columns incl. empty
    raw = raw.set_index("Image Index")
    assert len(idx) == len(raw)
    for _, row in idx.sample(40, random_state=0).iterrows():
        want = raw.loc[row.image_id, "Finding Labels"]
        got = [c for c in cx.CLASSES if row[c] == 1]
        assert ("|".join(sorted(got)) or "No Finding") == want
        assert row.patient_id == row.image_id[:8]
        assert row.follow_up == int(row.image_id[9:12])
        assert row.age == raw.loc[row.image_id, "Patient Age"]
        assert Path(row.path).name == row.image_id
    assert set(idx["split"]) == {"train", "val", "test"}
    assert cx.labels_matrix(idx).shape == (len(idx), 14)
    assert cx.labels_matrix(idx).dtype == np.float32


VARIANT_ROWS = [
    ("00000001_000.png", "Cardiomegaly|Emphysema", "0", "1", "58", "M"),
    ("00000001_001.png", "No Finding", "1", "1", "59", "M"),
    ("00000002_000.png", "Pleural_Thickening|Effusion|Hernia", "0", "2", "7", "F"),
]


def _variant_csv(path: Path, form: str) -> Path:
    if form == "2017":
        head, tail, age = HEADER_2017, ",", str
    elif form == "sex":
        head, tail, age = HEADER_2017.replace("Patient Gender", "Patient Sex"), ",", str
    elif form == "v2020":  # no trailing comma, spaced bracket headers
        head = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                "View Position,OriginalImage[Width, Height],OriginalImagePixelSpacing[x, y]")
        tail, age = "", str
    elif form == "age_y":
        head, tail, age = HEADER_2017, ",", lambda a: f"{int(a):03d}Y"
    else:
        raise AssertionError(form)
    lines = [head] + [f"{n},{lab},{f},{p},{age(a)},{s},PA,2682,2749,0.143,0.143{tail}"
                      for n, lab, f, p, a, s in VARIANT_ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("form", ["sex", "v2020", "age_y"])
def test_csv_variants_parse_to_the_same_table(tmp_path, form):
    ref = cx.read_data_entry(_variant_csv(tmp_path / "ref.csv", "2017"))
    got = cx.read_data_entry(_variant_csv(tmp_path / f"{form}.csv", form))
    cols = ["image_id", "patient_id", "follow_up", "age", "sex", *cx.CLASSES]
    pd.testing.assert_frame_equal(ref[cols], got[cols])
    assert ref["age"].tolist() == [58, 59, 7]
    assert ref["patient_id"].tolist() == ["00000001", "00000001", "00000002"]
    assert ref["orig_height"].tolist() == [2749] * 3 and ref["pixel_spacing_y"].tolist() == [0.143] * 3


def test_naive_pandas_misreads_what_read_data_entry_gets_right(tmp_path):
    # header without trailing comma + rows with one: pandas shifts columns, we must not
    path = tmp_path / "mixed.csv"
    head = HEADER_2017.rstrip(",")
    path.write_text(head + "\n" + "00000003_000.png,Mass,0,3,45,F,AP,2500,2048,0.168,0.168,\n")
    naive = pd.read_csv(path)
    assert naive["Finding Labels"].iloc[0] != "Mass"  # misaligned
    df = cx.read_data_entry(path)
    assert df["Mass"].tolist() == [1] and df["age"].tolist() == [45] and df["sex"].tolist() == ["F"]


def test_no_finding_is_all_zero_and_labels_are_multi_hot(tmp_path):
    df = cx.read_data_entry(_variant_csv(tmp_path / "a.csv", "2017"))
    y = cx.labels_matrix(df)
    assert y[1].sum() == 0
    assert y[0].tolist() == [1.0 if c in ("Cardiomegaly", "Emphysema") else 0.0 for c in cx.CLASSES]
    assert y[2].sum() == 3 and y[2, cx.CLASSES.index("Hernia")] == 1


def test_unknown_label_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER_2017 + "\n00000001_000.png,Efusion|Mass,0,1,58,M,PA,1,1,0.1,0.1,\n")
    with pytest.raises(DataError, match=r"Efusion") as err:
        cx.read_data_entry(path)
    assert "Effusion" in str(err.value)  # suggests the close match


def test_wrong_field_count_is_a_data_error(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text(HEADER_2017 + "\n00000001_000.png,Mass,0,1,58,M,PA,1,1,\n")
    with pytest.raises(DataError, match="line 2"):
        cx.read_data_entry(path)


# ------------------------------------------------------------------------------------------
# loader: splits
# ------------------------------------------------------------------------------------------


def test_no_patient_in_two_splits_on_generated_data(generated, generated_index):
    idx = generated_index
    _assert_patient_disjoint(idx)
    te = set((generated / "test_list.txt").read_text().split())
    assert set(idx.loc[idx.split == "test", "image_id"]) == te
    val = idx[idx.split == "val"]
    assert len(val) > 0 and val["patient_id"].nunique() >= 5
    # val is carved from train_val by patient: ~10% of train_val patients
    n_tv_patients = idx.loc[idx.split != "test", "patient_id"].nunique()
    assert 0.07 <= val["patient_id"].nunique() / n_tv_patients <= 0.2
    # another seed gives another (still patient-wise) carve
    other = cx.load_index(generated, seed=1)
    _assert_patient_disjoint(other)
    assert set(other.loc[other.split == "val", "patient_id"]) != set(val["patient_id"])
    pd.testing.assert_frame_equal(cx.load_index(generated), idx)  # deterministic


def test_every_class_has_positives_in_each_split_of_the_default_set(generated_index):
    per_split = generated_index.groupby("split")[list(cx.CLASSES)].sum()
    assert (per_split > 0).all().all(), per_split.T


def test_hand_written_index_is_patient_wise(tmp_path):
    lists = _hand_written_set(tmp_path / "nih")
    for seed in range(4):
        idx = cx.load_index(tmp_path / "nih", val_fraction=0.3, seed=seed)
        _assert_patient_disjoint(idx)
        assert set(idx.loc[idx.split == "test", "image_id"]) == set(lists["test"])
        assert (idx.split == "val").any() and (idx.split == "train").any()
        assert idx.loc[idx.split == "val", "patient_id"].nunique() == 2  # round(0.3 * 7)
    sub = cx.load_index(tmp_path / "nih", max_images=9, seed=0)
    assert 1 <= len(sub) <= 9
    _assert_patient_disjoint(sub)
    # subsampling keeps or drops whole patients
    full = cx.load_index(tmp_path / "nih")
    for pid, n in sub.groupby("patient_id").size().items():
        assert n == (full.patient_id == pid).sum()


def test_patient_on_both_official_lists_is_a_data_error(tmp_path):
    lists = _hand_written_set(tmp_path / "nih")
    moved = lists["train_val"][0]  # patient 1 keeps another image on train_val
    (tmp_path / "nih" / "train_val_list.txt").write_text("\n".join(lists["train_val"][1:]) + "\n")
    (tmp_path / "nih" / "test_list.txt").write_text("\n".join(lists["test"] + [moved]) + "\n")
    with pytest.raises(DataError, match="both"):
        cx.load_index(tmp_path / "nih")


# ------------------------------------------------------------------------------------------
# loader: empty splits are errors naming the split, the file and the fix
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("listed, split", [("test_list.txt", "test"), ("train_val_list.txt", "train and val")])
def test_empty_official_list_is_a_data_error(tmp_path, listed, split):
    _hand_written_set(tmp_path / "nih")
    (tmp_path / "nih" / listed).write_text("\n\n")  # blank lines only
    with pytest.raises(DataError) as err:
        cx.load_index(tmp_path / "nih")
    msg = str(err.value)
    assert str(tmp_path / "nih" / listed) in msg and "is empty" in msg
    assert f"the {split} split would have no images" in msg
    assert "restore it from the NIH ChestX-ray14 download" in msg


def test_max_images_leaving_test_empty_names_the_smallest_value_that_works(tmp_path):
    lists = _hand_written_set(tmp_path / "nih")
    # test keeps patient 8 only (3 images): a small max_images cannot keep a whole test patient
    (tmp_path / "nih" / "test_list.txt").write_text("\n".join(n for n in lists["test"] if n.startswith("00000008")))
    with pytest.raises(DataError) as err:
        cx.load_index(tmp_path / "nih", max_images=6)
    msg = str(err.value)
    assert "max_images=6 leaves the test split empty" in msg
    assert str(tmp_path / "nih" / "test_list.txt") in msg and "the smallest having 3 images" in msg
    need = int(re.search(r"Use max_images >= (\d+)", msg).group(1))
    with pytest.raises(DataError, match="leaves the test split empty"):
        cx.load_index(tmp_path / "nih", max_images=need - 1)
    idx = cx.load_index(tmp_path / "nih", max_images=need)  # the suggested value works
    assert set(idx.loc[idx.split == "test", "patient_id"]) == {"00000008"}


def test_max_images_leaving_val_empty_is_a_data_error(tmp_path):
    _hand_written_set(tmp_path / "nih")
    # max_images=8 keeps 3 train_val patients, each the only positive of one of its findings
    with pytest.raises(DataError) as err:
        cx.load_index(tmp_path / "nih", max_images=8, seed=0)
    msg = str(err.value)
    assert "leaves the val split empty" in msg and str(tmp_path / "nih" / "train_val_list.txt") in msg
    assert "after max_images=8 sampling" in msg and "Raise max_images" in msg
    assert len(cx.load_index(tmp_path / "nih", max_images=9, seed=0)) > 0


def test_one_train_val_patient_cannot_be_carved_into_train_and_val(tmp_path):
    lists = _hand_written_set(tmp_path / "nih")
    (tmp_path / "nih" / "train_val_list.txt").write_text("\n".join(n for n in lists["train_val"] if n.startswith("00000002")))
    with pytest.raises(DataError) as err:
        cx.load_index(tmp_path / "nih")
    msg = str(err.value)
    assert "leaves the val split empty" in msg and "holds 1 patient," in msg
    assert "more patients on train_val_list.txt" in msg
    # without a validation split the same folder loads
    idx = cx.load_index(tmp_path / "nih", val_fraction=0)
    assert set(idx.split) == {"train", "test"}


def test_val_never_takes_every_train_val_patient(tmp_path):
    lists = _hand_written_set(tmp_path / "nih")
    keep = [n for n in lists["train_val"] if n[:8] in ("00000002", "00000006")]  # both No Finding
    (tmp_path / "nih" / "train_val_list.txt").write_text("\n".join(keep))
    for seed in range(4):
        idx = cx.load_index(tmp_path / "nih", val_fraction=0.9, seed=seed)  # round(0.9 * 2) = 2
        assert idx.loc[idx.split == "val", "patient_id"].nunique() == 1
        assert idx.loc[idx.split == "train", "patient_id"].nunique() == 1


def test_split_emptied_by_missing_images_is_a_data_error(tmp_path):
    lists = _hand_written_set(tmp_path / "nih")
    for name in lists["test"]:
        (tmp_path / "nih" / "images_001" / "images" / name).unlink()
    with pytest.raises(DataError) as err:
        cx.load_index(tmp_path / "nih", allow_missing_images=True)
    msg = str(err.value)
    assert "the test split is empty" in msg and "test_list.txt" in msg and lists["test"][0] in msg
    assert "Unpack the missing images_XXX archives" in msg


# ------------------------------------------------------------------------------------------
# loader: bad folders and files
# ------------------------------------------------------------------------------------------


def _assert_layout_help(msg: str) -> None:
    for needle in ("Data_Entry_2017.csv", "train_val_list.txt", "test_list.txt", "images_001",
                   "embedded default", "data_dir", "smoke"):
        assert needle in msg, f"{needle!r} missing from: {msg}"


def test_missing_folder_is_a_data_error_that_explains_the_layout(tmp_path):
    with pytest.raises(DataError) as err:
        cx.load_index(tmp_path / "nope")
    _assert_layout_help(str(err.value))
    assert "does not exist" in str(err.value)


def test_missing_csv_is_a_data_error_that_explains_the_layout(tmp_path):
    _hand_written_set(tmp_path / "nih")
    (tmp_path / "nih" / "Data_Entry_2017.csv").unlink()
    with pytest.raises(DataError, match="lacks Data_Entry_2017.csv") as err:
        cx.load_index(tmp_path / "nih")
    _assert_layout_help(str(err.value))


def test_missing_lists_and_images_are_data_errors(tmp_path):
    _hand_written_set(tmp_path / "nih", with_images=False)
    with pytest.raises(DataError, match="No PNG images") as err:
        cx.load_index(tmp_path / "nih")
    _assert_layout_help(str(err.value))
    (tmp_path / "nih" / "test_list.txt").unlink()
    with pytest.raises(DataError, match="lacks test_list.txt"):
        cx.load_index(tmp_path / "nih")


def test_listed_images_missing_on_disk_are_named(tmp_path):
    lists = _hand_written_set(tmp_path / "nih")
    gone = lists["test"][-1]
    (tmp_path / "nih" / "images_001" / "images" / gone).unlink()
    with pytest.raises(DataError, match=re.escape(gone)):
        cx.load_index(tmp_path / "nih")
    idx = cx.load_index(tmp_path / "nih", allow_missing_images=True)
    assert gone not in set(idx.image_id)


def test_image_folder_variants_are_found(tmp_path):
    _png(tmp_path / "a" / "images" / "00000001_000.png")
    _png(tmp_path / "a" / "images_002" / "images" / "00000002_000.png")
    _png(tmp_path / "a" / "images_003" / "00000003_000.png")  # flat archive folder
    found = cx.find_images(tmp_path / "a")
    assert sorted(found) == ["00000001_000.png", "00000002_000.png", "00000003_000.png"]


def test_corrupt_png_is_a_data_error_naming_the_file(tmp_path):
    ok = tmp_path / "ok.png"
    _png(ok)
    bad = tmp_path / "00000042_000.png"
    bad.write_bytes(ok.read_bytes()[: len(ok.read_bytes()) // 2])  # truncated
    with pytest.raises(DataError, match="00000042_000.png"):
        cx.read_image(bad)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image")
    with pytest.raises(DataError, match="junk.png"):
        cx.read_image(junk)
    with pytest.raises(DataError, match="00000042_000.png"):
        cx.build_cache(["00000042_000.png"], {"00000042_000.png": bad}, 16, tmp_path / "c",
                       progress=False)


# ------------------------------------------------------------------------------------------
# conversion to 8-bit grayscale
# ------------------------------------------------------------------------------------------


def test_rgba_and_rgb_to_gray():
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], np.uint8)
    want = np.rint(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    rgba = np.dstack([rgb, np.full((2, 2), 7, np.uint8)])  # alpha ignored
    for arr in (rgb, rgba):
        got = cx.to_uint8_gray(arr)
        assert got.dtype == np.uint8 and got.shape == (2, 2)
        assert np.abs(got.astype(int) - want).max() <= 1
    assert np.array_equal(cx.to_uint8_gray(rgba[..., ::-1][..., [1, 2, 3, 0]], channel_order="bgr"),
                          cx.to_uint8_gray(rgba))  # BGRA as OpenCV decodes it
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(cx.to_uint8_gray(np.dstack([gray] * 3 + [np.full_like(gray, 255)])), gray)
    assert np.array_equal(cx.to_uint8_gray(np.dstack([gray, np.zeros_like(gray)])), gray)  # LA


def test_16bit_and_float_to_gray_scale_by_range_not_clip():
    g16 = np.array([[0, 257, 1000], [32768, 65280, 65535]], np.uint16)
    got = cx.to_uint8_gray(g16)
    assert got.dtype == np.uint8
    assert got.tolist() == [[0, 1, 4], [128, 254, 255]]  # clipping would give 255 for all > 255
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(cx.to_uint8_gray(gray.astype(np.uint16) * 257), gray)
    assert cx.to_uint8_gray(np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 128, 255]]


def test_read_image_converts_rgba_and_16bit_files(tmp_path):
    gray = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([gray, gray, gray, np.full_like(gray, 255)]))
    cv2.imwrite(str(tmp_path / "g16.png"), gray.astype(np.uint16) * 257)
    for name in ("rgba.png", "g16.png"):
        got = cx.read_image(tmp_path / name)
        assert got.dtype == np.uint8 and np.array_equal(got, gray), name


# ------------------------------------------------------------------------------------------
# CLAHE and the pre-resized cache
# ------------------------------------------------------------------------------------------


def test_clahe_matches_opencv_and_validates_arguments():
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) * 80 + 60).astype(np.uint8)
    want = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(img)
    assert np.array_equal(clahe(img, 2.0, 8), want)
    assert clahe(img, 2.0, 8).std() > img.std()
    for bad in (dict(clip_limit=-1.0), dict(clip_limit=float("nan")), dict(clip_limit="2"),
                dict(tile_grid=0), dict(tile_grid=(8,)), dict(tile_grid=2.5)):
        with pytest.raises(ParameterError):
            clahe(img, **{"clip_limit": 2.0, "tile_grid": 8, **bad})
    with pytest.raises(ParameterError, match="uint8"):
        clahe(img.astype(np.float32), 2.0, 8)


def test_cache_is_built_once_reused_and_keyed_on_clahe(generated, generated_index, tmp_path, monkeypatch):
    idx = generated_index.head(24)
    paths = dict(zip(idx.image_id, idx.path))
    calls = []
    real_read = image_cache.read_image
    monkeypatch.setattr(image_cache, "read_image", lambda p, mode: calls.append(p) or real_read(p, mode))

    first = cx.build_cache(idx, paths, 32, tmp_path, clahe_clip=2.0, clahe_grid=8, progress=False)
    assert first.shape == (24, 32, 32) and first.dtype == np.uint8 and len(calls) == 24
    want = cx.preprocess_image(cx.read_image(idx.path.iloc[5]), 32, 2.0, 8)
    assert np.array_equal(first[5], want)
    files = sorted(p.name for p in (tmp_path / "chestxray").iterdir())
    assert len(files) == 2 and {Path(f).suffix for f in files} == {".npy", ".json"}  # no tmp left

    def boom(path, mode):
        raise AssertionError("decoded although the cache exists")

    monkeypatch.setattr(image_cache, "read_image", boom)
    again = cx.build_cache(idx, paths, 32, tmp_path, clahe_clip=2.0, clahe_grid=8, progress=False)
    assert isinstance(again, np.memmap) and again.mode == "r"
    assert np.array_equal(np.asarray(again), np.asarray(first))
    with pytest.raises(AssertionError, match="decoded"):  # new CLAHE params -> new key -> rebuild
        cx.build_cache(idx, paths, 32, tmp_path, clahe_clip=3.0, clahe_grid=8, progress=False)
    with pytest.raises(AssertionError, match="decoded"):
        cx.build_cache(idx, paths, 32, tmp_path, clahe_clip=2.0, clahe_grid=4, progress=False)

    monkeypatch.setattr(image_cache, "read_image", real_read)
    plain = cx.build_cache(idx, paths, 32, tmp_path, clahe_clip=0, progress=False)
    assert not np.array_equal(np.asarray(plain), np.asarray(first))
    assert len(list((tmp_path / "chestxray").glob("*.npy"))) == 2  # the failed builds left nothing
    assert not list((tmp_path / "chestxray").glob(".*"))  # nor any temporary file


def test_chestxray_cache_is_the_generic_cache_with_the_clahe_preprocessing(generated_index, tmp_path):
    idx = generated_index.head(6)
    via_chest = cx.build_cache(idx, dict(zip(idx.image_id, idx.path)), 40, tmp_path, clahe_clip=1.5,
                               clahe_grid=(4, 6), progress=False)
    preprocess, key = cx.cache_preprocessing(1.5, (4, 6))
    generic = image_cache.build_image_cache(list(idx.path), 40, "L", preprocess, key, tmp_path / "g",
                                            progress=False)
    assert np.array_equal(np.asarray(via_chest), np.asarray(generic))
    for i, p in enumerate(idx.path):
        assert np.array_equal(generic[i], cx.load_preprocessed(p, 40, 1.5, (4, 6)))
    # keyed on image names, not on where the files are: the chest cache is reused after a move
    assert image_cache.image_cache_key(list(idx.path), 40, "L", key, ids=list(idx.image_id)) == \
        Path(via_chest.filename).stem


def test_load_chestxray_embedded_default_and_reuse(tmp_path, monkeypatch):
    kw = dict(n_patients=24, images_per_patient=(1, 3), image_size=64)
    splits = cx.load_chestxray("", tmp_path, image_size=32, progress=False, embedded_kwargs=kw)
    assert set(splits) == {"train", "val", "test"}
    roots = list((tmp_path / "embedded" / "chestxray_nih").iterdir())
    assert len(roots) == 1 and (roots[0] / "Data_Entry_2017.csv").is_file()
    seen = set()
    for name, s in splits.items():
        assert s.images.dtype == np.uint8 and s.images.shape == (len(s), 32, 32)
        assert s.targets.dtype == np.float32 and s.targets.shape == (len(s), 14)
        assert len(s.image_ids) == len(s.patient_ids) == len(s) > 0
        assert not seen & set(s.patient_ids)
        seen |= set(s.patient_ids)
    monkeypatch.setattr(chestxray_embedded, "write_synthetic_nih", lambda *a, **k: pytest.fail("regenerated"))
    monkeypatch.setattr(image_cache, "read_image", lambda *a: pytest.fail("re-decoded"))
    again = cx.load_chestxray(None, tmp_path, image_size=32, progress=False, embedded_kwargs=kw)
    for name in splits:
        assert np.array_equal(np.asarray(again[name].images), np.asarray(splits[name].images))
        assert again[name].image_ids == splits[name].image_ids
    with pytest.raises(ParameterError, match="n_patient"):
        cx.ensure_embedded_default(tmp_path, n_patient=3)


def test_generated_set_has_learnable_signal(generated, tmp_path):
    """Logistic regression on 32x32 CLAHE pixels, trained on train, beats chance on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    s = cx.load_chestxray(generated, tmp_path, image_size=32, progress=False)
    xtr = s["train"].images.reshape(len(s["train"]), -1) / 255.0
    xte = s["test"].images.reshape(len(s["test"]), -1) / 255.0
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    aucs = []
    for c in range(14):
        model = LogisticRegression(C=0.05, max_iter=3000).fit((xtr - mu) / sd, s["train"].targets[:, c])
        aucs.append(roc_auc_score(s["test"].targets[:, c], model.decision_function((xte - mu) / sd)))
    aucs = np.array(aucs)
    assert (aucs > 0.65).sum() >= 10, dict(zip(cx.CLASSES, aucs.round(3)))
    assert aucs.mean() > 0.72, aucs.round(3)


def test_patient_leak_would_inflate_scores(generated_index):
    """Images of one patient share anatomy: a nearest neighbour finds the same patient."""
    idx = generated_index[generated_index.follow_up <= 1].groupby("patient_id").filter(lambda g: len(g) == 2)
    imgs = np.stack([cv2.resize(cx.read_image(p), (32, 32), interpolation=cv2.INTER_AREA)
                     for p in idx.path]).reshape(len(idx), -1).astype(np.float32)
    imgs -= imgs.mean(1, keepdims=True)
    d = ((imgs[:, None] - imgs[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    same = idx.patient_id.to_numpy()[d.argmin(1)] == idx.patient_id.to_numpy()
    assert same.mean() > 0.5  # chance is about 1 / number of patients


# ------------------------------------------------------------------------------------------
# torch dataset
# ------------------------------------------------------------------------------------------


def test_array_image_dataset_normalises_and_replicates_channels():
    imgs = np.stack([np.full((8, 8), v, np.uint8) for v in (0, 128, 255)])
    y = np.eye(3, dtype=np.float64)
    ds = ArrayImageDataset(imgs, y, channels=3)
    x, t, i = ds[1]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and t.dtype == torch.float32 and i == 1
    for ch in range(3):
        assert torch.allclose(x[ch], torch.full((8, 8), (128 / 255 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]))
    assert t.tolist() == [0.0, 1.0, 0.0]
    x1, _, _ = ArrayImageDataset(imgs, y, channels=1)[2]
    assert x1.shape == (1, 8, 8)
    assert torch.allclose(x1, torch.full((1, 8, 8), (1 - np.mean(IMAGENET_MEAN)) / np.mean(IMAGENET_STD)))
    with pytest.raises(ParameterError):
        ArrayImageDataset(imgs.astype(np.float32), y)
    with pytest.raises(ParameterError):
        ArrayImageDataset(imgs, y[:2])
    with pytest.raises(ParameterError):
        ArrayImageDataset(imgs, y, channels=2)


def test_array_image_dataset_augmentation_is_seeded():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(6, 20, 20), dtype=np.uint8)
    y = np.zeros((6, 14), np.float32)
    plain = ArrayImageDataset(imgs, y)
    aug = ArrayImageDataset(imgs, y, augment=True, max_shift=0.1)

    def run(ds):
        return torch.stack([ds[i][0] for i in range(len(ds)) for _ in range(3)])

    torch.manual_seed(5)
    a = run(aug)
    torch.manual_seed(5)
    b = run(aug)
    torch.manual_seed(6)
    c = run(aug)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, run(plain).clone())  # augmentation changed something
    torch.manual_seed(0)
    p1 = run(plain)
    torch.manual_seed(1)
    assert torch.equal(p1, run(plain))  # off by default: no randomness
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(aug.get(2, g1)[0], aug.get(2, g2)[0])
    # works through a DataLoader over a memmap-like array
    loader = torch.utils.data.DataLoader(aug, batch_size=4, shuffle=False, num_workers=0)
    xb, yb, ib = next(iter(loader))
    assert xb.shape == (4, 3, 20, 20) and yb.shape == (4, 14) and ib.tolist() == [0, 1, 2, 3]
