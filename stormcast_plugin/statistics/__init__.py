"""Verification statistics on xarray forecasts and truths, one family per module.

Every function takes ``xarray.DataArray`` objects with named dimensions,
reduces over ``dims`` (by default the two spatial dimensions) and returns an
``xarray.DataArray`` (or ``Dataset``) over the dimensions left; the
conventions they share are in :mod:`stormcast_plugin.statistics.utils`.

Deterministic errors (:mod:`.deterministic`)
    :func:`rmse`, :func:`mae`, :func:`bias`.
Ensembles
    :func:`crps_ensemble` (:mod:`.crps`), :func:`spread_skill_ratio`
    (:mod:`.spread_skill`), :func:`rank_histogram` (:mod:`.rank_histogram`).
Spectra (:mod:`.spectrum`)
    :func:`radial_spectrum` (arrays and tensors), :func:`radial_power_spectrum`,
    :func:`spectral_ratio`, :func:`spectral_band_ratio`.
Reflectivity events (:mod:`.contingency`, :mod:`.fss`)
    :func:`contingency_table`, :func:`categorical_scores`, :func:`csi`,
    :func:`pod`, :func:`far`, :func:`neighbourhood_fraction`, :func:`fss`.

RMSE, MAE, bias, CRPS and the contingency scores are computed by the
``scores`` package (imported on first use); the others are computed here,
where ``scores`` has no statistic of the same definition (each module says
why).
"""

from stormcast_plugin.statistics.contingency import categorical_scores, contingency_table, csi, far, pod
from stormcast_plugin.statistics.crps import crps_ensemble
from stormcast_plugin.statistics.deterministic import bias, mae, rmse
from stormcast_plugin.statistics.fss import fss, neighbourhood_fraction
from stormcast_plugin.statistics.rank_histogram import rank_histogram
from stormcast_plugin.statistics.spectrum import (
    DEFAULT_SPECTRAL_BANDS_KM,
    radial_power_spectrum,
    radial_spectrum,
    radial_wavenumbers,
    spectral_band_ratio,
    spectral_ratio,
)
from stormcast_plugin.statistics.spread_skill import spread_skill_ratio
from stormcast_plugin.statistics.utils import (
    DEFAULT_THRESHOLDS,
    DEFAULT_WINDOWS,
    HRRR_SPACING_KM,
    ensemble_dim_of,
    spatial_dims,
)

__all__ = [
    "DEFAULT_SPECTRAL_BANDS_KM",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_WINDOWS",
    "HRRR_SPACING_KM",
    "bias",
    "categorical_scores",
    "contingency_table",
    "crps_ensemble",
    "csi",
    "ensemble_dim_of",
    "far",
    "fss",
    "mae",
    "neighbourhood_fraction",
    "pod",
    "radial_power_spectrum",
    "radial_spectrum",
    "radial_wavenumbers",
    "rank_histogram",
    "rmse",
    "spatial_dims",
    "spectral_band_ratio",
    "spectral_ratio",
    "spread_skill_ratio",
]
