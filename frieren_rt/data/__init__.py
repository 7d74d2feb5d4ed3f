"""Training data: world clips rendered once into cached mel spectrograms and frozen visual features."""

from frieren_rt.data.cache import CacheConfig, ClipRecord, FeatureCache, build_cache, clip_record, write_cache

__all__ = ["CacheConfig", "ClipRecord", "FeatureCache", "build_cache", "clip_record", "write_cache"]
