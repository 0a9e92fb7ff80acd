"""Datasets: the zarr store format, earth2studio sources over it, the
synthetic atmosphere, preparation from real sources and training samples."""

from .store import FORMAT, FORMAT_VERSION, DatasetStore, StoreError

__all__ = ["FORMAT", "FORMAT_VERSION", "DatasetStore", "StoreError"]
