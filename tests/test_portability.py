"""The checked notebook outputs do not depend on the CPU's vectorised kernels.

The committed ``chestxray_zlpr`` and ``iqa_losses`` notebooks (training notebooks whose tables hold thresholds, F1 and
logistic fits, the outputs most sensitive to drift) are executed here twice more, through the CLI, with the
kernels forced to AVX2 and to the non-vectorised ``default`` build. nbval itself checks the
machine's own kernels against the same committed outputs. The AVX2 run must reproduce them
exactly; the ``default`` run must agree within ``TOLERANCE`` (the bound stated in
docs/reproducibility.md; the measured spread is zero at the printed precision).
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
EXP = "chestxray_zlpr"
# One unit in the 4th decimal, the printed precision of every checked table.
TOLERANCE = 1e-4
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
DEFAULT = {"ATEN_CPU_CAPABILITY": "default"}
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _sanitizers() -> list[tuple[re.Pattern, str]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "tests" / "nbval_sanitize.cfg")
    return [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]


#: The text forms of a display nbval compares (images are skipped): a table shown with
#: ``report.show_table`` has text/markdown (what JupyterLab renders) and text/plain.
CHECKED_MIMES = ("text/plain", "text/markdown", "text/html")


def checked_outputs(nb) -> list[str]:
    """The text nbval compares: every code cell not tagged to skip or ignore, sanitized: its
    stdout and every text form of its displays (each marked with its MIME type)."""
    subs = _sanitizers()
    out = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type != "code" or tags & {"nbval-ignore-output", "nbval-skip", "injected-parameters"}:
            continue
        parts = []
        for o in cell.outputs:
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                parts.append(o["text"])  # raw: how a kernel splits one cell's prints into messages varies
            elif o.get("output_type") in ("execute_result", "display_data"):
                data = o.get("data", {})
                parts += [f"[{mime}] {data[mime]}\n" for mime in CHECKED_MIMES if mime in data]
        text = "".join(parts)
        for rx, rep in subs:
            text = rx.sub(rep, text)
        out.append(text)
    return out


def within(a: str, b: str, tol: float) -> list[str]:
    """Where ``a`` and ``b`` differ beyond ``tol``: the same words, numbers within ``tol``."""
    problems = []
    if NUMBER.sub("#", a) != NUMBER.sub("#", b):
        return ["the text around the numbers differs"]
    for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
        if abs(float(x) - float(y)) > tol + 1e-12:
            problems.append(f"{x} vs {y}")
    return problems


def _run_notebook(env_extra: dict, tmp_path: Path, exp: str = EXP):
    env = {**os.environ, **env_extra, "LFAKIT_RESULTS": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "lfakit.cli", "run", exp, "-q"], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = Path(r.stdout.strip().splitlines()[-1].split("-> ")[-1])
    return nbformat.read(run_dir / "notebook.ipynb", as_version=4)


# the chest X-ray comparison, and the IQA comparison (whose logistic fits would amplify the last
# bits of a prediction if they were ill-conditioned)
FINAL_TABLES = {EXP: ("Avg AUROC", "[text/markdown] **zlpr**", "Challenger: zlpr", "test set only"),
                "iqa_losses": ("PLCC (logistic)", "Δ SRCC vs l1, these models", "p (Holm, test set)", "Which loss achieves")}


def committed_outputs(exp: str):
    return exp, checked_outputs(nbformat.read(ROOT / "notebooks" / f"{exp}.ipynb", as_version=4))


@pytest.fixture(scope="module")
def committed():
    # iqa_losses: tests/test_portability_iqa.py reruns these tests in its own module, so that the
    # test workers (--dist loadfile) run the two notebooks' kernel checks side by side
    return committed_outputs(EXP)


def test_checked_outputs_cover_the_final_tables(committed):
    exp, cells = committed
    text = "\n".join(cells)
    assert all(s in text for s in FINAL_TABLES[exp])
    assert "[text/markdown] " in text  # the tables as JupyterLab renders them are checked too


def test_avx2_kernels_reproduce_the_committed_outputs_exactly(committed, tmp_path):
    exp, committed = committed
    fresh = checked_outputs(_run_notebook(AVX2, tmp_path, exp))
    assert len(fresh) == len(committed)
    for i, (a, b) in enumerate(zip(committed, fresh)):
        assert a == b, f"checked cell {i} differs under ATEN_CPU_CAPABILITY=avx2"


def test_non_vectorised_kernels_agree_within_the_tolerance(committed, tmp_path):
    exp, committed = committed
    fresh = checked_outputs(_run_notebook(DEFAULT, tmp_path, exp))
    assert len(fresh) == len(committed)
    for i, (a, b) in enumerate(zip(committed, fresh)):
        bad = within(a, b, TOLERANCE)
        assert not bad, f"checked cell {i} under ATEN_CPU_CAPABILITY=default: {bad[:5]}"


def test_within_catches_a_difference_beyond_the_tolerance():
    assert within("AUROC 0.8123 x", "AUROC 0.8124 x", TOLERANCE) == []
    assert within("AUROC 0.8123 x", "AUROC 0.8126 x", TOLERANCE) == ["0.8123 vs 0.8126"]
    assert within("focal 0.8", "zlpr 0.8", TOLERANCE) == ["the text around the numbers differs"]
