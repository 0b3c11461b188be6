"""Compress one diffusion checkpoint: score channels, remove them with torch-pruning, recover, write, measure.

Steps: the original model's own samples (DDIM) are the only data; channel importance from them
(`spp` by default; `magnitude` and `taylor` for comparison); `prune.py` removes whole GroupNorm
groups / heads to the planned widths and rebuilds a stock UNet2DModel; `recover.py` fine-tunes it
briefly (SPP-regularized distillation from the original); quality before and after on the same
noise; params and MACs counted by torch-pruning. Output: a DDPMPipeline directory plus
`compress_plan.json`. Every failure is a row with an error, never an exception.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import scanner
from scanner.checkpoint.boundary import row_from_checkpoint
from scanner.compress.baselines import magnitude_importance, taylor_importance
from scanner.compress.prune import prune_unet
from scanner.compress.recover import RecoverConfig, recover
from scanner.repair.quality import FeatureFn, digits_features, frechet_distance, reference_features
from scanner.repair.repair import ddim_samples, save_pipeline
from scanner.spp.diffusion import diffusion_spp_importance

IMPORTANCES = ("spp", "magnitude", "taylor")


@dataclass(frozen=True, kw_only=True)
class CompressConfig:
    sparsity: float = 0.3            # share of channels to remove (rounded to whole GroupNorm groups; plan.py)
    importance: str = "spp"          # spp | magnitude | taylor
    self_samples: int = 256          # the original model's own samples: importance and recovery data
    quality_samples: int = 256       # samples per quality measurement (same noise before and after)
    sample_steps: int = 20           # DDIM steps for self and quality samples
    importance_batches: int = 16
    importance_batch: int = 32
    recover: RecoverConfig = field(default_factory=RecoverConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"`sparsity` must be in (0, 1), got {self.sparsity}")
        if self.importance not in IMPORTANCES:
            raise ValueError(f"`importance` must be one of {IMPORTANCES}, got {self.importance!r}")
        for name in ("self_samples", "quality_samples", "sample_steps", "importance_batches", "importance_batch"):
            if getattr(self, name) < 2:
                raise ValueError(f"`{name}` must be >= 2, got {getattr(self, name)}")
        if isinstance(self.recover, dict):  # from TOML
            object.__setattr__(self, "recover", RecoverConfig(**self.recover))
        elif not isinstance(self.recover, RecoverConfig):
            raise ValueError("`recover` must be a RecoverConfig or a table of its settings")


def count(unet: torch.nn.Module) -> tuple[int, int]:
    """(parameters, MACs of one forward pass at batch 1), as torch-pruning's counter gives them."""
    import torch_pruning as tp

    c, h = unet.config.in_channels, unet.config.sample_size
    device = next(unet.parameters()).device
    macs, params = tp.utils.count_ops_and_params(unet, (torch.zeros(1, c, h, h, device=device),
                                                        torch.tensor([0], device=device)))
    return int(params), int(macs)


def importance(unet, schedule, x0: torch.Tensor, cfg: CompressConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    if cfg.importance == "magnitude":
        return magnitude_importance(unet)
    fn = diffusion_spp_importance if cfg.importance == "spp" else taylor_importance
    return fn(unet, schedule, x0, batches=cfg.importance_batches, batch=cfg.importance_batch, generator=generator)


def compress_checkpoint(path: str | Path, out_dir: str | Path, *, config: CompressConfig = CompressConfig(),
                        features: FeatureFn | None = None, device: str = "cpu", uri: str | None = None) -> dict[str, Any]:
    """Compress the checkpoint at `path` into `out_dir`; return its row (scanner.results.COMPRESS_SCHEMA)."""
    row: dict[str, Any] = {"uri": uri or str(path), "compressed_uri": None, "scanner_version": scanner.__version__,
                           "compress_config": json.dumps(asdict(config), sort_keys=True), "importance": config.importance}
    return row_from_checkpoint(path, row, lambda ckpt: _compress(ckpt, Path(out_dir), config, features or digits_features()),
                               device=device, what="compression", category="compress")


def _compress(ckpt, out_dir: Path, cfg: CompressConfig, features: FeatureFn) -> dict[str, Any]:
    unet, schedule = ckpt.unet.eval(), ckpt.schedule
    c, h = unet.config.in_channels, unet.config.sample_size
    gen = torch.Generator().manual_seed(cfg.seed)
    device = next(unet.parameters()).device

    def noise(n: int) -> torch.Tensor:
        return torch.randn(n, c, h, h, generator=gen).to(device)

    x0 = ddim_samples(unet, schedule, noise(cfg.self_samples), cfg.sample_steps)
    quality_noise = noise(cfg.quality_samples)
    before = ddim_samples(unet, schedule, quality_noise, cfg.sample_steps)
    scores = importance(unet, schedule, x0, cfg, gen)
    small, plan = prune_unet(unet, scores, sparsity=cfg.sparsity, num_train_timesteps=schedule.num_timesteps)
    small.to(device)
    pruned = ddim_samples(small, schedule, quality_noise, cfg.sample_steps)
    omega = None
    if cfg.recover.lam > 0 and cfg.recover.steps > 0:
        omega = diffusion_spp_importance(small, schedule, x0, batches=cfg.importance_batches,
                                         batch=cfg.importance_batch, generator=gen)
    unet.requires_grad_(False)  # the original is only the teacher now; prune_unet worked on a copy
    tuned = recover(small, unet, schedule, x0, omega=omega, config=cfg.recover, generator=gen)
    after = ddim_samples(small, schedule, quality_noise, cfg.sample_steps)
    (params_before, macs_before), (params_after, macs_after) = count(unet), count(small)
    reference = reference_features(features)
    quality = {name: frechet_distance(features(s.cpu()), reference) for name, s in
               (("before", before), ("pruned", pruned), ("after", after))}
    record = {"uri": str(ckpt.inventory.unet_dir), "method": f"{cfg.importance} importance, whole GroupNorm groups "
              "and heads removed with torch-pruning, SPP-regularized distillation", **plan, "config": asdict(cfg),
              "recover": tuned, "quality_pruned_only": quality["pruned"], "scanner_version": scanner.__version__}
    save_pipeline(small.cpu(), ckpt.scheduler_config, out_dir,
                  extra={"compress_plan.json": json.dumps(record, indent=1, sort_keys=True)})
    return {
        "compressed_uri": str(out_dir), "params_before": params_before, "params_after": params_after,
        "macs_before": macs_before, "macs_after": macs_after, "channel_sparsity": plan["channel_sparsity"],
        "block_out_channels": json.dumps(plan["new_widths"]),
        "quality_before": quality["before"], "quality_after": quality["after"], "quality_pruned": quality["pruned"],
        "sample_mse": float((after - before).pow(2).mean()), "recover_steps": cfg.recover.steps,
        "unet_evals": int(tuned["unet_evals"]),
    }
