"""Files: the dataset store format (:mod:`.dataset_store`), forecast stores
(:mod:`.forecast_store`) and safe replacement of outputs (:mod:`.replace`)."""

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
from stormcast_plugin.io.replace import OutputError, check_replaceable, output_kind, replacing

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "NETCDF_SUFFIXES",
    "DatasetStore",
    "ForecastStoreError",
    "PartialForecastWarning",
    "OutputError",
    "StoreError",
    "add_forecast_arrays",
    "check_replaceable",
    "close_output",
    "completed_lead_hours",
    "lead_hours",
    "load_lead",
    "open_forecast",
    "open_output",
    "open_store",
    "output_kind",
    "replacing",
    "set_attributes",
]
