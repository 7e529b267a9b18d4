"""The membership-inference experiment: its protocol on the pool, parallel training that gives the
same models as serial training, resume that retrains only what is missing, the flooding loss's
per-example statistic, the leakage table of one target per loss (differences of these models, no
verdict), and the attacks re-run from the run record alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lfakit import attacks, losses, params, record, stats
from lfakit.errors import ParameterError
from lfakit.experiments import membership_inference as X
from lfakit.metrics import privacy

EXP = "membership_inference"


def _P(tmp_path=None, **kw):
    P = params.defaults(EXP)
    P.update({"losses": ["ce", "flooding"], "n_ref": 4, "epochs": 3, "pool_size": 400, "n_boot": 200, "progress": False,
              **kw})
    return params.validate(EXP, {k: v for k, v in P.items() if k != "progress"}) | {"progress": False}


def test_pool_and_protocol_follow_the_rules():
    P = _P()
    pool = X.load_pool(P)
    pr = pool.protocol
    assert len(pool.labels) == 400 and pr.members.sum() == 200 and (~pr.members).sum() == 200
    assert pr.ref_in.shape == (4, 400) and (pr.ref_in.sum(0) == 2).all()  # every example IN for half of them
    roles = X.model_roles(P, pool)
    assert [r for r, _, _ in roles] == ["target", "ref0", "ref1", "ref2", "ref3"]
    assert len({s for _, s, _ in roles}) == 5  # one seed per model
    assert len(set(pool.ids)) == 400


def test_bad_settings_fail_before_any_work():
    with pytest.raises(ParameterError, match="n_ref=3 must be even"):
        params.validate(EXP, {**params.defaults(EXP), "n_ref": 3})
    with pytest.raises(ParameterError, match="need reference models"):
        params.validate(EXP, {**params.defaults(EXP), "n_ref": 2})
    with pytest.raises(ParameterError, match="n_targets=6 exceeds"):
        params.validate(EXP, {**params.defaults(EXP), "n_targets": 6})
    with pytest.raises(ParameterError, match="queries"):
        params.validate(EXP, {**params.defaults(EXP), "queries": "flips"})
    with pytest.raises(ParameterError, match="mlp is sized for the 8x8 digits"):
        params.validate(EXP, {**params.defaults(EXP), "dataset": "cifar10", "data_dir": "/x"})


def test_flooding_is_attacked_through_its_base_loss():
    z = torch.randn(6, 10, dtype=torch.float64)
    y = torch.arange(6) % 10
    per = X.sample_loss_fn("flooding", losses.build("flooding"))(z, y)
    np.testing.assert_allclose(per.numpy(), torch.nn.functional.cross_entropy(z, y, reduction="none").numpy(), rtol=1e-12)


def _evaluation(leak: dict[str, float], spread: float = 0.0, n: int = 400, n_targets: int = 3,
                seed: int = 0) -> X.Evaluation:
    """An Evaluation of ``n_targets`` targets per loss whose lira_online scores separate members by
    ``leak`` plus a per-target deviation of sd ``spread`` (the target-to-target variation)."""
    rng = np.random.default_rng(seed)
    in_train = np.stack([rng.permutation(n) < n // 2 for _ in range(n_targets)])
    res, met = {}, {}
    for name, shift in leak.items():
        res[name], met[name] = {}, {}
        for k in range(n_targets):
            s = rng.normal(size=n) + (shift + spread * rng.normal()) * in_train[k]
            res[name][k] = {"lira_online": attacks.AttackResult("lira_online", s, np.zeros(0), np.zeros(0, bool), 0.0)}
            met[name][k] = {"lira_online": privacy.attack_metrics(in_train[k], s, 0.0)}
    return X.Evaluation(list(range(n_targets)), {}, res, met, in_train, {n: True for n in leak})


def test_the_leakage_verdict_tests_against_the_target_to_target_spread():
    P = _P(losses=["ce", "mae", "flooding"], n_boot=300)
    ev = _evaluation({"ce": 0.2, "mae": 2.0, "flooding": 0.25})  # mae's targets leak far more than ce's
    t = X.leakage_comparison(P, ev).set_index("Loss")
    assert list(t.index) == ["mae", "flooding"]
    assert (t["Test"] == X.TARGET_TEST).all() and (t["Targets"] == 3).all()
    assert t.loc["mae", "Verdict"] == "more leakage" and t.loc["mae", "p (Holm)"] < 0.05
    # the row is lfakit.stats.seed_level_test over the targets with the shared pool bootstrap's covariance
    y = ev.in_train
    reps = {n: privacy.shared_bootstrap_auc(y, np.stack([ev.results[n][k]["lira_online"].scores for k in range(3)]), 300,
                                            P["seed"]) for n in ("ce", "mae")}
    v = {n: np.array([ev.metrics[n][k]["lira_online"]["auc"] for k in range(3)]) for n in ("ce", "mae")}
    want = stats.seed_level_test(v["ce"], v["mae"], stats.replicate_covariance(reps["ce"], reps["mae"]))
    assert t.loc["mae", "Δ AUC"] == pytest.approx(round(want["delta"], 4), abs=1e-12)
    assert t.loc["mae", "p"] == pytest.approx(round(want["p_value"], 4), abs=1e-12)
    # a moderate difference with a large target-to-target spread: the interval over targets is far wider than
    # one target's pool-bootstrap interval (the spread is in the variance), and no verdict is named
    ev2 = _evaluation({"ce": 0.3, "mae": 0.6}, spread=0.5, n=2000, seed=4)
    t2 = X.leakage_comparison(_P(losses=["ce", "mae"], n_boot=300), ev2).set_index("Loss")
    one = stats.paired_bootstrap(ev2.in_train[0].astype(int), ev2.results["ce"][0]["lira_online"].scores,
                                 ev2.results["mae"][0]["lira_online"].scores, metric="auroc", n_boot=300, seed=0)
    assert t2.loc["mae", "Verdict"] == "no evidence" and t2.loc["mae", "p"] > 0.05
    assert t2.loc["mae", "CI high"] - t2.loc["mae", "CI low"] > 1.5 * (one["ci_high"] - one["ci_low"])
    # one target: no spread to test against, no verdict
    ev1 = _evaluation({"ce": 0.2, "mae": 2.0}, n_targets=1)
    t1 = X.leakage_comparison(_P(losses=["ce", "mae"], n_targets=1), ev1).set_index("Loss")
    assert t1.loc["mae", "Verdict"] == "untested (1 target)" and np.isnan(t1.loc["mae", "p"])
    note = X.comparison_note(P, X.Pool(np.zeros((400, 8, 8)), np.zeros(400, int), np.array(["x"] * 400), ("0",),
                                       attacks.make_protocol(400, 4, 0)))
    assert X.TARGET_TEST in note and "target-to-target spread" in note and "seed_level_test" in note


def test_query_images_follow_lira_inference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (2, 6, 6, 3), dtype=np.uint8)
    assert len(X.QUERY_SETS["mirror"]) == 2 and len(X.QUERY_SETS["mirror_shifts"]) == 18
    assert X.QUERY_SETS["mirror_shifts"][0] == (False, 0, 0) and len(set(X.QUERY_SETS["mirror_shifts"])) == 18
    np.testing.assert_array_equal(X.query_images(img, False, 0, 0), img)
    np.testing.assert_array_equal(X.query_images(img, True, 0, 0), img[:, :, ::-1])
    # LiRA: pad by `shift` with REFLECT, window at offset (shift + d); here d = (1, -1)
    pad = np.pad(img, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(X.query_images(img, False, 1, -1), pad[:, 2:8, 0:6])
    assert X.query_split(0) == "pool" and X.query_split(3) == "pool_q3"


def test_loss_attack_rows_left_out_only_where_the_loss_ranks_as_the_confidence():
    labels = np.array([0, 1, 2, 0])
    z = np.random.default_rng(1).normal(size=(2, 4, 1, 3))
    p = np.exp(attacks._log_py(z, labels))[..., 0]
    mono = X.Models("ce", z, -np.log(p), np.ones((2, 4), bool), ["target", "ref0"])
    assert X.loss_is_monotone_in_confidence(mono, labels)
    other = X.Models("x", z, np.random.default_rng(2).normal(size=(2, 4)), np.ones((2, 4), bool), ["target", "ref0"])
    assert not X.loss_is_monotone_in_confidence(other, labels)


@pytest.mark.slow
def test_parallel_training_gives_the_serial_models_and_resume_retrains_only_what_is_missing(tmp_path):
    P = _P(epochs=2)
    pool = X.load_pool(P)
    serial = X.train_all(P, pool, tmp_path / "a")
    par = X.train_all({**P, "workers": 2}, pool, tmp_path / "b")
    for name in P["losses"]:
        np.testing.assert_array_equal(serial[name].logits, par[name].logits)
    files = sorted((tmp_path / "a" / "predictions").glob("*.npz"))
    assert len(files) == 10
    before = {f.name: f.stat().st_mtime_ns for f in files}
    (tmp_path / "a" / "predictions" / "ce__ref2.npz").unlink()
    again = X.train_all(P, pool, tmp_path / "a")
    after = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "a" / "predictions").glob("*.npz")}
    assert [n for n in after if after[n] != before.get(n)] == ["ce__ref2.npz"]
    np.testing.assert_array_equal(again["ce"].logits, serial["ce"].logits)


@pytest.mark.slow
def test_attacks_rerun_from_the_record_alone_give_the_table(tmp_path):
    P = _P(epochs=3, queries="mirror")  # two queries: the record keeps both
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pool = X.load_pool(P)
    trained = X.train_all(P, pool, run_dir)
    ev = X.evaluate(P, pool, trained)
    tabs = X.tables(P, ev)
    X.save({**P, "run_dir": str(run_dir)}, run_dir, pool, trained, ev, tabs)
    r = record.load_run(run_dir)
    roles = ["target"] + [f"ref{k}" for k in range(P["n_ref"])]
    q = len(X.QUERY_SETS[P["queries"]])
    assert q == 2 and set(r.predictions.splits()) == {"pool", "pool_q1"}
    for name in P["losses"]:
        sel = {g: [r.predictions.select(method=name, split=X.query_split(j), group=g) for j in range(q)] for g in roles}
        logits = np.stack([np.stack([b.scores for b in sel[g]], 1) for g in roles])  # (M, N, Q, K) from the record
        np.testing.assert_array_equal(logits, trained[name].logits)
        loss = np.stack([sel[g][0].sample_loss for g in roles])
        keep = np.stack([sel[g][0].fields["in_train"].astype(bool) for g in roles])
        labels = sel["target"][0].targets[:, 0].astype(np.int64)
        res = attacks.attack_targets(logits, loss, labels, keep, range(P["n_targets"]), attacks=tuple(P["attacks"]),
                                     options=X.attack_options(P), seed=P["seed"])
        row = r.tables["attacks"]
        for a in P["attacks"]:
            shown = row[(row.Loss == name) & (row.Attack == a)]["AUC"]
            if a == "loss" and ev.loss_as_confidence[name]:
                assert shown.empty
                continue
            aucs = [privacy.attack_metrics(keep[k], res[k][a].scores, res[k][a].threshold)["auc"] for k in res]
            assert np.mean(aucs) == pytest.approx(shown.iloc[0], abs=5e-4 + 1e-12)
    # lfakit compare re-runs the reference attack from the same record and finds the run's own values
    from lfakit import compare

    c = compare.compare_folder(run_dir, metric="tpr@1%fpr", n_boot=200, out=tmp_path / "cmp")
    ref = P["reference_attack"]
    for name in P["losses"]:
        shown = c.summary.set_index("Method").loc[name, "TPR@1%FPR (mean ± std)"]
        assert float(shown) == pytest.approx(r.methods[name]["targets"]["target"]["attacks"][ref]["tpr@1%fpr"],
                                             abs=5e-5)


@pytest.mark.slow
def test_paper_profile_rehearsal_keeps_at_most_two_checkpoints_per_model(tmp_path, monkeypatch):
    """The paper profile, shrunk, on a CIFAR-10-format folder: while a model trains its folder holds
    at most best.pt and last.pt; a finished model keeps none; the logits are float32-or-better
    outside autocast (predict is called with amp=False)."""
    from lfakit import engine
    from test_cifar_data import write_tiny_cifar

    write_tiny_cifar(tmp_path / "data")
    paper = params.load_yaml(Path(__file__).parents[1] / "params" / EXP / "paper.yaml")
    base = {**params.defaults(EXP), **paper}
    base.update({"data_dir": str(tmp_path / "data"), "losses": ["ce"], "baseline": "ce", "n_ref": 4, "n_targets": 2,
                 "epochs": 2, "pool_size": 60, "batch_size": 32, "device": "cpu", "amp": True,
                 "num_workers": 0, "num_threads": 1, "n_boot": 100, "attacks": ["confidence", "lira_online"],
                 "study_attack": "confidence", "reference_attack": "lira_online", "precision": "float32"})
    P = params.validate(EXP, base) | {"progress": False}
    seen, amps = [], []
    real_save, real_predict = engine._atomic_save, engine.predict

    def spy_save(obj, path, keep_previous=False):
        real_save(obj, path, keep_previous)
        seen.append(sorted(f.name for f in Path(path).parent.glob("*.pt")))

    def spy_predict(*a, **kw):
        amps.append((len(a[1]), a[4] if len(a) > 4 else kw.get("amp")))
        return real_predict(*a, **kw)

    monkeypatch.setattr(engine, "_atomic_save", spy_save)
    monkeypatch.setattr(engine, "predict", spy_predict)
    X.check_disk(P)
    run_dir = tmp_path / "run"
    pool = X.load_pool(P)
    trained = X.train_all(P, pool, run_dir)
    assert seen and max(len(s) for s in seen) <= 2 and all("last.prev.pt" not in s for s in seen)
    assert not list((run_dir / "checkpoints").rglob("*.pt"))  # finished models keep none
    pool_calls = [amp for n, amp in amps if n == len(pool.labels)]  # the logits' predictions (not validation's)
    assert len(pool_calls) == 5 * 2 and not any(pool_calls)
    assert trained["ce"].logits.dtype == np.float64 and trained["ce"].logits.shape[2] == 2
    need = X.disk_need({**P, "pool_size": 50_000, "model": "resnet18_cifar", "n_ref": 16,
                        "losses": list(params.defaults(EXP)["losses"])})
    assert need["models"] == 170 and 2e9 < need["logits_bytes"] < 3e9
    with pytest.raises(ParameterError, match="GB free"):
        monkeypatch.setattr(X, "_free_bytes", lambda: 10)
        X.check_disk(P)


def test_an_attack_whose_scores_all_tie_is_reported_as_degenerate():
    """RMIA with gamma = 2 on bounded logits (logit_clip, logit_norm in the smoke run) never votes yes:
    every score 0, AUC 0.500 with sd 0 -- the tables say so instead of reporting it as a measurement."""
    ev = _evaluation({"ce": 0.5, "logit_norm": 0.5})
    for k in ev.targets:
        r = ev.results["logit_norm"][k]["lira_online"]
        r.scores = np.zeros_like(r.scores)
        ev.metrics["logit_norm"][k]["lira_online"] = privacy.attack_metrics(ev.in_train[k], r.scores, 0.0)
    assert X.tied_targets(ev, "logit_norm", "lira_online") == 3 and X.tied_targets(ev, "ce", "lira_online") == 0
    t = X.attack_table(ev).set_index("Loss")
    assert t.loc["logit_norm", "Note"] == "degenerate: all scores tie (3/3 targets)" and t.loc["ce", "Note"] == ""
    assert t.loc["logit_norm", "AUC"] == 0.5
    v = X.leakage_comparison(_P(losses=["ce", "logit_norm"], n_boot=200), ev).set_index("Loss")
    assert v.loc["logit_norm", "Verdict"] == "untested (lira_online degenerate: all scores tie)"
    # the real case: bounded logits make p(x | target) / Pr(x) vary by less than gamma = 2
    rng = np.random.default_rng(0)
    z = rng.normal(0, 0.1, (5, 200, 1, 10))
    keep = np.vstack([attacks.make_protocol(200, 4, 0).members, attacks.make_protocol(200, 4, 0).ref_in])
    s = attacks.attack_targets(z, np.zeros((5, 200)), rng.integers(0, 10, 200), keep, [0], attacks=["rmia"])[0]["rmia"]
    assert np.unique(s.scores).size == 1
