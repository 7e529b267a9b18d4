"""One builder for every model: torchvision backbones with a new head, and tiny CPU models.

``build_model("densenet121", num_classes=14, pretrained=True)`` gives torchvision's DenseNet-121
with ImageNet weights and a 14-way linear head emitting logits. Pretrained weights come from
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
                precision: str = "float32") -> nn.Module:
    """Build model ``name`` emitting ``num_classes`` logits, its parameters in ``precision``.

    The initial weights are drawn directly in ``precision`` (not drawn in float32 and cast), so
    a float64 model starts from the same weights on every CPU (see :mod:`lfakit.runtime`)."""
    with default_dtype(precision):
        return _build_model(name, num_classes, pretrained, in_chans)


def _build_model(name: str, num_classes: int, pretrained: bool, in_chans: int | None) -> nn.Module:
    meta = _catalog.MODELS.meta(name)  # unknown names: the registry's "did you mean" error
    if meta["head"] is None:  # a kit model, built for the data's channels
        if pretrained:
            raise ParameterError(f"{name} has no pretrained weights; use pretrained=false")
        return _catalog.MODELS.get(name)(num_classes, in_chans=in_chans or meta["channels"])
    head = meta["head"]
    model = _catalog.MODELS.get(name)(weights=None)
    if pretrained:
        state = torch.load(ensure_weights(name), map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.to(torch.get_default_dtype()) if v.is_floating_point() else v for k, v in state.items()})
    old = getattr(model, head)
    setattr(model, head, nn.Linear(old.in_features, num_classes))
    if in_chans not in (None, 3):
        raise ParameterError(f"{name} takes 3-channel input; grayscale images are replicated to 3 channels")
    return model
