"""Parameters of the IQA loss comparison on KonIQ-10k: L1, L2, PLCC, SRCC, Rank, Fidelity and
Norm-in-Norm training the same no-reference quality model."""

from __future__ import annotations

from lfakit.fitconfig import fit_params
from lfakit.params import (Spec, check_bootstrap_resolution, check_loss_kwargs, check_loss_kwargs_trained, check_model, loss_choices, model_choices,
                           model_help, run_params)

EXPERIMENT = "iqa_losses"
VAL_METRICS = ("srcc", "plcc")
_iqa = loss_choices("iqa")
IMAGE_DIRS = ("", "512x384", "1024x768")  # as lfakit.data.koniq.IMAGE_DIRS ("": the first present)
MOS_SCALES = ("1-5", "0-100")  # as lfakit.data.koniq.MOS_SCALES
TEST_DATASETS = ("kadid10k",)  # cross-dataset test sets (lfakit.experiments.iqa_losses.CROSS_SETS)
#: the losses the IQA study planned (its "SRCC loss" is the kit's plcc); the comparisons among them
#: with the baseline form one Holm family, those of the kit's other losses another
STUDY_LOSSES = ("l1", "l2", "plcc", "rank", "fidelity")


def holm_families(p: dict) -> dict[str, list[str]]:
    """The challengers of each Holm family: ``study`` (both the challenger and the baseline among
    :data:`STUDY_LOSSES`) and ``kit additions`` (the others), in the order of ``losses``."""
    fams: dict[str, list[str]] = {}
    for n in dict.fromkeys(p["losses"]):
        if n != p["baseline"]:
            fam = "study" if n in STUDY_LOSSES and p["baseline"] in STUDY_LOSSES else "kit additions"
            fams.setdefault(fam, []).append(n)
    return fams


def _models() -> list[str]:
    return model_choices(task="iqa")


def _check_image_size(value: list) -> str | None:
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in value):
        return f"image_size is [height, width] in pixels, each in [16, 4096] (KonIQ's 512x384 folder: [384, 512]); got {value!r}"
    return None


SCHEMA: dict[str, Spec] = {
    "data_dir": Spec(str, "", "KonIQ-10k folder (koniq10k_distributions_sets.csv or koniq10k_scores_and_distributions.csv, "
                     "512x384/ or 1024x768/); empty: the embedded default, generated in that format"),
    "image_dir": Spec(str, "", "image folder inside data_dir: 512x384 | 1024x768; empty: the first present", choices=IMAGE_DIRS),
    "cache_dir": Spec(str, "", "pre-resized image caches and the embedded data set; empty: $LFAKIT_CACHE or ~/.cache/lfakit"),
    "mos_scale": Spec(str, "1-5", "scale of the MOS targets: 1-5 (mean rating) | 0-100 (the data set's z-score MOS)",
                      choices=MOS_SCALES),
    "max_images": Spec(int, 0, "use a seeded sample of at most this many images (0: all)", min=0, max=10_000_000),
    "test_datasets": Spec(list, ["kadid10k"], "other data sets every trained model is tested on as well (cross-dataset "
                           "SRCC, never used for training or model selection): kadid10k; an empty list: none", choices=TEST_DATASETS),
    "kadid_dir": Spec(str, "", "KADID-10k folder (dmos.csv, images/), used when test_datasets lists kadid10k; empty: the embedded "
                      "default, generated in that layout"),
    "image_size": Spec(list, [96, 128], "[height, width] the images are resized to once, into the cache", check=_check_image_size,
                       unique=False),
    "patch_size": Spec(int, 96, "side of the square crops the model sees, in training and at test", min=8, max=4096),
    "train_patch_num": Spec(int, 1, "random crops per training image per epoch", min=1, max=1000),
    "test_patch_num": Spec(int, 4, "crops per validation / test image; their predictions are averaged", min=1, max=1000),
    "test_crop": Spec(str, "random", "test crop positions: random (drawn once from seed) | grid (evenly spread)",
                      choices=("random", "grid")),
    "hflip": Spec(bool, True, "mirror training crops at random (probability 0.5)"),
    "losses": Spec(list, ["l1", "l2", "plcc", "srcc", "rank", "fidelity"], "losses to train, by registry name (also: "
                   "norm_in_norm, rank_mos, and any registered iqa loss)",
                   choices_fn=_iqa, nonempty=True),
    "baseline": Spec(str, "l1", "loss every other loss is compared against (Δ SRCC, paired bootstrap)", choices_fn=_iqa),
    "loss_kwargs": Spec(dict, {}, 'per-loss arguments, e.g. {"fidelity": {"pred_std": 0.5}}; empty: registry defaults',
                        check=check_loss_kwargs),
    "model": Spec(str, "nss_mlp", model_help("one quality score per crop", task="iqa"), choices_fn=_models),
    "pretrained": Spec(bool, False, "ImageNet weights (downloaded once into torchvision's cache)"),
    "drop_path": Spec(float, 0.3, "swin_b_iqa: stochastic depth rate of the backbone", min=0.0, max=0.9),
    "dropout": Spec(float, 0.0, "dropout before the regression head (tiny_cnn, nss_mlp and swin_b_iqa)", min=0.0, max=0.9),
    "head_lr_mult": Spec(float, 1.0, "learning rate of the head (every parameter outside the model's backbone) as a "
                         "multiple of lr, in its own optimizer group (the study's code: 10); 1: one rate for all",
                         min=1e-3, max=1e4),
    "head_bias_init": Spec(bool, True, "start the head's output bias at the training MOS mean (on mos_scale), so a "
                           "fresh head predicts about the mean from the first step"),
    "n_boot": Spec(int, 1000, "paired bootstrap resamples of the test images for the Δ SRCC intervals", min=100, max=100_000),
    "alpha": Spec(float, 0.05, "significance level of the Holm-corrected comparisons", min=1e-6, max=0.5),
    **fit_params(VAL_METRICS, epochs=10, batch_size=32, optimizer="adamw", lr=5e-3, weight_decay=1e-4,
                 scheduler="cosine", monitor="val_srcc", precision="float64"),
    **run_params(EXPERIMENT, seed=42, num_threads=1),
}


def check_params(p: dict) -> str | None:
    """Checks across parameters, run before any work starts."""
    if p["baseline"] not in p["losses"]:
        return f"baseline {p['baseline']!r} is not among the trained losses {p['losses']}; add it to losses or pick another baseline"
    msg = check_loss_kwargs_trained(p)
    if msg:
        return msg
    largest = max((len(v) for v in holm_families(p).values()), default=0)
    msg = check_bootstrap_resolution(largest, p["n_boot"], p["alpha"])  # Holm within the largest family
    if msg:
        return msg
    if p["kadid_dir"] and "kadid10k" not in p["test_datasets"]:
        return ("kadid_dir is set but test_datasets does not list kadid10k, so the folder would be ignored; add "
                "-p 'test_datasets=[kadid10k]' (or drop kadid_dir)")
    if p["monitor"] == "val_loss":
        return ("monitor=val_loss is not available here: a batch loss's value on validation depends on how the crops "
                "are batched; monitor val_srcc or val_plcc")
    h, w = p["image_size"]
    if p["patch_size"] > min(h, w):
        return f"patch_size={p['patch_size']} does not fit images of {h} x {w}; lower patch_size or raise image_size"
    if p["batch_size"] < 2:
        return "batch_size must be at least 2: the correlation and pairwise losses compare the images of a batch"
    return check_model(p["model"], p["pretrained"], p["patch_size"])


def check_inputs(P: dict) -> None:
    """What a run needs beyond its parameters, checked without torch before the experiment's
    code is imported (``lfakit run`` calls it first; the experiment's preflight too): the device,
    and the KonIQ-10k folder when ``data_dir`` is set -- its CSV's columns and values, every
    listed image on disk, and the two ends of every image file (a truncated JPEG is named
    here; damage inside one when the cache is built)."""
    from lfakit.params import check_device

    check_device(P["device"])
    if P["data_dir"]:
        from lfakit.data import koniq
        from lfakit.data.image_decode import check_image_files

        idx = koniq.load_index(P["data_dir"], P["mos_scale"], P["seed"], P["image_dir"] or None, P["max_images"] or None)
        check_image_files([idx.image_dir / n for n in idx.table["image_name"]], f"KonIQ-10k images in {idx.image_dir}")
        if "kadid10k" in P["test_datasets"] and not P["kadid_dir"]:
            from lfakit.errors import ParameterError

            raise ParameterError("data_dir is a KonIQ-10k folder but kadid_dir is empty: the KADID-10k column would come "
                                 "from the embedded synthetic KADID-format set, beside real KonIQ-10k results; set "
                                 "-p kadid_dir=/path/to/kadid10k, or -p 'test_datasets=[]' for no cross-dataset column")
    if "kadid10k" in P["test_datasets"] and P["kadid_dir"]:
        from lfakit.data import kadid
        from lfakit.data.image_decode import check_image_files

        table = kadid.check_folder(P["kadid_dir"])
        folder = kadid.find_layout(P["kadid_dir"])[1]
        check_image_files([folder / n for n in table["image_name"]], f"KADID-10k images in {folder}")
