"""The feature cache: HDF5 shards plus a manifest, the contract between the two stages.

Stage one writes with ``CacheWriter`` (one atomic shard at a time, resumable, several
processes at once); stage two reads with ``FeatureCache``. ``cache_info`` and
``verify_cache`` back ``hcm cache info`` and ``hcm cache verify``. Format: docs/cache.md.
"""

from hcm.cache.inspect import cache_info, dropped_items, format_info, masked_items, verify_cache
from hcm.cache.reader import FeatureCache
from hcm.cache.schema import SCHEMA_VERSION, CacheError, CacheMeta, Failure, FeatureSpec, Item, Masked
from hcm.cache.writer import CacheBusy, CacheWriter

__all__ = [
    "SCHEMA_VERSION", "CacheBusy", "CacheError", "CacheMeta", "CacheWriter", "Failure", "FeatureCache", "FeatureSpec",
    "Item", "Masked", "cache_info", "dropped_items", "format_info", "masked_items", "verify_cache",
]
