"""Parameter validation: unknown names, wrong types, ranges, YAML traps, profiles; and, for every
experiment the runner finds, notebook parameters vs SCHEMA vs profile files."""

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


# ------------------------------------------------------------------ every experiment: notebook / SCHEMA / profiles
# Found by the runner's own discovery, so a new experiment (a notebook with a SCHEMA) is covered
# without touching this file.

EXPERIMENTS = runner.experiments()
PROFILES = [(exp, profile) for exp in EXPERIMENTS for profile in runner.profiles(exp)]

# Typos known to have a close match, beside the one derived for every parameter below.
TYPOS = {
    "chestxray_zlpr": [("batchsize", "batch_size")],
    "cf_ensemble": [("focal_gama", "focal_gamma")],
}


def _defaults(exp: str) -> dict:
    return {k: v["default"] for k, v in runner.notebook_parameters(exp).items()}


def _typo(name: str) -> str:
    """``name`` with its middle character doubled (batch_size -> batchh_size)."""
    k = len(name) // 2
    return name[:k] + name[k] + name[k:]


def test_discovery_finds_every_experiment():
    """Each notebook has a schema (else it would silently drop out of the tests below) and each
    params/ folder belongs to an experiment."""
    assert EXPERIMENTS == sorted(p.stem for p in runner.notebooks_dir().glob("*.ipynb"))
    assert sorted(p.name for p in (runner.project_root() / "params").iterdir() if p.is_dir()) == EXPERIMENTS
    assert {"chestxray_zlpr", "loss_atlas", "cifar_fece", "cf_ensemble"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_validate_notebook_catches_injected_unknown_names(exp):
    ns = _defaults(exp)
    ns.update({"In": [], "_": None, "params": params})  # IPython and module names are ignored
    assert params.validate_notebook(exp, ns) == params.validate(exp, _defaults(exp))
    sch = params.schema(exp)
    derived = [(_typo(name), name) for name in sch]
    for typo, meant in TYPOS.get(exp, []) + derived:
        assert typo not in sch, typo
        with pytest.raises(ParameterError, match=f"'{typo}'.*'{meant}'"):
            params.validate_notebook(exp, {**ns, typo: ns.get(meant, 1)})


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_notebook_parameters_match_schema(exp):
    """Every notebook parameter has a schema entry of the same type, and vice versa."""
    nb = runner.notebook_parameters(exp)
    sch = params.schema(exp)
    assert set(nb) == set(sch)
    for name, p in nb.items():
        assert p["type"] == sch[name].type.__name__, name
        assert p["help"], f"{name} has no help comment"
    params.validate(exp, {k: v["default"] for k, v in nb.items()})  # defaults are valid


@pytest.mark.parametrize("exp, profile", PROFILES)
def test_profiles_validate(exp, profile):
    """Every committed profile resolves (notebook defaults + profile) without a ParameterError,
    to a value for every parameter of the notebook."""
    resolved = runner.resolve_params(exp, profile)
    assert set(resolved) >= set(runner.notebook_parameters(exp))


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_smoke_profile_equals_notebook_defaults(exp):
    """nbval executes the notebook's defaults; `lfakit run --profile smoke` must run the same."""
    assert "smoke" in runner.profiles(exp)
    assert runner.resolve_params(exp, "smoke") == params.validate(exp, _defaults(exp))


# ------------------------------------------------------------------ chestxray_zlpr


def test_paper_profile_is_the_seed_configuration():
    p = runner.resolve_params(EXP, "paper")
    assert (p["model"], p["pretrained"], p["image_size"], p["epochs"], p["batch_size"]) == ("densenet121", True, 224, 25, 8)
    assert (p["optimizer"], p["weight_decay"], p["seed"]) == ("adamw", 1e-5, 42)
    assert p["losses"] == ["focal", "zlpr", "fzlpr"] and p["baseline"] == "focal"
    assert p["loss_kwargs"]["focal"] == {"gamma": 2.0, "alpha": None}
