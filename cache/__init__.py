"""The feature cache: HDF5 shards plus a manifest, the contract between the two stages.

Stage one writes with ``CacheWriter`` (one atomic shard at a time, resumable, several
processes at once); stage two reads with ``FeatureCache``. ``cache_info`` and
``verify_cache`` back ``hcm cache info`` and ``hcm cache verify``. Format: docs/cache.md.
"""

from hcm.cache.inspect import cache_info, format_info, verify_cache
from hcm.cache.reader import FeatureCache
from hcm.cache.schema import SCHEMA_VERSION, CacheError, CacheMeta, Failure, FeatureSpec, Item
from hcm.cache.writer import CacheWriter

__all__ = [
    "SCHEMA_VERSION", "CacheError", "CacheMeta", "CacheWriter", "Failure", "FeatureCache", "FeatureSpec", "Item",
    "cache_info", "format_info", "verify_cache",
]
