"""Every loss of the kit behind one registry.

>>> import lfakit.losses as L
>>> L.available()            # {'multilabel': [...], 'multiclass': [...], 'iqa': [...]}
>>> loss = L.build("zlpr")   # an nn.Module taking (logits, targets)
>>> L.register("my_loss", MyLoss, task="multiclass")   # a user's loss, trained by name
>>> L.check("my_loss")       # what the library's tests demand of every loss, one verdict per check
>>> with L.value_checks(False):   # skip the per-call target-value checks (speed; see the docs)
...     value = loss(logits, targets)
"""

from lfakit.losses._base import set_value_checks, value_checks, value_checks_enabled
from lfakit.losses._registry import TASKS, accepted_kwargs, available, build, get, register, task_of, unregister

# The loss families (the registry, lfakit.catalog.LOSSES, loads each class from them by name).
from lfakit.losses import iqa, multiclass, multilabel  # noqa: F401,E402

__all__ = [
    "TASKS",
    "accepted_kwargs",
    "available",
    "build",
    "check",
    "get",
    "register",
    "set_value_checks",
    "task_of",
    "unregister",
    "value_checks",
    "value_checks_enabled",
]


def check(loss, *, kwargs=None, verbose: bool = True, **options):
    """Hold a loss (a registered name or a class) to what the library's tests demand of every
    loss; see :func:`lfakit.losses.check.check_loss`."""
    from lfakit.losses._check import check_loss

    return check_loss(loss, kwargs=kwargs, verbose=verbose, **options)
