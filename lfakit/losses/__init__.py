"""Every loss of the kit behind one registry.

>>> import lfakit.losses as L
>>> L.available()            # {'multilabel': [...], 'multiclass': [...], 'iqa': [...]}
>>> loss = L.build("zlpr")   # an nn.Module taking (logits, targets)
>>> with L.value_checks(False):   # skip the per-call target-value checks (speed; see the docs)
...     value = loss(logits, targets)
"""

from lfakit.losses._base import set_value_checks, value_checks, value_checks_enabled
from lfakit.losses._registry import TASKS, accepted_kwargs, available, build, get, task_of

# The loss families (the registry, lfakit.catalog.LOSSES, loads each class from them by name).
from lfakit.losses import iqa, multiclass, multilabel  # noqa: F401,E402

__all__ = [
    "TASKS",
    "accepted_kwargs",
    "available",
    "build",
    "get",
    "set_value_checks",
    "task_of",
    "value_checks",
    "value_checks_enabled",
]
