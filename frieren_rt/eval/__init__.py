"""Evaluation metrics for generated Foley against the world's ground truth (issue 3, item 7).

- onsets: onset detector + ``onset_sync`` (F1 / offset within +-40 ms, false onsets in silence).
- aisfx: the aiSFX sound-effects embedding (512-d) in plain torch, loaded from the asset cache.
- classify: event-class accuracy at the true event times, with a classifier fitted on true train audio.
- distances: Fréchet distance between embedding sets; paired KL between class posteriors.
- truth: true world audio + events without rendering frames.
"""

from frieren_rt.eval.aisfx import Aisfx
from frieren_rt.eval.classify import (
                                      EventClassifier,
                                      LogMelStats,
                                      class_accuracy,
                                      clip_posterior,
                                      fit_event_classifier,
)
from frieren_rt.eval.distances import frechet_distance, paired_kl
from frieren_rt.eval.onsets import OnsetConfig, detect_onsets, onset_sync, pool_sync
from frieren_rt.eval.truth import TrueAudio, true_audio

__all__ = [
                                      "Aisfx",
                                      "EventClassifier",
                                      "LogMelStats",
                                      "OnsetConfig",
                                      "TrueAudio",
                                      "class_accuracy",
                                      "clip_posterior",
                                      "detect_onsets",
                                      "fit_event_classifier",
                                      "frechet_distance",
                                      "onset_sync",
                                      "paired_kl",
                                      "pool_sync",
                                      "true_audio",
]
