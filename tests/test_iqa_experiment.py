"""The IQA loss comparison: patch sampling, the patch average, metrics against scipy, the labelled
logistic fallback, the comparison of one model per loss (differences of these models, no Winner),
the opinion SD reaching the fidelity loss, the data path on a folder written like the published
KonIQ-10k release (both CSVs, both image folders), a wrong ``mos_scale`` stopped before torch and
before a run folder, and runs through the CLI on KonIQ-format folders."""

from __future__ import annotations

from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps
from torch import nn

from lfakit import engine, losses, params, stats
from lfakit.data import koniq
from lfakit.data.patches import PatchDataset, grid_positions, image_of
from lfakit.errors import ParameterError, TrainingError
from lfakit.experiments import iqa_losses as X
from lfakit.fitconfig import FitConfig
from lfakit.metrics import iqa as iqa_metrics

from test_data_koniq import write_koniq

EXP = "iqa_losses"


def _images(n=6, h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- patches


def test_grid_positions_are_distinct_inside_and_reach_the_corners():
    g = grid_positions(384, 512, 224, 20)
    assert g.shape == (20, 2) and len({tuple(p) for p in g}) == 20
    assert (g[:, 0] >= 0).all() and (g[:, 0] <= 384 - 224).all() and (g[:, 1] <= 512 - 224).all()
    assert tuple(g[0]) == (0, 0) and g[:, 1].max() == 512 - 224
    assert grid_positions(24, 32, 8, 1).tolist() == [[8, 12]]  # one crop: the centre


def test_test_crops_are_fixed_by_the_seed_and_training_crops_are_fresh():
    imgs = _images()
    mos, sd = np.linspace(1, 5, 6), np.full(6, 0.5)
    a = PatchDataset(imgs, mos, sd, 8, 3, "random", seed=1)
    b = PatchDataset(imgs, mos, sd, 8, 3, "random", seed=1)
    c = PatchDataset(imgs, mos, sd, 8, 3, "random", seed=2)
    assert len(a) == 18
    assert [a.corner(i) for i in range(18)] == [b.corner(i) for i in range(18)] != [c.corner(i) for i in range(18)]
    assert torch.equal(a[5]["x"], a[5]["x"])  # the same crop at every access
    item = a[5]
    y, x = a.corner(5)
    want = torch.from_numpy(imgs[1, y:y + 8, x:x + 8].copy()).permute(2, 0, 1).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(item["x"], (want - mean) / std)
    assert float(item["y"]) == mos[1] and float(item["std"]) == 0.5 and item["index"] == 5
    assert image_of([0, 2, 3, 17], 3).tolist() == [0, 0, 1, 5]
    f = PatchDataset(imgs, mos, sd, 8, 3, "fresh")
    torch.manual_seed(0)
    first = [f.corner(0) for _ in range(10)]
    assert len(set(first)) > 1


def test_patch_dataset_refuses_a_patch_larger_than_the_images():
    with pytest.raises(ParameterError, match="patch_size=40 does not fit the 24 x 32 images"):
        PatchDataset(_images(), np.ones(6), np.ones(6), 40, 2)


class _MeanPixel(nn.Module):
    """A score that differs from crop to crop: a weighted mean of the pixels."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1, keepdim=True)


def test_the_test_time_patch_average_is_what_gets_scored():
    imgs = _images()
    mos = np.linspace(1, 5, 6)
    ds = PatchDataset(imgs, mos, np.ones(6), 8, 4, "random", seed=3)
    model = _MeanPixel().double()
    out = engine.predict(model, ds, batch_size=5, device="cpu")
    scored = X.image_scores(out["scores"], 4)
    by_hand = []
    for i in range(6):
        crops = [ds[i * 4 + j]["x"].double() for j in range(4)]
        with torch.no_grad():
            vals = [float(model(c[None])) for c in crops]
        assert len(set(vals)) > 1  # the crops differ, so the average is not any one of them
        by_hand.append(np.mean(vals))
    np.testing.assert_allclose(scored, by_hand, rtol=1e-12)
    with pytest.raises(ValueError, match="not a whole number of images"):
        X.image_scores(np.ones(7), 4)


# --------------------------------------------------------------------------- metrics and tables


def _fake_runs(mos, noise: dict, seed=0):
    rng = np.random.default_rng(seed)
    runs = {}
    for name, sigma in noise.items():
        s = {sp: mos[sp] + sigma * rng.normal(size=len(mos[sp])) for sp in ("val", "test")}
        hist = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_srcc": [0.5, 0.6], "seconds": [1.0, 1.5]})
        runs[name] = X.Run(name, s, 2, hist, "complete")
    return runs


def _fake_data(n_test=150, n_val=40, seed=1):
    rng = np.random.default_rng(seed)
    splits = {}
    for s, n in (("train", 10), ("val", n_val), ("test", n_test)):
        m = rng.uniform(1, 5, n)
        splits[s] = koniq.Split(np.zeros((n, 4, 4, 3), np.uint8), m, np.full(n, 0.6), [f"{s}{i}.jpg" for i in range(n)])
    return X.Data(splits, Path("."), embedded=True, official_split=True)


def _P(**kw):
    P = params.defaults(EXP)
    P.update({"losses": ["l1", "l2", "plcc", "srcc", "rank", "fidelity"], "n_boot": 400, **kw})
    return P


def test_metrics_equal_scipy_on_the_same_predictions():
    data = _fake_data()
    runs = _fake_runs({s: data.splits[s].mos for s in ("val", "test")}, {"l1": 0.8, "l2": 1.5})
    t = X.metrics_table(runs, data).set_index("Loss")
    mos = data.splits["test"].mos
    for name, r in runs.items():
        s = r.scores["test"]
        assert t.loc[name, "SRCC"] == pytest.approx(round(sps.spearmanr(s, mos).statistic, 4), abs=1e-12)
        assert t.loc[name, "KRCC"] == pytest.approx(round(sps.kendalltau(s, mos).statistic, 4), abs=1e-12)
        assert t.loc[name, "PLCC (raw)"] == pytest.approx(round(sps.pearsonr(s, mos).statistic, 4), abs=1e-12)
        assert t.loc[name, "Logistic fit"] == "ok"
        params_, ok = iqa_metrics.fit_logistic(s, mos)
        mapped = iqa_metrics.logistic_4p(s, *params_)
        assert t.loc[name, "PLCC (logistic)"] == pytest.approx(round(sps.pearsonr(mapped, mos).statistic, 4), abs=1e-12)
        assert t.loc[name, "RMSE (logistic)"] == pytest.approx(round(float(np.sqrt(np.mean((mapped - mos) ** 2))), 4))
    assert t.loc["l1", "SRCC"] > t.loc["l2", "SRCC"]  # less noise, better ranking: the table is not constant


def test_a_failed_logistic_fit_is_labelled_and_falls_back_to_raw(monkeypatch):
    data = _fake_data()
    runs = _fake_runs({s: data.splits[s].mos for s in ("val", "test")}, {"l1": 0.8})
    monkeypatch.setattr(iqa_metrics, "fit_logistic", lambda p, q, maxfev=20000: (np.zeros(4), False))
    row = X.metrics_table(runs, data).set_index("Loss").loc["l1"]
    assert row["Logistic fit"] == "failed: raw"
    assert row["PLCC (logistic)"] == row["PLCC (raw)"]
    s, mos = runs["l1"].scores["test"], data.splits["test"].mos
    assert row["RMSE (logistic)"] == pytest.approx(round(float(np.sqrt(np.mean((s - mos) ** 2))), 4))


def test_bootstrap_of_srcc_equals_the_callable_reference():
    rng = np.random.default_rng(5)
    t = rng.normal(size=80)
    a, b = t + rng.normal(size=80), t + 0.4 * rng.normal(size=80)
    fast = stats.paired_bootstrap_correlation(t, a, b, "srcc", n_boot=300, seed=7)
    ref = stats.paired_bootstrap(t, a, b, metric=lambda y, s: sps.spearmanr(y, s).statistic, n_boot=300, seed=7,
                                 stratified=False)
    for k in ("delta", "ci_low", "ci_high", "p_value", "metric1", "metric2"):
        assert fast[k] == pytest.approx(ref[k], abs=1e-12), k
    assert fast["delta"] > 0 and fast["ci_low"] > 0  # b is clearly the better ranker


def test_one_model_per_loss_gives_differences_of_these_models_and_no_winner():
    data = _fake_data(n_test=300)
    mos = {s: data.splits[s].mos for s in ("val", "test")}
    runs = _fake_runs(mos, {"l1": 1.2, "l2": 1.2, "plcc": 0.2, "srcc": 1.2, "rank": 1.2, "fidelity": 1.2}, seed=3)
    runs["l2"].scores = {k: v.copy() for k, v in runs["l1"].scores.items()}  # identical to the baseline
    runs["l2"].scores["test"][0] += 1e-9
    P = _P()
    comp = X.comparison_table(P, runs, data).set_index("Challenger")
    assert not {"Winner", "Verdict", "Δ SRCC", "p-value"} & set(comp.columns)
    assert {"Δ SRCC (these models)", "CI low (test set)", "CI high (test set)", "p (test set)", "p (Holm)"} <= set(comp.columns)
    assert (comp["Test"] == "paired bootstrap, test set only").all() and (comp["Seeds"] == 1).all()
    raw = []
    for name in comp.index:  # each row is one paired bootstrap of the test images, this model against l1's
        b = stats.paired_bootstrap_correlation(mos["test"], runs["l1"].scores["test"], runs[name].scores["test"], "srcc",
                                               P["n_boot"], P["seed"])
        raw.append(b["p_value"])
        assert comp.loc[name, "Δ SRCC (these models)"] == pytest.approx(round(b["delta"], 4), abs=1e-12)
        assert comp.loc[name, "CI high (test set)"] == pytest.approx(round(b["ci_high"], 4), abs=1e-12)
        assert comp.loc[name, "p (test set)"] == pytest.approx(round(b["p_value"], 4), abs=1e-12)
    # Holm within each family: the study's losses (l2, plcc, rank, fidelity) and the kit's additions (srcc)
    raw = pd.Series(raw, index=comp.index)
    study = ["l2", "plcc", "rank", "fidelity"]
    assert (comp.loc[study, "Holm family"] == "study").all() and comp.loc["srcc", "Holm family"] == "kit additions"
    np.testing.assert_allclose(comp.loc[study, "p (Holm)"], np.round(stats.holm(raw[study].to_numpy()), 4), atol=1e-12)
    assert comp.loc["srcc", "p (Holm)"] == pytest.approx(round(raw["srcc"], 4), abs=1e-12)  # a family of one
    # adding a loss outside the study leaves the study's adjusted p unchanged
    runs["norm_in_norm"] = runs["srcc"]
    more = X.comparison_table(_P(losses=[*P["losses"], "norm_in_norm"]), runs, data).set_index("Challenger")
    pd.testing.assert_series_equal(more.loc[study, "p (Holm)"], comp.loc[study, "p (Holm)"])
    del runs["norm_in_norm"]
    assert comp.loc["plcc", "p (Holm)"] < 0.05 and comp.loc["plcc", "Δ SRCC (these models)"] > 0.2  # far beyond the noise
    assert comp.loc["l2", "p (Holm)"] > 0.5

    summ = X.summary_table(P, runs, X.metrics_table(runs, data), X.comparison_table(P, runs, data)).set_index("Loss")
    col = "Δ SRCC vs l1, these models [95% CI, test set]"
    assert "Winner" not in summ.columns and col in summ.columns
    c = comp.loc["plcc"]
    assert summ.loc["plcc", col] == (f"{c['Δ SRCC (these models)']:+.4f} [{c['CI low (test set)']:+.4f}, "
                                     f"{c['CI high (test set)']:+.4f}]")
    assert summ.loc["plcc", "p (Holm, test set)"] == f"{c['p (Holm)']:.3f}"
    assert summ.loc["l2", "p (Holm, test set)"] == "1.000" and not summ.loc["l2", col].endswith("n.s.")
    assert summ.loc["l1", col] == "baseline" and summ.loc["l1", "p (Holm, test set)"] == "-"
    assert summ.loc["l1", "Time"].strip() == "2.5 s" and summ.loc["l1", "Time/epoch"].strip() == "1.2 s"

    kq = X.key_questions(P, runs, data, X.metrics_table(runs, data), X.comparison_table(P, runs, data))
    assert len(kq) == 6  # the five questions, and first what they say about KonIQ-10k: nothing (embedded data)
    data_row = kq.iloc[0]
    assert data_row["Question"] == "What do these answers say about KonIQ-10k?" and data_row["Answer"].startswith("nothing")
    assert len(X.key_questions(P, runs, replace(data, embedded=False), X.metrics_table(runs, data),
                               X.comparison_table(P, runs, data))) == 5  # on a real folder, no such row
    kq = kq.iloc[1:]
    answers = dict(zip(kq["Question"], kq["Answer"]))
    text = " ".join(kq["Answer"]).lower()
    for claim in ("better", "worse", "beat", "outperform", "gain", "winner", "significant"):
        assert claim not in text, claim  # plcc's model is far ahead, yet no answer says its loss is better
    for q, a in answers.items():
        assert "no verdict about the losses (one model each)" in a, q
    first = next(a for q, a in answers.items() if q.startswith("Which loss"))
    assert first.startswith("of these models, the plcc model has the highest test SRCC")
    assert "lfakit sweep iqa_losses --seeds 0,1,2" in first and "lfakit compare results/iqa_losses/sweeps/" in first
    d = comp.loc["plcc", "Δ SRCC (these models)"]
    assert (f"the plcc model's test SRCC is {d:.4f} higher than the l1 model's (beyond the test-set noise)"
            in next(a for q, a in answers.items() if q.startswith("Is directly")))
    assert "higher: plcc; lower: none" in next(a for q, a in answers.items() if q.startswith("What is"))
    assert "(within the test-set noise)" in next(a for q, a in answers.items() if q.startswith("Should we"))
    evidence = dict(zip(kq["Question"], kq["Evidence"]))
    assert all("test set only" in e for q, e in evidence.items() if not q.startswith("What is"))

    note = X.comparison_note(P, data)
    assert ("Holm within each family of comparisons with l1 (study: 4 (l2, plcc, rank, fidelity); kit additions: 1 "
            "(srcc)), for display") in note
    assert "name no Winner about the losses" in note and "--metric srcc --baseline l1" in note


def test_a_diverged_loss_is_reported_failed_and_the_others_go_on(monkeypatch, tmp_path):
    data = _fake_data()
    good = _fake_runs({s: data.splits[s].mos for s in ("val", "test")}, {"l1": 0.5})["l1"]

    def fake_train(P, name, *a, **kw):
        if name == "rank":
            raise TrainingError("loss rank became nan at epoch 1, batch 0")
        from lfakit.experiments._shared import Trained
        k = P["test_patch_num"]
        return Trained({s: np.repeat(good.scores[s], k) for s in ("val", "test")}, {}, 2, good.history)

    monkeypatch.setattr(X, "train_or_resume", fake_train)
    monkeypatch.setattr(X, "datasets", lambda P, data: dict.fromkeys(("train", "val", "test")))
    P = _P(losses=["l1", "rank"], epochs=2, head_bias_init=False)
    runs = X.train_all(P, data, tmp_path)
    assert runs["l1"].status == "complete" and runs["rank"].status.startswith("failed: loss rank became nan")
    tabs = X.tables(P, runs, data)
    assert tabs["summary"].set_index("Loss").loc["rank", "Status"].startswith("failed")
    assert np.isnan(tabs["metrics_test"].set_index("Loss").loc["rank", "SRCC"])


# --------------------------------------------------------------------------- the opinion SD


def test_the_opinion_sd_changes_the_fidelity_loss_seen_in_training():
    imgs = _images(n=12)
    mos = np.linspace(1, 5, 12)
    fid = losses.build("fidelity")
    cfg = FitConfig(epochs=1, batch_size=8, lr=1e-3, device="cpu", progress=False, precision="float64",
                    drop_last=True, val_loss=False, monitor="val_srcc")

    def run(sd):
        torch.manual_seed(0)
        ds = PatchDataset(imgs, mos, sd, 8, 2, "fresh")
        val = PatchDataset(imgs, mos, sd, 8, 2, "grid")
        return engine.fit(_MeanPixel().double(), fid, ds, val, cfg, val_metrics=X.val_metrics(2)).history["train_loss"][0]

    a, b, c = run(np.full(12, 0.3)), run(np.full(12, 1.5)), run(np.full(12, 0.3))
    assert a == c and a != pytest.approx(b, rel=1e-6)


# --------------------------------------------------------------------------- parameters


def test_monitor_val_loss_and_oversized_patches_are_refused_before_any_work():
    with pytest.raises(ParameterError, match="monitor=val_loss is not available here"):
        params.validate(EXP, {**params.defaults(EXP), "monitor": "val_loss"})
    with pytest.raises(ParameterError, match="patch_size=300 does not fit images of 96 x 128"):
        params.validate(EXP, {**params.defaults(EXP), "patch_size": 300, "image_size": [96, 128]})


# --------------------------------------------------------------------------- through the CLI

QUICK = ["-p", "epochs=1", "-p", "losses=[l1, fidelity]", "-p", "image_size=[48, 64]", "-p", "patch_size=32",
         "-p", "batch_size=8", "-p", "n_boot=200", "-p", "test_datasets=[]", "-q"]


def _lfakit(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lfakit.cli", *args], capture_output=True, text=True, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("kind, folder, extra", [("sets", "512x384", []), ("scores", "1024x768", []),
                                                 ("both", "both", ["-p", "image_dir=1024x768", "-p", "mos_scale=0-100"])])
def test_lfakit_run_on_a_koniq_format_folder(tmp_path, kind, folder, extra):
    """End to end through the CLI on folders written like the published release (the sets CSV
    with fractions, the scores CSV with counts; both CSVs and both image folders in the last)."""
    root = write_koniq(tmp_path / "koniq", kind, folder)
    env = {**__import__("os").environ, "LFAKIT_RESULTS": str(tmp_path / "results"), "LFAKIT_CACHE": str(tmp_path / "cache")}
    r = _lfakit("run", EXP, "-p", f"data_dir={root}", *QUICK, *extra, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = Path(r.stdout.strip().splitlines()[-1].split("-> ")[-1])
    from lfakit import record

    rec = record.load_run(run_dir)
    assert set(rec.methods) == {"l1", "fidelity"} and rec.extra["official_split"] == (kind != "scores")
    if kind != "scores":
        assert "not the official KonIQ-10k split's training 7,058 / validation 1,000 / test 2,015" in r.stderr
    test = rec.predictions.select(method="l1", split="test")
    idx = koniq.load_index(root, "0-100" if extra else "1-5", official_sizes=False).table.set_index("image_name")
    np.testing.assert_allclose(test.targets[:, 0], idx.loc[list(test.sample_id), "mos"].to_numpy())
    assert (run_dir / "figures" / "scatter_test.png").exists() and (run_dir / "tables" / "summary.csv").exists()


@pytest.mark.slow
def test_a_csv_without_mos_fails_before_training_naming_the_column(tmp_path):
    root = write_koniq(tmp_path / "koniq", "sets")
    csv = root / koniq.SETS_CSV
    pd.read_csv(csv).drop(columns=["MOS"]).to_csv(csv, index=False)
    results = tmp_path / "results"
    env = {**__import__("os").environ, "LFAKIT_RESULTS": str(results), "LFAKIT_CACHE": str(tmp_path / "cache")}
    r = _lfakit("run", EXP, "-p", f"data_dir={root}", *QUICK, env=env)
    assert r.returncode != 0
    assert "'MOS'" in r.stderr and str(csv) in r.stderr
    assert not (results / EXP).exists() or not any((results / EXP).iterdir())


def test_the_data_path_reads_a_folder_written_like_the_published_release(tmp_path):
    """Both CSVs (sets: fractions, 0-100 MOS, 1-5 SD; scores: counts, MOS_zscore) and both image
    folders: the experiment's data path takes the sets CSV's official split, either image folder,
    and the targets on either scale."""
    from test_data_koniq import _table

    root = write_koniq(tmp_path / "koniq", "both", "both")
    t = _table().set_index("image_name")
    base = {**params.defaults(EXP), "data_dir": str(root), "image_size": [48, 64], "cache_dir": str(tmp_path / "c"),
            "progress": False, "test_datasets": []}
    for image_dir, scale in (("", "1-5"), ("1024x768", "0-100")):
        P = {**base, "image_dir": image_dir, "mos_scale": scale}
        with pytest.warns(UserWarning, match="training 12 / validation 3 / test 5 images, not the official"):
            d = X.load_data(P)
        assert d.official_split and not d.embedded
        assert {s: d.splits[s].images.shape[0] for s in ("train", "val", "test")} == {"train": 12, "val": 3, "test": 5}
        sp = d.splits["test"]
        want = t.loc[sp.image_names, "mos" if scale == "1-5" else "z"].to_numpy()
        np.testing.assert_allclose(sp.mos, want, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(sp.sd, t.loc[sp.image_names, "sd"].to_numpy() * (1 if scale == "1-5" else 25), rtol=1e-10)
        assert X.data_summary(d)["images"].tolist() == [12, 3, 5]


def test_a_wrong_mos_scale_stops_in_the_cli_before_torch_and_before_a_run_folder(tmp_path):
    """A sets CSV whose MOS is on 1-5, run with mos_scale=0-100: the torch-free input check names
    the column, the range found and the fix; torch is never imported and no run folder is made."""
    import os

    from test_data_koniq import _table

    root = write_koniq(tmp_path / "koniq", "sets")
    csv = root / koniq.SETS_CSV
    df = pd.read_csv(csv)
    df["MOS"] = _table()["mos"]
    df.to_csv(csv, index=False)
    results = tmp_path / "results"
    code = ("import sys; from lfakit import cli; "
            f"rc = cli.main({['run', EXP, '-p', f'data_dir={root}', '-p', 'mos_scale=0-100', '-q']!r}); "
            "print('RC', rc, 'TORCH', 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "LFAKIT_RESULTS": str(results), "LFAKIT_CACHE": str(tmp_path / "cache")})
    assert "TORCH False" in r.stdout and "RC 0" not in r.stdout, (r.stdout, r.stderr[-2000:])
    m = _table()["mos"]
    assert f"mos_scale=0-100 takes column 'MOS' as the 0-100 MOS, but its values span {m.min():.4g} to {m.max():.4g}" in r.stderr
    assert "Fix: run with mos_scale=1-5" in r.stderr
    assert not (results / EXP).exists() or not any((results / EXP).iterdir())


def test_a_logistic_fit_on_three_points_falls_back_instead_of_crashing():
    params_, ok = iqa_metrics.fit_logistic([0.1, 0.5, 0.9], [1.0, 2.0, 4.0])
    assert not ok
    rep = iqa_metrics.iqa_report([0.1, 0.5, 0.9], [1.0, 2.0, 4.0])
    assert rep["logistic_fit_ok"] is False and rep["plcc_logistic"] == rep["plcc_raw"]


def test_the_large_sample_path_of_the_srcc_bootstrap_gives_the_same_numbers():
    rng = np.random.default_rng(2)
    t = rng.normal(size=600)
    a, b = t + rng.normal(size=600), t + 0.8 * rng.normal(size=600)
    big = stats.paired_bootstrap_correlation(t, a, b, "srcc", n_boot=50, seed=4)  # n > 500: the scipy loop
    ref = stats.paired_bootstrap(t, a, b, metric=lambda y, s: sps.spearmanr(y, s).statistic, n_boot=50, seed=4,
                                 stratified=False)
    assert big == pytest.approx(ref, abs=1e-12)


# --------------------------------------------------------------------------- the head: lr multiplier, bias start


def test_the_head_multiplier_reaches_the_optimizer_groups_and_one_group_by_default():
    """tiny_cnn and nss_mlp: ``features`` is the backbone; the rest (the output Linear; nss_mlp's
    standardisation has no parameters) gets lr x head_lr_mult.
    At the smoke default (1) the optimizer keeps one group, as before the option existed."""
    for model, head_modules in (("tiny_cnn", ("head",)), ("nss_mlp", ("norm", "head"))):
        P = _P(head_lr_mult=10.0, model=model)
        net = X.build_model(P)
        cfg = FitConfig.from_params(P, **X.fit_overrides(P))
        body, head = engine.make_optimizer(net, cfg).param_groups
        assert body["lr"] == P["lr"] and head["lr"] == pytest.approx(10 * P["lr"])
        assert {id(p) for p in body["params"]} == {id(p) for p in net.features.parameters()}
        assert {id(p) for p in head["params"]} == {id(p) for m in head_modules for p in getattr(net, m).parameters()}
        assert sorted(id(p) for g in (body, head) for p in g["params"]) == sorted(id(p) for p in net.parameters())
    P0 = _P()
    assert P0["head_lr_mult"] == 1.0 and "backbone_module" not in X.fit_overrides(P0)
    assert len(engine.make_optimizer(X.build_model(P0), FitConfig.from_params(P0, **X.fit_overrides(P0))).param_groups) == 1


def test_the_head_bias_starts_at_the_training_mos_mean():
    data = _fake_data()
    train = X.datasets(_P(patch_size=4, image_size=[4, 4]), data)["train"]
    P = _P(head_bias_init=True)
    bias = X.head_bias(P, train)
    assert bias == pytest.approx(data.splits["train"].mos.mean())
    net = X.build_model(P, bias)
    assert net.head.bias.item() == pytest.approx(data.splits["train"].mos.mean())
    assert X.head_bias(_P(head_bias_init=False), train) is None  # the layer's own initialisation
    torch.manual_seed(0)
    a = X.build_model(_P(head_bias_init=False))
    torch.manual_seed(0)
    b = X.build_model(P, bias)
    same = [torch.equal(x, y) for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()) if n != "head.bias"]
    assert all(same)  # only the bias differs: the other weights draw the same random numbers


def test_the_paper_profile_on_a_cpu_warns_once_and_the_smoke_profile_does_not(monkeypatch):
    from lfakit import runner

    paper = runner.resolve_params(EXP, "paper", {"device": "cpu"})
    msg = X.cpu_warning(paper, "cpu")
    assert "no GPU found" in msg and "meant for a GPU" in msg and "days per loss" in msg
    assert f"7 losses x {5 * 20 * 7058:,} training crops" in msg  # epochs x patches x the official training images
    assert X.cpu_warning(paper, "cuda") is None
    assert X.cpu_warning(runner.resolve_params(EXP, "smoke"), "cpu") is None
    monkeypatch.setattr(X, "_cpu_warned", set())
    with pytest.warns(UserWarning, match="no GPU found"):
        X.warn_if_cpu(paper)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X.warn_if_cpu(paper)  # once per process


def test_a_logistic_fit_on_its_width_floor_is_labelled_so():
    """Scores that only say which half of the MOS range an image is in pull the logistic map onto
    its width bound (a near-step): the table says ``width floor``, not ``ok``."""
    data = _fake_data()
    runs = _fake_runs({s: data.splits[s].mos for s in ("val", "test")}, {"l1": 0.8, "l2": 0.3})
    mos = data.splits["test"].mos
    rng = np.random.default_rng(3)
    runs["l1"].scores["test"] = (mos > np.median(mos)) + 1e-3 * rng.normal(size=len(mos))
    t = X.metrics_table(runs, data).set_index("Loss")
    assert t.loc["l1", "Logistic fit"] == "width floor"
    assert t.loc["l2", "Logistic fit"] == "ok"


@pytest.mark.slow
def test_a_cross_dataset_run_prints_the_kadid_column_on_the_embedded_and_on_a_published_layout(tmp_path):
    """``test_datasets=[kadid10k]``: every loss's model is also scored on the embedded KADID-format
    set (no kadid_dir) or on a folder written like the published KADID-10k release (its rows from
    tests/test_data_kadid.py); the summary gains the cross-dataset SRCC column, and the run keeps
    those predictions."""
    from lfakit import record
    from test_data_kadid import write_folder

    env = {**__import__("os").environ, "LFAKIT_RESULTS": str(tmp_path / "results"), "LFAKIT_CACHE": str(tmp_path / "cache")}
    for extra in ([], ["-p", f"kadid_dir={write_folder(tmp_path / 'kadid10k')}"]):
        r = _lfakit("run", EXP, *QUICK[:-3], "-p", "test_datasets=[kadid10k]", *extra, "-q", env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        run_dir = Path(r.stdout.strip().splitlines()[-1].split("-> ")[-1])
        summary = pd.read_csv(run_dir / "tables" / "summary.csv")
        col = X.cross_column("kadid10k")
        assert col in summary.columns and summary[col].between(-1, 1).all()
        rec = record.load_run(run_dir)
        cross = rec.predictions.select(method="l1", split="kadid10k")
        assert len(cross.sample_id) == (10 if extra else 90)
        assert rec.extra["cross_datasets"]["kadid10k"]["embedded"] == (not extra)
        if extra:  # the scores are the published dmos, in the file's order
            assert list(cross.targets[:, 0]) == [4.57, 4.33, 2.67, 1.67, 1.1, 4.0, 3.23, 1.0, 2.6, 3.33]


def test_a_bad_kadid_folder_stops_before_a_run_folder(tmp_path):
    from test_data_kadid import write_folder

    root = write_folder(tmp_path / "kadid10k")
    (root / "images" / "I01_01_02.png").unlink()
    results = tmp_path / "results"
    env = {**__import__("os").environ, "LFAKIT_RESULTS": str(results), "LFAKIT_CACHE": str(tmp_path / "cache")}
    r = _lfakit("run", EXP, "-p", "test_datasets=[kadid10k]", "-p", f"kadid_dir={root}", "-q", env=env)
    assert r.returncode == 2 and "I01_01_02.png" in r.stderr
    assert not (results / EXP).exists() or not any((results / EXP).iterdir())


def test_a_real_koniq_folder_with_the_embedded_kadid_set_or_a_kadid_dir_left_unused_is_refused(tmp_path):
    """Real KonIQ-10k results are never put beside a synthetic KADID column: data_dir without
    kadid_dir while test_datasets lists kadid10k stops before a run folder, naming both fixes; so
    does a kadid_dir that test_datasets does not use."""
    root = write_koniq(tmp_path / "koniq", "sets")
    results = tmp_path / "results"
    env = {**__import__("os").environ, "LFAKIT_RESULTS": str(results), "LFAKIT_CACHE": str(tmp_path / "cache")}
    r = _lfakit("run", EXP, "-p", f"data_dir={root}", "-p", "test_datasets=[kadid10k]", "-q", env=env)
    assert r.returncode == 2 and "kadid_dir is empty" in r.stderr and "test_datasets=[]" in r.stderr
    r = _lfakit("run", EXP, "-p", "test_datasets=[]", "-p", f"kadid_dir={tmp_path}", "-q", env=env)
    assert r.returncode == 2 and "test_datasets=[kadid10k]" in r.stderr
    assert not (results / EXP).exists() or not any((results / EXP).iterdir())


def test_the_committed_smoke_notebook_shows_an_l1_baseline_that_learned():
    """The smoke comparison is one of models that learned: the committed notebook's Results Summary
    Table (an nbval-checked output, so a re-run must print the same) has the L1 baseline at a test
    SRCC of at least 0.6, and the cross-dataset column."""
    import nbformat

    nb = nbformat.read(Path(__file__).parents[1] / "notebooks" / "iqa_losses.ipynb", as_version=4)
    tables = ["".join(o.get("data", {}).get("text/plain", "")) for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", [])]
    summary = next(t for t in tables if "| Loss" in t and "As in the study" in t)
    header = [h.strip() for h in summary.splitlines()[0].strip("|").split("|")]
    l1 = next([c.strip() for c in line.strip("|").split("|")] for line in summary.splitlines() if line.startswith("| l1 "))
    assert float(l1[header.index("SRCC")]) >= 0.6
    assert X.cross_column("kadid10k") in header
