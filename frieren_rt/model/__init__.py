"""The Frieren vector field (ChannelConcatDiT), its configuration and presets."""

from frieren_rt.model.config import PRESETS, VectorFieldConfig, preset
from frieren_rt.model.dit import ChannelConcatDiT
from frieren_rt.model.vector_field import VectorField, load_vector_field_state

__all__ = ["PRESETS", "ChannelConcatDiT", "VectorField", "VectorFieldConfig", "load_vector_field_state", "preset"]
