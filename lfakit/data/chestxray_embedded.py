"""The embedded ChestX-ray14 default: a small generated data set in the exact NIH on-disk layout.

:func:`write_synthetic_nih` writes ``Data_Entry_2017.csv`` (the 2017 header, a trailing comma
on every row), ``train_val_list.txt`` / ``test_list.txt`` (patient-wise) and 8-bit grayscale
PNGs (a few RGBA and 16-bit ones) in ``images_001/images/``, so the real loader
(:mod:`lfakit.data.chestxray_index`) is what reads it in the smoke profile and the tests.
:func:`ensure_embedded_default` writes it once into the cache folder and reuses it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import numbers
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from lfakit.data.chestxray_index import (
    CLASSES,
    CSV_HEADER_2017,
    CSV_NAMES,
    NIH_COUNTS,
    NIH_TOTAL_IMAGES,
    NO_FINDING,
    TEST_LIST,
    TRAIN_VAL_LIST,
    pick_patients,
)
from lfakit.data.image_cache import default_cache_dir
from lfakit.errors import DataError, ParameterError, close_matches

__all__ = ["GENERATOR_VERSION", "write_synthetic_nih", "ensure_embedded_default"]

GENERATOR_VERSION = 1

# Co-occurrence rules applied after sampling: (if this class, then that class, probability).
_COOCCUR = (
    ("Effusion", "Atelectasis", 0.35),
    ("Atelectasis", "Effusion", 0.25),
    ("Cardiomegaly", "Effusion", 0.30),
    ("Edema", "Effusion", 0.40),
    ("Edema", "Cardiomegaly", 0.20),
    ("Pneumonia", "Consolidation", 0.30),
    ("Pneumonia", "Infiltration", 0.30),
    ("Mass", "Nodule", 0.20),
    ("Emphysema", "Pneumothorax", 0.15),
    ("Fibrosis", "Pleural_Thickening", 0.25),
)
_MIN_POSITIVE_PATIENTS = 8
_SIGNAL = 0.6  # global strength of the finding patterns
_UNSEEN = 0.1  # share of positive labels drawn without a visible finding (label noise, as in NIH)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


class _Painter:
    """Draws patient anatomy and per-class findings on an R x R float canvas in [0, 1]."""

    def __init__(self, res: int):
        self.R = res
        g = (np.arange(res, dtype=np.float32) + 0.5) / res
        self.u = g[None, :].repeat(res, 0)  # x, left -> right
        self.v = g[:, None].repeat(res, 1)  # y, top -> bottom

    def gauss(self, cx, cy, sx, sy):
        return np.exp(-0.5 * (((self.u - cx) / sx) ** 2 + ((self.v - cy) / sy) ** 2))

    def disk(self, cx, cy, r, edge=0.006):
        d = np.sqrt((self.u - cx) ** 2 + (self.v - cy) ** 2)
        return _sigmoid((r - d) / edge)

    def ellipse(self, cx, cy, ax, ay, edge=0.12):
        q = ((self.u - cx) / ax) ** 2 + ((self.v - cy) / ay) ** 2
        return _sigmoid((1.0 - q) / edge)

    def lowfreq(self, rng, grid):
        small = rng.standard_normal((grid, grid)).astype(np.float32)
        return cv2.resize(small, (self.R, self.R), interpolation=cv2.INTER_CUBIC)

    def anatomy(self, rng):
        """A patient's stable background: body, two lungs, heart, spine, ribs, slow shading."""
        j = lambda s: rng.uniform(-s, s)  # noqa: E731
        body = self.ellipse(0.5 + j(0.01), 0.56, 0.44 + j(0.02), 0.62 + j(0.02), edge=0.08)
        lw, lh, ly = 0.125 + j(0.015), 0.27 + j(0.03), 0.45 + j(0.03)
        lungs = self.ellipse(0.32 + j(0.02), ly, lw, lh) + self.ellipse(0.68 + j(0.02), ly, lw, lh)
        lungs = np.minimum(lungs, 1.0)
        heart = self.gauss(0.54 + j(0.01), 0.64 + j(0.01), 0.075 + j(0.008), 0.07)
        spine = np.exp(-0.5 * ((self.u - 0.5) / 0.025) ** 2) * _sigmoid((self.v - 0.1) / 0.03)
        freq, phase = 10.5 + j(1.0), rng.uniform(0, 1)
        ribs = np.sin(2 * np.pi * (self.v * freq + phase + 0.6 * (self.u - 0.5) ** 2))
        img = (0.08 + 0.50 * body - 0.30 * lungs + 0.22 * heart * (1 - 0.5 * lungs)
               + 0.14 * spine + 0.04 * ribs * lungs + 0.06 * self.lowfreq(rng, 5))
        return (img * rng.uniform(0.92, 1.08)).astype(np.float32), lungs.astype(np.float32)

    def finding(self, name, rng, amp, lungs):
        j = lambda s: rng.uniform(-s, s)  # noqa: E731
        dx, dy = j(0.025), j(0.025)
        G = self.gauss
        if name == "Atelectasis":  # plate-like horizontal band, lower left of the image
            return 0.40 * amp * G(0.35 + dx, 0.65 + dy, 0.08, 0.022)
        if name == "Cardiomegaly":  # heart silhouette widened (a sharp-edged wider shadow)
            return 0.35 * amp * self.ellipse(0.55 + dx * 0.4, 0.66 + dy * 0.4, 0.14, 0.085, edge=0.1)
        if name == "Effusion":  # basal meniscus, right of the image
            level = 0.70 + dy - 0.12 * (self.u - 0.55)
            window = _sigmoid((self.u - 0.55) / 0.01) * _sigmoid((0.84 - self.u) / 0.01)
            return 0.40 * amp * _sigmoid((self.v - level) / 0.012) * window * _sigmoid((0.84 - self.v) / 0.02)
        if name == "Infiltration":  # patchy opacity, mid left
            patch = np.clip(0.5 + 0.5 * self.lowfreq(rng, 16), 0, 1)
            return 0.35 * amp * G(0.30 + dx, 0.47 + dy, 0.07, 0.08) * (0.5 + patch)
        if name == "Mass":  # one large sharp round opacity, upper right
            return 0.45 * amp * self.disk(0.70 + dx, 0.30 + dy, 0.055 * rng.uniform(0.8, 1.2))
        if name == "Nodule":  # a few small round opacities, upper left
            out = np.zeros((self.R, self.R), np.float32)
            for _ in range(3):
                out += self.disk(0.32 + dx + j(0.05), 0.34 + dy + j(0.05), 0.02, 0.004)
            return 0.50 * amp * np.minimum(out, 1.0)
        if name == "Pneumonia":  # cloudy opacity, lower right
            patch = np.clip(0.5 + 0.5 * self.lowfreq(rng, 10), 0, 1)
            return 0.50 * amp * G(0.64 + dx, 0.60 + dy, 0.06, 0.06) * (0.4 + 0.6 * patch)
        if name == "Pneumothorax":  # lucent apex with a pleural line, upper left edge
            edge_x = 0.25 + dx
            region = G(0.21 + dx, 0.26 + dy, 0.06, 0.10) * _sigmoid((edge_x - self.u) / 0.006)
            line = np.exp(-0.5 * ((self.u - edge_x) / 0.004) ** 2) * G(edge_x, 0.26 + dy, 1.0, 0.09)
            return amp * (-0.32 * region + 0.25 * line)
        if name == "Consolidation":  # dense homogeneous lobe, mid right
            return 0.38 * amp * self.ellipse(0.70 + dx, 0.47 + dy, 0.075, 0.05, edge=0.15)
        if name == "Edema":  # bilateral perihilar haze
            lines = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 30 * self.v))  # septal lines
            return 0.38 * amp * lines * (G(0.43 + dx, 0.46 + dy, 0.045, 0.10) + G(0.57 - dx, 0.46 + dy, 0.045, 0.10))
        if name == "Emphysema":  # hyperlucent apices
            return -0.35 * amp * (G(0.40 + dx, 0.25 + dy, 0.07, 0.07) + G(0.60 - dx, 0.25 + dy, 0.07, 0.07)) * (0.3 + 0.7 * lungs)
        if name == "Fibrosis":  # reticular texture, lower lateral zones
            ret = np.abs(np.sin(2 * np.pi * 40 * self.u) * np.sin(2 * np.pi * 40 * self.v))
            zone = G(0.22 + dx, 0.62 + dy, 0.05, 0.07) + G(0.78 - dx, 0.62 + dy, 0.05, 0.07)
            return 0.45 * amp * zone * (0.5 + 0.5 * ret)
        if name == "Pleural_Thickening":  # bright band along the right lateral wall
            return 0.55 * amp * G(0.83 + dx * 0.4, 0.42 + dy, 0.022, 0.11)
        if name == "Hernia":  # retrocardiac round shadow with an air-fluid level
            cy = 0.80 + dy * 0.5
            d = self.disk(0.50 + dx, cy, 0.05)
            return amp * d * (0.40 * _sigmoid((self.v - cy) / 0.005) - 0.35 * _sigmoid((cy - self.v) / 0.005))
        raise AssertionError(name)


def _sample_labels(rng, n_images_per_patient, min_prevalence):
    """Multi-hot labels per patient (list of (k, 14) arrays): NIH-shaped prevalence, a latent
    patient severity (positive co-occurrence), explicit co-occurrence rules, and persistence of
    findings across follow-ups."""
    C = len(CLASSES)
    prev = np.array([max(NIH_COUNTS[c] / NIH_TOTAL_IMAGES, min_prevalence) for c in CLASSES])
    base = np.log(prev / (1 - prev)) - 0.35
    idx = {c: i for i, c in enumerate(CLASSES)}
    persist = 0.6
    out = []
    for k in n_images_per_patient:
        z = rng.standard_normal()
        lab = np.zeros((k, C), dtype=bool)
        for t in range(k):
            zt = z + 0.3 * rng.standard_normal()
            fresh = rng.random(C) < _sigmoid(base + 0.8 * zt)
            if t == 0:
                lab[t] = fresh
            else:
                keep = rng.random(C) < persist
                lab[t] = np.where(keep, lab[t - 1], fresh)
            for a, b, p in _COOCCUR:
                if lab[t, idx[a]] and rng.random() < p:
                    lab[t, idx[b]] = True
        out.append(lab)
    # every class gets at least a few positive patients (so every split can hold positives)
    n_pat = len(out)
    need = min(_MIN_POSITIVE_PATIENTS, n_pat)
    for c in range(C):
        have = [p for p in range(n_pat) if out[p][:, c].any()]
        if len(have) >= need:
            continue
        lacking = [p for p in rng.permutation(n_pat) if not out[p][:, c].any()]
        for p in lacking[: need - len(have)]:
            t = int(rng.integers(len(out[p])))
            out[p][t:, c] = True  # appears at a follow-up and persists
    return out


def _check_gen_args(n_patients, images_per_patient, image_size, min_prevalence):
    if isinstance(n_patients, bool) or not isinstance(n_patients, numbers.Integral) or n_patients < 2:
        raise ParameterError(f"n_patients must be an int >= 2, got {n_patients!r}.")
    ipp = tuple(images_per_patient) if isinstance(images_per_patient, (tuple, list)) else None
    if not ipp or len(ipp) != 2 or not all(isinstance(v, numbers.Integral) for v in ipp) or not 1 <= ipp[0] <= ipp[1] <= 999:
        raise ParameterError(f"images_per_patient must be a pair (lo, hi) with 1 <= lo <= hi <= 999, got {images_per_patient!r}.")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or not 16 <= image_size <= 4096:
        raise ParameterError(f"image_size must be an int in [16, 4096], got {image_size!r}.")
    if not isinstance(min_prevalence, numbers.Real) or not 0 <= min_prevalence < 0.5:
        raise ParameterError(f"min_prevalence must be in [0, 0.5), got {min_prevalence!r}.")
    return int(n_patients), (int(ipp[0]), int(ipp[1])), int(image_size), float(min_prevalence)


def write_synthetic_nih(root, n_patients: int = 120, images_per_patient=(1, 6), image_size: int = 256,
                        seed: int = 0, min_prevalence: float = 0.04) -> Path:
    """Write the embedded-default ChestX-ray14 stand-in into ``root`` (created; must be empty).

    Layout and formats are those of the real set: ``Data_Entry_2017.csv`` with the 2017 header
    and a trailing comma on every line (11 fields + 1 empty), ``train_val_list.txt`` /
    ``test_list.txt`` (patient-wise, about 80/20) and 8-bit grayscale PNGs named
    ``<patient:08d>_<follow-up:03d>.png`` in ``images_001/images/``. About 2% of the PNGs are
    stored as RGBA and about 2% as 16-bit (at least one of each) to exercise the conversion.

    Content: each patient has a stable smooth anatomy (body, lungs, heart, ribs, shading) shared
    by all their images, so a patient-level leak would inflate scores as it does on the real
    set. Each class draws a distinct pattern at its own region (location, shape, texture; sign
    and intensity vary) plus noise, so a small model beats chance on every class.

    Labels: per-class prevalence follows the NIH whole-set counts but is floored at
    ``min_prevalence`` (Hernia is 0.2% on NIH: without the floor a 400-image set would hold one
    or no positive). Additionally every class is given at least ``_MIN_POSITIVE_PATIENTS`` (8) positive patients and the
    test patients are chosen so that each class has positives (two patients where possible) in
    test and keeps at least two
    positive patients in train_val; ``load_index`` then puts one in val and keeps one in train,
    so with the defaults every class has positives in every split. Findings co-occur (a latent
    patient severity raises all of them; rules such as Effusion -> Atelectasis, Edema ->
    Effusion, Pneumonia -> Consolidation) and persist across follow-ups with probability 0.6.
    As on the real set (labels mined from reports) the labels are noisy: 10% of positive labels
    get no visible finding, and finding intensity varies, so scores do not saturate.

    Deterministic: the same arguments give byte-identical files.
    """
    n_patients, ipp, image_size, min_prevalence = _check_gen_args(n_patients, images_per_patient, image_size, min_prevalence)
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise ParameterError(f"write_synthetic_nih: {str(root)!r} exists and is not empty.")
    img_dir = root / "images_001" / "images"
    img_dir.mkdir(parents=True, exist_ok=True)

    ss = np.random.SeedSequence([int(seed), 0x4E1C])
    master = np.random.default_rng(ss.spawn(1)[0])
    counts = master.integers(ipp[0], ipp[1] + 1, size=n_patients)
    labels = _sample_labels(master, counts, min_prevalence)
    pids = np.arange(1, n_patients + 1)

    # patient-wise test split (about 20%), covering every class and protecting train_val
    pos = np.stack([lab.any(axis=0) for lab in labels])
    n_test = max(1, round(0.2 * n_patients))
    order = master.permutation(n_patients)
    # train_val keeps >= 2 positive patients of every class (one for val, one for train)
    is_test = pick_patients(order, pos, np.ones(n_patients), n_test, keep_min=2, cover=2)

    n_total = int(counts.sum())
    special = master.permutation(n_total)
    n_special = max(1, round(0.02 * n_total))
    rgba_set = set(special[:n_special].tolist())
    u16_set = set(special[n_special: 2 * n_special].tolist())

    res = min(image_size, 256)
    painter = _Painter(res)
    ages = master.integers(18, 88, size=n_patients)
    sexes = master.choice(np.array(["M", "F"]), size=n_patients)
    spacing = 0.143 * 1024 / image_size
    patient_seeds = ss.spawn(n_patients + 1)[1:]

    lines = [CSV_HEADER_2017]
    tv_names, test_names = [], []
    g = 0
    for p in range(n_patients):
        rng = np.random.default_rng(patient_seeds[p])
        anat, lungs = painter.anatomy(rng)
        severity_amp = rng.uniform(0.8, 1.2)
        for t in range(int(counts[p])):
            name = f"{pids[p]:08d}_{t:03d}.png"
            img = anat.copy()
            present = [c for c, on in zip(CLASSES, labels[p][t]) if on]
            for c in present:
                amp = severity_amp * rng.uniform(0.4, 1.2)
                if rng.random() >= _UNSEEN:
                    img += _SIGNAL * painter.finding(c, rng, amp, lungs)
            shift = rng.uniform(-0.02, 0.02, size=2) * res
            M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            img = cv2.warpAffine(img, M, (res, res), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            img = np.clip(img * rng.uniform(0.93, 1.07) + rng.uniform(-0.03, 0.03), 0.0, 1.0) * 255.0
            if image_size != res:
                img = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
            img = img + rng.standard_normal(img.shape, dtype=np.float32) * 8.0
            u8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
            if g in rgba_set:
                out = np.dstack([u8, u8, u8, np.full_like(u8, 255)])
            elif g in u16_set:
                out = u8.astype(np.uint16) * 257
            else:
                out = u8
            ok, buf = cv2.imencode(".png", out)
            if not ok:
                raise DataError(f"could not encode {name}")
            (img_dir / name).write_bytes(buf.tobytes())
            finding = "|".join(sorted(present)) if present else NO_FINDING
            view = "AP" if rng.random() < 0.3 else "PA"
            age = int(ages[p]) + t // 2
            lines.append(
                f"{name},{finding},{t},{pids[p]},{age},{sexes[p]},{view},"
                f"{image_size},{image_size},{spacing:.3f},{spacing:.3f},"
            )
            (test_names if is_test[p] else tv_names).append(name)
            g += 1

    with open(root / CSV_NAMES[0], "w", newline="\n", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    (root / TRAIN_VAL_LIST).write_text("\n".join(sorted(tv_names)) + "\n", encoding="utf-8")
    (root / TEST_LIST).write_text("\n".join(sorted(test_names)) + "\n", encoding="utf-8")
    return root


_GEN_DEFAULTS = {
    k: v.default
    for k, v in inspect.signature(write_synthetic_nih).parameters.items()
    if k not in ("root", "seed")
}


def ensure_embedded_default(cache_root=None, seed: int = 0, **gen_kwargs) -> Path:
    """Write the generated NIH-format set once into
    ``<cache_root>/embedded/chestxray_nih/<key>/`` (``key`` hashes the generator version and
    arguments) and return that folder; later calls reuse it. Built in a temporary sibling folder
    and renamed into place, so a crash never leaves a partial set."""
    unknown = [k for k in gen_kwargs if k not in _GEN_DEFAULTS]
    if unknown:
        raise ParameterError(
            f"unknown generator argument(s) {unknown}; allowed: {list(_GEN_DEFAULTS)}."
            + close_matches(unknown[0], _GEN_DEFAULTS)
        )
    args = {**_GEN_DEFAULTS, **gen_kwargs}
    args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}
    blob = json.dumps({"generator": GENERATOR_VERSION, "seed": int(seed), **args}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    base = (Path(cache_root).expanduser() if cache_root else default_cache_dir()) / "embedded" / "chestxray_nih"
    final = base / key
    if (final / CSV_NAMES[0]).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=base))
    try:
        write_synthetic_nih(tmp / "data", seed=seed, **gen_kwargs)
        (tmp / "data" / "generator.json").write_text(blob + "\n")
        try:
            os.rename(tmp / "data", final)
        except OSError:
            if not (final / CSV_NAMES[0]).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
