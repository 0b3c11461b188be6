"""Soft Parameters Pruning (SPP): label-free, entropy-scored parameter importance; docs/spp.md."""

from scanner.spp.importance import accumulate, channel_importance, freed, prediction_entropy, spp_importance

__all__ = ["accumulate", "channel_importance", "freed", "prediction_entropy", "spp_importance"]
from scanner.spp.regularized import TrainConfig, anchor_penalty, train_task

__all__ += ["TrainConfig", "anchor_penalty", "train_task"]
from scanner.spp.ewc import ewc_importance
from scanner.spp.improved import spp_plus_importance
from scanner.spp.mas import mas_importance

__all__ += ["ewc_importance", "mas_importance", "spp_plus_importance"]
from scanner.spp.diffusion import diffusion_spp_importance, information_gradients

__all__ += ["diffusion_spp_importance", "information_gradients"]
