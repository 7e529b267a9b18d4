"""Steps several experiments share: their losses built from the parameters, and the checks
of the losses and the device that run before a run folder is made."""

from __future__ import annotations

from torch import nn

from lfakit import losses
from lfakit.errors import ParameterError


def loss_modules(P: dict) -> dict[str, nn.Module]:
    """Each loss of ``P['losses']`` built by name with its ``loss_kwargs`` (registry defaults otherwise)."""
    return {name: losses.build(name, **P["loss_kwargs"].get(name, {})) for name in P["losses"]}


def preflight_losses(P: dict) -> None:
    """Build every loss with its ``loss_kwargs`` once, so that an unknown argument or a value out
    of range (``{"focal": {"gamma": -1}}``) fails before any work, naming the loss."""
    for name in P["losses"]:
        kwargs = P["loss_kwargs"].get(name, {})
        try:
            losses.build(name, **kwargs)
        except ParameterError as e:
            raise ParameterError(f"parameter 'loss_kwargs': {e}") from None
        except (TypeError, ValueError) as e:
            raise ParameterError(f"parameter 'loss_kwargs': loss {name!r} with {kwargs}: {e}") from None


def preflight_device(P: dict) -> None:
    """``device=cuda`` (or ``mps``) on a machine without one fails here, before any work."""
    from lfakit.engine import select_device

    select_device(P["device"])
