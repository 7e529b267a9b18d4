"""Parameter validation: unknown names, wrong types, ranges, YAML traps, profiles."""

from __future__ import annotations

import pytest
import yaml

from lfakit import params, runner
from lfakit.errors import ParameterError

EXP = "chestxray_zlpr"


def test_unknown_name_suggests_close_match():
    with pytest.raises(ParameterError, match=r"unknown parameter 'epoch'.*'epochs'"):
        params.validate(EXP, {"epoch": 3}, partial=True)


def test_unknown_loss_suggests_close_match():
    with pytest.raises(ParameterError, match=r"'zlp' is not allowed.*'zlpr'"):
        params.validate(EXP, {"losses": ["focal", "zlp"]}, partial=True)


def test_yaml_reads_1e_minus_3_as_text_and_we_take_it_as_float():
    raw = yaml.safe_load("lr: 1e-3\nweight_decay: 1.0e-5\n")
    assert isinstance(raw["lr"], str)  # the trap itself (YAML 1.1)
    out = params.validate(EXP, raw, partial=True)
    assert out["lr"] == pytest.approx(1e-3) and isinstance(out["lr"], float)


@pytest.mark.parametrize(
    "name, value, pattern",
    [
        ("epochs", "three", "must be a int"),
        ("epochs", 2.5, "must be an integer"),
        ("epochs", 0, ">= 1"),
        ("epochs", True, "boolean"),
        ("lr", -1.0, ">= "),
        ("lr", float("nan"), "finite"),
        ("pretrained", "yes", "true or false"),
        ("losses", "focal", None),  # a single name is accepted as a one-item list
        ("losses", [], "must not be empty"),
        ("losses", ["focal", "focal"], "twice"),
        ("model", "densenet", "densenet121"),
        ("loss_kwargs", {"focal": {"gama": 1}}, "'gamma'"),
        ("loss_kwargs", {"focall": {}}, "'focal'"),
        ("val_fraction", 0.9, "<= 0.5"),
    ],
)
def test_bad_values(name, value, pattern):
    if pattern is None:
        assert params.validate(EXP, {name: value}, partial=True)[name] == ["focal"]
        return
    with pytest.raises(ParameterError, match=pattern):
        params.validate(EXP, {name: value}, partial=True)


def test_int_given_for_float_is_widened_and_integral_float_for_int_accepted():
    out = params.validate(EXP, {"lr": 1, "epochs": 3.0}, partial=True)
    assert out["lr"] == 1.0 and isinstance(out["lr"], float)
    assert out["epochs"] == 3 and isinstance(out["epochs"], int)


def test_missing_parameter_is_an_error_when_complete():
    with pytest.raises(ParameterError, match="missing parameter"):
        params.validate(EXP, {"epochs": 1})


def test_override_parsing():
    assert params.parse_override("losses=[focal, zlpr]") == ("losses", ["focal", "zlpr"])
    assert params.parse_override("lr=1e-4")[1] == "1e-4"  # text; validate() makes it a float
    with pytest.raises(ParameterError, match="name=value"):
        params.parse_override("epochs")


def test_validate_notebook_catches_injected_unknown_names():
    ns = {k: v["default"] for k, v in runner.notebook_parameters(EXP).items()}
    ns.update({"In": [], "_": None, "params": params})  # IPython and module names are ignored
    assert params.validate_notebook(EXP, ns)["epochs"] == ns["epochs"]
    ns["batchsize"] = 4
    with pytest.raises(ParameterError, match="'batch_size'"):
        params.validate_notebook(EXP, ns)


def test_notebook_parameters_match_schema():
    """Every notebook parameter has a schema entry of the same type, and vice versa."""
    nb = runner.notebook_parameters(EXP)
    sch = params.schema(EXP)
    assert set(nb) == set(sch)
    for name, p in nb.items():
        assert p["type"] == sch[name].type.__name__, name
        assert p["help"], f"{name} has no help comment"
    params.validate(EXP, {k: v["default"] for k, v in nb.items()})  # defaults are valid


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_profiles_validate(profile):
    resolved = runner.resolve_params(EXP, profile)
    assert resolved["seed"] == 42


def test_smoke_profile_equals_notebook_defaults():
    """nbval executes the notebook's defaults; `lfakit run --profile smoke` must run the same."""
    defaults = {k: v["default"] for k, v in runner.notebook_parameters(EXP).items()}
    assert runner.resolve_params(EXP, "smoke") == params.validate(EXP, defaults)


def test_paper_profile_is_the_seed_configuration():
    p = runner.resolve_params(EXP, "paper")
    assert (p["model"], p["pretrained"], p["image_size"], p["epochs"], p["batch_size"]) == ("densenet121", True, 224, 25, 8)
    assert (p["optimizer"], p["weight_decay"], p["seed"]) == ("adamw", 1e-5, 42)
    assert p["losses"] == ["focal", "zlpr", "fzlpr"] and p["baseline"] == "focal"
    assert p["loss_kwargs"]["focal"] == {"gamma": 2.0, "alpha": None}
