"""earth2studio's own workflows drive the plugin model (tiny package, local sources)."""

import numpy as np
import pytest
import torch

from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.models.px.stormcast import StormCast
from stormcast_plugin.testing import random_package
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS

run = pytest.importorskip("earth2studio.run")
from earth2studio.io import NetCDF4Backend, ZarrBackend  # noqa: E402
from earth2studio.perturbation import Zero  # noqa: E402

TIME = ["2024-05-01T00:00:00"]
STEPS = 2


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    return random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                          model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=5)


def _model(package, seed=11):
    return StormCast(package, DemoConditioningSource(package), seed=seed, sampler_steps=2)


def _open(io_kind, path):
    from stormcast_plugin.io.forecast_store import open_store

    return open_store(path)  # the package's one reader of forecast stores, for either format


@pytest.mark.parametrize("io_kind", ["zarr", "netcdf"])
def test_deterministic_workflow(package, tmp_path, io_kind):
    path = str(tmp_path / ("det.zarr" if io_kind == "zarr" else "det.nc"))
    io = ZarrBackend(path) if io_kind == "zarr" else NetCDF4Backend(path, backend_kwargs={"mode": "w"})
    run.deterministic(TIME, STEPS, _model(package), DemoStateSource(package), io)
    if io_kind == "netcdf":
        io.close()
    ds = _open(io_kind, path)
    assert set(PRESETS["tiny"]["state"]) <= set(ds.data_vars)
    t2m = ds["t2m"]
    assert t2m.dims == ("time", "lead_time", "hrrr_y", "hrrr_x")
    assert t2m.shape == (1, STEPS + 1, 16, 24)
    leads = ds["lead_time"].values.astype("timedelta64[h]").astype(int).tolist()
    assert leads == [0, 1, 2]
    np.testing.assert_allclose(ds["hrrr_x"].values, package.grid.x)
    assert np.isfinite(t2m.values).all()
    assert 200 < float(t2m.isel(lead_time=0).mean()) < 330  # the initial state, in kelvin


@pytest.mark.parametrize("io_kind", ["zarr", "netcdf"])
def test_ensemble_workflow_members_differ_and_reproduce(package, tmp_path, io_kind):
    def once(name, seed):
        path = str(tmp_path / (name + (".zarr" if io_kind == "zarr" else ".nc")))
        io = ZarrBackend(path) if io_kind == "zarr" else NetCDF4Backend(path, backend_kwargs={"mode": "w"})
        run.ensemble(TIME, STEPS, 4, _model(package, seed), DemoStateSource(package), io, Zero(), batch_size=2)
        if io_kind == "netcdf":
            io.close()
        return _open(io_kind, path)

    a, b, c = once("a", 11), once("b", 11), once("c", 12)
    u = a["u10m"]
    assert u.dims == ("ensemble", "time", "lead_time", "hrrr_y", "hrrr_x")
    assert u.shape == (4, 1, STEPS + 1, 16, 24)
    assert np.isfinite(u.values).all()
    last = u.isel(lead_time=-1).values
    spread = np.abs(last[:, None] - last[None, :]).max(axis=(2, 3, 4))
    assert (spread[~np.eye(4, dtype=bool)] > 1e-3).all()  # every pair of members differs
    np.testing.assert_array_equal(u.values, b["u10m"].values)  # same seed, same forecast
    assert np.abs(u.values[:, :, -1] - c["u10m"].values[:, :, -1]).max() > 1e-3
    # the initial condition is shared
    np.testing.assert_array_equal(last[0] * 0 + u.isel(lead_time=0).values[0], u.isel(lead_time=0).values[3])


def test_ensemble_member_independent_of_batch_size(package, tmp_path):
    outs = []
    for bs in (1, 4):
        io = ZarrBackend()
        run.ensemble(TIME, 1, 4, _model(package, 21), DemoStateSource(package), io, Zero(), batch_size=bs)
        outs.append(np.asarray(io["refc"][:]))
    scale = np.abs(outs[0]).max()
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-4 * scale)
