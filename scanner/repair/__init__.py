"""Backdoor removal by trigger-guided structural pruning (Diff-Cleanse stage 2); docs/repair.md."""

from scanner.repair.channels import Channel, ChannelGraph, channel_graph, zero_channels
from scanner.repair.finetune import FinetuneConfig, finetune, staged_finetune
from scanner.repair.quality import digits_classifier, digits_features, frechet_distance, paired_change, reference_features
from scanner.repair.repair import Finding, RepairConfig, repair_checkpoint, save_pipeline
from scanner.repair.saliency import SaliencyConfig, channel_saliency, choose_channels

__all__ = ["Channel", "ChannelGraph", "FinetuneConfig", "Finding", "RepairConfig", "SaliencyConfig", "channel_graph",
           "channel_saliency", "choose_channels", "digits_classifier", "digits_features", "finetune", "staged_finetune",
           "frechet_distance", "paired_change", "reference_features", "repair_checkpoint", "save_pipeline", "zero_channels"]
