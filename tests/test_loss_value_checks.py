"""The switch for the per-call value checks of the losses (``lfakit.losses.set_value_checks``).

Off, a loss must compute exactly what it computes with the checks on (same value, same
gradient) and skip only the reads of the target values; shape errors stay, and so do the
numerical safeguards. Also here: what every loss says when it is not given tensors.
"""

from __future__ import annotations

import pytest
import torch

import lfakit.losses as L
from lfakit.errors import ParameterError

MULTILABEL = L.available()["multilabel"]
MULTICLASS = L.available()["multiclass"]
IQA = L.available()["iqa"]
#: losses that read their targets whatever the switch (focal chooses its formula by whether
#: the targets are hard, so the range check comes with that read)
READS_TARGETS_ANYWAY = {"focal"}
#: IQA losses that use the MOS only through comparisons (pair orders, ranks)
BY_COMPARISON = {"rank", "rank_mos", "fidelity", "srcc"}


@pytest.fixture(autouse=True)
def _checks_restored():
    assert L.value_checks_enabled(), "a previous test left the value checks off"
    yield
    L.set_value_checks(True)


def _inputs(name: str):
    g = torch.Generator().manual_seed(7)
    task = L.task_of(name)
    if task == "multilabel":
        z = torch.randn(6, 5, generator=g, dtype=torch.float64) * 3
        y = (torch.rand(6, 5, generator=g) < 0.4).to(torch.float64)
        y[0, :] = 0  # a row without positives, and one with only positives (ZLPR's edge cases)
        y[1, :] = 1
        return z, y
    if task == "multiclass":
        z = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3
        return z, torch.randint(0, 5, (8,), generator=g)
    pred = torch.randn(16, generator=g, dtype=torch.float64)
    return pred, torch.rand(16, generator=g, dtype=torch.float64) * 4 + 1


def _value_and_grad(loss, x, y):
    x = x.clone().requires_grad_(True)
    value = loss(x, y)
    value.backward()
    return value.detach(), x.grad


@pytest.mark.parametrize("name", MULTILABEL + MULTICLASS + IQA)
def test_checks_off_computes_the_same_value_and_gradient(name):
    loss = L.build(name)
    x, y = _inputs(name)
    on = _value_and_grad(loss, x, y)
    with L.value_checks(False):
        off = _value_and_grad(loss, x, y)
    assert torch.equal(on[0], off[0]) and torch.equal(on[1], off[1])


@pytest.mark.parametrize("name", MULTILABEL)
def test_multilabel_out_of_range_targets(name):
    loss = L.build(name)
    z, y = _inputs(name)
    y[2, 3] = 2.0
    with pytest.raises(ValueError, match="targets must"):
        loss(z, y)
    with L.value_checks(False):
        if name in READS_TARGETS_ANYWAY:
            with pytest.raises(ValueError, match="targets must"):
                loss(z, y)
        else:
            assert loss(z, y).ndim == 0  # not read: the formula is evaluated as it stands


#: multi-class losses computed by F.cross_entropy (flooding wraps ce by default), whose default
#: ignore_index=-100 applies when the kit's label check is off
CROSS_ENTROPY = {"ce", "logit_clip", "logit_norm", "flooding"}


@pytest.mark.parametrize("bad", [5, -1, -100, -(2**63), 2**63 - 1])
@pytest.mark.parametrize("name", MULTICLASS)
def test_multiclass_bad_labels(name, bad):
    """Checks on: every label outside [0, K) gets the kit's error, -100 included. Off: the
    labels are not read and PyTorch's own functions decide -- their index check on the CPU,
    except that F.cross_entropy skips a -100 label (its default ignore_index)."""
    loss = L.build(name)
    z, y = _inputs(name)
    y[3] = bad
    with pytest.raises(ValueError, match=rf"must lie in \[0, 5\).*{bad}"):
        loss(z, y)
    with L.value_checks(False):
        if bad == -100 and name in CROSS_ENTROPY:
            keep = torch.arange(len(y)) != 3
            torch.testing.assert_close(loss(z, y), loss(z[keep], y[keep]), rtol=1e-15, atol=0)
        else:
            with pytest.raises((IndexError, RuntimeError), match="out of bounds"):
                loss(z, y)


@pytest.mark.parametrize("name", MULTICLASS)
def test_multiclass_labels_read_only_with_checks_on(name, monkeypatch):
    loss = L.build(name)
    z, y = _inputs(name)
    want = loss(z, y)

    def read(*args, **kwargs):
        raise AssertionError("the labels were read")

    monkeypatch.setattr(torch, "aminmax", read)
    with pytest.raises(AssertionError, match="labels were read"):
        loss(z, y)
    with L.value_checks(False):
        assert torch.equal(loss(z, y), want)


@pytest.mark.parametrize("name", IQA)
def test_iqa_nan_mos(name):
    loss = L.build(name)
    pred, mos = _inputs(name)
    mos[4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(pred, mos)
    with L.value_checks(False):
        value = loss(pred, mos)  # not read: the formula is evaluated as it stands
    if name in BY_COMPARISON:
        # MOS orders come from comparisons, and a comparison with NaN is simply False: a
        # silently wrong value, which is why the checks are on by default
        assert value.ndim == 0
    else:
        assert value.isnan()


@pytest.mark.parametrize("name", MULTILABEL + MULTICLASS + IQA)
def test_shape_errors_stay_with_checks_off(name):
    loss = L.build(name)
    x, y = _inputs(name)
    with L.value_checks(False), pytest.raises((ValueError, TypeError)):
        loss(x, y[:-1])


@pytest.mark.parametrize("name", ["zlpr", "soft_zlpr", "fzlpr"])
def test_zlpr_overflow_fallback_stays_with_checks_off(name):
    z, y = _inputs(name)
    z = (z.sign() * 1e4).to(torch.float32).requires_grad_(True)
    with L.value_checks(False):
        value = L.build(name)(z, y.float())
        value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()


def test_switch_api():
    assert L.set_value_checks(False) is True
    assert not L.value_checks_enabled()
    assert L.set_value_checks(True) is False
    with pytest.raises(ParameterError, match="True or False"):
        L.set_value_checks(0)
    with pytest.raises(RuntimeError, match="inside"):
        with L.value_checks(False):
            assert not L.value_checks_enabled()
            raise RuntimeError("inside")
    assert L.value_checks_enabled()  # restored after the exception
    with L.value_checks(False), L.value_checks(True):
        assert L.value_checks_enabled()
    assert L.value_checks_enabled()


@pytest.mark.parametrize("name", MULTILABEL + MULTICLASS + IQA)
def test_non_tensor_inputs_get_a_type_error(name):
    x, y = _inputs(name)
    with pytest.raises(TypeError, match="Tensor|tensors"):
        L.build(name)(x.tolist(), y.tolist())
