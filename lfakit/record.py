"""The run record: what every experiment leaves in its run folder, written and read by one module.

A run folder ``results/<experiment>/<run-id>/`` holds, besides the executed notebook,
``params.yaml`` and ``environment.json`` (written by the runner):

``predictions.npz``
    One long table, a row per (method, group, split, seed, sample): ``method`` (the loss or
    aggregator), ``group`` (a data variant such as ``rho=10/fold=1`` or a data set; "" when the
    experiment has none), ``split``, ``seed``, ``sample_id``, ``targets`` (rows x T), ``scores``
    (rows x K, float64; logits or probabilities, see ``score_kind`` in ``metrics.json``),
    ``sample_loss`` (rows; NaN where there is none) and any experiment-specific per-sample
    ``field_<name>`` columns (the CF-Ensemble's instance difficulty).
``metrics.json``
    ``{"schema": "lfakit.run/1", "experiment", "params", "params_hash", "score_kind",
    "methods": {method: {...}}, "headline": {"name", "about", "table": pandas split form},
    "extra": {...}}``. ``params_hash`` is the SHA-256 of the canonical JSON of the resolved
    parameters without ``run_dir`` and ``resume``: two runs with the same hash ran the same
    configuration.
``tables/<name>.csv``
    Every table the notebook shows.
``manifest.json``
    Every file of the folder with its size and SHA-256, written last.

:func:`load_run` returns the same :class:`RunRecord` for every experiment; the comparison and
sweep tools read this record and nothing else (docs/run-record.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfakit.errors import DataError

SCHEMA = "lfakit.run/1"
PREDICTIONS = "predictions.npz"
METRICS = "metrics.json"
MANIFEST = "manifest.json"
_NOT_HASHED = ("run_dir", "resume")


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``params`` (without ``run_dir`` and ``resume``)."""
    body = {k: v for k, v in params.items() if k not in _NOT_HASHED}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _json_safe(obj):
    """NaN and inf become null (strict JSON); numpy scalars and arrays become Python values."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def table_to_json(df: pd.DataFrame) -> dict:
    """A table in pandas' ``split`` form with NaN as null (read back by :func:`table_from_json`)."""
    d = df.to_dict(orient="split")
    return _json_safe({"index": d["index"], "columns": d["columns"], "data": d["data"], "index_name": df.index.name})


def table_from_json(d: dict) -> pd.DataFrame:
    df = pd.DataFrame(d["data"], index=d["index"], columns=d["columns"]).fillna(value=np.nan)
    df.index.name = d.get("index_name")
    return df


# --------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """The long prediction table of a run (see the module docstring)."""

    method: np.ndarray
    group: np.ndarray
    split: np.ndarray
    seed: np.ndarray
    sample_id: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    sample_loss: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.method)

    def select(self, method: str | None = None, split: str | None = None, seed: int | None = None,
               group: str | None = None) -> "Predictions":
        """The rows matching every criterion given, in their stored order."""
        keep = np.ones(len(self), bool)
        for col, want in (("method", method), ("split", split), ("seed", seed), ("group", group)):
            if want is not None:
                keep &= getattr(self, col) == want
        return Predictions(*(getattr(self, c)[keep] for c in _COLUMNS), fields={k: v[keep] for k, v in self.fields.items()})

    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.method.tolist()))

    def groups(self) -> list[str]:
        return list(dict.fromkeys(self.group.tolist()))

    def seeds(self) -> list[int]:
        return [int(s) for s in dict.fromkeys(self.seed.tolist())]

    def splits(self) -> list[str]:
        return list(dict.fromkeys(self.split.tolist()))


_COLUMNS = ("method", "group", "split", "seed", "sample_id", "targets", "scores", "sample_loss")


class PredictionWriter:
    """Collects prediction blocks, then writes ``predictions.npz`` in the one schema."""

    def __init__(self):
        self._blocks: list[dict[str, np.ndarray]] = []

    def add(self, method: str, split: str, seed: int, sample_id, targets, scores, sample_loss=None,
            group: str = "", **fields) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64)
        sample_id = np.asarray(sample_id).astype(str)
        n = len(scores)
        loss = np.full(n, np.nan) if sample_loss is None else np.asarray(sample_loss, dtype=np.float64)
        if len(sample_id) != n or len(targets) != n or len(loss) != n or loss.ndim != 1:
            raise ValueError(f"{method}/{split}: {n} scores but {len(sample_id)} ids, {len(targets)} targets "
                             f"and {loss.shape} sample losses")
        scores, targets = scores.reshape(n, -1), targets.reshape(n, -1)
        block = {"method": np.full(n, method, dtype=object), "group": np.full(n, group, dtype=object),
                 "split": np.full(n, split, dtype=object), "seed": np.full(n, int(seed), dtype=np.int64),
                 "sample_id": sample_id.astype(object), "targets": targets, "scores": scores, "sample_loss": loss}
        for k, v in fields.items():
            block[f"field_{k}"] = np.asarray(v).reshape(n)
        if self._blocks and set(block) != set(self._blocks[0]):
            raise ValueError(f"{method}/{split}: per-sample fields {sorted(fields)} differ from the first block's")
        self._blocks.append(block)

    def predictions(self) -> Predictions:
        if not self._blocks:
            raise ValueError("no predictions were added")
        cat = {k: np.concatenate([b[k] for b in self._blocks]) for k in self._blocks[0]}
        return Predictions(*(cat[c] for c in _COLUMNS), fields={k[6:]: v for k, v in cat.items() if k.startswith("field_")})

    def write(self, run_dir: Path) -> Path:
        p = self.predictions()
        arrays = {c: getattr(p, c) for c in _COLUMNS}
        for c in ("method", "group", "split", "sample_id"):
            arrays[c] = arrays[c].astype(str)
        arrays.update({f"field_{k}": v for k, v in p.fields.items()})
        return write_npz(Path(run_dir) / PREDICTIONS, **arrays)


def read_predictions(path: Path) -> Predictions:
    with np.load(path, allow_pickle=False) as z:
        missing = [c for c in _COLUMNS if c not in z.files]
        if missing:
            raise DataError(f"{path} is not a run record's predictions file (missing {missing}); "
                            "it was written by an older lfakit or another tool")
        cols = {c: z[c] for c in _COLUMNS}
        fields = {k[6:]: z[k] for k in z.files if k.startswith("field_")}
    return Predictions(**cols, fields=fields)


def write_npz(path: Path, **arrays) -> Path:
    """``np.savez_compressed`` written atomically (a temporary file, then a rename): a run killed
    mid-write never leaves a half file that ``--resume`` would trust."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` written by :func:`write_npz` (no pickled objects are loaded)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------- the record


@dataclass
class RunRecord:
    """What :func:`load_run` returns, the same for every experiment."""

    run_dir: Path
    experiment: str
    params: dict[str, Any]
    params_hash: str
    score_kind: str
    methods: dict[str, dict]
    headline_name: str
    headline_about: str
    headline: pd.DataFrame
    extra: dict[str, Any]
    predictions: Predictions | None
    tables: dict[str, pd.DataFrame]
    manifest: dict[str, dict]


def save_run(run_dir: Path, experiment: str, params: dict[str, Any], *, methods: dict[str, dict],
             headline: tuple[str, pd.DataFrame, str], tables: dict[str, pd.DataFrame],
             predictions: PredictionWriter | None = None, score_kind: str = "", extra: dict | None = None,
             table_index: bool = True) -> list[str]:
    """Write the record of a finished run and return the files of the folder (sorted).

    ``headline`` is ``(name, table, about)``: the experiment's main result table, stored in
    ``metrics.json`` with a sentence saying how it was computed. ``tables`` go to
    ``tables/<name>.csv`` (with their index unless it is a plain range)."""
    run_dir = Path(run_dir)
    if predictions is not None:
        predictions.write(run_dir)
    name, table, about = headline
    metrics = {
        "schema": SCHEMA,
        "experiment": experiment,
        "params": params,
        "params_hash": params_hash(params),
        "score_kind": score_kind,
        "methods": methods,
        "headline": {"name": name, "about": about, "table": table_to_json(table)},
        "extra": extra or {},
    }
    tmp = run_dir / (METRICS + ".tmp")
    tmp.write_text(json.dumps(_json_safe(metrics), indent=2, allow_nan=False))
    os.replace(tmp, run_dir / METRICS)
    tdir = run_dir / "tables"
    tdir.mkdir(exist_ok=True)
    for tname, df in tables.items():
        df.to_csv(tdir / f"{tname}.csv", index=table_index and not isinstance(df.index, pd.RangeIndex))
    return write_manifest(run_dir)


def _sha256(path: Path) -> str:
    """SHA-256 of a file in blocks (:func:`lfakit.data.image_cache.file_sha256`)."""
    from lfakit.data.image_cache import file_sha256

    return file_sha256(path)


def write_manifest(run_dir: Path) -> list[str]:
    """``manifest.json``: every file under ``run_dir`` with size and SHA-256, but the manifest
    itself, the executed notebooks and the kernel's log (written after the last cell has run).
    Symbolic links are not followed and not listed: the record holds the run's own files only."""
    run_dir = Path(run_dir)
    files = {}
    for p in sorted(run_dir.rglob("*")):
        if (p.is_file() and not p.is_symlink() and p.name != MANIFEST and ".tmp" not in p.suffixes
                and p.suffix not in (".ipynb", ".log")):
            rel = p.relative_to(run_dir).as_posix()
            files[rel] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    (run_dir / MANIFEST).write_text(json.dumps({"schema": SCHEMA, "files": files}, indent=2))
    return sorted([*files, MANIFEST])


# --------------------------------------------------------------------------- integrity

#: Files checked by size alone unless ``verify_run(..., hash_all=True)``: the checkpoints, which
#: no reader of the record opens and which can reach gigabytes per run.
UNHASHED_PREFIXES = ("checkpoints/",)
_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Damage:
    """One thing wrong with a run record: the file (relative to the run folder) and why."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


class DamagedRun(DataError):
    """A run folder whose record does not hold what its ``manifest.json`` promises, or cannot be
    read. ``problems`` names each file and the reason."""

    def __init__(self, run_dir: Path, problems: list[Damage]):
        self.run_dir = Path(run_dir)
        self.problems = list(problems)
        listed = "; ".join(map(str, self.problems[:5])) + (f"; and {len(self.problems) - 5} more"
                                                            if len(self.problems) > 5 else "")
        super().__init__(f"{self.run_dir} is damaged: {listed}. Copy the run folder again from where it came from, "
                         "or run its configuration again (its parameters are in params.yaml)")

    @property
    def short(self) -> str:
        """The problems without the run folder: ``predictions.npz: 1,204 bytes, the manifest says 9,876``."""
        return "; ".join(map(str, self.problems))


def _safe_relative(rel: Any) -> bool:
    """A manifest entry must name a file below the run folder: relative, no ``..``, no empty part."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return False
    parts = rel.split("/")
    return not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def read_manifest(run_dir: str | Path) -> tuple[dict[str, dict], list[Damage]]:
    """The ``files`` of a run folder's ``manifest.json`` and what is wrong with the manifest itself
    (missing, not JSON, another schema, an entry that is not a relative path with a size and a
    SHA-256). Entries that are wrong are left out of the returned files."""
    path = Path(run_dir) / MANIFEST
    if path.is_symlink() or not path.is_file():
        return {}, [Damage(MANIFEST, "missing: the run did not finish (its record is written last), "
                                     "or the folder was copied without it")]
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested past the limit
        return {}, [Damage(MANIFEST, f"not valid JSON ({type(e).__name__}: {str(e)[:120]})")]
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("files"), dict):
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        return {}, [Damage(MANIFEST, f"not an {SCHEMA} manifest (schema {got!r}, or no 'files' table)")]
    files, problems = {}, []
    for rel, entry in doc["files"].items():
        ok_entry = (isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and entry["bytes"] >= 0
                    and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64
                    and set(entry["sha256"]) <= _HEX64)
        if not _safe_relative(rel):
            problems.append(Damage(MANIFEST, f"lists {rel!r}, which is not a path inside the run folder"))
        elif not ok_entry:
            problems.append(Damage(MANIFEST, f"the entry of {rel!r} has no valid size and SHA-256"))
        else:
            files[rel] = entry
    return files, problems


def verify_run(run_dir: str | Path, hash_all: bool = False) -> list[Damage]:
    """Check a run folder against its ``manifest.json``; return what is wrong (empty: intact).

    Every listed file must be a regular file (not a symbolic link) inside the folder, with the
    listed size; every file but the checkpoints (:data:`UNHASHED_PREFIXES`; all with
    ``hash_all``) must also have the listed SHA-256, and ``metrics.json`` must be listed.
    Hashing is what costs: SHA-256 runs at roughly 0.5-2 GB/s on one core, so a 100 MB record is
    checked in about 0.05-0.2 s (``benchmarks/bench_record_verify.py`` measures it here). Files
    the manifest does not list are not checked, and :func:`load_run` does not read them."""
    run_dir = Path(run_dir)
    files, problems = read_manifest(run_dir)
    if problems and not files:
        return problems
    if METRICS not in files:
        problems.append(Damage(METRICS, "not listed in manifest.json: the record was not written by save_run"))
    root = run_dir.resolve()
    for rel, entry in files.items():
        path = run_dir / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            problems.append(Damage(rel, "missing (listed in manifest.json)"))
            continue
        except OSError as e:
            problems.append(Damage(rel, f"cannot be read ({e.strerror})"))
            continue
        if path.is_symlink() or not path.is_file():
            problems.append(Damage(rel, "a symbolic link or not a regular file; the manifest lists a file"))
            continue
        if root not in path.resolve().parents:
            problems.append(Damage(rel, "lies outside the run folder"))
            continue
        if st.st_size != entry["bytes"]:
            problems.append(Damage(rel, f"{st.st_size:,} bytes, the manifest says {entry['bytes']:,} "
                                        f"({'truncated' if st.st_size < entry['bytes'] else 'changed'})"))
            continue
        if hash_all or not rel.startswith(UNHASHED_PREFIXES):
            try:
                digest = _sha256(path)
            except OSError as e:
                problems.append(Damage(rel, f"cannot be read ({e.strerror})"))
                continue
            if digest != entry["sha256"]:
                problems.append(Damage(rel, "its SHA-256 differs from the manifest's: the file was changed "
                                            "after the run wrote it"))
    return problems


def load_run(run_dir: str | Path, verify: bool = True) -> RunRecord:
    """Read a run folder's record; a folder without one, or of an unknown schema, is a DataError.

    With ``verify`` (the default) the folder is first checked against its manifest
    (:func:`verify_run`); a damaged record (a truncated or changed file, a missing one, a corrupt
    JSON or npz) raises :class:`DamagedRun`, naming each file and the reason. Only the tables the
    manifest lists are read."""
    run_dir = Path(run_dir)
    mpath = run_dir / METRICS
    if not mpath.exists() and not mpath.is_symlink():
        raise DataError(f"{run_dir} holds no {METRICS}: the run did not finish (resume it with "
                        f"`lfakit run {run_dir.parent.name} --resume {run_dir.name}`) or it is not a run folder")
    if mpath.is_symlink() or not mpath.is_file():  # never follow a link (or read a FIFO) out of the folder
        raise DamagedRun(run_dir, [Damage(METRICS, "a symbolic link or not a regular file")])
    try:
        m, bad_json = json.loads(mpath.read_bytes()), None
    except (ValueError, UnicodeDecodeError, OSError, RecursionError) as e:
        m, bad_json = None, Damage(METRICS, f"not valid JSON ({type(e).__name__}: {str(e)[:120]})")
    if m is not None and (not isinstance(m, dict) or m.get("schema") != SCHEMA):
        got = m.get("schema") if isinstance(m, dict) else type(m).__name__
        raise DataError(f"{mpath} has schema {got!r}; this lfakit reads {SCHEMA!r}")
    if verify:
        problems = verify_run(run_dir)
        if problems or bad_json:
            raise DamagedRun(run_dir, problems or [bad_json])
        listed, _ = read_manifest(run_dir)
    else:
        if bad_json:
            raise DamagedRun(run_dir, [bad_json])
        listed, _ = read_manifest(run_dir)
        if not listed:  # an old or unfinished record: read what is there
            listed = {p.relative_to(run_dir).as_posix(): {} for p in run_dir.glob("tables/*.csv")}
            if (run_dir / PREDICTIONS).exists():
                listed[PREDICTIONS] = {}
    try:
        h = m["headline"]
        fields = dict(experiment=m["experiment"], params=m["params"], params_hash=m["params_hash"],
                      score_kind=m["score_kind"], methods=m["methods"], headline_name=h["name"],
                      headline_about=h["about"], headline=table_from_json(h["table"]), extra=m["extra"])
    except (KeyError, TypeError, ValueError) as e:
        raise DamagedRun(run_dir, [Damage(METRICS, f"lacks or mangles a field of the {SCHEMA} schema ({e!r})")]) from None
    tables = {}
    for rel in sorted(listed):
        if rel.startswith("tables/") and rel.endswith(".csv") and rel.count("/") == 1:
            try:
                tables[rel[len("tables/"):-len(".csv")]] = pd.read_csv(run_dir / rel)
            except (ValueError, OSError, UnicodeDecodeError) as e:
                raise DamagedRun(run_dir, [Damage(rel, f"not a readable CSV ({e})")]) from None
    preds = None
    if PREDICTIONS in listed:
        try:
            preds = read_predictions(run_dir / PREDICTIONS)
        except DataError:
            raise
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError,
                RuntimeError) as e:  # what numpy's and zipfile's readers raise on a damaged archive
            raise DamagedRun(run_dir, [Damage(PREDICTIONS, f"not a readable npz ({type(e).__name__}: {e})")]) from None
    manifest = listed if verify else read_manifest(run_dir)[0]
    return RunRecord(run_dir=run_dir, predictions=preds, tables=tables, manifest=manifest, **fields)
