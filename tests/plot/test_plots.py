"""Tests for stormcast_plugin.plot (styles, maps, forecast figures) on small synthetic forecast stores."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
xr = pytest.importorskip("xarray")

from stormcast_plugin import plot as plots  # noqa: E402

NY, NX, NLEAD = 16, 24, 3
VARS = ("refc", "t2m", "u10m")


def synthetic_forecast(latlon: bool = True, dims=("hrrr_y", "hrrr_x"), members: int = 2):
    """A forecast store as earth2studio writes it: (ensemble, time, lead_time, y, x)."""
    rng = np.random.default_rng(0)
    y, x = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
    lat = 25.0 + 25.0 * y / (NY - 1) + 0.8 * np.sin(np.pi * x / (NX - 1))
    lon = 235.0 + 60.0 * x / (NX - 1) + 3.0 * (y / (NY - 1) - 0.5)  # 0..360 convention
    shape = (members, 1, NLEAD, NY, NX)
    refc, t2m, u10m = np.empty(shape), np.empty(shape), np.empty(shape)
    for e in range(members):
        for k in range(NLEAD):
            cy, cx = NY * (0.35 + 0.1 * k), NX * (0.3 + 0.15 * k + 0.05 * e)
            r2 = ((y - cy) / (0.3 * NY)) ** 2 + ((x - cx) / (0.25 * NX)) ** 2
            refc[e, 0, k] = 68.0 * np.exp(-r2) - 10.0 + rng.normal(0, 2, (NY, NX))
            t2m[e, 0, k] = 300.0 - 0.8 * (lat - 25.0) + 2 * np.sin(x / 3.0 + k) \
                + rng.normal(0, 0.3, (NY, NX))
            u10m[e, 0, k] = 12 * np.sin(np.pi * y / NY + 0.3 * k) - 4 + rng.normal(0, 1, (NY, NX))
    d = ("ensemble", "time", "lead_time") + tuple(dims)
    ds = xr.Dataset(
        {"refc": (d, refc.astype("f4")), "t2m": (d, t2m.astype("f4")),
         "u10m": (d, u10m.astype("f4"))},
        coords={
            "ensemble": np.arange(members),
            "time": np.array(["2024-05-06T18:00"], dtype="datetime64[ns]"),
            "lead_time": np.arange(NLEAD).astype("timedelta64[h]").astype("timedelta64[ns]"),
        },
    )
    if latlon:
        ds["lat"] = (tuple(dims), lat)
        ds["lon"] = (tuple(dims), lon)
    return ds


@pytest.fixture(scope="module")
def zarr_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fc") / "forecast.zarr"
    synthetic_forecast().to_zarr(path, consolidated=False)
    return path


@pytest.fixture(scope="module")
def written(zarr_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("plots")
    return out, plots.plot_forecast(zarr_store, list(VARS), out, member=1, dpi=50)


def assert_not_blank(path, min_colours=30):
    from matplotlib.image import imread

    img = imread(path)
    rgb = img[..., :3]
    assert rgb.std() > 0.08, f"{path.name} looks blank"
    q = np.round(rgb.reshape(-1, 3) * 255).astype(np.int64)
    colours = np.unique(q[:, 0] * 65536 + q[:, 1] * 256 + q[:, 2]).size
    assert colours > min_colours, f"{path.name} has only {colours} colours"
    return rgb


def test_import_is_cheap():
    code = (
        "import sys, stormcast_plugin.plot; "
        "bad = [m for m in ('matplotlib', 'xarray', 'cartopy', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_forecast_writes_pngs_and_gifs(written):
    out, paths = written
    expected = [f"{v}_{k:03d}h.png" for v in VARS for k in range(NLEAD)] + [f"{v}.gif" for v in VARS]
    assert sorted(p.name for p in paths) == sorted(expected)
    assert all(p.parent == out and p.is_file() for p in paths)
    for p in paths:
        if p.suffix == ".png":
            assert_not_blank(p)


def test_gif_has_a_frame_per_lead_time(written):
    from PIL import Image

    _, paths = written
    for p in (p for p in paths if p.suffix == ".gif"):
        with Image.open(p) as im:
            assert im.n_frames == NLEAD, p.name


def test_frames_differ_between_lead_times(written):
    from matplotlib.image import imread

    out, _ = written
    a, b = imread(out / "refc_000h.png"), imread(out / "refc_002h.png")
    assert a.shape == b.shape
    assert np.abs(a - b).mean() > 1e-3


def test_refc_uses_reflectivity_palette(written):
    from matplotlib.colors import BoundaryNorm, ListedColormap, to_rgb

    style = plots.style_for("refc")
    assert style["units"] == "dBZ" and style["fixed"] and not style["diverging"]
    assert isinstance(style["cmap"], ListedColormap) and style["cmap"].N == 14
    assert isinstance(style["norm"], BoundaryNorm)
    assert list(style["norm"].boundaries) == list(range(5, 80, 5))
    assert (style["vmin"], style["vmax"]) == (5.0, 75.0)
    # below 5 dBZ and missing values are transparent
    assert style["cmap"].get_under()[3] == 0.0 and style["cmap"].get_bad()[3] == 0.0
    # 52 dBZ falls in the 50-55 class: NWS red
    rgba = style["cmap"](style["norm"](52.0))
    assert np.allclose(rgba[:3], to_rgb("#fd0000"))

    # the rendered map shows palette colours (the storm peaks near 58 dBZ)
    rgb = assert_not_blank(written[0] / "refc_001h.png")
    pixels = rgb.reshape(-1, 3)
    for colour in ("#fd0000", "#02fd02", "#fdf802"):
        dist = np.abs(pixels - np.array(to_rgb(colour))).max(axis=1)
        assert (dist < 0.02).sum() > 20, colour


def test_u10m_is_diverging_with_symmetric_limits():
    style = plots.style_for("u10m")
    assert style["diverging"] and not style["fixed"] and style["units"] == "m/s"
    lo, hi = plots.color_limits(np.linspace(-3.0, 11.0, 500), style)
    assert lo == pytest.approx(-hi) and hi > 10.0
    fig = plots.plot_field(None, np.linspace(-3.0, 11.0, NY * NX).reshape(NY, NX), name="u10m")
    (mappable,) = fig.axes[0].images
    vmin, vmax = mappable.get_clim()
    assert vmin == pytest.approx(-vmax)
    assert fig.axes[1].get_ylabel() == "m/s"


def test_unknown_variable_lists_available(zarr_store, tmp_path):
    with pytest.raises(ValueError, match="available") as info:
        plots.plot_forecast(zarr_store, ["refc", "nope"], tmp_path)
    msg = str(info.value)
    assert "nope" in msg and all(v in msg for v in VARS)
    assert "'lat'" not in msg
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "name, units, diverging, cmap",
    [
        ("t2m", "K", False, None),
        ("t850", "K", False, None),
        ("v5hl", "m/s", True, None),
        ("q5hl", "kg/kg", False, None),
        ("msl", "hPa", False, None),
        ("p5hl", "Pa", False, None),
        ("Z20hl", "m", False, None),
        ("z500", "m2/s2", False, None),
        ("tcwv", "kg/m2", False, None),
        ("t2m_diff", "K", True, "RdBu_r"),
        ("anom_msl", "hPa", True, "RdBu_r"),
        ("mystery", "", False, "viridis"),
    ],
)
def test_style_for(name, units, diverging, cmap):
    style = plots.style_for(name)
    assert style["units"] == units
    assert style["diverging"] is diverging
    if cmap is not None:
        assert style["cmap"].name == cmap
    assert style["long_name"]
    assert set(style) >= {"cmap", "norm", "vmin", "vmax", "units", "long_name", "diverging"}


def test_style_details():
    assert plots.style_for("msl")["scale"] == pytest.approx(0.01)
    assert "geopotential height" in plots.style_for("Z20hl")["long_name"]
    assert plots.style_for("z500")["long_name"] == "geopotential at 500 hPa"
    assert plots.style_for("u10m")["long_name"] == "10 m eastward wind"
    assert plots.style_for("mystery")["long_name"] == "mystery"
    diff = plots.style_for("refc", difference=True)
    assert diff["diverging"] and diff["norm"] is None and diff["units"] == "dBZ"
    # each call gets its own objects
    a, b = plots.style_for("t2m"), plots.style_for("t2m")
    assert a["cmap"] is not b["cmap"] and a["cmap"] == b["cmap"]


def test_plot_field_latlon_axes_and_title():
    ds = synthetic_forecast(members=1)
    data = 100500.0 + 3.0 * np.arange(NY * NX).reshape(NY, NX)  # Pa
    fig = plots.plot_field(None, data, ds["lat"].values, ds["lon"].values, name="msl",
                           use_cartopy=False)
    ax, cax = fig.axes
    assert ax.get_xlabel() == "longitude (deg E)" and ax.get_ylabel() == "latitude (deg N)"
    assert ax.get_title() == "mean sea-level pressure (hPa)"
    assert cax.get_ylabel() == "hPa"
    lo, hi = ax.collections[0].get_clim()
    assert 1000.0 < lo < hi < 1020.0  # shown in hPa
    x0, x1 = ax.get_xlim()
    assert -130.0 < x0 < x1 < -60.0  # longitudes wrapped to -180..180


def test_no_latlon_and_yx_dims(tmp_path):
    ds = synthetic_forecast(latlon=False, dims=("y", "x"), members=1).drop_vars("u10m")
    store = tmp_path / "fc.zarr"
    ds.to_zarr(store, consolidated=False)
    paths = plots.plot_forecast(store, None, tmp_path / "out", gif=False, dpi=40)
    assert sorted(p.name for p in paths) == sorted(
        f"{v}_{k:03d}h.png" for v in ("refc", "t2m") for k in range(NLEAD)
    )
    for p in paths:
        assert_not_blank(p)
    fig = plots.plot_field(None, ds["t2m"].values[0, 0, 1], name="t2m", title="t2m")
    assert fig.axes[0].get_xlabel() == "x (grid index)"
    assert fig.axes[0].images[0].origin == "lower"


def test_netcdf_store_and_member_errors(tmp_path):
    pytest.importorskip("netCDF4")
    ds = synthetic_forecast()
    path = tmp_path / "fc.nc"
    ds.to_netcdf(path)
    paths = plots.plot_forecast(path, ["t2m"], tmp_path / "out", gif=False, member=1, dpi=40)
    assert [p.name for p in paths] == [f"t2m_{k:03d}h.png" for k in range(NLEAD)]
    with pytest.raises(IndexError, match="member"):
        plots.plot_forecast(ds, ["t2m"], tmp_path / "x", member=5)
    with pytest.raises(IndexError, match="member -1 is out of range: .* has 2 ensemble members, numbered 0 to 1"):
        plots.plot_forecast(ds, ["t2m"], tmp_path / "x", member=-1)


def test_plot_panel(tmp_path):
    ds = synthetic_forecast()
    fig = plots.plot_panel(ds, list(VARS), tmp_path / "panel.png", lead_index=2, member=1,
                           use_cartopy=False, dpi=40)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["composite reflectivity (dBZ)", "2 m temperature (K)",
                      "10 m eastward wind (m/s)"]
    assert "lead +2 h" in fig._suptitle.get_text() and "member 1" in fig._suptitle.get_text()
    assert_not_blank(tmp_path / "panel.png")
