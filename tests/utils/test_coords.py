import numpy as np
import pytest

from stormcast_plugin.utils.coords import ENSEMBLE_DIMS, SPATIAL_DIM_PAIRS, match_values


def test_match_values_finds_a_sub_grid_in_an_unsorted_axis():
    have = np.array([30.0, 0.0, 10.0, 20.0, 40.0])
    idx = match_values(have, np.array([10.2, 20.0, 30.1]), tol=0.5)
    np.testing.assert_array_equal(idx, [2, 3, 0])
    np.testing.assert_allclose(have[idx], [10.0, 20.0, 30.0])


def test_match_values_refuses_points_beyond_the_tolerance_or_an_empty_axis():
    assert match_values(np.arange(5.0), np.array([1.0, 2.3]), tol=0.2) is None
    assert match_values(np.array([]), np.array([1.0]), tol=1.0) is None


@pytest.mark.parametrize("want, expected", [(359.9, 0), (-0.1, 0), (0.05, 0), (180.0, 2), (720.0, 0)])
def test_match_values_wraps_longitudes(want, expected):
    # a global 90-degree grid with a duplicate 0/360 meridian at the end
    have = np.array([0.0, 90.0, 180.0, 270.0, 360.0])
    idx = match_values(have, np.array([want]), tol=0.2, period=360.0)
    assert idx is not None and np.mod(have[idx[0]], 360.0) == np.mod(have[expected], 360.0)


def test_name_tables_cover_the_usual_names():
    assert ("hrrr_y", "hrrr_x") == SPATIAL_DIM_PAIRS[0] and ("lat", "lon") in SPATIAL_DIM_PAIRS
    assert "ensemble" in ENSEMBLE_DIMS
