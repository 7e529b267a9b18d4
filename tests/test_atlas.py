"""The loss atlas (lfakit.atlas, lfakit.experiments.loss_atlas): curves against closed forms
derived by hand, constructions, coverage of the registry, tables, parameters and outputs.

Closed forms used (s is the true-class logit, p = p_t = sigmoid(s) or its softmax probability):

* BCE / CE: L = -ln p, dL/ds = -(1 - p)  ->  weight w = 1 - p = |p_model - y|.
* Focal (gamma, no alpha): L = -(1 - p)^g ln p. With dp/ds = p (1 - p):
  dL/ds = [g (1 - p)^(g-1) ln p - (1 - p)^g / p] p (1 - p)
        = g p (1 - p)^g ln p - (1 - p)^(g+1),
  so w = (1 - p)^g [(1 - p) - g p ln p] and w / w_BCE = (1 - p)^g - g p (1 - p)^(g-1) ln p.
* L2 on the IQA pair (reduction sum, y_j = q_j fixed): L = (x - (q_i - q_j))^2, pull = -2 (x - dq).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import lfakit.losses as L
from lfakit import record, atlas, params, runner
from lfakit.errors import ParameterError
from lfakit.experiments import loss_atlas as X

EXP = "loss_atlas"
PTS = (0.05, 0.3, 0.5, 0.8, 0.95)


def _params(**over) -> dict:
    """The smoke profile with a coarse grid (fast), validated like a run's parameters."""
    p = params.defaults(EXP)
    p.update({"grid_size": 21, **over})
    return params.validate(EXP, p)


@pytest.fixture(scope="module")
def default_atlas():
    P = _params()
    A = X.compute(P)
    return P, A, X.tables(P, A)


def _focal_w(p, g):
    p = np.asarray(p, dtype=float)
    return (1 - p) ** g * ((1 - p) - g * p * np.log(p))


def _row(table: pd.DataFrame, view: str, loss: str, cols) -> np.ndarray:
    r = table[(table["view"] == view) & (table["loss"] == loss)]
    assert len(r) == 1, (view, loss)
    return r[cols].to_numpy(dtype=float)[0]


# ------------------------------------------------------------------ curves against closed forms


def test_bce_weight_is_p_minus_y_on_the_grid():
    pts = atlas.pt_grid(41)
    c = atlas.classification_curves("bce", pts)
    for view, y in (("multilabel y=1", 1.0), ("multilabel y=0", 0.0)):
        d = c[c["view"] == view]
        z = d["s"].to_numpy() if y == 1.0 else -d["s"].to_numpy()  # the logit the loss was given
        p_model = 1 / (1 + np.exp(-z))
        np.testing.assert_allclose(d["weight"], np.abs(p_model - y), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(d["weight"], 1 - pts, rtol=1e-12)
        np.testing.assert_allclose(d["value"], -np.log(pts), rtol=1e-12)
        # the derivative in p_t along the path: w / (p (1 - p)) = 1 / p_t for BCE
        np.testing.assert_allclose(d["weight_p"], 1 / pts, rtol=1e-10)


def test_ce_weight_is_one_minus_pt_and_softmax_of_construction_is_pt():
    pts = atlas.pt_grid(41)
    for k, other in ((10, 0.0), (4, 1.5)):
        cons = atlas.Construction(num_classes=k, multiclass_other_logit=other)
        d = atlas.classification_curves("ce", pts, construction=cons)
        assert set(d["view"]) == {"multiclass"}
        s = d["s"].to_numpy()
        softmax_true = np.exp(s) / (np.exp(s) + (k - 1) * np.exp(other))
        np.testing.assert_allclose(softmax_true, pts, rtol=1e-12)
        np.testing.assert_allclose(d["weight"], 1 - pts, rtol=1e-12)
        np.testing.assert_allclose(d["value"], -np.log(pts), rtol=1e-12)


def test_focal_relative_weights_match_the_hand_derivation(default_atlas):
    _, _, tabs = default_atlas
    cols = [f"{p:g}" for p in PTS]
    for view in ("multilabel y=1", "multilabel y=0"):
        np.testing.assert_allclose(_row(tabs["gradient_weight"], view, "focal", cols), _focal_w(PTS, 2), rtol=1e-10)
        np.testing.assert_allclose(_row(tabs["relative_to_reference"], view, "focal", cols),
                                   _focal_w(PTS, 2) / (1 - np.array(PTS)), rtol=1e-10)
        np.testing.assert_allclose(_row(tabs["relative_to_p05"], view, "focal", cols),
                                   _focal_w(PTS, 2) / _focal_w(0.5, 2), rtol=1e-10)
    # the softmax focal loss has the same weight along the multi-class construction
    np.testing.assert_allclose(_row(tabs["relative_to_reference"], "multiclass", "focal_ce", cols),
                               _focal_w(PTS, 2) / (1 - np.array(PTS)), rtol=1e-10)
    # e.g. at p_t = 0.95 focal keeps ~0.74% of BCE's gradient, not the 0.25% of (1 - p_t)^2
    assert _row(tabs["relative_to_reference"], "multilabel y=1", "focal", ["0.95"])[0] == pytest.approx(0.00737, abs=1e-5)


def test_cfe_study_table_is_the_detached_modulating_factor(default_atlas):
    """The notebook's claim: the CF-Ensemble study's (1-p_t)^gamma is the gradient ratio when the factor is a
    constant weight -- what asl (detached focusing, no clip, gamma_pos=2) computes."""
    _, _, tabs = default_atlas
    cfe = tabs["focal_vs_cfe_study"]
    np.testing.assert_allclose(cfe["p_t"], PTS)
    np.testing.assert_allclose(cfe["CF-Ensemble study: (1-p_t)^2"], (1 - np.array(PTS)) ** 2)
    np.testing.assert_allclose(cfe["focal/bce y=1"], _focal_w(PTS, 2) / (1 - np.array(PTS)), rtol=1e-10)
    asl = atlas.classification_curves("asl", PTS, {"gamma_pos": 2.0, "clip": 0.0})
    bce = atlas.classification_curves("bce", PTS)
    pos = (asl["view"] == "multilabel y=1").to_numpy()
    np.testing.assert_allclose(asl["weight"][pos].to_numpy() / bce["weight"][pos].to_numpy(),
                               cfe["CF-Ensemble study: (1-p_t)^2"], rtol=1e-10)


def test_negative_curve_mirrors_positive_for_symmetric_losses():
    pts = atlas.pt_grid(31)
    for name in ("bce", "focal", "exp_ce"):
        c = atlas.classification_curves(name, pts)
        pos, neg = c[c["view"] == "multilabel y=1"], c[c["view"] == "multilabel y=0"]
        for col in ("value", "weight", "weight_p"):
            np.testing.assert_allclose(pos[col].to_numpy(), neg[col].to_numpy(), rtol=1e-12, err_msg=name)
    # asl is asymmetric by design: its negatives get less gradient than its positives
    c = atlas.classification_curves("asl", pts)
    assert (c.loc[c["view"] == "multilabel y=0", "weight"].to_numpy()
            < c.loc[c["view"] == "multilabel y=1", "weight"].to_numpy()).all()


def test_setwise_construction_is_the_documented_sample():
    """With no other positive, ZLPR's positive part is softplus(-s), i.e. BCE, and the fixed
    labels only add a constant (their negative part, ln(1 + 13 e^{-z_o})). With two other
    positives at logit z_o the weight is e^{-s} / (1 + e^{-s} + 2 e^{-z_o}) (by hand)."""
    pts = atlas.pt_grid(31)
    alone = atlas.classification_curves("zlpr", pts, construction=atlas.Construction(setwise_positives=0))
    pos = alone[alone["view"] == "multilabel y=1"]
    np.testing.assert_allclose(pos["weight"], 1 - pts, rtol=1e-12)
    zo = math.log(0.9 / 0.1)
    np.testing.assert_allclose(pos["value"], -np.log(pts) + math.log(1 + 13 * math.exp(-zo)), rtol=1e-12)
    two = atlas.classification_curves("zlpr", pts)  # default: 2 other positives at p_t = 0.9
    pos = two[two["view"] == "multilabel y=1"]
    e = (1 - pts) / pts
    np.testing.assert_allclose(pos["weight"], e / (1 + e + 2 * math.exp(-zo)), rtol=1e-12)
    # element-wise losses ignore the other labels entirely
    a = atlas.classification_curves("focal", pts, construction=atlas.Construction(setwise_positives=0))
    b = atlas.classification_curves("focal", pts, construction=atlas.Construction(setwise_positives=9))
    np.testing.assert_array_equal(a["weight"], b["weight"])


def test_flooding_flips_the_sign_below_its_level():
    pts = atlas.pt_grid(41)
    fl = atlas.classification_curves("flooding", pts, {"b": 0.1})
    ce = atlas.classification_curves("ce", pts)
    below = ce["value"].to_numpy() < 0.1
    assert below.any() and (~below).any()
    np.testing.assert_allclose(fl["weight"][~below], ce["weight"][~below], rtol=1e-12)
    np.testing.assert_allclose(fl["weight"][below], -ce["weight"][below], rtol=1e-12)
    assert (fl["view"] == "multiclass").all()


def test_chain_rule_between_the_two_derivatives(default_atlas):
    _, A, _ = default_atlas
    p = A.curves["p_t"].to_numpy()
    np.testing.assert_allclose(A.curves["weight_p"] * p * (1 - p), A.curves["weight"], rtol=1e-9, atol=1e-15)


def test_iqa_pair_l2_and_views():
    xs = np.linspace(-3, 3, 13)
    d = atlas.iqa_curves("l2", xs)
    dq = 4.0 - 3.0
    assert set(d["view"]) == {"iqa pair"}
    np.testing.assert_allclose(d["value"], (xs - dq) ** 2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d["pull"], -2 * (xs - dq), rtol=1e-12, atol=1e-12)
    r = atlas.iqa_curves("rank", [-0.5, 0.5, 1.5])  # reversed: |x|+dq; within the gap: 0; over it: x-dq
    np.testing.assert_allclose(r["value"], [1.5, 0.0, 0.5])
    np.testing.assert_allclose(r["pull"], [1.0, 0.0, -1.0])
    # rank_mos: u = max(0, -x) (misordered against the MOS), L = u / (1 + u) (scale 1 + max term,
    # not detached), pull = 1 / (1 + u)^2 when misordered; 0 in the MOS order however stretched
    m = atlas.iqa_curves("rank_mos", [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(m["value"], [0.6, 1 / 3, 0.0, 0.0], rtol=1e-12)
    np.testing.assert_allclose(m["pull"], [0.16, 4 / 9, 0.0, 0.0], rtol=1e-12)
    kinds = {n: atlas.iqa_curves(n, [0.5])["view"].iloc[0] for n in L.available("iqa")}
    assert {n for n, v in kinds.items() if v == "iqa set"} == {"plcc", "srcc", "norm_in_norm"}


# ------------------------------------------------------------------ coverage and tables


def test_every_registered_loss_is_drawn(default_atlas):
    _, A, tabs = default_atlas
    registered = {n for names in L.available().values() for n in names}
    drawn = set(A.curves["loss"]) | set(A.iqa["loss"])
    assert drawn == registered, f"not drawn: {registered - drawn}"
    for name in L.available("multilabel"):
        assert set(A.curves.loc[A.curves["loss"] == name, "view"]) == {"multilabel y=1", "multilabel y=0"}
    for df, cols in ((A.curves, ["value", "weight", "weight_p"]), (A.iqa, ["value", "pull"])):
        assert np.isfinite(df[cols].to_numpy()).all()
    classification = set(L.available("multilabel")) | set(L.available("multiclass"))
    assert set(tabs["relative_to_reference"]["loss"]) == classification
    assert set(tabs["iqa_pull"]["loss"]) == set(L.available("iqa"))


def test_table_changes_when_a_default_changes(default_atlas):
    P0, _, tabs0 = default_atlas
    P1 = _params(loss_kwargs={"focal": {"gamma": 1.0}})
    tabs1 = X.tables(P1, X.compute(P1))
    t0, t1 = tabs0["relative_to_reference"], tabs1["relative_to_reference"]
    cols = [f"{p:g}" for p in PTS]
    focal = (t0["loss"] == "focal").to_numpy()
    assert not np.allclose(t0.loc[focal, cols].to_numpy(), t1.loc[focal, cols].to_numpy())
    np.testing.assert_allclose(t1.loc[focal, cols].to_numpy(dtype=float)[0], _focal_w(PTS, 1) / (1 - np.array(PTS)), rtol=1e-10)
    pd.testing.assert_frame_equal(t0.loc[~focal], t1.loc[~focal])  # no other row moved
    assert "(1-p_t)^1" in " ".join(tabs1["focal_vs_cfe_study"].columns)


def test_tiny_derivatives_are_reported_as_zero(default_atlas):
    _, A, tabs = default_atlas
    w = A.curves["weight"].to_numpy()
    assert not ((w != 0) & (np.abs(w) < atlas.NOISE)).any()
    rel = tabs["relative_to_p05"]
    assert rel.loc[rel["loss"] == "logit_norm", [f"{p:g}" for p in PTS]].isna().all(axis=None)


# ------------------------------------------------------------------ parameters


@pytest.mark.parametrize(
    "over, pattern",
    [
        ({"losses": ["focall"]}, r"'focall' is not allowed.*'focal'"),
        ({"loss_kwargs": {"focall": {}}}, r"'focal'"),
        ({"tasks": ["multilable"]}, r"'multilabel'"),
        ({"table_pt": [0.5, 1.0]}, r"strictly between 0 and 1"),
        ({"table_x": [0.5, "a"]}, r"finite number"),
    ],
)
def test_bad_values_name_the_fix(over, pattern):
    with pytest.raises(ParameterError, match=pattern):
        params.validate(EXP, over, partial=True)


@pytest.mark.parametrize(
    "over, pattern",
    [
        ({"pt_min": 0.5, "pt_max": 0.5}, r"pt_min .* smaller than pt_max"),
        ({"tasks": ["multiclass"], "losses": ["focal"]}, r"'focal' is a multilabel loss.*add 'multilabel'"),
        ({"tasks": ["multiclass"], "loss_kwargs": {"focal": {"gamma": 1.0}}}, r"does not draw"),
        ({"loss_kwargs": {"focal": {"reduction": "sum"}}}, r"reduction"),
        ({"loss_kwargs": {"focal": {"gamma": -1.0}}}, r"gamma must be >= 0"),
        ({"loss_kwargs": {"flooding": {"base": "bce"}}}, r"flooding.*multi-class"),
        ({"setwise_positives": 14}, r"setwise_positives"),
        ({"loss_kwargs": {"focal": {"gama": 1.0}}}, r"'gamma'"),
    ],
)
def test_cross_parameter_errors_before_any_work(over, pattern):
    """Validation, then the preflight that builds every chosen loss: both run before the run
    folder is made (``lfakit run`` calls them in that order)."""
    with pytest.raises(ParameterError, match=pattern):
        runner.preflight(EXP, _params(**over))


def test_losses_subset_and_order():
    P = _params(losses=["zlpr", "ce", "l1", "bce"])
    assert X.selected_losses(P) == ["bce", "zlpr", "ce", "l1"]
    assert X.selected_losses(_params(tasks=["iqa"])) == L.available("iqa")


def test_notebook_default_is_not_interactive():
    """Checked outputs never hold widgets (smoke = notebook defaults is checked in test_params.py)."""
    assert runner.notebook_parameters(EXP)["interactive"]["default"] is False
    assert runner.resolve_params(EXP, "smoke")["interactive"] is False


def test_paper_profile_is_the_smoke_profile_on_a_finer_grid():
    smoke, paper = runner.resolve_params(EXP, "smoke"), runner.resolve_params(EXP, "paper")
    assert paper["grid_size"] > smoke["grid_size"]
    assert {k: v for k, v in paper.items() if k != "grid_size"} == {k: v for k, v in smoke.items() if k != "grid_size"}


# ------------------------------------------------------------------ outputs and sliders


def test_save_writes_tables_metrics_and_curves(default_atlas, tmp_path):
    P, A, tabs = default_atlas
    written = X.save(P, tmp_path, A, tabs)
    assert "metrics.json" in written and "tables/relative_to_reference.csv" in written
    r = record.load_run(tmp_path)
    assert set(r.methods) == {n for names in L.available().values() for n in names}
    assert r.methods["flooding"]["views"] == ["multiclass"]
    focal = r.headline[r.headline["loss"] == "focal"]
    assert focal["0.95"].iloc[0] == pytest.approx(_focal_w(0.95, 2) / 0.05, rel=1e-10)
    back = pd.read_csv(tmp_path / "tables" / "relative_to_reference.csv")
    np.testing.assert_allclose(back[[f"{p:g}" for p in PTS]].to_numpy(dtype=float),
                               tabs["relative_to_reference"][[f"{p:g}" for p in PTS]].to_numpy(dtype=float))
    curves = pd.read_csv(tmp_path / "tables" / "curves_classification.csv")
    assert len(curves) == len(A.curves)


def test_figures_show_every_drawn_loss(tmp_path):
    import matplotlib.pyplot as plt

    from lfakit import report

    P = _params(tasks=["multilabel", "iqa"], losses=["bce", "focal", "zlpr", "rank", "plcc"])
    A = X.compute(P)
    for family, n_panels in (("multilabel", 4 * 3), ("iqa", 2 * 2)):
        fig = X.figure(P, A, family, tmp_path)
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert len([ax for ax in fig.axes if ax.axison]) == n_panels
        for name in A.curves["loss"].unique() if family == "multilabel" else A.iqa["loss"].unique():
            assert any(t.startswith(f"{name} · ") for t in titles), (family, name)
        if family == "multilabel":  # one loss per row: its positives, then its negatives
            assert [t for t in titles if t.endswith(": loss")][:2] == ["bce · y=1: loss", "bce · y=0: loss"]
        assert fig.get_figwidth() <= report.FIG_WIDTH
        plt.close(fig)
        png = (tmp_path / "figures" / f"{family}.png").read_bytes()
        assert len(png) > 1000 and float(report.png_text(png)[report.FONT_KEY]) >= report.MIN_FONT
    assert X.figure(P, A, "multiclass", tmp_path) is None  # not drawn: no multi-class loss chosen


def test_a_panel_whose_curves_span_orders_of_magnitude_gets_a_log_axis(tmp_path):
    import matplotlib.pyplot as plt

    assert atlas.wide_range(np.array([0.001, 1.0, 999.0])) and not atlas.wide_range(np.array([0.001, 1.0, 6.9]))
    assert not atlas.wide_range(np.array([0.0, 1.0, 999.0]))  # a zero cannot go on a log axis
    P = _params(tasks=["multilabel"], losses=["bce", "f_ece"])
    fig = X.figure(P, X.compute(P), "multilabel", tmp_path)
    scales = {ax.get_title(): ax.get_yscale() for ax in fig.axes if ax.get_title()}
    assert scales["f_ece · y=1: loss"] == "log"  # exp_ce on positives: ~1000 at p_t -> 0
    assert scales["f_ece · y=0: loss"] == "linear"  # focal on negatives
    plt.close(fig)
    # the sliders' figure: f_ece's ~1000 next to BCE's ~7 on the positives' loss panel
    focus = atlas.plot_focus(atlas.slider_defaults(), atlas.pt_grid(21))
    assert focus.axes[0].get_title() == "multilabel y=1" and focus.axes[0].get_yscale() == "log"
    plt.close(focus)


def test_sliders_only_when_interactive():
    import matplotlib.pyplot as plt

    assert X.explorer(_params()) is None
    panel = X.explorer(_params(interactive=True))
    sliders = [w for w in panel.children if hasattr(w, "value") and w.description]
    names = {w.description for w in sliders}
    assert set(atlas.SLIDERS) <= names
    # aligned: every label column and every slider the same width, so the tracks line up
    assert {w.style.description_width for w in sliders} == {atlas.SLIDER_STYLE["description_width"]}
    assert len({w.layout.width for w in sliders}) == 1
    assert all(w.tooltip for w in sliders)
    values = {**atlas.slider_defaults(), "gamma": 0.0}
    fig = atlas.plot_focus(values, atlas.pt_grid(11))
    focal = [ln for ln in fig.axes[3].lines if ln.get_label() == "focal"][0]
    bce = [ln for ln in fig.axes[3].lines if ln.get_label() == "bce"][0]
    np.testing.assert_allclose(focal.get_ydata(), bce.get_ydata(), rtol=1e-12)  # gamma = 0 is BCE
    plt.close("all")
