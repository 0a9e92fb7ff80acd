"""Files: the dataset store format (:mod:`.dataset_store`) and forecast stores."""

from stormcast_plugin.io.dataset_store import FORMAT, FORMAT_VERSION, DatasetStore, StoreError

__all__ = ["FORMAT", "FORMAT_VERSION", "DatasetStore", "StoreError"]
