"""KonIQ-10k loader on small folders written in the real on-disk layout (both CSVs, both image
folders): targets on one scale from either CSV, splits, and every bad input named by file and row."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from lfakit.data import koniq
from lfakit.errors import DataError, ParameterError

N = 20


def _table(seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 30, size=(N, 5))
    counts[:, 2] += 1  # every image has ratings
    total = counts.sum(1)
    mos = counts @ np.arange(1, 6) / total
    sd = np.sqrt(counts @ (np.arange(1, 6) ** 2) / total - mos**2)
    z = np.clip((mos - 1) / 4 * 100 + rng.normal(0, 2, N), 0, 100)  # a stand-in for the rescaled z-score
    t = pd.DataFrame({"image_name": [f"{1000 + i}.jpg" for i in range(N)]})
    for k in range(5):
        t[f"c{k + 1}"] = counts[:, k]
    t["c_total"], t["sd"], t["mos"], t["z"] = total, sd, mos, z
    t["set"] = ["training"] * 12 + ["validation"] * 3 + ["test"] * 5
    return t


def write_koniq(root, kind="sets", folder="512x384", table=None):
    """A KonIQ-format folder: one of the two CSVs and the JPEGs in ``folder``."""
    t = _table() if table is None else table
    root.mkdir(parents=True, exist_ok=True)
    w, h = map(int, folder.split("x"))
    (root / folder).mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for name in t["image_name"]:
        img = rng.integers(0, 255, size=(h // 8, w // 8, 3), dtype=np.uint8)
        cv2.imwrite(str(root / folder / name), cv2.resize(img, (w, h)))
    base = t[["image_name", "c1", "c2", "c3", "c4", "c5", "c_total"]].copy()
    if kind == "sets":
        base["MOS"], base["SD"], base["set"] = t["z"], t["sd"], t["set"]
        base.to_csv(root / koniq.SETS_CSV, index=False)
    else:
        base["MOS"], base["SD"], base["MOS_zscore"] = t["mos"], t["sd"], t["z"]
        base.to_csv(root / koniq.SCORES_CSV, index=False)
    return root


@pytest.mark.parametrize("scale", koniq.MOS_SCALES)
def test_both_csv_kinds_give_the_same_targets_on_the_chosen_scale(tmp_path, scale):
    a = koniq.load_index(write_koniq(tmp_path / "a", "sets"), scale).table.set_index("image_name")
    b = koniq.load_index(write_koniq(tmp_path / "b", "scores"), scale).table.set_index("image_name")
    assert a.index.tolist() == b.index.tolist()
    np.testing.assert_allclose(a["mos"], b.loc[a.index, "mos"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(a["sd"], b.loc[a.index, "sd"], rtol=0, atol=1e-9)
    t = _table()
    want = t["mos"] if scale == "1-5" else t["z"]
    np.testing.assert_allclose(a["mos"].to_numpy(), want.to_numpy(), atol=1e-9)
    assert a["sd"].to_numpy() == pytest.approx(t["sd"].to_numpy() * (1 if scale == "1-5" else 25))


def test_official_split_and_seeded_split(tmp_path):
    a = koniq.load_index(write_koniq(tmp_path / "a", "sets"))
    assert a.official_split and [len(a.split(s)) for s in koniq.SPLITS] == [12, 3, 5]
    b1 = koniq.load_index(write_koniq(tmp_path / "b", "scores"), seed=3)
    b2 = koniq.load_index(tmp_path / "b", seed=3)
    b3 = koniq.load_index(tmp_path / "b", seed=4)
    assert not b1.official_split and [len(b1.split(s)) for s in koniq.SPLITS] == [14, 2, 4]  # 70/10/20
    assert b1.table["split"].tolist() == b2.table["split"].tolist() != b3.table["split"].tolist()


@pytest.mark.parametrize("folder", koniq.IMAGE_DIRS)
def test_either_image_folder_through_the_rgb_cache(tmp_path, folder):
    root = write_koniq(tmp_path / "k", "sets", folder)
    splits = koniq.load_koniq(root, cache_dir=tmp_path / "cache", image_size=(48, 64), progress=False)
    assert {s: v.images.shape for s, v in splits.items()} == {"train": (12, 48, 64, 3), "val": (3, 48, 64, 3),
                                                              "test": (5, 48, 64, 3)}
    assert splits["test"].images.dtype == np.uint8 and len(splits["test"].mos) == 5
    t = _table().set_index("image_name")
    assert splits["val"].mos == pytest.approx(t.loc[splits["val"].image_names, "mos"].to_numpy())
    # the rows are the listed images: compare one with a direct decode + resize
    name = splits["train"].image_names[2]
    ref = cv2.cvtColor(cv2.imread(str(root / folder / name)), cv2.COLOR_BGR2RGB)
    ref = cv2.resize(ref, (64, 48), interpolation=cv2.INTER_AREA)
    assert np.abs(splits["train"].images[2].astype(int) - ref.astype(int)).max() <= 1


def _broken(tmp_path, edit, kind="sets"):
    root = write_koniq(tmp_path / "k", kind)
    csv = root / (koniq.SETS_CSV if kind == "sets" else koniq.SCORES_CSV)
    df = pd.read_csv(csv)
    df = edit(df, root)
    df.to_csv(csv, index=False)
    return root


@pytest.mark.parametrize("edit, message", [
    (lambda d, r: d.drop(columns=["MOS"]), r"koniq10k_distributions_sets.csv lacks the column\(s\) 'MOS'"),
    (lambda d, r: d.drop(columns=["set"]), r"lacks the column\(s\) 'set'"),
    (lambda d, r: pd.concat([d, d.iloc[[4]]]), r"an image listed twice in column 'image_name': row 6 \(1004.jpg"),
    (lambda d, r: d.assign(MOS=d["MOS"].where(d.index != 7, 140.0)), r"MOS outside its scale 0-100.*row 9 \(1007.jpg: 140.0\)"),
    (lambda d, r: d.assign(set=d["set"].where(d.index != 2, "train")), r"unknown set.*row 4 \(1002.jpg: 'train'\)"),
    (lambda d, r: d.assign(SD=d["SD"].where(d.index != 0, -1.0)), r"opinion SD outside.*row 2 \(1000.jpg"),
    (lambda d, r: d.assign(c_total=d["c_total"] + 1), r"do not add up to c_total"),
    (lambda d, r: d.assign(set="training"), r"the val split is empty"),
])
def test_bad_csv_names_the_file_and_the_row(tmp_path, edit, message):
    with pytest.raises(DataError, match=message):
        koniq.load_index(_broken(tmp_path, edit))


def test_missing_image_and_missing_layout(tmp_path):
    root = write_koniq(tmp_path / "k", "scores")
    (root / "512x384" / "1011.jpg").unlink()
    with pytest.raises(DataError, match=r"1 listed image\(s\) are not in .*512x384/: row 13 \(1011.jpg\)"):
        koniq.load_index(root)
    with pytest.raises(DataError, match="holds neither"):
        koniq.load_index(tmp_path / "k" / "512x384")
    with pytest.raises(DataError, match="does not exist"):
        koniq.load_index(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no image folder 1024x768"):
        koniq.load_index(root, image_dir="1024x768")
    with pytest.raises(ParameterError, match="mos_scale"):
        koniq.load_index(root, mos_scale="0-1")


def test_corrupt_jpeg_is_named_when_the_cache_is_built(tmp_path):
    root = write_koniq(tmp_path / "k", "sets")
    bad = root / "512x384" / "1005.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="1005.jpg"):
        koniq.load_koniq(root, cache_dir=tmp_path / "cache", image_size=32, progress=False)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing half-written
