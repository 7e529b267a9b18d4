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
    with pytest.raises(ParameterError, match="mlp is sized for the 8x8 digits"):
        params.validate(EXP, {**params.defaults(EXP), "dataset": "cifar10", "data_dir": "/x"})


def test_flooding_is_attacked_through_its_base_loss():
    z = torch.randn(6, 10, dtype=torch.float64)
    y = torch.arange(6) % 10
    per = X.sample_loss_fn("flooding", losses.build("flooding"))(z, y)
    np.testing.assert_allclose(per.numpy(), torch.nn.functional.cross_entropy(z, y, reduction="none").numpy(), rtol=1e-12)


def _evaluation(leak: dict[str, float], n: int = 400, seed: int = 0) -> X.Evaluation:
    """An Evaluation of one target per loss whose lira_online scores separate members by ``leak``."""
    rng = np.random.default_rng(seed)
    member = np.arange(n) < n // 2
    res = {name: {"lira_online": attacks.AttackResult("lira_online", rng.normal(size=n) + shift * member,
                                                      np.zeros(0), np.zeros(0, bool), 0.0)}
           for name, shift in leak.items()}
    return X.Evaluation({}, res, {}, member)


def test_one_target_per_loss_gives_differences_of_these_models_and_no_leakage_verdict():
    P = _P(losses=["ce", "mae", "flooding"], n_boot=400)
    ev = _evaluation({"ce": 0.2, "mae": 2.0, "flooding": 0.25})  # mae's target leaks far more than ce's
    t = X.leakage_comparison(P, ev).set_index("Loss")
    assert list(t.index) == ["mae", "flooding"]
    assert not {"Verdict", "Winner", "Δ AUC", "p-value"} & set(t.columns)
    assert {"Δ AUC (these models)", "CI low (test set)", "CI high (test set)", "p (test set)", "p (Holm)"} <= set(t.columns)
    assert (t["Test"] == "paired bootstrap, test set only").all() and (t["Seeds"] == 1).all()
    y = ev.is_member.astype(int)
    for name in t.index:  # the row is one paired bootstrap of the pool, this target against the baseline's
        b = stats.paired_bootstrap(y, ev.results["ce"]["lira_online"].scores, ev.results[name]["lira_online"].scores,
                                   metric="auroc", n_boot=400, seed=P["seed"], stratified=True)
        assert t.loc[name, "Δ AUC (these models)"] == pytest.approx(round(b["delta"], 4), abs=1e-12)
        assert t.loc[name, "CI low (test set)"] == pytest.approx(round(b["ci_low"], 4), abs=1e-12)
        assert t.loc[name, "p (test set)"] == pytest.approx(round(b["p_value"], 4), abs=1e-12)
    raw = [stats.paired_bootstrap(y, ev.results["ce"]["lira_online"].scores, ev.results[n]["lira_online"].scores,
                                  metric="auroc", n_boot=400, seed=P["seed"], stratified=True)["p_value"] for n in t.index]
    np.testing.assert_allclose(t["p (Holm)"], np.round(stats.holm(raw), 4), atol=1e-12)
    # a difference far beyond the pool's sampling noise still names no verdict: nothing says less or more leakage
    assert t.loc["mae", "Δ AUC (these models)"] > 0.3 and t.loc["mae", "p (Holm)"] < 0.05
    cells = " ".join(map(str, t.reset_index().to_numpy().ravel()))
    assert "leakage" not in cells and "tie" not in cells
    note = X.comparison_note(P, X.Pool(np.zeros((400, 8, 8)), np.zeros(400, int), np.array(["x"] * 400), ("0",),
                                       attacks.make_protocol(400, 4, 0)))
    assert "Δ AUC (these models)" in note and "no less / more leakage verdict" in note
    assert "Holm over the 2 losses (one family), for display" in note
    assert "lfakit sweep membership_inference --seeds 0,1,2" in note and "--metric attack_auc --baseline ce" in note


@pytest.mark.slow
def test_parallel_training_gives_the_serial_models_and_resume_retrains_only_what_is_missing(tmp_path):
    P = _P(epochs=2)
    pool = X.load_pool(P)
    serial = X.train_all(P, pool, tmp_path / "a")
    par = X.train_all({**P, "workers": 2}, pool, tmp_path / "b")
    for name in P["losses"]:
        np.testing.assert_array_equal(serial[name].target_logits, par[name].target_logits)
        np.testing.assert_array_equal(serial[name].ref_logits, par[name].ref_logits)
    files = sorted((tmp_path / "a" / "predictions").glob("*.npz"))
    assert len(files) == 10
    before = {f.name: f.stat().st_mtime_ns for f in files}
    (tmp_path / "a" / "predictions" / "ce__ref2.npz").unlink()
    again = X.train_all(P, pool, tmp_path / "a")
    after = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "a" / "predictions").glob("*.npz")}
    assert [n for n in after if after[n] != before.get(n)] == ["ce__ref2.npz"]
    np.testing.assert_array_equal(again["ce"].ref_logits, serial["ce"].ref_logits)


@pytest.mark.slow
def test_attacks_rerun_from_the_record_alone_give_the_table(tmp_path):
    P = _P(epochs=3)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pool = X.load_pool(P)
    trained = X.train_all(P, pool, run_dir)
    ev = X.evaluate(P, pool, trained)
    tabs = X.tables(P, ev)
    X.save({**P, "run_dir": str(run_dir)}, run_dir, pool, trained, ev, tabs)
    r = record.load_run(run_dir)
    for name in P["losses"]:
        p = r.predictions.select(method=name, split="pool")
        tgt = p.select(group="target")
        refs = [p.select(group=f"ref{k}") for k in range(P["n_ref"])]
        members = tgt.fields["in_train"].astype(bool)
        proto = attacks.Protocol(members=members, ref_in=np.stack([q.fields["in_train"].astype(bool) for q in refs]),
                                 seed=P["seed"])
        labels = tgt.targets[:, 0].astype(np.int64)
        res = attacks.run_attacks(tgt.scores, tgt.sample_loss, labels, np.stack([q.scores for q in refs]),
                                  np.stack([q.sample_loss for q in refs]), proto, attacks=tuple(P["attacks"]),
                                  fixed_variance=P["fixed_variance"], rmia_gamma=P["rmia_gamma"], rmia_offline_a=None,
                                  seed=P["seed"])
        row = r.tables["attacks"]
        for a, ar in res.items():
            want = row[(row.Loss == name) & (row.Attack == a)]["AUC"].iloc[0]
            assert privacy.attack_metrics(members, ar.scores, ar.threshold)["auc"] == pytest.approx(want, abs=5e-4 + 1e-12)
        acc = r.headline.set_index("Loss").loc[name, "Target Test Acc (%)"]
        assert (tgt.scores.argmax(1)[~members] == labels[~members]).mean() * 100 == pytest.approx(acc, abs=5e-4)
    # lfakit compare re-runs the reference attack from the same record and finds the run's own values
    from lfakit import compare

    c = compare.compare_folder(run_dir, metric="tpr@1%fpr", n_boot=200, out=tmp_path / "cmp")
    ref = P["reference_attack"]
    for name in P["losses"]:
        shown = c.summary.set_index("Method").loc[name, "TPR@1%FPR (mean ± std)"]
        assert float(shown) == pytest.approx(r.methods[name]["attacks"][ref]["tpr@1%fpr"], abs=5e-5)
