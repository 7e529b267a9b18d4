"""The embedded KonIQ-10k default: written in the real layout (the published sets CSV's fractions,
sample SD and number format; see tests/test_data_koniq.py for that file's source) and read by the
real loader, with scores that fall with the distortion level, disjoint windows as contents, a
content-grouped split, byte-identical output for a seed, no download machinery, and a cache folder
that is written once and atomically."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lfakit.data import koniq
from lfakit.data import koniq_embedded as ke
from lfakit.errors import DataError, ParameterError

SMALL = {"photos": ("astronaut", "camera", "coins"), "levels": 2, "grid": 1}  # 3 contents, 11 + 9 + 9 images


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory):
    return ke.embedded_koniq_dir(tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="module")
def tables(default_dir):
    sets = pd.read_csv(default_dir / koniq.SETS_CSV)
    meta = pd.read_csv(default_dir / ke.META_CSV)
    return sets, meta


def test_default_folder_loads_through_the_real_loader(default_dir, tables, tmp_path):
    sets, meta = tables
    assert default_dir.parent.name == "koniq_embedded"
    idx = koniq.load_index(default_dir, "1-5")
    assert idx.official_split and idx.csv.name == koniq.SETS_CSV and idx.image_dir.name == "512x384"
    assert len(idx.table) == len(meta) == 1284  # 8 colour photos x 4 windows x 21 + 9 gray photos x 4 x 17
    splits = koniq.load_koniq(default_dir, cache_dir=tmp_path, image_size=(48, 64), progress=False)
    want = {s: int((meta["set"] == name).sum()) for name, s in koniq.SET_TO_SPLIT.items()}
    assert {s: len(v.mos) for s, v in splits.items()} == want
    assert splits["test"].images.shape == (want["test"], 48, 64, 3) and splits["test"].images.dtype == np.uint8
    # the 0-100 scale is the linear rescale of the 1-5 MOS
    z = koniq.load_index(default_dir, "0-100").table.set_index("image_name")["mos"]
    one = idx.table.set_index("image_name")["mos"]
    np.testing.assert_allclose(z.loc[one.index], 25 * (one - 1), atol=1e-9)
    with Image.open(default_dir / "512x384" / sets["image_name"][0]) as im:
        assert im.size == (512, 384) and im.format == "JPEG"


def test_mos_falls_with_the_level_for_every_type(tables):
    sets, meta = tables
    mos = sets.set_index("image_name")["MOS"].loc[meta["image_name"]].to_numpy() / 25 + 1
    means = pd.Series(mos).groupby([meta["type"], meta["level"]]).mean()
    assert set(meta["type"]) == {"ref", *ke.TYPES}
    for kind in ke.TYPES:
        m = means.loc[kind].sort_index()
        assert m.index.tolist() == [1, 2, 3, 4], kind
        assert (np.diff(m.to_numpy()) < 0).all(), (kind, m.round(2).tolist())
        assert means.loc[("ref", 0)] > m.loc[1], kind
    # latent quality follows the formula up to the per-image offset
    lat = meta.set_index("image_name")["latent"]
    drop = meta["q_ref"].to_numpy() - lat.to_numpy()
    t = meta["level"].to_numpy() / 4
    expected = np.array([0.0 if k == "ref" else ke.SEVERITY[k] * tt ** ke.GAMMA[k] for k, tt in zip(meta["type"], t)])
    assert np.abs(drop - expected).max() < 6 * ke.SIGMA_IMG
    assert abs(np.std(drop - expected) - ke.SIGMA_IMG) < 0.05


def test_fractions_sum_to_one_and_give_the_csv_mos_and_sample_sd(default_dir, tables):
    """As the published sets CSV: c1..c5 are fractions of c_total ratings (whole counts once
    multiplied back), SD is the sample SD (n - 1), every number at Python 2's 12 digits."""
    sets, _ = tables
    f = sets[koniq.RATINGS].to_numpy()
    assert (sets["c_total"] == 25).all() and np.abs(f.sum(1) - 1).max() < 1e-11
    c = f * 25
    np.testing.assert_allclose(c, np.round(c), atol=1e-9)
    assert koniq.rating_kind(default_dir / koniq.SETS_CSV, sets)[0] == "fractions"
    mos = c @ np.arange(1, 6) / 25
    np.testing.assert_allclose(mos, sets["MOS"] / 25 + 1, atol=1e-9)
    sd = np.sqrt((c * (np.arange(1, 6)[None, :] - mos[:, None]) ** 2).sum(1) / 24)
    np.testing.assert_allclose(sd, sets["SD"], atol=1e-11)  # ddof = 1, as published
    line = (default_dir / koniq.SETS_CSV).read_text().splitlines()[1].split(",")
    assert all("." in v and len(v.replace(".", "").lstrip("0")) <= 12 for v in line[1:6] + line[7:9])


def test_split_is_by_content_and_every_set_is_filled(tables):
    sets, meta = tables
    assert (sets["image_name"] == meta["image_name"]).all() and (sets["set"] == meta["set"]).all()
    per_content = meta.groupby("content")["set"].nunique()
    assert (per_content == 1).all()
    contents = meta.drop_duplicates("content")["set"].value_counts()
    assert contents.to_dict() == {"training": 47, "validation": 7, "test": 14}
    assert (meta.groupby("photo")["content"].nunique() == 4).all()
    # gray photos have no desaturation images, colour photos all 21
    n = meta.groupby("content").size()
    colour = meta.groupby("content")["colour"].first()
    assert set(n[colour == 1]) == {21} and set(n[colour == 0]) == {17}
    assert not ((meta["type"] == "desat") & (meta["colour"] == 0)).any()


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_scores(tmp_path):
    a = _files(ke.write_embedded(tmp_path / "a", seed=3, **SMALL))
    b = _files(ke.write_embedded(tmp_path / "b", seed=3, **SMALL))
    c = ke.write_embedded(tmp_path / "c", seed=4, **SMALL)
    assert len(a) == 29 + 2 and a == b
    mos_a = pd.read_csv(tmp_path / "a" / koniq.SETS_CSV)["MOS"]
    mos_c = pd.read_csv(c / koniq.SETS_CSV)["MOS"]
    assert len(mos_a) == len(mos_c) == 29 and not np.array_equal(mos_a, mos_c)


def test_adding_a_photo_leaves_the_other_images_unchanged(tmp_path):
    a = _files(ke.write_embedded(tmp_path / "a", **SMALL))
    b = _files(ke.write_embedded(tmp_path / "b", photos=(*SMALL["photos"], "moon"), levels=2, grid=1))
    shared = [k for k in a if k.startswith("512x384/")]
    assert shared and all(a[k] == b[k] for k in shared)


def test_generation_never_imports_pooch(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from lfakit.data import koniq_embedded as ke
        ke.write_embedded({str(tmp_path / "k")!r}, photos=("astronaut", "camera", "coins"), levels=1, raters=5)
        print("pooch" in sys.modules, "skimage.data" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
    assert (tmp_path / "k" / koniq.SETS_CSV).is_file()


def test_cache_folder_is_written_once(tmp_path, capsys):
    first = ke.embedded_koniq_dir(tmp_path, **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    assert first.parent == tmp_path / "koniq_embedded" and (first / "generator.json").is_file()
    again = ke.embedded_koniq_dir(tmp_path, **SMALL)
    assert again == first and {p: p.stat().st_mtime_ns for p in again.rglob("*")} == stamps
    other = ke.embedded_koniq_dir(tmp_path, seed=1, **SMALL)
    folders = sorted(p.name for p in (tmp_path / "koniq_embedded").iterdir())
    assert other != first and folders == sorted([first.name, other.name])
    assert capsys.readouterr().out == ""  # silent by default
    with pytest.raises(ParameterError, match="unknown option.*'level'"):
        ke.embedded_koniq_dir(tmp_path, level=3)


def test_interrupted_generation_leaves_no_folder(tmp_path, monkeypatch):
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return args[0]

    monkeypatch.setattr(ke, "_distort", failing)
    with pytest.raises(KeyboardInterrupt):
        ke.embedded_koniq_dir(tmp_path, **SMALL)
    assert list((tmp_path / "koniq_embedded").iterdir()) == []


def test_missing_photo_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(ke.PHOTOS, "lost", "lost_photo.png")
    with pytest.raises(DataError, match=r"scikit-image 0\.26\.\d+ has no sample photo lost_photo\.png.*"
                                        r"Install scikit-image 0\.26"):
        ke.embedded_koniq_dir(tmp_path, photos=("astronaut", "camera", "lost"), levels=1)
    assert not (tmp_path / "koniq_embedded").exists() or not list((tmp_path / "koniq_embedded").iterdir())
    monkeypatch.setattr(ke, "sample_photo_dir", lambda: tmp_path / "empty")
    with pytest.raises(DataError, match=r"no sample photo astronaut\.png"):
        ke.write_embedded(tmp_path / "k", **SMALL)
    assert not (tmp_path / "k").exists()


def test_the_windows_of_a_photo_are_disjoint_4_3_tiles_of_its_largest_centred_window(tables):
    _, meta = tables
    boxes = meta.drop_duplicates("content")
    for photo, b in boxes.groupby("photo"):
        assert len(b) == 4
        w, h = b["window_w"].to_numpy(), b["window_h"].to_numpy()
        assert (w == w[0]).all() and (h == h[0]).all() and abs(w[0] / h[0] - 4 / 3) < 0.02, photo
        x, y = b["window_x"].to_numpy(), b["window_y"].to_numpy()
        for i in range(4):
            for j in range(i + 1, 4):  # no two windows share a pixel
                assert x[i] + w[i] <= x[j] or x[j] + w[j] <= x[i] or y[i] + h[i] <= y[j] or y[j] + h[j] <= y[i], photo
    assert ke._windows((512, 512), 2) == [(0, 64, 256, 192), (256, 64, 256, 192), (0, 256, 256, 192), (256, 256, 256, 192)]
