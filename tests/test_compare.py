"""lfakit compare on run records written by lfakit.record (no training: the predictions are
drawn so that the answer is known), the CLI, and its clear early errors."""

from __future__ import annotations

import json
import os
import zlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lfakit import compare, params, record, stats
from lfakit.errors import DataError, ParameterError

CLASSES = ["A", "B", "C"]
N = 240


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((N, 3)) < [0.2, 0.3, 0.4]).astype(int)
    return [f"img{i:04d}" for i in range(N)], y


def _scores(y, strength: float, seed: int, noise_seed: int):
    rng = np.random.default_rng(1000 * noise_seed + seed)
    return y * strength + rng.normal(size=y.shape)


def _write_run(root: Path, name: str, methods: dict[str, float], seeds, params=None, experiment="chestxray_zlpr",
               ids=None, y=None, noise=0) -> Path:
    """A run folder with the record of ``methods`` (name -> signal strength) over ``seeds``."""
    run = root / experiment / name
    run.mkdir(parents=True)
    ids0, y0 = _data()
    ids = ids0 if ids is None else ids
    y = y0 if y is None else y
    pw = record.PredictionWriter()
    for m, strength in methods.items():
        for s in seeds:
            pw.add(m, "test", s, ids, y, _scores(y, strength, s, zlib.crc32(m.encode()) % 97 + noise), None)
    P = {"data_dir": "", "losses": list(methods), "baseline": "focal", "seeds": list(seeds), "seed": 42, "lr": 0.003,
         **(params or {})}
    (run / "params.yaml").write_text("{}")
    headline = pd.DataFrame({"Loss": list(methods)})
    record.save_run(run, experiment, P, methods={m: {} for m in methods}, headline=("overall", headline, "test"),
                    tables={}, predictions=pw, score_kind="logit", extra={"classes": CLASSES, "baseline": "focal"})
    return run


def test_a_clear_winner_a_tie_and_the_numbers_behind_them(tmp_path):
    run = _write_run(tmp_path, "20260101-000000-smoke", {"focal": 0.6, "zlpr": 2.0, "bce": 0.6}, seeds=[0, 1, 2])
    c = compare.compare_folder(run, n_boot=300)
    s = c.summary.set_index("Method")
    assert s.loc["focal", "Winner"] == "baseline"
    assert s.loc["zlpr", "Winner"] == "zlpr"  # a large gain on every class
    assert s.loc["bce", "Winner"] == "tie (n.s.)"  # the same signal strength: no difference to find
    assert s.loc["zlpr", "Seeds"] == 3
    # the per-class p-values are the seed-level t over DeLong's covariance of all six models, and the
    # mean rows the same t over the bootstrap covariance; one Holm family over the 2 x (3 + 1) tests
    rec = record.load_run(run)
    p_raw = []
    for m in ("zlpr", "bce"):
        for j in range(3):
            base = [rec.predictions.select(method="focal", split="test", seed=k).scores[:, j] for k in (0, 1, 2)]
            chal = [rec.predictions.select(method=m, split="test", seed=k).scores[:, j] for k in (0, 1, 2)]
            yj = rec.predictions.select(method="focal", split="test", seed=0).targets[:, j]
            p_raw.append(stats.seed_level_auroc(yj, np.stack(base), np.stack(chal))["p_value"])
    raw = c.raw[c.raw["class"] != "mean"]
    np.testing.assert_allclose(raw["p_value"], p_raw, rtol=1e-12)
    assert set(c.raw["kind"]) == {"seeds"} and c.raw["p_value"].notna().all()
    np.testing.assert_allclose(c.raw["p_holm"], stats.holm(c.raw["p_value"]), rtol=1e-12)
    # an interval excludes 0 exactly where the (raw) test rejects: one procedure
    assert ((c.raw["ci_low"] > 0) | (c.raw["ci_high"] < 0)).tolist() == (c.raw["p_value"] < 0.05).tolist()
    # mean over seeds of the per-seed mean AUROC, as the summary prints it
    from sklearn.metrics import roc_auc_score

    per_seed = [np.mean([roc_auc_score(rec.predictions.select(method="zlpr", split="test", seed=k).targets[:, j],
                                       rec.predictions.select(method="zlpr", split="test", seed=k).scores[:, j])
                         for j in range(3)]) for k in (0, 1, 2)]
    assert s.loc["zlpr", "AUROC (mean ± std)"] == f"{np.mean(per_seed):.4f} ± {np.std(per_seed, ddof=1):.4f}"
    # the per-seed figure's data: the same per-seed values, for every method and seed
    zs = c.seeds[c.seeds["Method"] == "zlpr"]
    assert zs["Seed"].tolist() == [0, 1, 2] and len(c.seeds) == 9
    np.testing.assert_allclose(zs["AUROC"], per_seed, rtol=1e-12)
    # the per-seed DeLong table: one row per challenger, class and seed
    assert len(c.per_seed) == 2 * 3 * 3
    assert "3 seed(s) per method" in c.evidence and "one Holm family over all 8 tests" in c.evidence
    assert "seed-level t" in c.evidence and "DeLong" in c.evidence
    assert "embedded default data" in c.evidence  # data_dir "" is the embedded default


def test_outputs_are_written_in_every_format(tmp_path):
    run = _write_run(tmp_path, "20260101-000000-smoke", {"focal": 0.6, "zlpr": 2.0}, seeds=[0, 1, 2])
    c = compare.compare_folder(run, n_boot=200)
    out = c.out_dir
    assert out == run / "comparison" / "auroc-vs-focal"
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["schema"] == compare.SCHEMA and doc["metric"] == "auroc" and doc["baseline"] == "focal"
    for name in ("summary", "per_class", "per_seed"):
        for ext in ("csv", "md", "tex"):
            assert (out / f"{name}.{ext}").stat().st_size > 0
            assert doc["files"][f"{name}_{ext}"] == f"{name}.{ext}"
    assert pd.read_csv(out / "summary.csv")["Method"].tolist() == ["focal", "zlpr"]
    assert "\\begin{tabular}" in (out / "summary.tex").read_text()
    for name in ("summary", "per_class", "per_seed"):  # pdflatex stops at a Unicode Δ or ±
        tex = (out / f"{name}.tex").read_text()
        assert tex.isascii(), name
    assert r"$\Delta$ vs baseline" in (out / "summary.tex").read_text()
    assert r"$\pm$" in (out / "per_class.tex").read_text()
    texts = [(out / f"{name}.tex").read_text() for name in ("summary", "per_class", "per_seed")]
    assert all("<" not in t.replace("$<$", "") for t in texts) and any("$<$0.001" in t for t in texts)
    assert (out / "summary.md").read_text().startswith("| Method")
    for png in ("forest.png", "seeds.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and doc["files"][png.replace(".", "_")] == png
    seeds = pd.read_csv(out / "seeds.csv")
    assert list(seeds.columns) == ["Method", "Seed", "AUROC"] and len(seeds) == 6
    assert seeds.groupby("Method")["AUROC"].mean()["zlpr"] > seeds.groupby("Method")["AUROC"].mean()["focal"]
    loaded = compare.load_comparison(out)
    assert list(loaded["tables"]["summary"]["Winner"]) == ["baseline", "zlpr"]


def test_runs_of_a_sweep_are_pooled_and_a_grid_parameter_names_the_method(tmp_path):
    root = tmp_path / "results"
    runs = []
    for i, (m, lr, s) in enumerate([("focal", 0.003, 0), ("focal", 0.003, 1), ("zlpr", 0.003, 0), ("zlpr", 0.003, 1),
                                    ("zlpr", 0.01, 0), ("zlpr", 0.01, 1)]):
        runs.append(_write_run(root, f"20260101-00000{i}-smoke", {m: 0.6 if m == "focal" else 1.5}, seeds=[s],
                               params={"lr": lr, "seed": s}))
    sweep_dir = root / "chestxray_zlpr" / "sweeps" / "smoke-abc"
    sweep_dir.mkdir(parents=True)
    points = [{"index": i, "status": "complete", "run_dir": str(r)} for i, r in enumerate(runs)]
    points.append({"index": 6, "status": "failed", "run_dir": None, "error": "cell 3 failed: ValueError: boom"})
    (sweep_dir / "sweep.json").write_text(json.dumps({"schema": "lfakit.sweep/1", "points": points}))
    c = compare.compare_folder(sweep_dir, baseline="focal", n_boot=200)
    assert c.source.kind == "sweep" and len(c.source.run_dirs) == 6
    assert c.summary["Method"].tolist() == ["focal [lr=0.003]", "zlpr [lr=0.003]", "zlpr [lr=0.01]"]
    assert (c.summary["Seeds"] == 2).all()
    assert "point 6 (failed): cell 3 failed: ValueError: boom" in c.evidence
    # the results folder of the experiment gives the same comparison (sweeps/ is not a run)
    c2 = compare.compare_folder(root / "chestxray_zlpr", baseline="focal", n_boot=200, out=tmp_path / "c2")
    pd.testing.assert_frame_equal(c.summary, c2.summary)


def test_a_correlation_metric_for_iqa(tmp_path):
    run = tmp_path / "iqa_losses" / "r1"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 80)
    pw = record.PredictionWriter()
    for m, noise in (("l1", 1.0), ("rank", 0.2), ("l2", 1.0)):
        pw.add(m, "test", 42, [f"i{i}" for i in range(80)], mos, mos + noise * rng.normal(size=80), None)
    record.save_run(run, "iqa_losses", {"data_dir": "", "baseline": "l1"}, methods={}, headline=("h", pd.DataFrame(), ""),
                    tables={}, predictions=pw, extra={"baseline": "l1"})
    c = compare.compare_folder(run, n_boot=300)
    assert c.metric.name == "srcc" and c.baseline == "l1"
    s = c.summary.set_index("Method")
    # one trained model per loss: the difference of these models on the test set, and no Winner
    assert "Winner" not in s and "Test" not in s
    assert float(s.loc["rank", "p (test set)"].lstrip("<")) < 0.01 < float(s.loc["l2", "p (test set)"])
    assert s.loc["rank", "Δ (these models)"].startswith("+")
    assert len(c.per_class) == 0 and len(c.per_seed) == 0  # one target, no DeLong
    assert "unmeasured" in c.evidence and "not a verdict about the losses" in c.evidence  # one seed per method
    c = compare.compare_folder(run, metric="plcc", n_boot=300, ci_method="bca")
    assert c.metric.name == "plcc" and "BCa" in c.evidence


def test_bad_input_is_named_early(tmp_path):
    with pytest.raises(ParameterError, match="is not a folder"):
        compare.compare_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no complete run"):
        compare.compare_folder(tmp_path / "empty")
    run = _write_run(tmp_path, "r1", {"focal": 0.6, "zlpr": 2.0}, seeds=[0])
    with pytest.raises(ParameterError, match="not a method of these runs.*focal, zlpr"):
        compare.compare_folder(run, baseline="zlrp")
    with pytest.raises(ParameterError, match="auroc"):
        compare.compare_folder(run, metric="srcc")
    with pytest.raises(ParameterError, match="at least 100"):
        compare.compare_folder(run, n_boot=10)
    assert not (run / "comparison").exists()  # nothing written by a refused comparison
    # two runs scored on different test sets
    root = tmp_path / "mixed"
    _write_run(root, "r1", {"focal": 0.6}, seeds=[0])
    ids, y = _data()
    _write_run(root, "r2", {"zlpr": 1.0}, seeds=[0], ids=ids[:200], y=y[:200])
    with pytest.raises(DataError, match="other test instances"):
        compare.compare_folder(root / "chestxray_zlpr")
    atlas = tmp_path / "loss_atlas" / "r"
    atlas.mkdir(parents=True)
    record.save_run(atlas, "loss_atlas", {}, methods={}, headline=("h", pd.DataFrame(), ""), tables={})
    with pytest.raises(ParameterError, match="cannot be compared"):
        compare.compare_folder(atlas)


def test_the_command_prints_the_table_with_intervals_and_corrected_tests(tmp_path):
    run = _write_run(tmp_path, "r1", {"focal": 0.6, "zlpr": 2.0}, seeds=[0, 1])
    out = subprocess.run([sys.executable, "-m", "lfakit.cli", "compare", str(run), "--n-boot", "200"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "| Method" in out.stdout and "95% CI" in out.stdout and "p (Holm)" in out.stdout
    assert "| zlpr" in out.stdout and "Evidence:" in out.stdout
    assert f"written: {run / 'comparison' / 'auroc-vs-focal'}" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "lfakit.cli", "compare", str(run), "--baseline", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "lfakit: error:" in bad.stderr and "Traceback" not in bad.stderr


def _write_membership_run(root: Path, name: str, seed: int, leak: dict[str, float], n: int = 400,
                          ids: list[str] | None = None) -> Path:
    """A membership_inference record: per loss a target and two reference models on one pool (the
    sample ids ``ids``, by default x0000...); the target's members have lower losses by ``leak``
    (0: no leakage)."""
    run = root / "membership_inference" / name
    run.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    members = np.zeros(n, bool)
    members[rng.permutation(n)[: n // 2]] = True
    labels = rng.integers(0, 10, n)
    ids = [f"x{i:04d}" for i in range(n)] if ids is None else ids
    pw = record.PredictionWriter()
    for loss, d in leak.items():
        for role, mask in (("target", members), ("ref0", ~members), ("ref1", members)):
            logits = rng.normal(size=(n, 10))
            sample_loss = 1.0 + 0.3 * rng.normal(size=n) - d * mask
            pw.add(loss, "pool", seed, ids, labels, logits, sample_loss, group=role, in_train=mask.astype(np.int8))
    P = {"dataset": "digits", "data_dir": "", "losses": list(leak), "baseline": "ce", "seed": seed,
         "reference_attack": "loss", "study_attack": "loss", "fixed_variance": True, "rmia_gamma": 1.0, "rmia_a": 0.3,
         "rmia_offline": False}
    record.save_run(run, "membership_inference", P, methods={}, headline=("study", pd.DataFrame(), ""), tables={},
                    predictions=pw, extra={"baseline": "ce"})
    return run


def test_membership_leakage_lower_is_better_over_common_seeds(tmp_path):
    root = tmp_path / "results"
    for s in (0, 1, 2):
        _write_membership_run(root, f"2026010{s}-000000-smoke", s, {"ce": 1.5, "mae": 0.0, "gce": 1.5})
    c = compare.compare_folder(root / "membership_inference", n_boot=200)
    assert c.metric.name == "tpr@1%fpr" and c.baseline == "ce" and not c.metric.higher_is_better
    s = c.summary.set_index("Method")
    assert s.loc["mae", "Winner"] == "mae"  # leaks (much) less than ce
    assert s.loc["gce", "Winner"] == "tie (n.s.)"
    assert (s["Seeds"] == 3).all()
    # the per-seed values are the loss attack's TPR at 1% FPR on each seed's own membership split
    from lfakit.metrics.privacy import tpr_at_fpr

    rec = record.load_run(root / "membership_inference" / "20260100-000000-smoke")
    t = rec.predictions.select(method="ce", group="target")
    order = np.argsort(t.sample_id, kind="stable")
    tpr0 = tpr_at_fpr(t.fields["in_train"][order].astype(bool), -t.sample_loss[order], 0.01)
    mae = c.raw[(c.raw["method"] == "mae") & (c.raw["class"] == "mean")]
    assert tpr0 > 0.3 and float(mae["delta"].iloc[0]) < -0.3
    assert "pool instances" in c.evidence
    c = compare.compare_folder(root / "membership_inference", metric="attack_auc", n_boot=200)
    assert c.summary.set_index("Method").loc["mae", "Winner"] == "mae"


def test_membership_seeds_that_drew_their_own_pools_are_compared_seed_by_seed(tmp_path):
    """The paper profile draws a pool of pool_size samples per seed: each seed's losses share
    that seed's pool, the seeds do not. Seeds are bootstrapped separately and combined; a run
    whose pool differs from another run's of the same seed is named."""
    root = tmp_path / "results"
    pools = {s: [f"x{i:05d}" for i in sorted(np.random.default_rng(s).choice(1000, 400, replace=False))]
             for s in (0, 1, 2)}
    for s in (0, 1, 2):  # one run per seed, as a sweep over --seeds writes them
        _write_membership_run(root, f"2026010{s}-000000-paper", s, {"ce": 1.5, "mae": 0.0, "gce": 1.5},
                              ids=pools[s])
    c = compare.compare_folder(root / "membership_inference", n_boot=200)
    s = c.summary.set_index("Method")
    assert (s["Seeds"] == 3).all()
    assert s.loc["mae", "Winner"] == "mae" and s.loc["gce", "Winner"] == "tie (n.s.)"
    assert "the seeds' pools differ (400 instances each, " in c.evidence
    assert "over 200 bootstrap resamples of the union of the pools" in c.evidence
    assert set(c.raw["kind"]) == {"seeds"}  # three targets per loss: the seed-level t
    # the seed-mean delta is the mean of the seeds' own deltas
    one = [compare.compare_folder(root / "membership_inference" / f"2026010{k}-000000-paper", n_boot=200)
           for k in (0, 1, 2)]
    d = [float(x.raw.query("method == 'mae' and `class` == 'mean'")["delta"].iloc[0]) for x in one]
    got = float(c.raw.query("method == 'mae' and `class` == 'mean'")["delta"].iloc[0])
    assert got == pytest.approx(np.mean(d), abs=1e-12)
    # a second run of seed 1 on another pool cannot be paired with the first
    _write_membership_run(root, "20260109-000000-paper", 1, {"ce": 1.5, "mae": 0.0}, ids=pools[2])
    with pytest.raises(DataError, match=r"seed 1: .*20260109-000000-paper attacked another pool than .*20260101"):
        compare.compare_folder(root / "membership_inference", n_boot=200)


def _write_per_seed_test_sets(tmp_path, rng_seed: int, size, empty_seed: int | None = None):
    """A cf_ensemble record whose seeds 42-44 each have their own test set (``size(seed)``
    instances; ``empty_seed`` without a positive), averaging vs a better stacking, and each
    seed's DeLong test of the two (``empty_seed`` left out)."""
    run = tmp_path / "cf_ensemble" / "r1"
    run.mkdir(parents=True)
    pw = record.PredictionWriter()
    rng = np.random.default_rng(rng_seed)
    tests = {}
    for seed in (42, 43, 44):
        n = size(seed)
        y = np.zeros(n, int) if seed == empty_seed else (rng.random(n) < 0.3).astype(int)
        ids = [f"s{seed}-{i}" for i in range(n)]
        base, good = y * 0.5 + rng.normal(size=n), y * 1.5 + rng.normal(size=n)
        pw.add("averaging", "test", seed, ids, y, base, None, group="synthetic")
        pw.add("stacking", "test", seed, ids, y, good, None, group="synthetic")
        if seed != empty_seed:
            tests[seed] = stats.delong_test(y, base, good)
    record.save_run(run, "cf_ensemble", {"seeds": 3, "seed": 42}, methods={}, headline=("h", pd.DataFrame(), ""),
                    tables={}, predictions=pw)
    return run, tests


def test_seeds_with_their_own_test_sets_are_paired_by_seed_and_combined_as_independent(tmp_path):
    """cf_ensemble's synthetic set draws data and split per seed: each seed's methods share one test
    set, the seeds do not. The seed-level t over the per-seed pairs, with each pair's DeLong
    covariance and none across seeds."""
    run, tests = _write_per_seed_test_sets(tmp_path, 0, lambda seed: 200 + 20 * (seed - 42))
    c = compare.compare_folder(run, n_boot=200)
    assert c.baseline == "averaging"  # no baseline parameter: the first method
    row = c.raw[(c.raw["method"] == "stacking")].iloc[0]
    d = np.array([t["delta"] for t in tests.values()])
    assert row["delta"] == pytest.approx(d.mean(), abs=1e-12) and row["kind"] == "seeds"
    # by hand: the paired differences' spread beyond their DeLong variances; nothing is shared across
    # seeds, so the degrees of freedom are the paired t's, 3 - 1
    var_d = np.array([t["se"] ** 2 for t in tests.values()])
    s2 = d.var(ddof=1)
    var = var_d.mean() / 3 + max(s2 - var_d.mean(), 0) / 3
    from scipy.stats import t as student_t

    assert row["p_value"] == pytest.approx(2 * student_t.sf(abs(d.mean()) / np.sqrt(var), 2), rel=1e-9)
    assert row["df"] == pytest.approx(2.0)
    assert c.summary.set_index("Method").loc["stacking", "Winner"] == "stacking"
    assert len(c.per_seed) == 3 and "each seed its own test set" in c.evidence
    with pytest.raises(ParameterError, match="shared test set"):
        compare.compare_folder(run, n_boot=200, ci_method="bca")


def test_the_per_seed_figure_says_when_there_is_no_spread(tmp_path):
    import matplotlib.pyplot as plt

    several = compare.compare_folder(_write_run(tmp_path, "r2", {"focal": 0.6, "zlpr": 2.0}, seeds=[0, 1]), n_boot=100)
    one = compare.compare_folder(_write_run(tmp_path, "r1", {"focal": 0.6, "zlpr": 2.0}, seeds=[0]), n_boot=100)
    titles = []
    for c in (several, one):
        fig = compare.plot_seeds(c)
        titles.append(fig.get_suptitle())
        plt.close(fig)
    assert "mean ± sd over seeds" in titles[0]
    assert "one seed per method" in titles[1] and "mean ± sd" not in titles[1]


def _write_iqa_run(root: Path, methods: dict[str, float], n: int = 80) -> Path:
    """An iqa_losses record, one seed: method -> noise of its predicted scores around the MOS."""
    run = root / "iqa_losses" / "r1"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, n)
    pw = record.PredictionWriter()
    for m, noise in methods.items():
        pw.add(m, "test", 42, [f"i{i}" for i in range(n)], mos, mos + noise * rng.normal(size=n), None)
    record.save_run(run, "iqa_losses", {"data_dir": "", "baseline": "l1"}, methods={},
                    headline=("h", pd.DataFrame(), ""), tables={}, predictions=pw, extra={"baseline": "l1"})
    return run


def test_too_few_resamples_for_any_significant_difference_are_refused(tmp_path):
    """A bootstrap p is at least 1/(B + 1); Holm multiplies the smallest of k by k. With 6
    challengers and B = 100 that is 6/101 > 0.05: every row would be a tie whatever the effect."""
    run = _write_iqa_run(tmp_path, {"l1": 1.0, **{f"m{i}": 0.05 for i in range(6)}})
    with pytest.raises(ParameterError, match=r"--n-boot=100 is too few .* 6 bootstrap-tested .* at least "
                                             r"1/\(100 \+ 1\) = 0.0099.* Use --n-boot=120 "):
        compare.compare_folder(run, n_boot=100)
    assert not (run / "comparison").exists()
    c = compare.compare_folder(run, n_boot=120)
    assert "Winner" not in c.summary and (c.raw["p_holm"] < 0.05).all()  # one seed: no Winner; the p can reach alpha
    assert "a bootstrap p-value is at least 1/(B + 1) = 0.0083" in c.evidence
    assert [params.min_resamples(k, 0.05) for k in (1, 2, 6, 14)] == [20, 40, 120, 280]
    for k in (1, 3, 7, 42):  # the smallest B that works, and B - 1 does not
        b = params.min_resamples(k, 0.01)
        assert k / (b + 1) < 0.01 <= k / b


def test_few_resamples_leave_auroc_per_class_delong_tests_valid_and_say_what_they_cannot_test(tmp_path):
    """AUROC over several classes: the per-class tests are DeLong's (no floor), only the
    mean-over-classes rows use the bootstrap p. Not refused: the evidence says which rows are out
    of reach. One class: the only test is DeLong's, nothing to say."""
    methods = {"focal": 0.6, **{f"m{i}": 3.0 for i in range(6)}}
    run = _write_run(tmp_path, "r1", methods, seeds=[0])
    c = compare.compare_folder(run, n_boot=100)
    assert "no mean-over-classes row can be significant after Holm over 6 challengers" in c.evidence
    assert "use --n-boot 120 or more" in c.evidence
    holm = c.summary.set_index("Method").loc[[f"m{i}" for i in range(6)], "p (Holm)"].str.lstrip("<").astype(float)
    assert (holm >= 0.05).all()
    assert (c.per_class["p (Holm)"].str.lstrip("<").astype(float) < 0.05).all()  # DeLong finds every class's gain
    c = compare.compare_folder(run, n_boot=120, out=tmp_path / "c2")
    assert "no mean-over-classes row" not in c.evidence
    ids, y = _data()
    one = _write_run(tmp_path, "r2", methods, seeds=[0], y=y[:, :1])
    c = compare.compare_folder(one, n_boot=100)  # one AUROC: DeLong only, no floor
    assert "no mean-over-classes row" not in c.evidence and "at least 1/(B + 1)" not in c.evidence
    holm = c.summary.set_index("Method").loc[[f"m{i}" for i in range(6)], "p (Holm)"].str.lstrip("<").astype(float)
    assert (holm < 0.05).all()


def test_a_nan_score_is_named_with_its_run_method_and_seed(tmp_path):
    run = tmp_path / "chestxray_zlpr" / "r1"
    run.mkdir(parents=True)
    ids, y = _data()
    pw = record.PredictionWriter()
    for m in ("focal", "zlpr"):
        for seed in (0, 1):
            sc = _scores(y, 1.0, seed, 1)
            if (m, seed) == ("zlpr", 1):
                sc[5, 1] = np.nan  # a training that diverged
            pw.add(m, "test", seed, ids, y, sc, None)
    record.save_run(run, "chestxray_zlpr", {"losses": ["focal", "zlpr"], "baseline": "focal"}, methods={},
                    headline=("h", pd.DataFrame(), ""), tables={}, predictions=pw, extra={"classes": CLASSES})
    with pytest.raises(DataError, match=r"r1: zlpr, seed 1 has 1 non-finite test scores of 720"):
        compare.compare_folder(run, n_boot=200)
    assert not (run / "comparison").exists()
    # and the normal test of a NaN standard error is no test (it was p = 0 before)
    assert all(np.isnan(v) for v in stats._normal_test(0.1, float("nan"), 0.95))
    # and a zero standard error with a difference is no test either, never p = 0 (issue 25)
    assert np.isnan(stats._normal_test(0.1, 0.0, 0.95)[1]) and stats._normal_test(0.0, 0.0, 0.95)[1] == 1.0
    y = np.r_[np.ones(3), np.zeros(50)].astype(int)  # 3 positives, a constant baseline, a perfect challenger
    t = stats.delong_test(y, np.zeros(53), y.astype(float))
    assert t["delta"] == 0.5 and t["se"] == 0.0 and np.isnan(t["p_value"])


def test_a_class_absent_from_the_test_set_is_untestable_and_left_out_of_holm(tmp_path):
    ids, y = _data()
    y[:, 2] = 0  # class C has no positive
    run = _write_run(tmp_path, "r1", {"focal": 0.6, "zlpr": 2.0}, seeds=[0, 1, 2, 3, 4], y=y)
    c = compare.compare_folder(run, n_boot=200)
    pc = c.per_class.set_index("Class")
    assert pc.loc["C", "Δ"] == "—" and pc.loc["C", "Winner"] == "untestable" and pc.loc["C", "p (Holm)"] == "—"
    assert pc.loc["A", "Winner"] == "zlpr"
    assert "one Holm family over all 3 tests" in c.evidence  # the mean, A and B
    assert "1 comparison(s) untestable" in c.evidence
    assert "nan" not in c.text()


def test_independent_seeds_leave_a_seed_without_the_class_out_of_both_delta_and_test(tmp_path):
    """cf_ensemble-like seeds with their own test sets; seed 43 has no positive: the class's
    delta, interval and DeLong test all cover seeds 42 and 44."""
    run, tests = _write_per_seed_test_sets(tmp_path, 3, lambda seed: 200, empty_seed=43)
    c = compare.compare_folder(run, n_boot=200)
    row = c.raw[c.raw["method"] == "stacking"].iloc[0]
    assert row["delta"] == pytest.approx(np.mean([t["delta"] for t in tests.values()]), abs=1e-12)
    assert np.isfinite(row["ci_low"]) and row["ci_low"] < row["delta"] < row["ci_high"]
    assert row["seeds"] == 2 and np.isfinite(row["p_value"])  # the seed-level t over the two seeds with the class
    r = stats.independent_seed_bootstrap([
        {"delta": np.array([d]), "mean": {"delta": d}, "replicates": np.full((4, 2), d)}
        for d in (0.1, np.nan, 0.3)])
    assert r["delta"][0] == pytest.approx(0.2) and r["seeds"].tolist() == [2]


def test_a_baseline_loss_that_names_several_grid_methods_must_be_given_in_full(tmp_path):
    root = tmp_path / "results"
    for i, (lr, s) in enumerate([(0.003, 0), (0.01, 0)]):
        _write_run(root, f"20260101-00000{i}-smoke", {"focal": 0.6, "zlpr": 1.5}, seeds=[s], params={"lr": lr})
    folder = root / "chestxray_zlpr"
    with pytest.raises(ParameterError, match=r"--baseline 'focal' names 2 methods .*focal \[lr=0.003\]; "
                                             r"focal \[lr=0.01\]\. Give one of them in full"):
        compare.compare_folder(folder, baseline="focal", n_boot=200)
    with pytest.raises(ParameterError, match=r"the runs' baseline loss 'focal' names 2 methods"):
        compare.compare_folder(folder, n_boot=200)
    c = compare.compare_folder(folder, baseline="focal [lr=0.01]", n_boot=200)
    assert c.baseline == "focal [lr=0.01]"


def test_one_method_or_a_group_without_the_baseline_is_named(tmp_path):
    one = _write_run(tmp_path, "r1", {"focal": 0.6}, seeds=[0, 1])
    with pytest.raises(DataError, match=r"one method \(focal\): nothing to compare it with"):
        compare.compare_folder(one, n_boot=200)
    run = tmp_path / "cifar_fece" / "r2"
    run.mkdir(parents=True)
    ids, y = _data()
    pw = record.PredictionWriter()
    for group, methods in (("rho=10", ("ce", "fece")), ("rho=50", ("fece", "focal"))):
        for m in methods:
            pw.add(m, "test", 0, ids, y, _scores(y, 1.0, 0, len(m)), None, group=group)
    record.save_run(run, "cifar_fece", {"baseline": "ce"}, methods={}, headline=("h", pd.DataFrame(), ""), tables={},
                    predictions=pw, extra={"classes": CLASSES, "baseline": "ce"})
    with pytest.raises(DataError, match=r"the runs' baseline loss 'ce' has no runs in group 'rho=50', which has "
                                         r"fece, focal"):
        compare.compare_folder(run, n_boot=200)
    with pytest.raises(DataError, match=r"--baseline 'focal' has no runs in group 'rho=10'"):
        compare.compare_folder(run, baseline="focal", n_boot=200)
    with pytest.raises(ParameterError, match=r"'fecee' is not a method of these runs; they have ce, fece, focal"):
        compare.compare_folder(run, baseline="fecee", n_boot=200)
    c = compare.compare_folder(run, baseline="fece", n_boot=200)  # every group has it
    assert set(c.summary["Group"]) == {"rho=10", "rho=50"} and not (run / "comparison" / "auroc-vs-ce").exists()


# --------------------------------------------------------------------------- damaged records (issue 24)


def _damage(run: Path, how: str) -> str:
    """Damage one file of a complete run folder as a shared copy can be damaged; return that file."""
    if how == "truncated":
        p = run / "predictions.npz"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif how == "corrupt_json":
        p = run / "metrics.json"
        p.write_text(p.read_text()[:-40])  # a copy cut short: no longer JSON
    elif how == "deleted":
        p = run / "predictions.npz"
        p.unlink()
    elif how == "changed":  # same size, other content: only the hash can tell
        p = run / "predictions.npz"
        b = bytearray(p.read_bytes())
        b[len(b) // 2] ^= 0xFF
        p.write_bytes(bytes(b))
    elif how == "bad_deflate":  # damaged compressed data under a manifest rewritten to match it
        p = run / "predictions.npz"
        b = bytearray(p.read_bytes())
        for i in range(len(b) // 3, len(b) // 3 + 64):
            b[i] ^= 0x5A
        p.write_bytes(bytes(b))
        record.write_manifest(run)
    elif how == "nested_json":  # JSON nested past the recursion limit, manifest rewritten to match
        p = run / "metrics.json"
        p.write_text("[" * 100_000 + "]" * 100_000)
        record.write_manifest(run)
    return p.name


@pytest.mark.parametrize("how", ["truncated", "corrupt_json", "deleted", "changed", "bad_deflate", "nested_json"])
def test_a_damaged_run_is_named_and_the_others_are_compared(tmp_path, how):
    root = tmp_path / "chestxray_zlpr"
    for i, s in enumerate((0, 1, 2)):
        _write_run(tmp_path, f"2026010{i}-000000-smoke", {"focal": 0.6, "zlpr": 2.0}, seeds=[s])
    bad = root / "20260101-000000-smoke"
    name = _damage(bad, how)
    with pytest.raises(record.DamagedRun, match=name) as e:
        record.load_run(bad)
    assert e.value.problems and e.value.problems[0].file == name
    c = compare.compare_folder(root, n_boot=200)
    assert [p.name for p in c.source.run_dirs] == ["20260100-000000-smoke", "20260102-000000-smoke"]
    assert c.summary.set_index("Method").loc["zlpr", "Seeds"] == 2  # the damaged run's seed is not counted
    left = [w for w in c.source.not_used if w.startswith(bad.name)]
    assert len(left) == 1 and "damaged" in left[0] and name in left[0]
    assert f"{bad.name} (damaged: {name}" in c.text() and "left out (1):" in c.text()
    doc = json.loads((c.out_dir / "comparison.json").read_text())
    assert doc["not_used"] == c.source.not_used and len(doc["runs"]) == 2


def test_compare_exits_non_zero_only_when_nothing_comparable_is_left(tmp_path):
    root = tmp_path / "chestxray_zlpr"
    a = _write_run(tmp_path, "20260100-000000-smoke", {"focal": 0.6, "zlpr": 2.0}, seeds=[0])
    b = _write_run(tmp_path, "20260101-000000-smoke", {"focal": 0.6, "zlpr": 2.0}, seeds=[1])
    _damage(b, "truncated")
    cmd = [sys.executable, "-m", "lfakit.cli", "compare", str(root), "--n-boot", "200"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "left out (1):" in out.stdout and "predictions.npz" in out.stdout and "truncated" in out.stdout
    _damage(a, "corrupt_json")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no complete run" in out.stderr and "metrics.json" in out.stderr and "predictions.npz" in out.stderr


def test_a_results_root_points_at_its_experiment_folders(tmp_path):
    _write_run(tmp_path, "r1", {"focal": 0.6, "zlpr": 2.0}, seeds=[0])
    _write_run(tmp_path, "r1", {"focal": 0.6, "zlpr": 2.0}, seeds=[0], experiment="iqa_losses")
    with pytest.raises(ParameterError, match=r"several experiments \(chestxray_zlpr, iqa_losses\).*lfakit compare "
                                              + str(tmp_path / "chestxray_zlpr")):
        compare.compare_folder(tmp_path)


def test_a_damaged_sweep_manifest_is_named(tmp_path):
    sweep = tmp_path / "chestxray_zlpr" / "sweeps" / "s1"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text('{"points": [')
    with pytest.raises(DataError, match=r"sweep.json is damaged.*lfakit compare .*chestxray_zlpr"):
        compare.compare_folder(sweep)


# --------------------------------------------------------------------------- seed-level verdicts (issue 25)


def test_seeds_that_re_split_one_pool_get_the_corrected_resampled_t(tmp_path):
    """cf_ensemble's digits: every seed re-splits one pool of instances, so the seeds' test sets
    overlap (and so do their training sets): Nadeau-Bengio's corrected t over the seeds' AUROC
    differences, with n_train read from the record's train rows, never the independent-seeds
    combination."""
    run = tmp_path / "cf_ensemble" / "r1"
    run.mkdir(parents=True)
    rng = np.random.default_rng(5)
    n = 400
    y_pool, a_pool = (rng.random(n) < 0.3).astype(int), rng.normal(size=n)
    pw, deltas = record.PredictionWriter(), []
    for seed in (42, 43, 44, 45):
        test = np.zeros(n, bool)
        test[rng.choice(n, 100, replace=False)] = True
        for split, mask in (("train", ~test), ("test", test)):
            ids = [f"d{i}" for i in np.flatnonzero(mask)]
            y = y_pool[mask]
            base = y * 0.8 + a_pool[mask] + 0.5 * rng.normal(size=mask.sum())
            good = y * 1.6 + a_pool[mask] + 0.5 * rng.normal(size=mask.sum())
            pw.add("averaging", split, seed, ids, y, base, None, group="digits")
            pw.add("stacking", split, seed, ids, y, good, None, group="digits")
            if split == "test":
                deltas.append(stats.delong_test(y, base, good)["delta"])
    record.save_run(run, "cf_ensemble", {"seeds": 4, "seed": 42}, methods={}, headline=("h", pd.DataFrame(), ""),
                    tables={}, predictions=pw)
    c = compare.compare_folder(run, n_boot=200)
    row = c.raw[c.raw["method"] == "stacking"].iloc[0]
    want = stats.corrected_resampled_ttest(deltas, n_train=300, n_test=100)
    assert row["kind"] == "re-splits" and row["delta"] == pytest.approx(want["delta"], abs=1e-12)
    assert row["p_value"] == pytest.approx(want["p_value"], rel=1e-12)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(want["ci_low"]), pytest.approx(want["ci_high"]))
    assert "Nadeau and Bengio's corrected resampled t" in c.evidence
    assert c.summary.set_index("Method").loc["stacking", "Test"] == "re-splits (Nadeau–Bengio t)"


def test_one_seed_names_no_winner_and_labels_its_rows_as_these_models(tmp_path):
    run = _write_run(tmp_path, "r1", {"focal": 0.6, "zlpr": 2.0}, seeds=[0])
    c = compare.compare_folder(run, n_boot=200)
    for df in (c.summary, c.per_class):
        assert "Winner" not in df and "Δ (these models)" in df and "95% CI (test set)" in df and "p (test set)" in df
    assert set(c.raw["kind"]) == {"test set"} and set(c.raw["winner"]) == {compare.NO_VERDICT}
    # the printed interval and p of a class are one procedure: DeLong's for the pair of models
    rec = record.load_run(run)
    sel = {m: rec.predictions.select(method=m, split="test", seed=0) for m in ("focal", "zlpr")}
    t = stats.delong_test(sel["focal"].targets[:, 0], sel["focal"].scores[:, 0], sel["zlpr"].scores[:, 0])
    a = c.raw[c.raw["class"] == "A"].iloc[0]
    assert (a["p_value"], a["ci_low"], a["ci_high"]) == (pytest.approx(t["p_value"], rel=1e-12),
                                                         pytest.approx(t["ci_low"]), pytest.approx(t["ci_high"]))
    assert "not a verdict about the losses" in c.evidence and "seeds=[0, 1, 2]" in c.evidence
    assert "one seed per method: no verdict" in c.text()


def test_one_holm_family_spans_challengers_classes_and_data_groups(tmp_path):
    run = tmp_path / "cifar_fece" / "r1"
    run.mkdir(parents=True)
    ids, y = _data()
    pw = record.PredictionWriter()
    for group, gain in (("rho=1/fold=1", 0.0), ("rho=10/fold=1", 1.5)):
        for m, strength in (("bce", 0.6), ("focal", 0.6 + gain), ("fece", 0.6)):
            for s in (0, 1, 2):
                pw.add(m, "test", s, ids, y, _scores(y, strength, s, zlib.crc32((m + group).encode()) % 97), None,
                       group=group)
    record.save_run(run, "cifar_fece", {"baseline": "bce", "data_dir": ""}, methods={},
                    headline=("h", pd.DataFrame(), ""), tables={}, predictions=pw,
                    extra={"classes": CLASSES, "baseline": "bce"})
    c = compare.compare_folder(run, n_boot=200)
    assert len(c.raw) == 2 * 2 * 4 and set(c.raw["group"]) == {"rho=1/fold=1", "rho=10/fold=1"}
    np.testing.assert_allclose(c.raw["p_holm"], stats.holm(c.raw["p_value"]), rtol=1e-12)
    assert "one Holm family over all 16 tests" in c.evidence and "in every data group" in c.evidence
    s = c.summary.set_index(["Group", "Method"])
    assert s.loc[("rho=10/fold=1", "focal"), "Winner"] == "focal"
    assert s.loc[("rho=1/fold=1", "focal"), "Winner"] == "tie (n.s.)"


def test_a_shared_sweep_finds_its_runs_beside_it_and_nowhere_else(tmp_path):
    """A sweep folder copied off a cluster records the cluster's run paths: compare finds the runs
    by their ids in the experiment folder above sweeps/. A sweep.json that names runs of another
    experiment elsewhere on this machine, or that is not a regular file, reads nothing there."""
    root = tmp_path / "results"
    runs = [_write_run(root, f"2026010{s}-000000-smoke", {"focal": 0.6, "zlpr": 2.0}, seeds=[s]) for s in (0, 1, 2)]
    sweep_dir = root / "chestxray_zlpr" / "sweeps" / "smoke-abc"
    sweep_dir.mkdir(parents=True)
    points = [{"index": i, "status": "complete", "run_dir": f"/cluster/home/u/results/chestxray_zlpr/{r.name}"}
              for i, r in enumerate(runs)]
    elsewhere = _write_run(tmp_path / "private", "20260105-000000-smoke", {"focal": 0.6, "zlpr": 2.0}, seeds=[5],
                           experiment="cifar_fece")
    points.append({"index": 3, "status": "complete", "run_dir": str(elsewhere)})
    (sweep_dir / "sweep.json").write_text(json.dumps({"schema": "lfakit.sweep/1", "experiment": "chestxray_zlpr",
                                                      "points": points}))
    c = compare.compare_folder(sweep_dir, n_boot=200)
    assert sorted(p.name for p in c.source.run_dirs) == [r.name for r in runs]
    assert any(w.startswith("point 3 (complete): its run folder") and "not a complete run of chestxray_zlpr" in w
               for w in c.source.not_used)
    (sweep_dir / "comparison").rename(tmp_path / "old-comparison")
    (sweep_dir / "sweep.json").unlink()
    os.mkfifo(sweep_dir / "sweep.json")  # reading it would block forever
    with pytest.raises(DataError, match="sweep.json is damaged .*not a regular file"):
        compare.compare_folder(sweep_dir, n_boot=200)


def test_one_seed_leaves_a_rare_class_untested_and_says_so(tmp_path):
    ids, y = _data()
    y[:, 0] = 0
    y[:12, 0] = 1  # class A: 12 positives
    run = _write_run(tmp_path, "r1", {"focal": 0.6, "zlpr": 2.0}, seeds=[0], y=y)
    c = compare.compare_folder(run, n_boot=200)
    a = c.raw[c.raw["class"] == "A"].iloc[0]
    assert np.isfinite(a["delta"]) and np.isnan(a["p_value"]) and a["reason"] == "not tested: 12 positives (< 20)"
    assert "1 class difference(s) of one pair of models not tested: fewer than 20 positives" in c.evidence
    seeds = _write_run(tmp_path / "s", "r2", {"focal": 0.6, "zlpr": 2.0}, seeds=[0, 1, 2], y=y)
    a = compare.compare_folder(seeds, n_boot=200).raw.query("`class` == 'A'").iloc[0]
    assert a["kind"] == "seeds" and np.isfinite(a["p_value"])  # the seed-level t needs no floor


def test_methods_whose_seeds_do_not_match_are_compared_unpaired(tmp_path):
    root = tmp_path / "chestxray_zlpr"
    _write_run(tmp_path, "20260100-000000-smoke", {"focal": 0.6}, seeds=[0, 1, 2])
    _write_run(tmp_path, "20260101-000000-smoke", {"zlpr": 2.0}, seeds=[3, 4, 5])
    c = compare.compare_folder(root, baseline="focal", n_boot=200)
    a = c.raw[c.raw["class"] == "A"].iloc[0]
    recs = [record.load_run(root / f"2026010{i}-000000-smoke") for i in (0, 1)]
    s1 = np.stack([recs[0].predictions.select(method="focal", seed=k).scores[:, 0] for k in (0, 1, 2)])
    s2 = np.stack([recs[1].predictions.select(method="zlpr", seed=k).scores[:, 0] for k in (3, 4, 5)])
    yj = recs[0].predictions.select(method="focal", seed=0).targets[:, 0]
    want = stats.seed_level_auroc(yj, s1, s2, paired=False)
    assert a["kind"] == "seeds" and a["p_value"] == pytest.approx(want["p_value"], rel=1e-12)
    assert want["p_value"] != pytest.approx(stats.seed_level_auroc(yj, s1, s2)["p_value"], rel=1e-6)
