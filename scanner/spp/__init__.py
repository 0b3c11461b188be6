"""Soft Parameters Pruning (SPP): label-free, entropy-scored parameter importance; docs to come with issue 6."""

from scanner.spp.importance import accumulate, channel_importance, freed, prediction_entropy, spp_importance

__all__ = ["accumulate", "channel_importance", "freed", "prediction_entropy", "spp_importance"]
from scanner.spp.regularized import TrainConfig, anchor_penalty, train_task

__all__ += ["TrainConfig", "anchor_penalty", "train_task"]
