"""KADID-10k loader and its embedded default, on small folders written in the published layout.

The fixtures are shaped like the published release (``kadid10k.zip``), as read in
chaofengc/IQA-PyTorch: ``scripts/process_kadid10k.py`` (reads ``dmos.csv`` with ``csv.reader``,
header skipped, columns dist name, ref name, dmos, ``std``) and the verbatim string copy it wrote,
``pyiqa/data/meta_info/meta_info_KADID10kDataset.txt`` / ``meta_info_KADID10kDataset.csv``:

* ``dmos.csv``: header ``dist_img,ref_img,dmos,var``, ``\\n`` line ends, no quoting; one row per
  distorted image ordered by reference, type, level; ``dmos`` at most 2 decimals and ``var`` at
  most 3, no trailing zeros (``I01_01_01.png,I01.png,4.57,0.496``, ``I01_01_05.png,I01.png,1.1,0.3``,
  ``I01_05_01.png,I01.png,4,0.856``, ``I02_02_05.png,I02.png,1,0``: published rows);
  ``var`` is the ratings' population SD (``1.1, 0.3`` = 27 ones and 3 twos), see
  :mod:`lfakit.data.kadid`;
* ``images/``: 512 x 384 PNGs, the references ``I01.png`` and the distorted ``I01_01_01.png``
  side by side.

The image contents here are random pixels (hand-written); only names, sizes and CSV text follow
the release.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lfakit.data import kadid
from lfakit.data import kadid_embedded as kem
from lfakit.data import koniq_embedded
from lfakit.errors import DataError, ParameterError

HEADER = "dist_img,ref_img,dmos,var"
# published rows (meta_info_KADID10kDataset.csv, columns reordered back to dmos.csv's)
PUBLISHED = [
    ("I01_01_01.png", "I01.png", "4.57", "0.496"),
    ("I01_01_02.png", "I01.png", "4.33", "0.869"),
    ("I01_01_03.png", "I01.png", "2.67", "0.789"),
    ("I01_01_04.png", "I01.png", "1.67", "0.596"),
    ("I01_01_05.png", "I01.png", "1.1", "0.3"),
    ("I01_05_01.png", "I01.png", "4", "0.856"),
    ("I01_20_05.png", "I01.png", "3.23", "1.542"),
    ("I02_02_05.png", "I02.png", "1", "0"),
    ("I02_10_04.png", "I02.png", "2.6", "1.281"),
    ("I02_25_05.png", "I02.png", "3.33", "0.699"),
]


def _png(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)).save(path, "PNG")


def write_folder(root, rows=PUBLISHED, header=HEADER, images=None):
    """A KADID-10k folder in the published layout: dmos.csv and images/ with the references and
    every listed image (``images``: the names to write, default all)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "dmos.csv").write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    names = images if images is not None else sorted({r[0] for r in rows} | {r[1] for r in rows})
    for i, n in enumerate(names):
        _png(root / "images" / n, i)
    return root


def test_the_fixture_is_written_like_the_published_file(tmp_path):
    root = write_folder(tmp_path / "kadid10k")
    text = (root / "dmos.csv").read_text()
    assert text.startswith("dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.57,0.496\n")
    assert "\r" not in text and '"' not in text
    for _, _, d, v in PUBLISHED:
        assert re.fullmatch(r"[1-5](\.\d{0,1}[1-9])?", d) and re.fullmatch(r"[0-2](\.\d{0,2}[1-9])?", v)
    with Image.open(root / "images" / "I01.png") as im:
        assert im.size == (512, 384) and im.format == "PNG"


def test_read_index_gives_dmos_and_the_var_column_as_the_sd(tmp_path):
    root = write_folder(tmp_path)
    t = kadid.read_index(root)
    assert list(t.columns) == ["image_name", "mos", "sd", "ref_img", "type", "level", "row"]
    assert t["image_name"].tolist() == [r[0] for r in PUBLISHED]  # the CSV's order; references have no row
    np.testing.assert_array_equal(t["mos"], [float(r[2]) for r in PUBLISHED])
    np.testing.assert_array_equal(t["sd"], [float(r[3]) for r in PUBLISHED])  # the SD as it stands, not sqrt(var)
    assert t["ref_img"].tolist() == [r[1] for r in PUBLISHED]
    assert t["type"].tolist()[:6] == [1, 1, 1, 1, 1, 5] and t["level"].tolist()[:6] == [1, 2, 3, 4, 5, 1]
    assert t["row"].tolist() == list(range(2, 2 + len(PUBLISHED)))
    # check_folder is the same checks on the whole folder
    pd.testing.assert_frame_equal(kadid.check_folder(root), t)
    idx = kadid.load_index(root)
    assert idx.csv == root / "dmos.csv" and idx.image_dir == root / "images"


def test_the_published_sd_reading_is_consistent_with_30_ratings():
    """``1.1, 0.3``: 27 ones and 3 twos have mean 1.1 and population SD 0.3 (variance 0.09); a
    variance of 0.3 with mean 1.1 is impossible for 30 integer ratings."""
    r = np.array([1] * 27 + [2] * 3)
    assert round(r.mean(), 2) == 1.1 and round(r.std(ddof=0), 3) == 0.3
    r = np.array([5] * 17 + [4] * 13)
    assert round(r.mean(), 2) == 4.57 and round(r.std(ddof=0), 3) == 0.496


def test_a_name_outside_the_published_pattern_has_no_type(tmp_path):
    root = write_folder(tmp_path, rows=[("I01_01_01.png", "I01.png", "4.57", "0.496"),
                                        ("extra.png", "I01.png", "3", "0.5")])
    t = kadid.read_index(root)
    assert t["type"].isna().tolist() == [False, True] and t["level"].isna().tolist() == [False, True]


def _replace(rows, i, col, value):
    rows = [list(r) for r in rows]
    rows[i][col] = value
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("rows, message", [
    (_replace(PUBLISHED, 3, 2, "5.2"), r"DMOS outside KADID-10k's scale \[1, 5\] in column 'dmos': row 5 \(I01_01_04.png: '5.2'\)"),
    (_replace(PUBLISHED, 0, 2, "0.5"), r"DMOS outside .* column 'dmos': row 2 \(I01_01_01.png: '0.5'\)"),
    (_replace(PUBLISHED, 2, 3, "-0.1"), r"negative spread of the ratings in column 'var': row 4 \(I01_01_03.png: '-0.1'\)"),
    (_replace(PUBLISHED, 2, 3, "2.5"), r"spread above 2 in column 'var': row 4 .*not a variance"),
    (_replace(PUBLISHED, 1, 2, "good"), r"not a finite number in column 'dmos': row 3 \(I01_01_02.png: 'good'\)"),
    (_replace(PUBLISHED, 1, 3, ""), r"not a finite number in column 'var': row 3 \(I01_01_02.png: ''\)"),
    (_replace(PUBLISHED, 1, 3, "nan"), r"not a finite number in column 'var': row 3"),
    (_replace(PUBLISHED, 4, 0, "I01_01_01.png"), r"listed twice in column 'dist_img': row 2 \(I01_01_01.png.*row 6 \(I01_01_01.png"),
    (_replace(PUBLISHED, 4, 0, ""), r"empty image name in column 'dist_img': row 6"),
    (_replace(PUBLISHED, 4, 1, " "), r"empty image name in column 'ref_img': row 6"),
    (PUBLISHED + [("I01.png", "I01.png", "5", "0")], r"reference image .* listed as a scored image in column 'dist_img': row 12 \(I01.png"),
])
def test_a_bad_row_is_named_by_file_row_and_column(tmp_path, rows, message):
    root = write_folder(tmp_path, rows=rows, images=["I01.png", "I02.png", *{r[0] for r in rows if r[0]}])
    with pytest.raises(DataError, match=message) as e:
        kadid.check_folder(root)
    assert str(root / "dmos.csv") in str(e.value)


@pytest.mark.parametrize("header, missing", [
    ("dist_img,ref_img,mos,var", "'dmos'"),
    ("dist_img,ref_img,dmos,std", "'var'"),  # pyiqa's renamed copy is not the published file
    ("ref_name,dist_name,dmos,std", "'dist_img', 'ref_img', 'var'"),
])
def test_a_missing_column_is_named(tmp_path, header, missing):
    root = write_folder(tmp_path, header=header)
    with pytest.raises(DataError, match=f"lacks the column\\(s\\) {missing}; .*dist_img,ref_img,dmos,var"):
        kadid.read_index(root)


def test_missing_layout_and_missing_images_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        kadid.check_folder(tmp_path / "nowhere")
    root = write_folder(tmp_path / "unpacked" / "kadid10k")
    with pytest.raises(DataError, match=r"has no dmos.csv\. It holds a kadid10k/ folder"):
        kadid.check_folder(tmp_path / "unpacked")
    (root / "images" / "I01_01_03.png").unlink()
    (root / "images" / "I02_25_05.png").unlink()
    with pytest.raises(DataError, match=r"2 listed image\(s\) are not in .*images/: row 4 \(I01_01_03.png\), row 11 \(I02_25_05.png\)"):
        kadid.check_folder(root)
    for p in (root / "images").iterdir():
        p.unlink()
    (root / "images").rmdir()
    with pytest.raises(DataError, match="has no image folder images/"):
        kadid.check_folder(root)
    (root / "dmos.csv").write_text("")
    (root / "images").mkdir()
    with pytest.raises(DataError, match="not a readable CSV"):
        kadid.check_folder(root)
    (root / "dmos.csv").write_text(HEADER + "\n")
    with pytest.raises(DataError, match="lists no images"):
        kadid.check_folder(root)


def test_max_images_is_a_seeded_sample_in_file_order(tmp_path):
    root = write_folder(tmp_path)
    a = kadid.read_index(root, max_images=4, seed=3)
    assert len(a) == 4 and a["row"].is_monotonic_increasing
    pd.testing.assert_frame_equal(a, kadid.read_index(root, max_images=4, seed=3))
    assert any(kadid.read_index(root, max_images=4, seed=s)["image_name"].tolist() != a["image_name"].tolist()
               for s in range(4, 10))
    assert len(kadid.read_index(root, max_images=100)) == len(PUBLISHED)
    # a sampled folder checks only the images it keeps
    (root / "images" / a["image_name"][0]).unlink()
    with pytest.raises(DataError, match="not in"):
        kadid.read_index(root, max_images=4, seed=3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ParameterError, match="max_images"):
            kadid.read_index(root, max_images=bad)


def test_load_kadid_through_the_rgb_cache(tmp_path):
    root = write_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    s = kadid.load_kadid(root, cache, (384, 512), progress=False)
    assert s.images.shape == (len(PUBLISHED), 384, 512, 3) and s.images.dtype == np.uint8
    assert s.image_names == [r[0] for r in PUBLISHED]
    np.testing.assert_array_equal(s.mos, [float(r[2]) for r in PUBLISHED])
    np.testing.assert_array_equal(s.sd, [float(r[3]) for r in PUBLISHED])
    with Image.open(root / "images" / PUBLISHED[6][0]) as im:
        np.testing.assert_array_equal(s.images[6], np.asarray(im.convert("RGB")))  # full size: the decoded PNG
    files = sorted((cache / "kadid").glob("*.npy"))
    assert len(files) == 1
    again = kadid.load_kadid(root, cache, (384, 512), progress=False)  # a cache hit: the same file
    assert sorted((cache / "kadid").glob("*.npy")) == files
    np.testing.assert_array_equal(again.images, s.images)
    small = kadid.load_kadid(root, cache, (48, 64), max_images=3, seed=1, progress=False)
    assert small.images.shape == (3, 48, 64, 3) and len(small.mos) == 3


def test_a_corrupt_png_is_named_when_the_cache_is_built(tmp_path):
    root = write_folder(tmp_path / "data")
    (root / "images" / "I01_01_02.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    kadid.check_folder(root)  # the index checks do not decode
    with pytest.raises(DataError, match="I01_01_02.png"):
        kadid.load_kadid(root, tmp_path / "cache", 32, progress=False)
    assert not list((tmp_path / "cache").rglob("*.npy"))


def test_the_index_functions_do_not_import_torch(tmp_path):
    root = write_folder(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from lfakit.data import kadid
        t = kadid.check_folder({str(root)!r})
        assert len(t) == {len(PUBLISHED)}
        assert "torch" not in sys.modules, "torch imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------- embedded default
@pytest.fixture(scope="module")
def default_dir(tmp_path_factory):
    return kadid.embedded_kadid_dir(tmp_path_factory.mktemp("cache"))


def test_the_embedded_default_is_read_by_the_real_loader(default_dir, tmp_path):
    assert default_dir.parent.name == "kadid_embedded"
    t = kadid.check_folder(default_dir)
    assert len(t) == 6 * 3 * 5 == 90
    assert (default_dir / "dmos.csv").read_text().startswith("dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,")
    assert all(kadid.NAME_PATTERN.fullmatch(n) for n in t["image_name"])
    assert sorted(set(t["type"])) == [1, 10, 11] and sorted(set(t["level"])) == [1, 2, 3, 4, 5]
    refs = sorted(set(t["ref_img"]))
    assert refs == [f"I0{k}.png" for k in range(1, 7)] and not set(refs) & set(t["image_name"])
    for n in [*refs, t["image_name"].iloc[-1]]:
        with Image.open(default_dir / "images" / n) as im:
            assert im.size == (512, 384) and im.format == "PNG" and im.mode == "RGB"
    assert sorted(p.name for p in (default_dir / "images").iterdir()) == sorted([*refs, *t["image_name"]])
    s = kadid.load_kadid(default_dir, tmp_path, (96, 128), progress=False)
    assert s.images.shape == (90, 96, 128, 3)


def test_the_embedded_numbers_are_written_like_the_published_ones(default_dir):
    lines = (default_dir / "dmos.csv").read_text().splitlines()[1:]
    for line in lines:
        _, _, d, v = line.split(",")
        assert re.fullmatch(r"[1-5](\.\d?[1-9])?", d), line
        assert re.fullmatch(r"[0-2](\.\d{0,2}[1-9])?", v), line
        m, sd = float(d), float(v)
        s1 = round(m * 30)  # 30 ratings: the mean times 30 is a whole number, rounded to 2 decimals
        assert abs(s1 / 30 - m) <= 0.005 + 1e-12
        assert 0 <= sd <= 2


def test_the_embedded_dmos_falls_with_the_level_for_every_type(default_dir):
    t = kadid.read_index(default_dir)
    means = t.groupby(["type", "level"])["mos"].mean()
    for kind in kem.TYPES:
        m = means.loc[kind].sort_index().to_numpy()
        assert np.all(np.diff(m) < 0), (kind, m)
        assert m[0] > 3.5 and m[-1] < 2.3
    meta = pd.read_csv(default_dir / kem.META_CSV)
    assert meta["image_name"].tolist() == t["image_name"].tolist()
    rho = pd.Series(meta["latent"]).corr(t["mos"], method="spearman")
    assert rho > 0.9


def test_the_embedded_photos_are_not_the_koniq_defaults():
    used = {kem.PHOTOS[p][2] for p, _ in kem.REFERENCES.values()}
    assert used == {"china.jpg", "flower.jpg", "grace_hopper.jpg"}
    assert not used & set(koniq_embedded.PHOTOS.values())
    for p in kem.PHOTOS:
        assert kem.photo_file(p).is_file()


def test_the_two_windows_of_a_photo_are_disjoint_4_3_windows():
    for size in ((640, 427), (512, 600)):
        (x0, y0, w0, h0), (x1, y1, w1, h1) = kem._window(size, 0), kem._window(size, 1)
        assert (w0, h0) == (w1, h1) and abs(w0 * 3 - h0 * 4) <= 4
        assert x0 + w0 <= x1 or y0 + h0 <= y1
        assert 0 <= min(x0, y0) and x1 + w1 <= size[0] and y1 + h1 <= size[1]


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def test_the_embedded_writer_is_deterministic(tmp_path):
    small = {"types": (11, 1), "levels": 2}
    a = _digest(kem.write_embedded_kadid(tmp_path / "a", seed=5, **small))
    b = _digest(kem.write_embedded_kadid(tmp_path / "b", seed=5, **small))
    c = kem.write_embedded_kadid(tmp_path / "c", seed=6, **small)
    assert a == b and _digest(c) != a
    assert len(kadid.read_index(tmp_path / "a")) == 6 * 2 * 2
    # the same images per seed; the noise and the scores change with it
    assert (tmp_path / "a/images/I01_01_02.png").read_bytes() == (c / "images/I01_01_02.png").read_bytes()
    assert (tmp_path / "a/images/I01_11_02.png").read_bytes() != (c / "images/I01_11_02.png").read_bytes()
    # adding a type leaves the others unchanged
    one = kem.write_embedded_kadid(tmp_path / "d", seed=5, types=(1,), levels=2)
    da = pd.read_csv(tmp_path / "a" / "dmos.csv", dtype=str).set_index("dist_img")
    dd = pd.read_csv(one / "dmos.csv", dtype=str).set_index("dist_img")
    pd.testing.assert_frame_equal(da.loc[dd.index], dd)


def test_the_embedded_cache_folder_is_reused_and_options_are_checked(default_dir):
    cache = default_dir.parent.parent
    stamp = (default_dir / "dmos.csv").stat().st_mtime_ns
    assert kadid.embedded_kadid_dir(cache) == default_dir
    assert (default_dir / "dmos.csv").stat().st_mtime_ns == stamp
    assert (default_dir / "generator.json").is_file()
    with pytest.raises(ParameterError, match="unknown option"):
        kadid.embedded_kadid_dir(cache, level=3)
    with pytest.raises(ParameterError, match="unknown distortion type 2"):
        kadid.embedded_kadid_dir(cache, types=(1, 2))
    with pytest.raises(ParameterError, match="levels"):
        kadid.write_embedded_kadid(cache / "x", levels=0)
    assert not (cache / "x").exists()
