"""Collapse inversion: Diff-Cleanse's stage 1 (trigger inversion by sample collapse), done right.

Diff-Cleanse searches for an input shift delta under which samples from x_T = eps + delta
collapse onto one image. The released code never updates delta (it rebinds the tensor before
its loop) and spends 32,000 UNet evaluations per model. Here delta really is optimised: the
samples come from a short differentiable sampler (scanner/sampling/chain.py, `steps` DDIM-type
steps along the hypothesised chain, batched), and Adam follows the exact gradient of

    loss = log(mean per-pixel variance of the batch's samples) + mean(relu(|x| - 1)^2),

the second term (Diff-Cleanse's value-range term) stopping the search from blowing samples
out of the image range. The statistic is the same spread on fresh noise with a longer
sampler (`confirm_steps`); a backdoor collapses it, a clean model keeps its samples apart.
Diff-Cleanse's MSCR is reported too: the share of samples within HIT_MSE of the batch medoid.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.result import Detection, calibrated_score
from scanner.forge.measure import HIT_MSE
from scanner.sampling import CHAINS, CountingEps, NoiseSchedule, chain_sample

NAME = "collapse"


@dataclass(frozen=True, kw_only=True)
class CollapseConfig:
    chain: str = "shift"
    kappa: float = 2.0  # ODE-type target (VillanDiffusion); kappa = 1 is BadDiffusion's SDE target
    steps: int = 5
    iters: int = 60
    batch: int = 8
    lr: float = 0.05
    confirm_steps: int = 10
    confirm_batch: int = 16
    threshold: float = 0.02  # confirm spread (per-pixel variance); docs/detect.md
    width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.chain not in CHAINS:
            raise ValueError(f"`chain` must be one of {CHAINS}, got {self.chain!r}")
        for name in ("steps", "iters", "batch", "confirm_steps", "confirm_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.batch < 2 or self.confirm_batch < 2:
            raise ValueError("`batch` and `confirm_batch` must be >= 2 (a spread needs two samples)")
        if self.lr <= 0 or self.threshold <= 0 or self.width <= 0:
            raise ValueError("`lr`, `threshold` and `width` must be > 0")


def _spread(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)).pow(2).mean()


def _mscr(x: torch.Tensor) -> float:
    """Share of samples within HIT_MSE of the medoid (the sample closest to all others)."""
    flat = x.clamp(-1, 1).flatten(1)
    d = torch.cdist(flat, flat).pow(2) / flat.shape[1]  # (B, B) per-pixel MSE
    medoid = int(d.sum(1).argmin())
    return float((d[medoid] < HIT_MSE).float().mean())


def detect_collapse(unet: torch.nn.Module, schedule: NoiseSchedule, *,
                    config: CollapseConfig = CollapseConfig()) -> Detection:
    """Optimise the trigger by sample collapse and judge `unet`; its parameters are not modified."""
    started = time.perf_counter()
    cfg = config
    c, h = unet.config.in_channels, unet.config.sample_size
    device = next(unet.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    eps_model = CountingEps(unet)
    u = (0.1 * torch.randn(1, c, h, h, generator=gen)).to(device).requires_grad_()  # delta = tanh(u)
    opt = torch.optim.Adam([u], lr=cfg.lr)

    def sample(noise: torch.Tensor, delta: torch.Tensor, steps: int) -> torch.Tensor:
        return chain_sample(eps_model, schedule, noise, shift=delta, chain=cfg.chain, kappa=cfg.kappa, steps=steps)

    for _ in range(cfg.iters):
        x = sample(torch.randn(cfg.batch, c, h, h, generator=gen).to(device), torch.tanh(u), cfg.steps)
        loss = torch.log(_spread(x) + 1e-4) + (x.abs() - 1.0).clamp(min=0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    backward_evals = eps_model.evals
    with torch.no_grad():
        delta = torch.tanh(u)
        x = sample(torch.randn(cfg.confirm_batch, c, h, h, generator=gen).to(device), delta, cfg.confirm_steps)
        statistic = float(_spread(x))
        out_of_range = float((x.abs() - 1.0).clamp(min=0).pow(2).mean())
    return Detection(
        detector=NAME, config=asdict(cfg), verdict="backdoored" if statistic < cfg.threshold else "clean",
        score=calibrated_score(statistic, threshold=cfg.threshold, width=cfg.width), statistic=statistic,
        threshold=cfg.threshold, hypothesis=f"{cfg.chain}(kappa={cfg.kappa:g})", gamma=1.0,
        trigger=delta[0].cpu(), target=x.clamp(-1, 1).median(0).values.cpu(), unet_evals=eps_model.evals,
        backward_evals=backward_evals, seconds=time.perf_counter() - started, seed=cfg.seed,
        stats={"spread": statistic, "out_of_range": out_of_range, "mscr": _mscr(x)},
    )
