"""earth2studio DataSources: sources over a dataset store, cropping a larger
projected source to a model grid, and the conditioning fetcher."""

from stormcast_plugin.data.conditioning import ConditioningFetcher
from stormcast_plugin.data.crop import CropToGrid, grid_window
from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource

__all__ = ["ConditioningFetcher", "CropToGrid", "StoreConditioningSource", "StoreStateSource", "grid_window"]
