"""The membership-inference target models (``mlp``, ``resnet18_cifar``): shapes, precision,
options, the CIFAR stem, and that their "privacy" task tag leaves the classification experiments'
model choices as they were. Random weights only; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from lfakit import models, params
from lfakit.errors import ParameterError
from lfakit.models import MLP, ResNet18CIFAR, build_model

# the choices before these models were registered (the committed notebooks' help text)
CLASSIFICATION_MODELS = ["tiny_cnn", "densenet121", "resnet18", "resnet50"]


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_model("resnet18_cifar", 10).eval()


# --------------------------------------------------------------------------- MLP


def test_mlp_shapes_and_layout():
    net = build_model("mlp", 10).eval()
    assert isinstance(net, MLP) and net.input_shape == (1, 8, 8)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 256), (256, 256), (256, 10)]
    assert n_params(net) == 85_002
    with torch.no_grad():
        assert net(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_mlp_options():
    net = build_model("mlp", 3, in_chans=3, width=32, depth=3, dropout=0.25, input_side=4)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(48, 32), (32, 32), (32, 32), (32, 3)]
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.25] * 3
    assert not any(isinstance(m, torch.nn.Dropout) for m in build_model("mlp", 3).modules())  # default 0.0
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 3, 4, 4)).shape == (2, 3)
    logreg = build_model("mlp", 10, depth=0)  # multinomial logistic regression
    assert [type(m).__name__ for m in logreg.modules()][1:] == ["Sequential", "Flatten", "Linear"]
    assert n_params(logreg) == 64 * 10 + 10


def test_mlp_wrong_input_shape_names_the_expected_one():
    net = build_model("mlp", 10)
    with pytest.raises(ParameterError, match=r"\(N, 1, 8, 8\).*input_side=8.*\(2, 1, 32, 32\)"):
        net(torch.randn(2, 1, 32, 32))
    with pytest.raises(ParameterError, match=r"\(N, 1, 8, 8\)"):
        net(torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize("options, match", [
    ({"width": 0}, "width"), ({"depth": -1}, "depth"), ({"depth": 1.5}, "depth"),
    ({"input_side": True}, "input_side"), ({"dropout": 1.0}, "dropout"),
])
def test_mlp_bad_option_values(options, match):
    with pytest.raises(ParameterError, match=match):
        build_model("mlp", 10, **options)


# --------------------------------------------------------------------------- ResNet-18, CIFAR variant


def test_resnet18_cifar_shape_and_params(resnet):
    assert isinstance(resnet, ResNet18CIFAR)
    assert abs(n_params(resnet) - 11.17e6) / 11.17e6 < 0.01
    assert n_params(resnet) == 11_173_962
    with torch.no_grad():
        assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert build_model("resnet18_cifar", 100).net.fc.out_features == 100


def test_resnet18_cifar_stem_keeps_32px(resnet):
    stem = resnet.net.conv1
    assert (stem.kernel_size, stem.stride, stem.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(resnet.net.maxpool, torch.nn.Identity)
    seen = {}
    hooks = [resnet.net.layer1.register_forward_hook(lambda m, i, o: seen.update(layer1_in=i[0].shape)),
             resnet.net.layer4.register_forward_hook(lambda m, i, o: seen.update(layer4_out=o.shape))]
    try:
        with torch.no_grad():
            resnet(torch.randn(1, 3, 32, 32))
    finally:
        for h in hooks:
            h.remove()
    assert seen["layer1_in"] == (1, 64, 32, 32)
    assert seen["layer4_out"] == (1, 512, 4, 4)


def test_resnet18_cifar_min_side_and_channels():
    net = build_model("resnet18_cifar", 10, in_chans=1).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)  # min_side 8: layer4 at 1 x 1
    assert params.check_model("resnet18_cifar", False, 8) is None
    assert "8" in params.check_model("resnet18_cifar", False, 4)
    assert "no pretrained weights" in params.check_model("resnet18_cifar", True, 32)
    with pytest.raises(ParameterError, match="no pretrained weights"):
        build_model("resnet18_cifar", 10, pretrained=True)


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("name, shape", [("mlp", (2, 1, 8, 8)), ("resnet18_cifar", (2, 3, 16, 16))])
def test_float64_build(name, shape):
    net = build_model(name, 10, precision="float64").eval()
    assert {p.dtype for p in net.parameters()} == {torch.float64}
    assert torch.get_default_dtype() == torch.float32  # restored
    with torch.no_grad():
        assert net(torch.randn(*shape, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("name, options, takes", [
    ("mlp", {"widht": 64}, "it takes width, depth, dropout, input_side"),
    ("resnet18_cifar", {"dropout": 0.1}, "no options"),
])
def test_unknown_option_is_refused(name, options, takes):
    with pytest.raises(ParameterError, match=name) as e:
        build_model(name, 10, **options)
    assert takes in str(e.value) and next(iter(options)) in str(e.value)


def test_registry_entries():
    from lfakit.catalog import MODELS

    assert models.input_channels("mlp") == 1 and models.input_channels("resnet18_cifar") == 3
    for name in ("mlp", "resnet18_cifar"):
        meta = MODELS.meta(name)
        assert meta["head"] is None and meta["pretrained_weights"] is None
        assert meta["tasks"] == ("privacy",)
    assert MODELS.meta("mlp")["min_side"] == 1 and MODELS.meta("resnet18_cifar")["min_side"] == 8


def test_classification_choices_unchanged():
    assert params.model_choices() == CLASSIFICATION_MODELS
    assert params.model_choices("multilabel") == CLASSIFICATION_MODELS
    assert params.model_choices("multiclass") == CLASSIFICATION_MODELS
    assert params.model_choices("iqa") == ["tiny_cnn", "nss_mlp", "swin_b_iqa"]
    assert params.model_choices("privacy") == ["mlp", "resnet18_cifar"]
    assert params.model_help() == " | ".join(CLASSIFICATION_MODELS)
    for experiment in ("chestxray_zlpr", "cifar_fece"):
        spec = params.schema(experiment)["model"]
        assert spec.allowed() == CLASSIFICATION_MODELS
        assert spec.help.startswith("tiny_cnn | densenet121 | resnet18 | resnet50")
