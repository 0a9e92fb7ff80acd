"""Tests for stormcast_plugin.scoring: tables, plots, truth alignment and the score command."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pd = pytest.importorskip("pandas")
xr = pytest.importorskip("xarray")

from stormcast_plugin import scoring  # noqa: E402
from stormcast_plugin.cli.score import add_score_arguments, score_from_args  # noqa: E402
from stormcast_plugin.io.forecast_store import open_store  # noqa: E402
from stormcast_plugin.io.dataset_store import DatasetStore  # noqa: E402
from stormcast_plugin.utils.grid import ModelGrid  # noqa: E402

NY, NX, NLEAD, MEMBERS = 16, 24, 3, 2
VARS = ("refc", "t2m", "u10m")
INIT = np.datetime64("2024-05-01T00", "ns")


@pytest.fixture(scope="module")
def grid():
    return ModelGrid.hrrr(rows=(500, 516), cols=(800, 824))


def truth_fields(grid) -> dict[str, np.ndarray]:
    """Smooth truth ``[lead, y, x]`` per variable: a moving storm, a gradient, a jet."""
    rng = np.random.default_rng(0)
    y, x = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
    refc = np.empty((NLEAD, NY, NX))
    t2m = np.empty((NLEAD, NY, NX))
    u10m = np.empty((NLEAD, NY, NX))
    for k in range(NLEAD):
        r2 = ((y - 8) / 3.0) ** 2 + ((x - 6 - 3 * k) / 3.5) ** 2
        refc[k] = 60.0 * np.exp(-r2) + rng.normal(0, 1.0, (NY, NX))
        t2m[k] = 300.0 - 0.5 * (grid.lat - grid.lat.mean()) + np.sin(x / 3.0 + k)
        u10m[k] = 10.0 * np.sin(np.pi * y / NY + 0.3 * k) - 3.0
    return {"refc": refc, "t2m": t2m, "u10m": u10m}


def forecast_fields(truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Members ``[member, lead, y, x]``: truth plus noise growing with lead time (none at lead 0)."""
    rng = np.random.default_rng(1)
    out = {}
    for name, values in truth.items():
        scale = {"refc": 4.0, "t2m": 0.5, "u10m": 1.5}[name]
        noise = rng.normal(0.0, scale, (MEMBERS, NLEAD, NY, NX)) * np.arange(NLEAD)[None, :, None, None]
        out[name] = values[None] + noise
    out["refc"][:, 2] = np.roll(out["refc"][:, 2], 2, axis=-1)  # a displaced storm at the last lead
    return out


def forecast_like(fields: dict[str, np.ndarray], grid, members: bool = True) -> xr.Dataset:
    dims = ("ensemble", "time", "lead_time", "hrrr_y", "hrrr_x")
    data = {k: (dims, v[:, None].astype("f4")) for k, v in fields.items()}
    nlead = next(iter(fields.values())).shape[1]
    coords = {"time": [INIT], "lead_time": np.array([np.timedelta64(h, "h") for h in range(nlead)]),
              "hrrr_y": grid.y, "hrrr_x": grid.x}
    if members:
        coords["ensemble"] = np.arange(next(iter(fields.values())).shape[0])
    ds = xr.Dataset(data, coords=coords)
    ds["lat"] = (("hrrr_y", "hrrr_x"), grid.lat.astype("f4"))
    ds["lon"] = (("hrrr_y", "hrrr_x"), grid.lon.astype("f4"))
    return ds


@pytest.fixture(scope="module")
def stores(tmp_path_factory, grid):
    """``(forecast zarr, forecast-like truth zarr, dataset-store truth, truth fields, forecast fields)``."""
    root = tmp_path_factory.mktemp("scoring")
    truth = truth_fields(grid)
    fc = forecast_fields(truth)
    forecast_path = root / "forecast.zarr"
    forecast_like(fc, grid).to_zarr(forecast_path, zarr_format=2, consolidated=False)
    truth_path = root / "truth.zarr"
    forecast_like({k: v[None] for k, v in truth.items()}, grid).to_zarr(truth_path, zarr_format=2,
                                                                         consolidated=False)

    # The dataset store holds variables in another order, plus one the forecast does not have.
    state_vars = ["u10m", "msl", "t2m", "refc"]
    cond_lat = np.arange(45.0, 30.0 - 1e-9, -0.25)
    cond_lon = np.arange(255.0, 275.0 + 1e-9, 0.25)
    times = [INIT + np.timedelta64(h, "h") for h in range(NLEAD)]
    store = DatasetStore.create(root / "dataset.zarr", times=times, state_variables=state_vars,
                                conditioning_variables=["t850"], invariant_names=["lsm", "orography"],
                                grid=grid, cond_lat=cond_lat, cond_lon=cond_lon)
    for h in range(NLEAD):
        state = np.stack([truth["u10m"][h], np.full((NY, NX), 101325.0), truth["t2m"][h], truth["refc"][h]])
        store.write_hour(h, state, np.full((1, cond_lat.size, cond_lon.size), 280.0))
    store.write_statistics(np.zeros(4), np.ones(4), np.zeros(1), np.ones(1))
    store.write_invariants(np.zeros((2, NY, NX)))
    return forecast_path, truth_path, root / "dataset.zarr", truth, fc


def assert_not_blank(path: Path, min_colours: int = 30) -> tuple[int, int]:
    from matplotlib.image import imread

    img = imread(path)
    rgb = img[..., :3]
    assert rgb.std() > 0.05, f"{path.name} looks blank"
    q = (rgb * 255).astype(np.int64).reshape(-1, 3)
    colours = np.unique(q[:, 0] * 65536 + q[:, 1] * 256 + q[:, 2]).size
    assert colours > min_colours, f"{path.name} has only {colours} colours"
    return img.shape[0], img.shape[1]


def test_score_against_forecast_like_truth_writes_tables_and_plots(stores, tmp_path):
    forecast_path, truth_path, _, truth, fc = stores
    out = tmp_path / "scores"
    table = scoring.score(forecast_path, truth_path, out_dir=out, thresholds=(20, 30, 40), windows=(1, 9, 25))

    # the table: one row per variable and lead time, columns in a fixed order
    assert len(table) == len(VARS) * NLEAD
    assert list(table.columns[:10]) == ["variable", "units", "lead_time_h", "n_points", "rmse", "mae",
                                        "bias", "crps", "spread", "spread_skill"]
    for thr in ("20", "30", "40"):
        assert {f"csi_{thr}", f"pod_{thr}", f"far_{thr}"} <= set(table.columns)
        assert {f"fss_{thr}_w{w}" for w in (1, 9, 25)} <= set(table.columns)

    csv = pd.read_csv(out / "scores.csv")
    assert list(csv.columns) == list(table.columns)
    assert sorted(set(csv["variable"])) == sorted(VARS)
    assert list(csv[csv["variable"] == "t2m"]["units"]) == ["K"] * NLEAD

    # values recomputed by hand (float32 store: relative 1e-5)
    row = csv[(csv["variable"] == "t2m") & (csv["lead_time_h"] == 1)].iloc[0]
    f32 = fc["t2m"].astype("f4").astype(np.float64)
    t32 = truth["t2m"].astype("f4").astype(np.float64)
    err = f32[:, 1].mean(axis=0) - t32[1]
    assert row["rmse"] == pytest.approx(math.sqrt(np.mean(err ** 2)), rel=1e-5)
    assert row["bias"] == pytest.approx(np.mean(err), rel=1e-4, abs=1e-7)
    x, y = f32[:, 1], t32[1]
    crps = np.mean(np.abs(x - y).mean(axis=0) - np.abs(x[0] - x[1]) / 2.0)  # fair CRPS, 2 members
    assert row["crps"] == pytest.approx(crps, rel=1e-5)
    lead0 = csv[csv["lead_time_h"] == 0]
    np.testing.assert_allclose(lead0["rmse"], 0.0, atol=1e-6)  # lead 0 is the initial state
    refc = csv[csv["variable"] == "refc"]
    assert refc["fss_30_w1"].iloc[0] == pytest.approx(1.0)
    assert refc["fss_30_w25"].iloc[-1] > refc["fss_30_w1"].iloc[-1]  # displaced storm: larger windows help
    assert csv[csv["variable"] == "t2m"]["csi_30"].isna().all()  # categorical scores are for refc only

    md = (out / "scores.md").read_text()
    assert md.startswith("# StormCast scores")
    assert "| variable | units | lead (h) |" in md and "FSS 9 pt (27 km)" in md and "CSI 40 dBZ" in md

    expected = {  # (height, width) in pixels at 100 dpi
        "skill_vs_lead.png": (370, 1260),
        "spectra.png": (530, 1260),
        "rank_histogram.png": (370, 1260),
        "fss.png": (370, 1260),
    }
    for name, shape in expected.items():
        assert (out / name).exists(), name
        h, w = assert_not_blank(out / name)
        assert abs(h - shape[0]) <= 1 and abs(w - shape[1]) <= 1, (name, h, w)
    assert sorted(Path(p).name for p in table.attrs["files"]) == sorted(["scores.csv", "scores.md", *expected])


def test_dataset_store_truth_gives_the_same_scores(stores, tmp_path):
    forecast_path, truth_path, dataset_path, _, _ = stores
    a = scoring.score(forecast_path, truth_path, variables=["t2m", "refc"], plots=False)
    b = scoring.score(forecast_path, dataset_path, variables="t2m,refc", out_dir=tmp_path, plots=False)
    assert list(b["variable"].unique()) == ["t2m", "refc"]
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "scores.md"]


def test_truth_on_a_larger_grid_is_cropped_by_coordinates(stores, grid):
    forecast_path, _, _, truth, _ = stores
    big = ModelGrid.hrrr(rows=(498, 520), cols=(796, 830))
    values = np.random.default_rng(2).normal(size=(1, NLEAD, big.shape[0], big.shape[1]))
    values[0, :, 2:18, 4:28] = truth["t2m"]
    ds = forecast_like({"t2m": values}, big)
    aligned = scoring.align_truth(forecast_path, ds, ["t2m"])
    assert aligned["t2m"].dims == ("time", "lead_time", "hrrr_y", "hrrr_x")
    np.testing.assert_allclose(aligned["t2m"].values[0], truth["t2m"].astype("f4"))


def test_missing_valid_times_score_as_nan_with_a_warning(stores, tmp_path, grid):
    forecast_path, _, _, truth, _ = stores
    short = forecast_like({k: v[None, :2] for k, v in truth.items()}, grid)
    analysis = short.isel(ensemble=0, time=0, drop=True).rename(lead_time="time")
    analysis = analysis.assign_coords(time=INIT + analysis["time"].values)  # (time, y, x): valid times
    with pytest.warns(UserWarning, match="no 't2m' for 1 of 3 valid times"):
        table = scoring.score(forecast_path, analysis, variables=["t2m"])
    assert table["rmse"].iloc[:2].notna().all() and np.isnan(table["rmse"].iloc[2])


def test_missing_truth_variables_are_named(stores, tmp_path, grid):
    forecast_path, truth_path, dataset_path, truth, _ = stores
    partial = forecast_like({"t2m": truth["t2m"][None]}, grid)
    with pytest.raises(scoring.ScoreError, match=r"lacks variables \['refc', 'u10m'\]"):
        scoring.score(forecast_path, partial, out_dir=tmp_path / "x")
    with pytest.raises(scoring.ScoreError, match=r"dataset store .* lacks variables \['v10m'\]"):
        ds = open_store(forecast_path)
        ds["v10m"] = ds["u10m"]
        scoring.score(ds, dataset_path)
    with pytest.raises(scoring.ScoreError, match=r"the forecast has no variables \['q2m'\]"):
        scoring.score(forecast_path, truth_path, variables=["t2m", "q2m"])
    assert not (tmp_path / "x").exists()


def test_deterministic_forecast_and_other_grid(stores, tmp_path, grid):
    _, truth_path, _, truth, fc = stores
    det = forecast_like({k: v[:1] for k, v in fc.items()}, grid).isel(ensemble=0, drop=True)
    table = scoring.score(det, truth_path, variables=["u10m"], out_dir=tmp_path, thresholds=[30])
    assert "crps" not in table.columns and "spread_skill" not in table.columns
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["skill_vs_lead.png", "spectra.png"]
    other = forecast_like({"u10m": truth["u10m"][None]}, ModelGrid.hrrr(rows=(600, 616), cols=(800, 824)))
    with pytest.raises(scoring.ScoreError, match="do not contain the forecast's 'hrrr_y'"):
        scoring.score(det, other, variables=["u10m"])


def test_command_line_arguments(stores, tmp_path, capsys):
    forecast_path, truth_path, _, _, _ = stores
    parser = add_score_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(forecast_path), str(truth_path), "--out", str(tmp_path / "o"),
                              "--variables", "refc", "--thresholds", "25,35", "--windows", "1,5", "--no-plots"])
    assert score_from_args(args) == 0
    csv = pd.read_csv(tmp_path / "o" / "scores.csv")
    assert {"csi_25", "csi_35", "fss_35_w5"} <= set(csv.columns)
    assert "| refc |" in capsys.readouterr().out
    bad = parser.parse_args([str(forecast_path), str(truth_path), "--windows", "1,4"])
    with pytest.raises(ValueError, match="odd positive integers"):
        score_from_args(bad)
    bad = parser.parse_args([str(forecast_path), str(truth_path), "--thresholds", "20,x"])
    with pytest.raises(ValueError, match="--thresholds '20,x' is not a comma-separated list"):
        score_from_args(bad)


def test_spectral_band_ratios_are_in_the_table_and_report(stores, tmp_path):
    forecast_path, truth_path, _, truth, fc = stores
    table = scoring.score(forecast_path, truth_path, variables=["u10m", "t2m"], out_dir=tmp_path, plots=False,
                          spectral_bands_km=[15, 30])
    bands = ["spectral_ratio_lt15km", "spectral_ratio_15_30km", "spectral_ratio_ge30km"]
    assert [c for c in table.columns if c.startswith("spectral_ratio_")] == bands
    np.testing.assert_allclose(table[table["lead_time_h"] == 0][bands], 1.0, rtol=1e-6)  # lead 0: the truth
    # by hand: the u10m forecast at lead 2, power of wavelengths >= 30 km, members averaged, over the truth's
    from stormcast_plugin import statistics as S

    f = xr.DataArray(fc["u10m"][:, 2].astype("f4").astype(np.float64), dims=("ensemble", "y", "x"))
    t = xr.DataArray(truth["u10m"][2].astype("f4").astype(np.float64), dims=("y", "x"))
    pf = S.radial_power_spectrum(f).mean("ensemble")
    pt = S.radial_power_spectrum(t)
    big = pf["wavelength_km"] >= 30
    expected = float((pf * pf["modes"]).where(big).sum() / (pt * pt["modes"]).where(big).sum())
    row = table[(table["variable"] == "u10m") & (table["lead_time_h"] == 2)].iloc[0]
    assert row["spectral_ratio_ge30km"] == pytest.approx(expected, rel=1e-6)
    assert row["spectral_ratio_lt15km"] > 1.0  # white noise added to a smooth field: too much small-scale power
    md = (tmp_path / "scores.md").read_text()
    assert "## Spectral power ratio by wavelength band" in md and "| < 15 km | 15-30 km | >= 30 km |" in md
    with pytest.raises(scoring.ScoreError, match="increasing positive wavelengths"):
        scoring.score(forecast_path, truth_path, variables=["u10m"], spectral_bands_km=[30, 15])
