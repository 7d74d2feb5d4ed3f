"""Frozen visual features for the condition: MobileNetV2 features, motion features, timestamp alignment."""

from .align import ProjectionConfig, VisualProjection, features_at_latents, features_at_times
from .encoder import IMAGENET_MEAN, IMAGENET_STD, ImageEncoder, preprocess
from .mobilenet_v2 import FEATURE_DIM, MobileNetV2
from .motion import motion_dim, motion_features

__all__ = [
    "FEATURE_DIM",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageEncoder",
    "MobileNetV2",
    "ProjectionConfig",
    "VisualProjection",
    "features_at_latents",
    "features_at_times",
    "motion_dim",
    "motion_features",
    "preprocess",
]
