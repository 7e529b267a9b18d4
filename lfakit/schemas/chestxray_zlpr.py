"""Parameters of the ChestX-ray14 loss comparison (focal vs ZLPR / FZLPR, + BCE and ASL)."""

from __future__ import annotations

from lfakit.fitconfig import fit_params
from lfakit.params import Spec, check_loss_kwargs, check_loss_kwargs_trained, check_model, check_seeds, loss_choices, model_choices, model_help, run_params

EXPERIMENT = "chestxray_zlpr"
VAL_METRICS = ("auroc",)
_multilabel = loss_choices("multilabel")

SCHEMA: dict[str, Spec] = {
    "data_dir": Spec(str, "", "NIH ChestX-ray14 root (Data_Entry_2017.csv, train_val_list.txt, test_list.txt, images*/); empty: the embedded default"),
    "cache_dir": Spec(str, "", "pre-resized image caches and the embedded data set; empty: $LFAKIT_CACHE or ~/.cache/lfakit"),
    "synthetic_patients": Spec(int, 240, "patients in the embedded default data set (ignored with data_dir)", min=20, max=100_000),
    "max_images": Spec(int, 0, "use at most this many images, sampled by patient (0: all)", min=0, max=10_000_000),
    "val_fraction": Spec(float, 0.1, "share of train_val patients held out for validation", min=0.01, max=0.5),
    "image_size": Spec(int, 64, "model input side in pixels (images are resized once into the cache)", min=16, max=1024),
    "clahe_clip": Spec(float, 2.0, "CLAHE clip limit, applied on uint8 before resizing (0: no CLAHE)", min=0.0, max=100.0),
    "clahe_grid": Spec(int, 8, "CLAHE tile grid (n x n)", min=1, max=64),
    "losses": Spec(list, ["focal", "zlpr", "fzlpr", "bce", "asl"], "losses to train, by registry name", choices_fn=_multilabel, nonempty=True),
    "baseline": Spec(str, "focal", "loss every other loss is compared against", choices_fn=_multilabel),
    "loss_kwargs": Spec(dict, {}, 'per-loss arguments, e.g. {"fzlpr": {"tau": 0.2}}; empty: registry defaults', check=check_loss_kwargs),
    "model": Spec(str, "tiny_cnn", model_help(), choices_fn=model_choices),
    "pretrained": Spec(bool, False, "ImageNet weights (downloaded once into torchvision's cache)"),
    "augment": Spec(bool, False, "random flips and shifts on the training split"),
    "seeds": Spec(list, [], "training seeds, one model per loss and seed (initial weights, data order; the split keeps seed); "
                  "two or more: the comparison tests per-seed deltas; empty: seed only", check=check_seeds),
    **fit_params(VAL_METRICS, epochs=10, batch_size=32, optimizer="adamw", lr=0.003, weight_decay=1e-05,
                 scheduler="cosine", monitor="val_auroc", precision="float64"),
    **run_params(EXPERIMENT, seed=42, num_threads=1),
}


def check_params(p: dict) -> str | None:
    """Checks across parameters, run before any work starts."""
    # one loss alone (a sweep point) compares nothing, so its baseline may be another loss
    if len(p["losses"]) > 1 and p["baseline"] not in p["losses"]:
        return f"baseline {p['baseline']!r} is not among the trained losses {p['losses']}; add it to losses or pick another baseline"
    # the baseline's arguments may stay when a sweep point trains one other loss
    msg = check_loss_kwargs_trained(p, also=(p["baseline"],))
    if msg:
        return msg
    return check_model(p["model"], p["pretrained"], p["image_size"])


def check_inputs(P: dict) -> None:
    """What a run needs beyond its parameters, checked without torch before the experiment's
    code is imported (``lfakit run`` calls it first; the experiment's preflight too): the device,
    and the NIH folder when ``data_dir`` is set -- its CSV and lists, every listed image on disk,
    and the two ends of every image file (a truncated PNG is named here; damage inside one
    when the cache is built)."""
    from pathlib import Path

    from lfakit.errors import DataError
    from lfakit.params import check_device

    check_device(P["device"])
    if P["data_dir"]:
        from lfakit.data.chestxray_index import load_index
        from lfakit.data.image_decode import check_image_files

        root = Path(P["data_dir"]).expanduser()
        try:
            idx = load_index(root, val_fraction=P["val_fraction"], seed=P["seed"], max_images=P["max_images"] or None)
            check_image_files(idx["path"], "ChestX-ray14 image files")
        except DataError as e:
            raise DataError(f"{e}\nWithout the NIH data: lfakit run {EXPERIMENT} --profile smoke") from None
