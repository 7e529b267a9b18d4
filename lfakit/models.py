"""One builder for every model: torchvision backbones with a new head, and the kit's own models.

``build_model("densenet121", num_classes=14, pretrained=True)`` gives torchvision's DenseNet-121
with ImageNet weights and a 14-way linear head emitting logits. The kit's own models (registry
entries with ``head=None``: :class:`TinyCNN`, :class:`SwinMultiScaleIQA`, and the membership-inference
models :class:`MLP` and :class:`ResNet18CIFAR`) are built for the data's channels and take the
options their registry entry declares (``options=("drop_path", "dropout")``);
those with ImageNet weights load them into their backbone. Pretrained weights come from
torchvision's cache (``$TORCH_HOME/hub/checkpoints``); when they are not there and cannot be
downloaded, :func:`ensure_weights` fails at once with a message saying where to put the file.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn

from lfakit import catalog as _catalog
from lfakit.errors import ParameterError
from lfakit.runtime import default_dtype


class TinyCNN(nn.Module):
    """Four conv-BN-ReLU blocks (three with stride 2), global average pooling and a linear head.

    A CPU smoke model: about 5 M multiply-adds per 64 x 64 image at the default width.
    """

    def __init__(self, num_classes: int, in_chans: int = 1, width: int = 16, dropout: float = 0.1):
        super().__init__()
        chans = [in_chans, width, width * 2, width * 4, width * 4]
        blocks = []
        for i in range(4):
            blocks += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=2 if i < 3 else 1, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.pool(self.features(x)).flatten(1)))


class _SumLinear(nn.Linear):
    """``nn.Linear`` whose product is an elementwise multiply and a sum over the inputs.

    Hand-written because it is measured portable where torch's ``linear`` is not: in float64 on
    the CPU, ``linear`` goes through the BLAS GEMM, whose blocking (so its summation order)
    differs between AVX2 and AVX-512 for some shapes (a batch of 32 x 22 inputs -> 64 outputs:
    different last bits), while ATen's multiply and sum give the same bits on AVX2, AVX-512 and
    the non-vectorised kernels. Costs N x out x in memory: meant for small layers only.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.unsqueeze(-2) * self.weight).sum(-1)
        return y if self.bias is None else y + self.bias


class _MeanAbsNorm(nn.Module):
    """Per-feature standardisation by the batch mean and mean absolute deviation (running
    averages, momentum 0.1, at evaluation), like ``BatchNorm1d`` without its ``sqrt``: torch's
    vectorised ``sqrt`` rounds differently under AVX2 and AVX-512 (measured: one ulp)."""

    def __init__(self, n: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_dev", torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > 1:
            mean = x.mean(0)
            dev = (x - mean).abs().mean(0)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
                self.running_dev.mul_(1 - self.momentum).add_(self.momentum * dev.detach())
        else:
            mean, dev = self.running_mean, self.running_dev
        return (x - mean) / (dev + self.eps)


class NSSMLP(nn.Module):
    """A small no-reference IQA model: natural-scene statistics of the whole input, then an MLP.

    After BRISQUE (Mittal, Moorthy, Bovik 2012, "No-reference image quality assessment in the
    spatial domain"): the grey image's mean-subtracted contrast-normalised (MSCN) coefficients
    ``m = (I - mu) / (d + 0.01)`` at ``scales`` dyadic scales, with ``mu`` the local mean under a
    7 x 7 Gaussian window (sigma 7/6, reflected borders) and ``d`` the local mean of ``|I - mu|``
    under the same window. Per scale ten statistics: the mean of ``|m|`` and ``m^2``, the mean
    local deviation ``d``, the mean and mean absolute value of the products of horizontally,
    vertically and diagonally neighbouring coefficients, and the mean absolute horizontal
    difference of the grey image; then the mean spread of the channels around their mean (mean
    ``|x - grey|``: colour saturation on raw RGB; on ImageNet-normalised input a grey pixel gives a
    constant, not 0, so it measures saturation up to that offset) and the mean absolute deviation
    of the input. All but these two are unchanged by adding one constant to every channel. The statistics are standardised per batch by
    their mean and mean absolute deviation (``_MeanAbsNorm``); two ReLU layers of ``width`` units (``features``, with Dropout) and a linear head give the score.

    Differences from BRISQUE, each for a reason: the moments replace BRISQUE's fitted generalised
    Gaussian shapes, so that everything is differentiable and trains with any loss; and the local
    mean absolute deviation replaces the local standard deviation, and no statistic takes a
    logarithm, because torch's vectorised ``sqrt`` and ``log`` round differently under AVX2 and
    AVX-512 (measured: one ulp in ``sqrt``), which training amplifies into different printed
    results, while additions, products, divisions, ``abs`` and these convolutions give the same
    bits on both; for the same reason the layers are :class:`_SumLinear` (BLAS GEMM blocks
    differently per instruction set) and the standardisation :class:`_MeanAbsNorm`. Written by hand: the field's BRISQUE implementations (pyiqa, piq) are fixed
    metrics with their own regressor, not trainable modules. Runs on any input side >= 8; the
    statistics average over the whole input, so a crop as large as the image sees all of it.

    The smoke profile of ``iqa_losses`` uses it because a small CNN trained from scratch on the
    embedded set's 47 training contents did not learn the graded distortions (test SRCC below
    0.4) while these statistics carry them; it says nothing about what a deep model learns on
    real photographs.
    """

    N_STATS = 10

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 64, scales: int = 2, dropout: float = 0.0):
        super().__init__()
        self.scales = int(scales)
        x = torch.arange(7, dtype=torch.get_default_dtype()) - 3
        g = torch.exp(-x ** 2 / (2 * (7 / 6) ** 2))
        self.register_buffer("window", g / g.sum(), persistent=False)
        n = self.scales * self.N_STATS + 2
        self.norm = _MeanAbsNorm(n)
        self.features = nn.Sequential(_SumLinear(n, width), nn.ReLU(), nn.Dropout(dropout), _SumLinear(width, width), nn.ReLU())
        self.head = _SumLinear(width, num_classes)

    def _local_mean(self, x: torch.Tensor) -> torch.Tensor:
        g = self.window.to(x.dtype)
        x = nn.functional.pad(x, (3, 3, 3, 3), mode="reflect")
        x = nn.functional.conv2d(x, g.view(1, 1, 1, 7))
        return nn.functional.conv2d(x, g.view(1, 1, 7, 1))

    def statistics(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, scales * 10 + 2) image statistics the MLP reads."""
        dims = (1, 2, 3)
        grey = x.mean(1, keepdim=True)
        stats = []
        for _ in range(self.scales):
            mu = self._local_mean(grey)
            dev = self._local_mean((grey - mu).abs())
            m = (grey - mu) / (dev + 0.01)
            stats += [m.abs().mean(dims), (m * m).mean(dims), dev.mean(dims)]
            for a, b in ((m[..., :, 1:], m[..., :, :-1]), (m[..., 1:, :], m[..., :-1, :]), (m[..., 1:, 1:], m[..., :-1, :-1])):
                prod = a * b
                stats += [prod.mean(dims), prod.abs().mean(dims)]
            stats.append((grey[..., :, 1:] - grey[..., :, :-1]).abs().mean(dims))
            grey = nn.functional.avg_pool2d(grey, 2)
        stats += [(x - x.mean(1, keepdim=True)).abs().mean(dims), (x - x.mean(dims, keepdim=True)).abs().mean(dims)]
        return torch.stack(stats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.norm(self.statistics(x))))


class _ScaleToken(nn.Module):
    """One stage's NHWC output -> a ``dim``-wide token: LayerNorm over channels, global average
    pooling over the positions, Linear and GELU."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.proj = nn.Linear(channels, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, H, W, C) -> (N, dim)
        return self.act(self.proj(self.norm(x).mean(dim=(1, 2))))


# torchvision's Swin-B (``torchvision.models.swin_b``): patch 4, embedding 128, depths 2-2-18-2
SWIN_B_CONFIG = dict(patch_size=[4, 4], embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=[7, 7])


def swin_b_backbone(drop_path: float = 0.3) -> nn.Module:
    """torchvision's Swin-B, randomly initialised, with stochastic depth rising linearly from 0
    (first block) to ``drop_path`` (last block).

    ``torchvision.models.swin_b`` fixes ``stochastic_depth_prob=0.5`` and refuses another value
    (torchvision 0.29: "got multiple values for keyword argument"), so the same architecture is
    built from the public ``SwinTransformer`` class; its state dict is swin_b's, key for key."""
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(**SWIN_B_CONFIG, stochastic_depth_prob=drop_path)


def _check_prob(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ParameterError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


class SwinMultiScaleIQA(nn.Module):
    """The study's no-reference IQA model: a Swin-B backbone, multi-scale features from its four
    stages and an attention-fusion head regressing one quality score per image.

    The study names the parts (Swin-B with ImageNet weights, multi-scale features of the four
    stages, "attention fusion", drop path 0.3, dropout 0.4) but gives no formula for the fusion;
    the head below is the kit's own design:

    * each stage's output (NHWC; 128, 256, 512, 1024 channels for Swin-B) is LayerNorm-ed over
      channels, average-pooled over positions and mapped by Linear + GELU to a ``fusion_dim`` token;
    * one Linear(fusion_dim, 1) per scale scores its token; a softmax over the scales (per
      sample) weights the tokens, whose weighted sum is the fused feature (the weights of the
      last forward pass are kept, detached, in :attr:`last_scale_weights`, shape (N, scales));
    * dropout(``dropout``), then Linear(fusion_dim, ``num_classes``): (N, 1) for IQA.

    ``drop_path`` is the stochastic-depth rate of the backbone's last block (linear from 0, as in
    torchvision and timm). ``backbone``: any torchvision ``SwinTransformer`` (tests pass a tiny
    one); the stages and their widths are read from it, and its ImageNet classifier (``norm``,
    ``head``) is replaced by ``nn.Identity`` (so a passed backbone is changed in place). Pretrained
    weights go into the backbone only (:meth:`load_pretrained`); the head is new.
    """

    def __init__(self, num_classes: int = 1, in_chans: int = 3, *, drop_path: float = 0.3, dropout: float = 0.4,
                 fusion_dim: int = 256, backbone: nn.Module | None = None):
        super().__init__()
        from torchvision.models.swin_transformer import SwinTransformerBlock  # V2 blocks subclass it

        drop_path, dropout = _check_prob("drop_path", drop_path), _check_prob("dropout", dropout)
        if backbone is None:
            backbone = swin_b_backbone(drop_path)
        stem = backbone.features[0][0]
        if in_chans != stem.in_channels:
            raise ParameterError(f"swin_b_iqa takes {stem.in_channels}-channel input, got in_chans={in_chans}; "
                                 "grayscale images are replicated to 3 channels")
        backbone.norm, backbone.head = nn.Identity(), nn.Identity()  # the ImageNet classifier is not used
        self.backbone = backbone
        # features alternates patch embedding / merging and stages: a stage is a Sequential of blocks
        self.stage_indices = tuple(
            i for i, m in enumerate(backbone.features)
            if isinstance(m, nn.Sequential) and len(m) and all(isinstance(b, SwinTransformerBlock) for b in m)
        )
        if not self.stage_indices:
            raise ParameterError("the backbone has no Swin stages (Sequentials of SwinTransformerBlock) in .features")
        self.stage_channels = tuple(backbone.features[i][-1].norm1.normalized_shape[0] for i in self.stage_indices)
        self.scale_tokens = nn.ModuleList(_ScaleToken(c, fusion_dim) for c in self.stage_channels)
        self.scale_scores = nn.ModuleList(nn.Linear(fusion_dim, 1) for _ in self.stage_channels)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(fusion_dim, num_classes)
        self.last_scale_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = []
        to_token = dict(zip(self.stage_indices, self.scale_tokens))
        for i in range(self.stage_indices[-1] + 1):
            x = self.backbone.features[i](x)
            if i in to_token:
                tokens.append(to_token[i](x))
        t = torch.stack(tokens, dim=1)  # (N, scales, fusion_dim)
        scores = torch.cat([score(t[:, k]) for k, score in enumerate(self.scale_scores)], dim=1)  # (N, scales)
        w = scores.softmax(dim=1)
        self.last_scale_weights = w.detach()
        return self.head(self.drop((w.unsqueeze(-1) * t).sum(dim=1)))

    def load_pretrained(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Load an ImageNet state dict of the backbone (torchvision's ``Swin_B_Weights`` file) into
        the backbone; the head keeps its fresh weights. Keys of the dropped classifier (``norm.*``,
        ``head.*``) are ignored and returned; a key the backbone needs and the file lacks, or a
        shape that differs, is a ParameterError."""
        own = self.backbone.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ParameterError(f"the pretrained weights lack {len(missing)} backbone tensors (e.g. {missing[:3]}); "
                                 "they are not Swin-B weights")
        bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
        if bad:
            raise ParameterError(f"the pretrained weights do not fit the backbone: {bad[0]} is "
                                 f"{tuple(state[bad[0]].shape)}, the backbone's is {tuple(own[bad[0]].shape)}")
        self.backbone.load_state_dict({k: state[k] for k in own}, strict=True)
        return [k for k in state if k not in own]


# The IQA models' backbone submodule: what trains at the base learning rate when the head (every
# other parameter: swin_b_iqa's scale tokens, fusion scores and output Linear; tiny_cnn's and
# nss_mlp's output Linear) gets lr x head_lr_mult (FitConfig.backbone_module).
IQA_BACKBONES = {"swin_b_iqa": "backbone", "tiny_cnn": "features", "nss_mlp": "features"}


def start_head_bias(model: nn.Module, value: float) -> None:
    """Set the bias of an IQA model's output Linear (``model.head``, one output) to ``value`` (the
    training MOS mean), so that a fresh head predicts about the mean from the first step."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear) or head.bias is None or head.out_features != 1:
        raise ParameterError(f"{type(model).__name__} has no one-output Linear head with a bias to start at the MOS mean")
    with torch.no_grad():
        head.bias.fill_(float(value))


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class MLP(nn.Module):
    """A multilayer perceptron on flattened images: ``depth`` hidden layers of ``width`` units
    (Linear, ReLU, and Dropout(``dropout``) when it is above 0), then Linear to ``num_classes``.

    A membership-inference target for small inputs such as scikit-learn's 8 x 8 digits. The
    input size is fixed when the model is built (``in_chans * input_side ** 2`` input features),
    so the weights are drawn at build time, in the build's precision; an input of another shape
    is a ParameterError naming the shape expected. ``depth=0`` is multinomial logistic regression.
    At the defaults (1 x 8 x 8 input, 10 classes) it has 85,002 parameters.
    """

    def __init__(self, num_classes: int, in_chans: int = 1, *, width: int = 256, depth: int = 2,
                 dropout: float = 0.0, input_side: int = 8):
        super().__init__()
        width, depth = _check_count("width", width, 1), _check_count("depth", depth, 0)
        input_side, dropout = _check_count("input_side", input_side, 1), _check_prob("dropout", dropout)
        self.input_shape = (in_chans, input_side, input_side)
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_chans * input_side * input_side
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            features = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            c, side, _ = self.input_shape
            raise ParameterError(
                f"mlp was built for inputs of shape (N, {c}, {side}, {side}) (in_chans={c}, input_side={side}), "
                f"got {tuple(x.shape)}; build it with input_side (and in_chans) matching the data")
        return self.head(self.features(x))


class ResNet18CIFAR(nn.Module):
    """ResNet-18, CIFAR variant: a 3 x 3 stride-1 stem convolution and no max-pool, then
    torchvision's four BasicBlock stages (64-128-256-512, two blocks each), global average
    pooling and a Linear head; a 32 x 32 image enters layer1 at 32 x 32 and leaves layer4 at 4 x 4.

    The ResNet-18 of LiRA's and RMIA's CIFAR-10 membership-inference experiments (they also
    train WRN-28-2; this is the ResNet-18 variant). 11,173,962 parameters for 10 classes
    (about 11.2 M). No pretrained weights: the ImageNet ones belong to the 7 x 7 stride-2 stem.

    Built from torchvision's public ``ResNet`` and ``BasicBlock``: ``conv1`` is replaced by the
    3 x 3 stride-1 convolution (initialised as torchvision initialises its convolutions,
    Kaiming normal, fan-out) and ``maxpool`` by ``nn.Identity``; the network is kept in
    :attr:`net`, with torchvision's ``resnet18`` module names.
    """

    def __init__(self, num_classes: int, in_chans: int = 3):
        super().__init__()
        from torchvision.models.resnet import BasicBlock, ResNet

        _check_count("in_chans", in_chans, 1)
        net = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS = tuple(_catalog.MODELS.names())


def input_channels(name: str) -> int:
    """Channels a model expects: 1 for tiny models on grayscale, 3 for ImageNet backbones."""
    return _catalog.MODELS.meta(name)["channels"]


def _weights(name: str):
    import torchvision.models as tvm

    return getattr(tvm, _catalog.MODELS.meta(name)["pretrained_weights"]).IMAGENET1K_V1


def weights_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_weights(name).url)


def ensure_weights(name: str, timeout: float = 15.0) -> Path:
    """Make sure the ImageNet weights of ``name`` are on disk, downloading them if possible.

    Offline, this fails at once (a short socket timeout) with a message naming the file and
    the folder it belongs in, instead of a long traceback deep inside training.
    """
    if not _catalog.MODELS.meta(name)["pretrained_weights"]:
        raise ParameterError(f"model {name!r} has no pretrained weights; use pretrained=false")
    path = weights_path(name)
    if path.exists():
        return path
    url = _weights(name).url
    path.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except Exception as e:  # noqa: BLE001 - any network failure reads the same to the user
        raise ParameterError(
            f"ImageNet weights for {name} are not on disk and could not be downloaded ({type(e).__name__}: {e}). "
            f"Download {url} on a machine with internet and put it at {path} "
            f"(or set TORCH_HOME), or run with pretrained=false."
        ) from None
    finally:
        socket.setdefaulttimeout(old)
    return path


def build_model(name: str, num_classes: int, pretrained: bool = False, in_chans: int | None = None,
                precision: str = "float32", **options) -> nn.Module:
    """Build model ``name`` emitting ``num_classes`` logits, its parameters in ``precision``.

    ``options`` (``drop_path=0.3``, ``dropout=0.4``) go to models whose registry entry declares
    them (``options=(...)``); any other is a ParameterError naming the options the model takes.
    The initial weights are drawn directly in ``precision`` (not drawn in float32 and cast), so
    a float64 model starts from the same weights on every CPU (see :mod:`lfakit.runtime`)."""
    with default_dtype(precision):
        return _build_model(name, num_classes, pretrained, in_chans, options)


def _pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``name``, floating tensors in the current default dtype."""
    state = torch.load(ensure_weights(name), map_location="cpu", weights_only=True)
    return {k: v.to(torch.get_default_dtype()) if v.is_floating_point() else v for k, v in state.items()}


def _build_model(name: str, num_classes: int, pretrained: bool, in_chans: int | None, options: dict) -> nn.Module:
    meta = _catalog.MODELS.meta(name)  # unknown names: the registry's "did you mean" error
    takes = tuple(meta.get("options", ()))
    unknown = [k for k in options if k not in takes]
    if unknown:
        raise ParameterError(f"model {name!r} takes no option {', '.join(map(repr, unknown))}; "
                             f"it takes {', '.join(takes) if takes else 'no options'}")
    if meta["head"] is None:  # a kit model, built for the data's channels
        if pretrained and not meta["pretrained_weights"]:
            raise ParameterError(f"{name} has no pretrained weights; use pretrained=false")
        state = _pretrained_state(name) if pretrained else None  # fails fast, before a big model is built
        model = _catalog.MODELS.get(name)(num_classes, in_chans=in_chans or meta["channels"], **options)
        if state is not None:
            model.load_pretrained(state)
        return model
    head = meta["head"]
    model = _catalog.MODELS.get(name)(weights=None)
    if pretrained:
        model.load_state_dict(_pretrained_state(name))
    old = getattr(model, head)
    setattr(model, head, nn.Linear(old.in_features, num_classes))
    if in_chans not in (None, 3):
        raise ParameterError(f"{name} takes 3-channel input; grayscale images are replicated to 3 channels")
    return model
