"""The study's IQA model (``swin_b_iqa``: Swin-B, four-stage features, attention fusion) and the
model builder's options and kit-model pretrained weights. Tiny Swin backbones keep this fast; the
real Swin-B is built (randomly initialised, ~2 s) once. Nothing is downloaded."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.ops import StochasticDepth

from lfakit import models, params
from lfakit.errors import ParameterError
from lfakit.models import SwinMultiScaleIQA, build_model


def tiny_swin(embed_dim: int = 8, depths=(1, 1, 1, 1), drop_path: float = 0.0) -> SwinTransformer:
    n = len(depths)
    return SwinTransformer(patch_size=[4, 4], embed_dim=embed_dim, depths=list(depths), num_heads=[1] * n,
                           window_size=[7, 7], stochastic_depth_prob=drop_path)


def sd_probs(module: nn.Module) -> list[float]:
    return [m.p for m in module.modules() if isinstance(m, StochasticDepth)]


@pytest.fixture(scope="module")
def real64():
    """The registry's swin_b_iqa, real Swin-B backbone, float64, default options."""
    torch.manual_seed(0)
    return build_model("swin_b_iqa", 1, precision="float64")


@pytest.fixture
def tiny_factory(monkeypatch):
    """build_model("swin_b_iqa") builds a tiny backbone (same drop_path plumbing)."""
    calls = []

    def factory(drop_path: float = 0.3):
        calls.append(drop_path)
        return tiny_swin(drop_path=drop_path)

    monkeypatch.setattr(models, "swin_b_backbone", factory)
    return calls


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("side", [32, 64, 224])
def test_output_is_one_score_per_image(side):
    torch.manual_seed(0)
    net = SwinMultiScaleIQA(backbone=tiny_swin()).eval()
    with torch.no_grad():
        y = net(torch.randn(3, 3, side, side))
    assert y.shape == (3, 1)
    assert torch.isfinite(y).all()


def test_scale_weights_are_a_per_sample_softmax_over_four_scales():
    torch.manual_seed(0)
    net = SwinMultiScaleIQA(backbone=tiny_swin()).eval()
    x = torch.stack([torch.randn(3, 64, 64), torch.zeros(3, 64, 64), torch.rand(3, 64, 64) * 5])
    with torch.no_grad():
        net(x)
    w = net.last_scale_weights
    assert w.shape == (3, 4)
    assert (w > 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(3), atol=1e-6, rtol=0)
    assert not w.requires_grad
    # the weights depend on the input: every sample has its own
    assert (w[0] - w[1]).abs().max() > 1e-4 and (w[0] - w[2]).abs().max() > 1e-4


def test_fusion_is_the_weighted_sum_of_scale_tokens():
    """Force the scorer to pick scale 2: the output is the head applied to scale 2's token alone."""
    torch.manual_seed(0)
    net = SwinMultiScaleIQA(backbone=tiny_swin()).eval()
    with torch.no_grad():
        for k, s in enumerate(net.scale_scores):
            s.weight.zero_()
            s.bias.fill_(50.0 if k == 2 else 0.0)
        x = torch.randn(2, 3, 64, 64)
        y = net(x)
        h = x
        for i in range(net.stage_indices[2] + 1):
            h = net.backbone.features[i](h)
        expect = net.head(net.scale_tokens[2](h))
    torch.testing.assert_close(net.last_scale_weights, torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(y, expect)


def test_stage_widths_are_read_from_the_backbone():
    a = SwinMultiScaleIQA(backbone=tiny_swin(embed_dim=8), fusion_dim=16)
    assert a.stage_indices == (1, 3, 5, 7)
    assert a.stage_channels == (8, 16, 32, 64)
    b = SwinMultiScaleIQA(backbone=tiny_swin(embed_dim=12, depths=(1, 1, 1)), fusion_dim=16)
    assert b.stage_indices == (1, 3, 5)
    assert b.stage_channels == (12, 24, 48)
    assert [t.norm.normalized_shape[0] for t in b.scale_tokens] == [12, 24, 48]
    assert [t.proj.out_features for t in b.scale_tokens] == [16, 16, 16]
    with torch.no_grad():
        assert b.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 1)
    assert b.last_scale_weights.shape == (2, 3)


def test_gradients_reach_backbone_and_every_head_part():
    torch.manual_seed(0)
    net = SwinMultiScaleIQA(backbone=tiny_swin()).train()
    net(torch.randn(2, 3, 64, 64)).sum().backward()
    assert net.backbone.features[0][0].weight.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        if not name.startswith("backbone."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the ImageNet classifier is gone: no unused parameters
    assert isinstance(net.backbone.head, nn.Identity) and isinstance(net.backbone.norm, nn.Identity)


def test_real_swin_b(real64):
    net = real64
    assert net.stage_indices == (1, 3, 5, 7)
    assert net.stage_channels == (128, 256, 512, 1024)
    assert sum(p.numel() for p in net.parameters()) == 87_238_845
    assert {p.dtype for p in net.parameters()} == {torch.float64}
    # drop path 0.3 reaches every block: linear from 0 (first of 24 blocks) to 0.3 (last)
    probs = sd_probs(net.backbone)
    assert len(probs) == 24
    assert probs == pytest.approx([0.3 * i / 23 for i in range(24)])
    assert net.drop.p == 0.4
    net.eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, 224, 224, dtype=torch.float64))
    assert y.shape == (1, 1) and y.dtype == torch.float64


def test_backbone_is_torchvision_swin_b_key_for_key():
    from torchvision.models import swin_b

    ours = models.swin_b_backbone(0.3).state_dict()
    ref = swin_b(weights=None).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}


def test_bad_probabilities_and_channels_are_refused():
    with pytest.raises(ParameterError, match="drop_path"):
        SwinMultiScaleIQA(backbone=tiny_swin(), drop_path=1.5)
    with pytest.raises(ParameterError, match="dropout"):
        SwinMultiScaleIQA(backbone=tiny_swin(), dropout=-0.1)
    with pytest.raises(ParameterError, match="3-channel"):
        SwinMultiScaleIQA(in_chans=1, backbone=tiny_swin())


# --------------------------------------------------------------------------- build_model and the registry


def test_build_model_passes_options(tiny_factory):
    net = build_model("swin_b_iqa", 1, drop_path=0.2, dropout=0.1)
    assert tiny_factory == [0.2]
    assert max(sd_probs(net.backbone)) == pytest.approx(0.2)
    assert net.drop.p == 0.1
    default = build_model("swin_b_iqa", 1)
    assert tiny_factory[-1] == 0.3 and default.drop.p == 0.4
    tiny = build_model("tiny_cnn", 1, in_chans=3, dropout=0.25)
    assert tiny.drop.p == 0.25
    with torch.no_grad():
        assert tiny.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 1)


def test_float64_tiny_forward(tiny_factory):
    net = build_model("swin_b_iqa", 1, precision="float64").eval()
    assert {p.dtype for p in net.parameters()} == {torch.float64}
    with torch.no_grad():
        assert net(torch.randn(2, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("name, options, takes", [
    ("swin_b_iqa", {"dropuot": 0.1}, "drop_path, dropout"),
    ("tiny_cnn", {"drop_path": 0.3}, "it takes dropout"),
    ("resnet18", {"dropout": 0.4}, "no options"),
])
def test_unknown_option_is_refused(name, options, takes, monkeypatch):
    monkeypatch.setattr(models, "swin_b_backbone", lambda *a, **k: pytest.fail("built before the check"))
    with pytest.raises(ParameterError, match=name) as e:
        build_model(name, 1, **options)
    assert takes in str(e.value) and next(iter(options)) in str(e.value)


def test_registry_entry_and_choices():
    from torchvision.models import Swin_B_Weights

    assert models.input_channels("swin_b_iqa") == 3
    assert "swin_b_iqa" in models.MODELS
    assert params.model_choices() == ["tiny_cnn", "densenet121", "resnet18", "resnet50"]  # unchanged
    assert params.model_choices("multilabel") == params.model_choices("multiclass") == params.model_choices()
    assert params.model_choices("iqa") == ["tiny_cnn", "nss_mlp", "swin_b_iqa"]
    assert "swin_b_iqa" not in params.model_help() and "swin_b_iqa" in params.model_help(task="iqa")
    assert params.check_model("swin_b_iqa", True, 224) is None
    assert "32" in params.check_model("swin_b_iqa", True, 16)
    path = models.weights_path("swin_b_iqa")
    assert path == Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(Swin_B_Weights.IMAGENET1K_V1.url)


# --------------------------------------------------------------------------- pretrained weights


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, dst, *a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_pretrained_weights_go_into_the_backbone_only(hub, tiny_factory, precision):
    torch.manual_seed(123)
    state = tiny_swin().state_dict()  # a full torchvision state dict, ImageNet classifier included
    path = models.weights_path("swin_b_iqa")
    assert str(path).startswith(str(hub))
    path.parent.mkdir(parents=True)
    torch.save(state, path)

    torch.manual_seed(0)
    pre = build_model("swin_b_iqa", 1, pretrained=True, precision=precision)
    torch.manual_seed(0)
    fresh = build_model("swin_b_iqa", 1, pretrained=False, precision=precision)
    dtype = getattr(torch, precision)
    bb = pre.backbone.state_dict()
    assert bb and all(k in state for k in bb)
    for k, v in bb.items():
        want = state[k].to(dtype) if state[k].is_floating_point() else state[k]
        assert v.dtype == want.dtype and torch.equal(v, want), k
    assert not torch.equal(fresh.backbone.features[0][0].weight, pre.backbone.features[0][0].weight)
    head = {k: v for k, v in pre.state_dict().items() if not k.startswith("backbone.")}
    fresh_head = {k: v for k, v in fresh.state_dict().items() if not k.startswith("backbone.")}
    assert head.keys() == fresh_head.keys() and len(head) > 0
    assert all(torch.equal(head[k], fresh_head[k]) for k in head)


def test_pretrained_weights_that_do_not_fit_are_refused(hub, tiny_factory):
    path = models.weights_path("swin_b_iqa")
    path.parent.mkdir(parents=True)
    torch.save(tiny_swin(embed_dim=12).state_dict(), path)
    with pytest.raises(ParameterError, match="do not fit"):
        build_model("swin_b_iqa", 1, pretrained=True)
    torch.save({"features.0.0.weight": torch.zeros(8, 3, 4, 4)}, path)
    with pytest.raises(ParameterError, match="lack"):
        build_model("swin_b_iqa", 1, pretrained=True)


def test_offline_missing_weights_fail_fast_naming_the_file(hub, monkeypatch):
    monkeypatch.setattr(models, "swin_b_backbone", lambda *a, **k: pytest.fail("model built before the weights"))
    path = models.weights_path("swin_b_iqa")
    t = time.perf_counter()
    with pytest.raises(ParameterError) as e:
        build_model("swin_b_iqa", 1, pretrained=True)
    assert time.perf_counter() - t < 5
    msg = str(e.value)
    assert str(path) in msg and str(path.parent) in msg
    assert "swin_b" in msg and "pretrained=false" in msg and "network is unreachable" in msg
    assert not path.exists()


def test_tiny_cnn_still_refuses_pretrained():
    with pytest.raises(ParameterError, match="tiny_cnn has no pretrained weights"):
        build_model("tiny_cnn", 1, pretrained=True)


# --------------------------------------------------------------------------- the paper profile's head


def test_the_paper_profile_head_multiplier_reaches_the_swin_models_optimizer_groups(tiny_factory):
    """The paper profile (pretrained off: no download) on a tiny Swin: the backbone at lr, every
    other parameter (scale tokens, fusion scores, output Linear) at lr x 10, each in one group."""
    from lfakit import engine, runner
    from lfakit.experiments import iqa_losses as X
    from lfakit.fitconfig import FitConfig

    P = runner.resolve_params("iqa_losses", "paper", {"pretrained": False, "precision": "float64", "device": "cpu"})
    assert P["head_lr_mult"] == 10.0 and P["head_bias_init"] is True
    net = X.build_model(P, head_bias=58.7)
    cfg = FitConfig.from_params(P, **X.fit_overrides(P))
    body, head = engine.make_optimizer(net, cfg).param_groups
    assert body["lr"] == P["lr"] == 5e-6 and head["lr"] == pytest.approx(5e-5)
    assert {id(p) for p in body["params"]} == {id(p) for p in net.backbone.parameters()}
    rest = [p for n, p in net.named_parameters() if not n.startswith("backbone.")]
    assert {id(p) for p in head["params"]} == {id(p) for p in rest} and len(rest) > 2
    assert sorted(id(p) for g in (body, head) for p in g["params"]) == sorted(id(p) for p in net.parameters())
    assert net.head.bias.item() == 58.7


def test_the_head_bias_start_refuses_a_model_without_a_one_output_linear_head():
    with pytest.raises(ParameterError, match="no one-output Linear head"):
        models.start_head_bias(nn.Sequential(nn.Linear(3, 1)), 3.0)
    with pytest.raises(ParameterError, match="no one-output Linear head"):
        models.start_head_bias(SwinMultiScaleIQA(num_classes=2, backbone=tiny_swin()), 3.0)


# --------------------------------------------------------------------------- nss_mlp (the IQA smoke model)


def test_nss_mlp_scores_each_image_and_trains_end_to_end():
    from lfakit import models

    torch.manual_seed(0)
    net = models.build_model("nss_mlp", 1, in_chans=3, precision="float64")
    x = torch.rand(6, 3, 40, 48, dtype=torch.float64)
    out = net(x)
    assert out.shape == (6, 1) and out.dtype == torch.float64
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)
    assert models.IQA_BACKBONES["nss_mlp"] == "features" and hasattr(net, "features") and hasattr(net, "head")


def test_nss_mlp_statistics_ignore_brightness_and_see_noise_and_blur():
    """The MSCN statistics are invariant to a brightness offset; noise raises the mean absolute
    neighbour difference and blur lowers it (the graded distortions the smoke set is made of)."""
    from lfakit.models import NSSMLP

    torch.manual_seed(0)
    net = NSSMLP(1, 3).double()
    g = torch.Generator().manual_seed(1)
    base = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64), 3, 1, 1)
    s0 = net.statistics(base)
    torch.testing.assert_close(net.statistics(base + 0.3), s0, rtol=1e-5, atol=1e-6)  # up to the rounding of the offset
    hdiff = NSSMLP.N_STATS - 1  # the last statistic of the first scale: mean |horizontal difference|
    noisy = net.statistics(base + 0.1 * torch.randn(base.shape, generator=g, dtype=torch.float64))
    blurred = net.statistics(torch.nn.functional.avg_pool2d(base, 5, 1, 2, count_include_pad=False))
    assert (noisy[:, hdiff] > s0[:, hdiff]).all() and (blurred[:, hdiff] < s0[:, hdiff]).all()


_NSS_BITS = """
import sys, torch, numpy as np
torch.set_num_threads(1)
from lfakit import models
from lfakit.losses import build
torch.manual_seed(0)
m = models.build_model("nss_mlp", 1, in_chans=3, precision="float64")
g = torch.Generator().manual_seed(1)
x = torch.randn(32, 3, 40, 40, generator=g, dtype=torch.float64)
y = torch.rand(32, generator=g, dtype=torch.float64) * 4 + 1
s = m(x).squeeze(1)
build("srcc")(s, y).backward()
np.save(sys.argv[1], torch.cat([s.detach(), *(p.grad.flatten() for p in m.parameters())]).numpy())
"""


def test_nss_mlp_gives_the_same_bits_with_avx2_and_the_machines_own_kernels(tmp_path):
    """The smoke model's forward and backward (through the srcc loss) are bit-identical under
    AVX2-only kernels (ATen, MKL, oneDNN) and this machine's own (AVX-512 where present): no
    sqrt, log or BLAS GEMM on its path (torch's Linear differs in the last bits here)."""
    import os
    import subprocess
    import sys

    import numpy as np
    from test_portability import AVX2

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "avx512f" not in cpuinfo.read_text():
        pytest.skip("this CPU has no AVX-512: its own kernels are the AVX2 ones, so the comparison would be empty")

    code = tmp_path / "bits.py"
    code.write_text(_NSS_BITS)
    out = {}
    for name, env in (("avx2", AVX2), ("own", {})):
        r = subprocess.run([sys.executable, str(code), str(tmp_path / f"{name}.npy")], env={**os.environ, **env},
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        out[name] = np.load(tmp_path / f"{name}.npy")
    assert out["avx2"].size > 32 and np.array_equal(out["avx2"], out["own"])
