"""The one time parser and formatter (stormcast_plugin.utils.time)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from stormcast_plugin.utils.time import (
    as_lead_times,
    as_time,
    as_times,
    epoch_hours,
    format_lead_times,
    format_time,
    format_times,
)

T0 = np.datetime64("2024-05-01T00", "ns")


@pytest.mark.parametrize("value", [
    "2024-05-01T00",
    "2024-05-01 00:00",
    np.datetime64("2024-05-01T00", "h"),
    datetime(2024, 5, 1),
    datetime(2024, 5, 1, 2, tzinfo=timezone(timedelta(hours=2))),  # 02:00 at UTC+2 is 00:00 UTC
    pd.Timestamp("2024-05-01T00"),
    ["2024-05-01T00"],
    np.array(["2024-05-01T00"], dtype="datetime64[s]"),
])
def test_every_usual_form_is_one_time(value):
    out = as_times(value)
    assert out.dtype == np.dtype("datetime64[ns]")
    assert out.shape == (1,) and out[0] == T0
    assert as_time(value) == T0


def test_sequences_keep_their_order_and_arrays_are_flattened():
    mixed = as_times(["2024-05-01T02", datetime(2024, 5, 1), np.datetime64("2024-05-01T01")])
    np.testing.assert_array_equal(mixed, T0 + np.array([2, 0, 1], dtype="timedelta64[h]"))
    grid = np.array([["2024-05-01T00", "2024-05-01T01"]], dtype="datetime64[h]")
    assert as_times(grid).shape == (2,)


@pytest.mark.parametrize("bad, match", [
    (5, "start 5 is not a time"),
    (2.5, "not a time"),
    ("tomorrow", "'tomorrow' is not a time"),
    ([], "start is empty"),
    (["2024-05-01T00", None], r"start contains NaT \(\[2024-05-01T00, NaT\]\)"),
    (np.array(["NaT"], dtype="datetime64[ns]"), "NaT"),
])
def test_bad_times_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        as_times(bad, "start")


def test_a_start_off_the_hour_is_refused_not_floored():
    assert as_time("2024-05-01T00:30") == T0 + np.timedelta64(30, "m")  # fine where minutes are allowed
    msg = r"start 2024-05-01T00:30 is not on the hour; times must be whole hours .* pass e\.g\. 2024-05-01T00$"
    with pytest.raises(ValueError, match=msg):
        as_time("2024-05-01T00:30", "start", whole_hours=True)
    with pytest.raises(ValueError, match=r"times 2024-05-01T02:00:01 is not on the hour"):
        as_times(["2024-05-01T01", "2024-05-01T02:00:01"], "times", whole_hours=True)
    assert as_time("2024-05-01T05:00:00", whole_hours=True) == T0 + np.timedelta64(5, "h")


def test_as_time_wants_exactly_one():
    with pytest.raises(ValueError, match=r"end must be a single time, got 2: \[2024-05-01T00, 2024-05-01T01\]"):
        as_time(["2024-05-01T00", "2024-05-01T01"], "end")


def test_lead_times():
    np.testing.assert_array_equal(as_lead_times(np.timedelta64(1, "h")), [np.timedelta64(3600, "s")])
    assert as_lead_times(timedelta(minutes=90))[0] == np.timedelta64(90, "m")
    out = as_lead_times([np.timedelta64(0, "h"), timedelta(hours=2)])
    assert out.dtype == np.dtype("timedelta64[ns]") and out[1] == np.timedelta64(2, "h")
    assert as_lead_times(np.array([[1, 2]], dtype="timedelta64[h]")).shape == (2,)
    for bad in (1, [1, 2], "1h"):
        with pytest.raises(ValueError, match="no unit"):
            as_lead_times(bad, "lead")
    with pytest.raises(ValueError, match="lead is empty"):
        as_lead_times(np.array([], dtype="timedelta64[h]"), "lead")
    with pytest.raises(ValueError, match="NaT"):
        as_lead_times(np.array(["NaT"], dtype="timedelta64[h]"))


def test_formatting_picks_the_coarsest_exact_unit():
    hours = T0 + np.arange(3) * np.timedelta64(1, "h")
    assert format_time(hours[1]) == "2024-05-01T01"
    assert format_times(hours) == "[2024-05-01T00, 2024-05-01T01, 2024-05-01T02]"
    assert format_times(np.append(hours, T0 + np.timedelta64(90, "s"))).startswith("[2024-05-01T00:00:00, ")
    assert format_times(T0 + np.arange(11) * np.timedelta64(1, "h"), limit=2) == \
        "[2024-05-01T00, 2024-05-01T01] and 9 more"
    assert format_lead_times(np.array([0, 60, 90], dtype="timedelta64[m]")) == "[0h, 1h, 1.5h]"
    # the formatted time reads back as the same time
    odd = T0 + np.timedelta64(1234567, "us")
    assert as_time(format_time(odd)) == odd


def test_epoch_hours():
    np.testing.assert_allclose(epoch_hours(np.array(["1970-01-01T00", "1970-01-02T06:30"], dtype="datetime64[m]")),
                               [0.0, 30.5])
