"""Each registered loss's keyword arguments and what they may hold, without importing torch.

``loss_kwargs`` is checked against this table when parameters are validated
(:func:`lfakit.params.check_loss_kwargs`), so a misspelt argument or a value out of range stops
``lfakit run`` at once, before torch and the experiment's code are imported. The table restates
the loss classes' own checks (``lfakit/losses``); ``tests/test_params.py`` keeps the two equal
(the same argument names as each class's signature, and the same verdict on values in and out
of every range). Arguments whose checks need the loss itself (``bce``'s ``pos_weight``,
``flooding``'s ``base`` and ``base_kwargs``) are marked ``built``: the experiment's preflight
builds every loss before a run folder is made and checks them there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REDUCTIONS = ("none", "mean", "sum")


@dataclass(frozen=True)
class Arg:
    """One loss argument: ``number`` (finite, within bounds; ``none_ok``: None too), ``bool``,
    ``choice`` (one of ``choices``) or ``built`` (checked only by building the loss)."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    none_ok: bool = False

    def problem(self, name: str, value) -> str | None:
        """Why ``value`` is refused for argument ``name`` (the loss's own wording), or None."""
        if self.kind == "built":
            return None
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"{name} must be True or False, got {value!r}"
        if self.kind == "choice":
            return None if value in self.choices else f"{name} must be one of {self.choices}, got {value!r}"
        if value is None and self.none_ok:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number, got {type(value).__name__} {value!r}"
        v = float(value)
        if not math.isfinite(v):
            return f"{name} must be finite, got {v!r}"
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return f"{name} must be {'>' if self.low_open else '>='} {self.low}, got {value!r}"
        if self.high is not None and (v >= self.high if self.high_open else v > self.high):
            return f"{name} must be {'<' if self.high_open else '<='} {self.high}, got {value!r}"
        return None


def num(low=None, high=None, *, low_open=False, high_open=False, none_ok=False) -> Arg:
    return Arg("number", low, high, low_open, high_open, none_ok=none_ok)


BOOL = Arg("bool")
BUILT = Arg("built")
REDUCTION = Arg("choice", choices=REDUCTIONS)
_A = num(high=0, high_open=True)  # RCE's log(0) stand-in, negative

# Every loss also takes ``reduction`` (added below unless given).
LOSS_ARGS: dict[str, dict[str, Arg]] = {
    # multi-label
    "bce": {"pos_weight": BUILT, "label_smoothing": num(0, 1)},
    "focal": {"gamma": num(0), "alpha": num(0, 1, none_ok=True)},
    "asl": {"gamma_neg": num(0), "gamma_pos": num(0), "clip": num(0, 1, high_open=True),
            "eps": num(0, 1, low_open=True, high_open=True), "detach_focusing": BOOL},
    "exp_ce": {"clamp": num(0, 80, low_open=True)},
    "f_ece": {"gamma": num(0), "clamp": num(0, 80, low_open=True)},
    "zlpr": {},
    "soft_zlpr": {"label_smoothing": num(0, 1)},
    "fzlpr": {"tau": num(0, low_open=True)},
    # multi-class
    "ce": {"label_smoothing": num(0, 1)},
    "focal_ce": {"gamma": num(0)},
    "mae": {"scale": num(0, low_open=True)},
    "gce": {"q": num(0, 1, low_open=True)},
    "rce": {"A": _A},
    "sce": {"alpha": num(0), "beta": num(0), "A": _A},
    "nce": {},
    "nce_rce": {"alpha": num(0), "beta": num(0), "A": _A},
    "phuber_ce": {"tau": num(1)},
    "logit_clip": {"delta": num(0, low_open=True), "form": Arg("choice", choices=("paper", "code"))},
    "logit_norm": {"tau": num(0, low_open=True)},
    "flooding": {"base": BUILT, "b": num(0), "base_kwargs": BUILT,
                 "reduction": Arg("choice", choices=("mean",))},  # floods the batch mean
    # IQA
    "l1": {},
    "l2": {},
    "plcc": {"halved": BOOL, "eps": num(0)},
    "srcc": {"temperature": num(0, low_open=True), "eps": num(0)},
    "norm_in_norm": {"p": num(1), "q": num(1), "eps": num(0)},
    "rank": {},
    "rank_mos": {"scaled": BOOL, "detach_scale": BOOL},
    "fidelity": {"sigma": num(0, low_open=True), "eps": num(0)},
}
for _args in LOSS_ARGS.values():
    _args.setdefault("reduction", REDUCTION)


def args_from_defaults(defaults: dict[str, object]) -> dict[str, Arg]:
    """The argument table of a loss registered by a user (:func:`lfakit.losses.register`, an
    ``lfakit.losses`` entry point), read from its keyword arguments and their defaults: a
    ``bool`` default takes True/False, a number default any finite number (``None`` too where
    the default is None), ``reduction`` one of :data:`REDUCTIONS` (if its default is one); any
    other argument is ``built`` (the preflight build checks it). So a misspelt argument of a
    user's loss stops validation as one of the library's does. A loss that wants bounds passes
    its own table (``register(..., args={"gamma": num(0)})``)."""
    table: dict[str, Arg] = {}
    for name, default in defaults.items():
        if name == "reduction" and default in REDUCTIONS:
            table[name] = REDUCTION
        elif isinstance(default, bool):
            table[name] = BOOL
        elif isinstance(default, (int, float)):
            table[name] = num()
        else:
            table[name] = BUILT
    return table
