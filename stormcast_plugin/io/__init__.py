"""Files: the dataset store format (:mod:`.dataset_store`) and forecast stores (:mod:`.forecast_store`)."""

from stormcast_plugin.io.dataset_store import FORMAT, FORMAT_VERSION, DatasetStore, StoreError
from stormcast_plugin.io.forecast_store import (
    NETCDF_SUFFIXES,
    ForecastStoreError,
    PartialForecastWarning,
    add_forecast_arrays,
    close_output,
    completed_lead_hours,
    lead_hours,
    load_lead,
    open_forecast,
    open_output,
    open_store,
    set_attributes,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "NETCDF_SUFFIXES",
    "DatasetStore",
    "ForecastStoreError",
    "PartialForecastWarning",
    "StoreError",
    "add_forecast_arrays",
    "close_output",
    "completed_lead_hours",
    "lead_hours",
    "load_lead",
    "open_forecast",
    "open_output",
    "open_store",
    "set_attributes",
]
