"""The portability checks of tests/test_portability.py for the ``iqa_losses`` notebook, whose
logistic fits would turn the last bits of a prediction into printed digits if they were
ill-conditioned. A separate module so that the test workers run it beside the chest X-ray one."""

from __future__ import annotations

import pytest

from test_portability import (  # noqa: F401  (collected here with this module's fixture)
    committed_outputs,
    test_avx2_kernels_reproduce_the_committed_outputs_exactly,
    test_checked_outputs_cover_the_final_tables,
    test_non_vectorised_kernels_agree_within_the_tolerance,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def committed():
    return committed_outputs("iqa_losses")
