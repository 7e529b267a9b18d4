"""Parameters of the own-data experiment: compare registered losses (the library's or yours) on
your image folder or CSV, multi-class, multi-label or score regression."""

from __future__ import annotations

from lfakit.catalog import LOSSES
from lfakit.fitconfig import fit_params
from lfakit.params import (Spec, check_device, check_loss_kwargs, check_loss_kwargs_trained, check_seeds, loss_choices,
                           run_params)

EXPERIMENT = "own_data"
TASKS = ("multiclass", "multilabel", "score")
LOSS_TASK = {"multiclass": "multiclass", "multilabel": "multilabel", "score": "iqa"}  # a task's losses
VAL_METRICS = ("auroc", "srcc")


def _models() -> list[str]:
    from lfakit.catalog import MODELS

    return [n for n in MODELS if MODELS.meta(n).get("head") is not None or n in ("tiny_cnn",)]


def _check_model(name: str) -> str | None:
    """A registry model, or any torchvision classification model by its builder's name."""
    if name in _models():
        return None
    try:
        import torchvision.models as tvm  # noqa: F401 -- only to list the names
    except ImportError:  # pragma: no cover
        return None
    names = tvm.list_models(module=tvm)
    if name in names:
        return None
    from lfakit.errors import close_matches

    return (f"model {name!r} is neither a registered model ({', '.join(_models())}) nor a torchvision classification "
            f"model.{close_matches(name, names)}")


SCHEMA: dict[str, Spec] = {
    "task": Spec(str, "multiclass", "multiclass | multilabel | score (regression of a score, IQA-like)", choices=TASKS),
    "data_dir": Spec(str, "", "your data: an ImageFolder root (root/<class>/..., optionally with train/ val/ test/ above) "
                     "or the folder CSV paths are relative to; empty: the embedded default (scikit-learn's digits "
                     "written as an ImageFolder of PNGs)"),
    "csv": Spec(str, "", "a CSV index (relative to data_dir or absolute): path,label | path,'A|B' | path + 0/1 columns "
                "| path,score[,sd]; an optional split column (train/val/test); empty: the ImageFolder layout"),
    "path_column": Spec(str, "path", "CSV column of the image paths"),
    "label_column": Spec(str, "label", "CSV column of the class (multiclass) or of the separated labels (multilabel)"),
    "label_separator": Spec(str, "|", "separator of several labels in one cell (multilabel, NIH style)"),
    "label_columns": Spec(list, [], "multilabel, CheXpert style: one 0/1 column per label (empty: label_column)"),
    "score_column": Spec(str, "score", "CSV column of the score (score task)"),
    "sd_column": Spec(str, "", "CSV column of the SD of the ratings (score task; optional)"),
    "val_fraction": Spec(float, 0.15, "share held out for validation (stratified) where the layout has no val split",
                         min=0.0, max=0.5),
    "test_fraction": Spec(float, 0.15, "share held out for testing (stratified) where the layout has no test split",
                          min=0.0, max=0.5),
    "max_images": Spec(int, 0, "use only the first N images of the index, a seeded stratified subset (0: all)", min=0),
    "image_size": Spec(int, 16, "side the images are resized to once (the cache)", min=8, max=1024),
    "losses": Spec(list, ["ce", "focal_ce", "gce"], "losses to train, by registered name (the library's, "
                   "lfakit.losses.register or an lfakit.losses entry point); all of the task's kind",
                   choices_fn=loss_choices(), nonempty=True),
    "baseline": Spec(str, "ce", "the loss every other is compared with", choices_fn=loss_choices()),
    "loss_kwargs": Spec(dict, {}, 'per-loss arguments, e.g. {"focal_ce": {"gamma": 1.0}}', check=check_loss_kwargs),
    "model": Spec(str, "tiny_cnn", "a registered model (tiny_cnn, resnet18, ...) or any torchvision classification "
                  "model by name (efficientnet_b0, convnext_tiny, ...), its last Linear layer replaced",
                  check=_check_model),
    "pretrained": Spec(bool, False, "ImageNet weights (torchvision's, downloaded once into its cache)"),
    "augment": Spec(bool, False, "random flips and shifts on the training split"),
    "seeds": Spec(list, [], "classification: training seeds, one model per loss and seed (initial weights, data order; "
                  "the split keeps seed); two or more: the comparison tests per-seed deltas; empty: seed only",
                  check=check_seeds),
    "n_boot": Spec(int, 1000, "bootstrap resamples of the comparison's intervals", min=100, max=100_000),
    "cache_dir": Spec(str, "", "image cache root (default: $LFAKIT_CACHE or ~/.cache/lfakit)"),
    **fit_params(VAL_METRICS, epochs=8, batch_size=64, optimizer="adam", lr=0.003, weight_decay=0.0001,
                 scheduler="cosine", monitor="val_loss", precision="float64"),
    **run_params(EXPERIMENT, seed=42, num_threads=1),
}


def check_params(p: dict) -> str | None:
    """Checks across parameters, before any work."""
    want = LOSS_TASK[p["task"]]
    wrong = [n for n in p["losses"] if LOSSES.meta(n)["task"] != want]
    if wrong:
        return (f"task={p['task']!r} trains {want} losses; {', '.join(repr(n) for n in wrong)} "
                f"{'is' if len(wrong) == 1 else 'are'} {LOSSES.meta(wrong[0])['task']}: choose from "
                f"{', '.join(LOSSES.names(task=want))}")
    if len(p["losses"]) > 1 and p["baseline"] not in p["losses"]:
        return f"baseline {p['baseline']!r} is not among the trained losses {p['losses']}; add it or pick another"
    msg = check_loss_kwargs_trained(p, also=(p["baseline"],))
    if msg:
        return msg
    if p["task"] != "multiclass" and not p["csv"] and p["data_dir"]:
        return f"task={p['task']!r} reads a CSV index: set csv=... (the ImageFolder layout is multi-class)"
    if not p["data_dir"] and (p["csv"] or p["task"] != "multiclass"):
        return "the embedded default is a multi-class ImageFolder: set data_dir (and csv) for your own data"
    if p["pretrained"] and p["model"] == "tiny_cnn":
        return "tiny_cnn has no pretrained weights; use pretrained=false"
    if p["task"] == "score" and p["seeds"]:
        return ("seeds is for the classification tasks: task='score' trains one model per loss in a run, with seed; "
                "for a seed-level verdict run lfakit sweep own_data --seeds 0,1,2 and lfakit compare on the sweep")
    if p["val_fraction"] + p["test_fraction"] >= 0.9:
        return "val_fraction + test_fraction leave under 10% for training"
    return None


def check_inputs(P: dict) -> None:
    """The data, read and checked without torch before the run folder is made: the folder or CSV,
    every image file's presence, the labels or scores, and the split (:mod:`lfakit.data.folders`)."""
    check_device(P["device"])
    if P["data_dir"]:
        from lfakit.data import folders

        index = read(P)
        folders.split_index(index, P["val_fraction"], P["test_fraction"], P["seed"])


def read(P: dict):
    """The index of ``P``'s layout (:func:`lfakit.data.folders.read_index`)."""
    from lfakit.data import folders

    return folders.read_index(P["task"], P["data_dir"], P["csv"], **({} if not P["csv"] else dict(
        path_column=P["path_column"], label_column=P["label_column"], label_separator=P["label_separator"],
        label_columns=P["label_columns"], score_column=P["score_column"], sd_column=P["sd_column"])))
