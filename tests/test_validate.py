"""md2.validate: NaN and infinities refused by name, wherever a user's number enters md2 (issue 24)."""

from __future__ import annotations

import numpy as np
import pytest

from md2.data.video import normalise_intrinsics
from md2.errors import UsageError
from md2.validate import require_all_finite, require_finite


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_number_is_a_usage_error_naming_the_option(value):
    with pytest.raises(UsageError, match="--max-depth must be a finite number"):
        require_finite(value, "--max-depth")
    with pytest.raises(UsageError, match="--intrinsics must be finite numbers"):
        require_all_finite([0.5, value, 0.5, 0.5], "--intrinsics")


def test_finite_numbers_and_none_pass_unchanged():
    assert require_finite(0.0, "--x") == 0.0 and require_finite(None, "--x") is None
    require_all_finite([1.0, -2.0, 1e300], "--x")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_intrinsics_with_nan_or_inf_are_refused_before_any_matrix_work(bad):
    K = [[0.58, 0, 0.5], [0, bad, 0.5], [0, 0, 1]]
    with pytest.raises(UsageError, match="intrinsics must be finite numbers"):
        normalise_intrinsics(K, None)
