"""KonIQ-10k loader on small folders written in the published on-disk layout (both CSVs, both
image folders): targets on one scale from either CSV, fractions and counts told apart, the MOS
scale checked against ``mos_scale``, the official split's sizes, and every bad input named by file
and row.

The rows are shaped like the published files:

* ``koniq10k_distributions_sets.csv``, as in the KonIQ-10k repository (github.com/subpic/koniq,
  ``metadata/koniq10k_distributions_sets.csv``): header
  ``image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set``, no quoting, ``\n`` line ends; ``c1..c5`` are
  the fractions of the ratings (each row sums to 1 within 1.4e-12), written as Python 2's
  ``str(float)`` does (12 significant digits, ``0.0`` for zero: ``0.0666666666667``);
  ``c_total`` an integer (93-157); ``MOS`` the 0-100 z-score MOS (3.9-88.4) and ``SD`` the
  sample SD (n - 1) of the ratings on 1-5 (0.30-1.10), both at 12 significant digits; ``set`` is
  ``training`` (7,058), ``validation`` (1,000) or ``test`` (2,015).
* ``koniq10k_scores_and_distributions.csv`` (in the data set's download archive, not in that
  repository): header ``image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore``; ``c1..c5`` are
  rating counts and ``MOS`` the 1-5 mean rating at 10 significant digits (the first image:
  ``0,0,25,73,7`` and ``3.828571429``, as quoted in github.com/junyongyou/lsct_phiqnet's
  ``databases/README.md``). The precision of its ``SD`` and ``MOS_zscore`` is not shown there;
  they are written at 10 significant digits too.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pandas as pd
import pytest

from lfakit.data import koniq
from lfakit.errors import DataError, ParameterError

N = 20
# the small folders here are not the official split's size; that warning has its own test
pytestmark = pytest.mark.filterwarnings("ignore:.*not the official KonIQ-10k split:UserWarning")


def _py2(v: float) -> str:
    """A float as the published sets CSV writes it (Python 2 ``str``: 12 significant digits)."""
    t = "%.12g" % v
    return t if any(ch in t for ch in ".e") else t + ".0"


def _name(i: int) -> str:
    """The i-th test image's name, digits + ``.jpg`` as the published names (``10004473376.jpg``)."""
    return f"{10004473376 + 7919 * i}.jpg"


def _table(seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    total = rng.integers(93, 158, size=N)
    latent = rng.uniform(1.3, 4.5, N)
    counts = np.zeros((N, 5), dtype=int)
    for i in range(N):
        r = np.clip(np.floor(latent[i] + 0.6 * rng.standard_normal(total[i]) + 0.5), 1, 5).astype(int)
        counts[i] = np.bincount(r - 1, minlength=5)
    mos = counts @ np.arange(1, 6) / total
    sd = np.sqrt((counts * (np.arange(1, 6)[None, :] - mos[:, None]) ** 2).sum(1) / (total - 1))  # n - 1, as published
    z = np.clip(27.8 * mos - 29.2 + rng.normal(0, 2, N), 0, 100)  # a stand-in for the rescaled z-score MOS
    t = pd.DataFrame({"image_name": [_name(i) for i in range(N)]})
    for k in range(5):
        t[f"c{k + 1}"] = counts[:, k]
    t["c_total"], t["sd"], t["mos"], t["z"] = total, sd, mos, z
    t["set"] = ["training"] * 12 + ["validation"] * 3 + ["test"] * 5
    return t


def sets_csv_text(t: pd.DataFrame) -> str:
    """The rows of ``t`` as the published ``koniq10k_distributions_sets.csv`` writes them."""
    lines = ["image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set"]
    for r in t.itertuples(index=False):
        fr = [_py2(getattr(r, f"c{k}") / r.c_total) for k in range(1, 6)]
        lines.append(",".join([r.image_name, *fr, str(int(r.c_total)), _py2(r.z), _py2(r.sd), r.set]))
    return "\n".join(lines) + "\n"


def scores_csv_text(t: pd.DataFrame) -> str:
    """The rows of ``t`` as ``koniq10k_scores_and_distributions.csv`` writes them (counts)."""
    lines = ["image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore"]
    for r in t.itertuples(index=False):
        c = [str(int(getattr(r, f"c{k}"))) for k in range(1, 6)]
        lines.append(",".join([r.image_name, *c, str(int(r.c_total)), "%.10g" % r.mos, "%.10g" % r.sd, "%.10g" % r.z]))
    return "\n".join(lines) + "\n"


def write_koniq(root, kind="sets", folder="512x384", table=None):
    """A KonIQ-format folder: ``kind`` = ``sets``, ``scores`` or ``both`` CSVs, and the JPEGs in
    ``folder`` (``512x384``, ``1024x768`` or ``both``)."""
    t = _table() if table is None else table
    root.mkdir(parents=True, exist_ok=True)
    for f in (koniq.IMAGE_DIRS if folder == "both" else (folder,)):
        w, h = map(int, f.split("x"))
        (root / f).mkdir(exist_ok=True)
        rng = np.random.default_rng(1)
        for name in t["image_name"]:
            img = rng.integers(0, 255, size=(h // 8, w // 8, 3), dtype=np.uint8)
            cv2.imwrite(str(root / f / name), cv2.resize(img, (w, h)))
    if kind in ("sets", "both"):
        (root / koniq.SETS_CSV).write_text(sets_csv_text(t))
    if kind in ("scores", "both"):
        (root / koniq.SCORES_CSV).write_text(scores_csv_text(t))
    return root


@pytest.mark.parametrize("scale", koniq.MOS_SCALES)
def test_both_csv_kinds_give_the_same_targets_on_the_chosen_scale(tmp_path, scale):
    a = koniq.load_index(write_koniq(tmp_path / "a", "sets"), scale).table.set_index("image_name")
    b = koniq.load_index(write_koniq(tmp_path / "b", "scores"), scale).table.set_index("image_name")
    assert a.index.tolist() == b.index.tolist()
    # 12 significant digits (sets) against 10 (scores): equal to the coarser precision
    np.testing.assert_allclose(a["mos"], b.loc[a.index, "mos"], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(a["sd"], b.loc[a.index, "sd"], rtol=1e-9, atol=1e-11)
    t = _table()
    want = t["mos"] if scale == "1-5" else t["z"]
    np.testing.assert_allclose(a["mos"].to_numpy(), want.to_numpy(), rtol=1e-11, atol=1e-11)
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
    (lambda d, r: pd.concat([d, d.iloc[[4]]]), r"an image listed twice in column 'image_name': row 6 \(" + _name(4)),
    (lambda d, r: d.assign(MOS=d["MOS"].where(d.index != 7, 140.0)), r"MOS outside its scale 0-100.*row 9 \(" + _name(7)[:-4] + r"\.jpg: 140.0\)"),
    (lambda d, r: d.assign(set=d["set"].where(d.index != 2, "train")), r"unknown set.*row 4 \(" + _name(2)[:-4] + r"\.jpg: 'train'\)"),
    (lambda d, r: d.assign(SD=d["SD"].where(d.index != 0, -1.0)), r"opinion SD outside.*row 2 \(" + _name(0)),
    (lambda d, r: d.assign(c_total=d["c_total"].where(d.index != 3, 0)), r"not a positive whole number.*row 5"),
    (lambda d, r: d.assign(set="training"), r"the val split is empty"),
])
def test_bad_csv_names_the_file_and_the_row(tmp_path, edit, message):
    with pytest.raises(DataError, match=message):
        koniq.load_index(_broken(tmp_path, edit))


def test_missing_image_and_missing_layout(tmp_path):
    root = write_koniq(tmp_path / "k", "scores")
    (root / "512x384" / _name(11)).unlink()
    with pytest.raises(DataError, match=r"1 listed image\(s\) are not in .*512x384/: row 13 \(" + _name(11)[:-4] + r"\.jpg\)"):
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
    bad = root / "512x384" / _name(5)
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=_name(5)[:-4]):
        koniq.load_koniq(root, cache_dir=tmp_path / "cache", image_size=32, progress=False)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing half-written


# --------------------------------------------------------------------------- the published format


def test_the_fixture_is_written_like_the_published_files(tmp_path):
    root = write_koniq(tmp_path / "k", "both")
    sets = (root / koniq.SETS_CSV).read_text().splitlines()
    assert sets[0] == "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set" and '"' not in "".join(sets)
    cells = sets[1].split(",")
    assert all("." in v and len(v.replace(".", "").lstrip("0")) <= 12 for v in cells[1:6] + cells[7:9])
    assert abs(sum(map(float, cells[1:6])) - 1) < 1e-11 and cells[6].isdigit() and 5 < float(cells[7]) < 100
    scores = (root / koniq.SCORES_CSV).read_text().splitlines()
    assert scores[0] == "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore"
    cells = scores[1].split(",")
    assert all(v.isdigit() for v in cells[1:7]) and sum(map(int, cells[1:6])) == int(cells[6])
    assert 1 <= float(cells[7]) <= 5


def test_a_published_row_gives_the_same_mean_rating_as_fractions_and_as_counts(tmp_path):
    """The first row of the published sets CSV (fractions) and of the scores CSV (counts 0,0,25,73,7
    of 105: mean 402 / 105 = 3.828571429): the same 1-5 MOS, and 77.38 taken as is on 0-100."""
    fr = "10004473376.jpg,0.0,0.0,0.238095238095,0.695238095238,0.0666666666667,105,77.3836206897,0.527277894494,"
    rows = {"training": [fr + "training"]}
    for i, s in enumerate(("training", "validation", "test")):
        rows.setdefault(s, []).append(f"{i + 1}.jpg,0.0,0.0,0.5,0.5,0.0,100,60.0,0.5,{s}")
    root = tmp_path / "k"
    (root / "512x384").mkdir(parents=True)
    lines = [line for s in rows.values() for line in s]
    for line in lines:
        (root / "512x384" / line.split(",")[0]).write_bytes(b"")
    (root / koniq.SETS_CSV).write_text("image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n" + "\n".join(lines) + "\n")
    one = koniq.read_csv(root / koniq.SETS_CSV, "1-5").set_index("image_name").loc["10004473376.jpg"]
    assert one["mos"] == pytest.approx(402 / 105, abs=1e-11) and one["sd"] == pytest.approx(0.527277894494)
    z = koniq.read_csv(root / koniq.SETS_CSV, "0-100").set_index("image_name").loc["10004473376.jpg"]
    assert z["mos"] == 77.3836206897 and z["sd"] == pytest.approx(25 * 0.527277894494)
    counts = "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore\n10004473376.jpg,0,0,25,73,7,105,3.828571429,0.5272778945,77.38362069\n"
    (root / koniq.SCORES_CSV).write_text(counts)
    c = koniq.read_csv(root / koniq.SCORES_CSV, "1-5").iloc[0]
    assert c["mos"] == pytest.approx(one["mos"], abs=1e-12)
    assert koniq.rating_kind(root / koniq.SETS_CSV, pd.read_csv(root / koniq.SETS_CSV))[0] == "fractions"
    assert koniq.rating_kind(root / koniq.SCORES_CSV, pd.read_csv(root / koniq.SCORES_CSV))[0] == "counts"


def test_the_sets_csv_with_counts_instead_of_fractions_gives_the_same_targets(tmp_path):
    a = koniq.load_index(write_koniq(tmp_path / "a", "sets")).table
    root = write_koniq(tmp_path / "b", "sets")
    df = pd.read_csv(root / koniq.SETS_CSV)
    t = _table()
    for k in koniq.RATINGS:
        df[k] = t[k]
    df.to_csv(root / koniq.SETS_CSV, index=False)
    b = koniq.load_index(root).table
    np.testing.assert_allclose(a["mos"], b["mos"], rtol=0, atol=1e-11)
    np.testing.assert_allclose(b["mos"], t["mos"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind, edit, message", [
    # a fractions file with one row that sums to 0.9
    ("sets", lambda d: d.assign(c3=d["c3"].where(d.index != 6, d["c3"] - 0.1)),
     r"c1..c5 are fractions of the ratings in this file \(its rows sum to 1\), but these rows do not sum to 1 within "
     r"1e-06 in column 'c1..c5': row 8 \(" + _name(6)[:-4] + r"\.jpg: 'c1..c5 sum to 0.9"),
    # a counts file with one row that does not add up to c_total, and one with a fraction in it
    ("scores", lambda d: d.assign(c_total=d["c_total"].where(d.index != 4, d["c_total"] + 2)),
     r"c1..c5 are rating counts in this file, but these rows are not whole numbers adding up to c_total in column "
     r"'c1..c5': row 6 \(" + _name(4)[:-4] + r"\.jpg"),
    ("scores", lambda d: d.assign(c1=d["c1"].astype(float).where(d.index != 9, 0.5)), r"rating counts.*row 11 "),
    ("sets", lambda d: d.assign(c2=d["c2"].where(d.index != 1, -0.1)), r"negative rating count or fraction in column 'c2': row 3"),
])
def test_a_malformed_rating_row_is_named(tmp_path, kind, edit, message):
    root = write_koniq(tmp_path / "k", kind)
    csv = root / (koniq.SETS_CSV if kind == "sets" else koniq.SCORES_CSV)
    edit(pd.read_csv(csv)).to_csv(csv, index=False)
    with pytest.raises(DataError, match=message):
        koniq.load_index(root)


def _mos_on_1_5(tmp_path):
    """The sets CSV with a 1-5 MOS in its 0-100 ``MOS`` column."""
    root = write_koniq(tmp_path / "k", "sets")
    csv = root / koniq.SETS_CSV
    df = pd.read_csv(csv)
    df["MOS"] = _table()["mos"]
    df.to_csv(csv, index=False)
    return root


def test_a_1_5_mos_under_mos_scale_0_100_stops_naming_the_column_the_range_and_the_fix(tmp_path):
    root = _mos_on_1_5(tmp_path)
    m = _table()["mos"]
    with pytest.raises(DataError) as e:
        koniq.load_index(root, "0-100")
    msg = str(e.value)
    assert f"{root / koniq.SETS_CSV}: mos_scale=0-100 takes column 'MOS' as the 0-100 MOS" in msg
    assert f"its values span {m.min():.4g} to {m.max():.4g}, the 1-5 scale" in msg
    assert "Fix: run with mos_scale=1-5" in msg
    # under 1-5 the target is the mean rating from c1..c5: the same folder loads, SD not rescaled
    t = koniq.load_index(root, "1-5").table
    np.testing.assert_allclose(t["mos"], m, atol=1e-11)
    np.testing.assert_allclose(t["sd"], _table()["sd"], rtol=1e-11)


def test_a_0_100_mos_in_the_scores_csv_1_5_column_stops_naming_it(tmp_path):
    root = write_koniq(tmp_path / "k", "scores")
    csv = root / koniq.SCORES_CSV
    df = pd.read_csv(csv)
    df["MOS"] = df["MOS_zscore"]
    df.to_csv(csv, index=False)
    z = _table()["z"]
    for scale in koniq.MOS_SCALES:
        with pytest.raises(DataError, match=r"column 'MOS' holds the 1-5 mean rating in this file .* its values span "
                           + f"{z.min():.4g} to {z.max():.4g}".replace(".", r"\.") + r", the 0-100 scale\. Fix: write"):
            koniq.load_index(root, scale)


def test_an_sd_on_0_100_is_refused_with_the_fix(tmp_path):
    root = write_koniq(tmp_path / "k", "sets")
    csv = root / koniq.SETS_CSV
    df = pd.read_csv(csv)
    df["SD"] = df["SD"] * 25
    df.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"opinion SD outside \[0, 2\].*an SD on 0-100 must be divided by 25"):
        koniq.load_index(root, "0-100")


def test_a_non_official_split_warns_naming_the_sizes(tmp_path):
    root = write_koniq(tmp_path / "k", "sets")
    with pytest.warns(UserWarning, match=r"its set column gives training 12 / validation 3 / test 5 images, not the "
                      r"official KonIQ-10k split's training 7,058 / validation 1,000 / test 2,015"):
        koniq.load_index(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        koniq.load_index(root, official_sizes=False)
        (root / koniq.EMBEDDED_MARK).write_text("")  # the embedded default's folder: small by design
        koniq.load_index(root)


def test_the_embedded_mark_is_the_embedded_defaults_file():
    from lfakit.data import koniq_embedded

    assert koniq.EMBEDDED_MARK == koniq_embedded.META_CSV


def test_the_official_sizes_load_without_a_warning(tmp_path):
    t = pd.concat([_table()] * 504, ignore_index=True).iloc[:10073].copy()
    t["image_name"] = [_name(i) for i in range(len(t))]
    t["set"] = ["training"] * 7058 + ["validation"] * 1000 + ["test"] * 2015
    root = tmp_path / "k"
    (root / "512x384").mkdir(parents=True)
    for n in t["image_name"]:
        (root / "512x384" / n).write_bytes(b"")  # load_index only checks that they are there
    (root / koniq.SETS_CSV).write_text(sets_csv_text(t))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idx = koniq.load_index(root)
        assert [len(idx.split(s)) for s in koniq.SPLITS] == [7058, 1000, 2015]
        # max_images samples each official split in proportion: 7058 : 1000 : 2015 of 1000
        small = koniq.load_index(root, max_images=1000, seed=5)
    assert [len(small.split(s)) for s in koniq.SPLITS] == [701, 99, 200]
    assert set(small.table["image_name"]) <= set(idx.table["image_name"])
    again = koniq.load_index(root, max_images=1000, seed=5, official_sizes=False)
    assert again.table["image_name"].tolist() == small.table["image_name"].tolist()


def test_max_images_keeps_every_split_of_a_small_official_file(tmp_path):
    root = write_koniq(tmp_path / "k", "sets")  # 12 / 3 / 5
    a = koniq.load_index(root, max_images=10, seed=1)
    assert [len(a.split(s)) for s in koniq.SPLITS] == [6, 2, 2]  # 6.0, 1.5, 2.5: a tied remainder goes to the earlier split
    assert [len(koniq.load_index(root, max_images=3, seed=s).split(x)) for s in (0, 1) for x in koniq.SPLITS] == [1] * 6
