"""The shared training loop: determinism, exact resume, NaN stop, early stopping, checkpoints."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lfakit import engine, losses
from lfakit.errors import ParameterError, TrainingError


def _data(n=96, d=8, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, c, generator=g)
    y = ((x @ w + 0.5 * torch.randn(n, c, generator=g)) > 0).float()
    return TensorDataset(x, y)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def _cfg(**kw):
    base = dict(epochs=5, batch_size=16, lr=0.05, scheduler="cosine", seed=3, progress=False, device="cpu")
    return engine.FitConfig(**{**base, **kw})


def _mean_pred(t, s):
    return float(((s > 0) == (t > 0.5)).mean())


def _weights(m):
    return torch.cat([p.detach().flatten() for p in m.state_dict().values()])


def _hist(df):
    return df.drop(columns=["seconds"]).reset_index(drop=True)


def test_same_seed_same_result(tmp_path):
    a = engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg())
    b = engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg())
    assert torch.equal(_weights(a.model), _weights(b.model))
    pd.testing.assert_frame_equal(_hist(a.history), _hist(b.history))


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    full = engine.fit(_model(), losses.build("zlpr"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path / "full",
                      val_metrics={"acc": _mean_pred})
    part = engine.fit(_model(), losses.build("zlpr"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path / "cut",
                      val_metrics={"acc": _mean_pred}, stop_after_epoch=2)
    assert len(part.history) == 2
    # a new process would start from a fresh (differently initialised) model
    resumed = engine.fit(_model(seed=99), losses.build("zlpr"), _data(), _data(seed=1), _cfg(),
                         checkpoint_dir=tmp_path / "cut", val_metrics={"acc": _mean_pred}, resume=True)
    assert resumed.resumed_from_epoch == 3
    assert torch.equal(_weights(full.model), _weights(resumed.model))
    pd.testing.assert_frame_equal(_hist(full.history), _hist(resumed.history))
    assert (tmp_path / "cut" / "history.csv").exists()


def test_resume_refuses_changed_settings(tmp_path):
    engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path, stop_after_epoch=1)
    with pytest.raises(ParameterError, match="settings changed"):
        engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(lr=0.1), checkpoint_dir=tmp_path, resume=True)


class _NaNAfter(nn.Module):
    """BCE that turns NaN once ``after`` training batches have been seen."""

    def __init__(self, after):
        super().__init__()
        self.after, self.calls, self.inner = after, 0, losses.build("bce")

    def forward(self, z, y):
        if z.requires_grad:  # a training batch (predict runs without grad)
            self.calls += 1
        out = self.inner(z, y)
        return out * float("nan") if self.calls > self.after else out


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    loss = _NaNAfter(after=6 + 2)  # 96/16 = 6 batches per epoch: NaN in epoch 2
    with pytest.raises(TrainingError, match=r"became nan at epoch 2, batch 2.*last\.pt"):
        engine.fit(_model(), loss, _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_early_stopping_and_best_epoch(tmp_path):
    res = engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1),
                     _cfg(lr=0.0, epochs=10, early_stopping_patience=2, scheduler="none"), checkpoint_dir=tmp_path)
    # lr=0: the first epoch is the best and nothing ever improves on it
    assert res.stopped_early and res.best_epoch == 1 and len(res.history) == 3
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in res.model.state_dict().items())


def test_best_weights_are_returned_not_last(tmp_path):
    res = engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(lr=0.5, epochs=6, optimizer="sgd"),
                     checkpoint_dir=tmp_path, val_metrics={"acc": _mean_pred}, )
    best = res.history["val_loss"].idxmin() + 1
    assert res.best_epoch == best
    val = engine.predict(res.model, _data(seed=1), loss_fn=losses.build("bce"), device="cpu")
    assert val["loss"] == pytest.approx(res.history["val_loss"].min(), rel=1e-5)


def test_monitor_must_be_computed():
    with pytest.raises(ParameterError, match="monitor"):
        engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(monitor="val_auroc"))


def test_predict_keeps_order_and_shapes():
    ds = _data(n=37)
    out = engine.predict(_model(), ds, batch_size=8, device="cpu")
    assert out["scores"].shape == (37, 3)
    assert (out["targets"] == ds.tensors[1].numpy()).all()


def test_select_device_rejects_absent_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ParameterError, match="no CUDA GPU"):
        engine.select_device("cuda")
    assert engine.select_device("auto").type in ("cpu", "mps")


# ------------------------------------------------------------------ hooks for IQA and membership inference


class _FieldsDataset(torch.utils.data.Dataset):
    """Items as mappings: x, y, a sample id and an extra field for the loss."""

    def __init__(self, n=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (torch.rand(n, 3, generator=g) > 0.5).float()
        self.w = torch.rand(n, generator=g) + 0.5
        self.ids = torch.arange(1000, 1000 + n)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "index": self.ids[i], "weight": self.w[i]}


class _WeightedBCE(nn.Module):
    """A loss taking an extra batch field (as the fidelity loss takes the opinion-score std)."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction
        self.seen = []

    def forward(self, logits, targets, weight):
        self.seen.append(weight.detach().clone())
        per = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1) * weight
        return per if self.reduction == "none" else per.mean()


def test_extra_batch_fields_reach_the_loss_and_sample_ids_come_back():
    ds = _FieldsDataset()
    loss = _WeightedBCE()
    engine.fit(_model(), loss, ds, _FieldsDataset(seed=1), _cfg(epochs=1))
    got = torch.cat(loss.seen[: -(-len(ds) // 16)])  # the first epoch's training batches (shuffled)
    assert sorted(got.tolist()) == sorted(ds.w.tolist())
    out = engine.predict(_model(), ds, 16, "cpu")
    assert out["index"].tolist() == ds.ids.tolist()


def test_per_sample_losses_are_each_samples_own_loss():
    ds = _FieldsDataset()
    model = _model()
    out = engine.predict(model, ds, 7, "cpu", loss_fn=_WeightedBCE(), sample_losses=True)
    with torch.no_grad():
        model.eval()
        want = _WeightedBCE(reduction="none")(model(ds.x), ds.y, ds.w)
    assert out["sample_loss"].shape == (len(ds),)
    assert out["sample_loss"] == pytest.approx(want.numpy(), rel=1e-6)
    assert out["loss"] == pytest.approx(float(want.mean()), rel=1e-6)
    # a registry loss averaged over its classes: its mean is the batch loss
    tds = _data(n=30)
    bce = engine.predict(model, tds, 8, "cpu", loss_fn=losses.build("bce"), sample_losses=True)
    assert bce["sample_loss"].shape == (30,) and bce["sample_loss"].mean() == pytest.approx(bce["loss"], rel=1e-6)


def test_several_validation_metrics_and_monitor_picks_any():
    metrics = {"acc": _mean_pred, "neg_acc": lambda t, s: -_mean_pred(t, s)}
    a = engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(monitor="val_acc"), val_metrics=metrics)
    b = engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(monitor="val_neg_acc"), val_metrics=metrics)
    assert {"val_loss", "val_acc", "val_neg_acc"} <= set(a.history.columns)
    assert a.best_value == a.history["val_acc"].max() and b.best_value == b.history["val_neg_acc"].max()
    with pytest.raises(ParameterError, match="val_auroc.*not computed"):
        engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(monitor="val_auroc"), val_metrics=metrics)


def test_checkpoint_loads_with_weights_only_and_a_corrupt_one_falls_back(tmp_path):
    full = engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path / "a")
    state = torch.load(tmp_path / "a" / "last.pt", weights_only=True)  # no pickled code in a run folder
    assert state["epoch"] == 5 and len(state["history"]) == 5
    engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path / "b", stop_after_epoch=3)
    last = tmp_path / "b" / "last.pt"
    assert (tmp_path / "b" / "last.prev.pt").exists()
    last.write_bytes(last.read_bytes()[:100])  # truncated by a crash
    with pytest.warns(UserWarning, match="previous epoch"):
        resumed = engine.fit(_model(seed=5), losses.build("bce"), _data(), _data(seed=1), _cfg(),
                             checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.resumed_from_epoch == 3  # epoch 2's checkpoint, then epochs 3..5 again
    pd.testing.assert_frame_equal(_hist(resumed.history), _hist(full.history))


def test_unreadable_checkpoints_name_the_file_and_the_way_on(tmp_path):
    engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path, stop_after_epoch=2)
    for f in ("last.pt", "last.prev.pt"):
        (tmp_path / f).write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match=r"last\.pt.*delete .* and resume again"):
        engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path, resume=True)


def test_float64_precision_trains_in_float64():
    m = _model().double()
    r = engine.fit(m, losses.build("bce"), _data(), _data(seed=1), _cfg(epochs=1, precision="float64"))
    assert all(p.dtype == torch.float64 for p in r.model.parameters())
    assert engine.predict(r.model, _data(), 8, "cpu")["scores"].dtype == "float64"


def test_empty_split_is_refused():
    with pytest.raises(ParameterError, match="empty split"):
        engine.fit(_model(), losses.build("bce"), _data(n=0), _data(seed=1), _cfg())


def test_confident_logits_rank_at_full_precision():
    """Logits above ~16.6 saturate a float32 sigmoid to exactly 1.0 and tie; the engine returns
    float64 logits and the kit ranks those, so AUROC and DeLong equal the float64 reference."""
    import numpy as np
    from scipy.special import expit

    from lfakit.metrics.classification import per_class_auroc
    from lfakit.stats import delong_test

    g = torch.Generator().manual_seed(0)
    n = 400
    y = (torch.rand(n, generator=g) < 0.5).float()
    x = (y * 2 - 1)[:, None] * 1.0 + 0.6 * torch.randn(n, 1, generator=g)  # overlapping classes
    ds = TensorDataset(x, y[:, None])
    m1, m2 = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        m1.weight.fill_(8.0), m1.bias.fill_(18.0)  # most logits > 17
        m2.weight.fill_(7.0), m2.bias.fill_(19.0)
    s1 = engine.predict(m1, ds, 64, "cpu")["scores"]
    s2 = engine.predict(m2, ds, 64, "cpu")["scores"]
    assert s1.dtype == np.float64 and (s1 > 17).mean() > 0.5
    ref1 = (x.double() * 8.0 + 18.0).numpy()  # the float64 reference
    yy = y.numpy()[:, None]
    want = per_class_auroc(yy, ref1)
    assert per_class_auroc(yy, s1) == pytest.approx(want, abs=1e-6)
    r = delong_test(yy[:, 0], s1[:, 0], s2[:, 0])
    r_ref = delong_test(yy[:, 0], ref1[:, 0], (x.double() * 7.0 + 19.0).numpy()[:, 0])
    assert r["p_value"] == pytest.approx(r_ref["p_value"], abs=1e-6)
    # what the old path did: a float32 sigmoid before ranking manufactures ties and moves both
    old = expit(s1.astype(np.float32))
    assert len(np.unique(old)) < len(np.unique(s1)) / 2
    assert abs(per_class_auroc(yy, old)[0] - want[0]) > 1e-3


def test_resume_when_only_the_previous_checkpoint_survived(tmp_path):
    """Killed between moving last.pt aside and putting the new one in place."""
    engine.fit(_model(), losses.build("bce"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path, stop_after_epoch=3)
    (tmp_path / "last.pt").unlink()
    with pytest.warns(UserWarning, match="missing"):
        r = engine.fit(_model(seed=7), losses.build("bce"), _data(), _data(seed=1), _cfg(), checkpoint_dir=tmp_path, resume=True)
    assert r.resumed_from_epoch == 3 and len(r.history) == 5


class _IQADataset(torch.utils.data.Dataset):
    """IQA-style items: image features, MOS, sample id and the opinion-score std (a batch field)."""

    def __init__(self, std_scale=1.0, n=48):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.mos = self.x[:, 0] + 0.3 * torch.randn(n, generator=g)
        self.std = (0.2 + torch.rand(n, generator=g)) * std_scale

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.mos[i], "index": i, "std": self.std[i]}


class _Score(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(8, 1)

    def forward(self, x):
        return self.lin(x)[:, 0]


def test_the_opinion_std_reaches_the_fidelity_loss_in_training():
    fid = losses.build("fidelity")
    cfg = _cfg(epochs=1, monitor="val_loss")
    a = engine.fit(_Score(), fid, _IQADataset(1.0), _IQADataset(1.0), cfg)
    b = engine.fit(_Score(), fid, _IQADataset(3.0), _IQADataset(3.0), cfg)
    assert a.history["train_loss"][0] != pytest.approx(b.history["train_loss"][0], rel=1e-6)
    c = engine.fit(_Score(), fid, _IQADataset(1.0), _IQADataset(1.0), cfg)  # and the same std gives the same loss
    assert a.history["train_loss"][0] == c.history["train_loss"][0]


class _BackboneHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.fuse = nn.Linear(16, 16)  # not in the backbone: trains with the head
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.fuse(self.backbone(x)))


def test_the_head_lr_multiplier_reaches_the_optimizer_parameter_groups():
    m = _BackboneHead()
    opt = engine.make_optimizer(m, _cfg(lr=1e-3, head_lr_mult=10.0, weight_decay=0.1))
    body, head = opt.param_groups
    assert body["lr"] == 1e-3 and head["lr"] == pytest.approx(1e-2)
    assert body["weight_decay"] == head["weight_decay"] == 0.1
    assert {id(p) for p in body["params"]} == {id(p) for p in m.backbone.parameters()}
    assert {id(p) for p in head["params"]} == {id(p) for p in [*m.fuse.parameters(), *m.head.parameters()]}
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())  # every parameter in exactly one group
    sched = engine.make_scheduler(opt, _cfg(lr=1e-3, head_lr_mult=10.0, epochs=4))
    opt.step(), sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(10 * opt.param_groups[0]["lr"])  # the schedule keeps the ratio


def test_without_a_head_multiplier_the_optimizer_has_one_group_as_before():
    m = _model()
    opt = engine.make_optimizer(m, _cfg())
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == 0.05
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in m.parameters()]


def test_a_head_multiplier_needs_the_named_backbone():
    with pytest.raises(ParameterError, match="has no submodule 'backbone'"):
        engine.make_optimizer(_model(), _cfg(head_lr_mult=10.0))
    with pytest.raises(ParameterError, match="head_lr_mult must be a positive number"):
        _cfg(head_lr_mult=0.0)
    opt = engine.make_optimizer(_BackboneHead(), _cfg(head_lr_mult=10.0, backbone_module="backbone.0"))
    assert len(opt.param_groups) == 2


def test_a_fit_with_a_head_multiplier_trains_and_resumes(tmp_path):
    def data():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 8, generator=g)
        return TensorDataset(x, x[:, :1] * 2 + 0.1 * torch.randn(64, 1, generator=g))

    cfg = _cfg(epochs=3, lr=1e-3, head_lr_mult=10.0)
    torch.manual_seed(0)
    full = engine.fit(_BackboneHead(), nn.MSELoss(), data(), data(), cfg)
    torch.manual_seed(0)
    engine.fit(_BackboneHead(), nn.MSELoss(), data(), data(), cfg, checkpoint_dir=tmp_path, stop_after_epoch=1)
    torch.manual_seed(0)
    resumed = engine.fit(_BackboneHead(), nn.MSELoss(), data(), data(), cfg, checkpoint_dir=tmp_path, resume=True)
    pd.testing.assert_frame_equal(_hist(full.history), _hist(resumed.history))
