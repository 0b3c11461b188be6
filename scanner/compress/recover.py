"""Recovery after compression: a short SPP-regularized fine-tune on samples the original model generates.

No training set is needed. x0 are the original model's own samples; each step noises them
(x_t, t uniform) and trains the compressed student on

    distill  = || eps_student(x_t, t) - eps_original(x_t, t) ||^2      (the original as teacher)
    denoise  = || eps_student(x_t, t) - eps ||^2
    anchor   = sum_i Omega^_i (theta_i - theta*_i)^2                    (SPP's regularizer)

L = distill_weight * distill + denoise_weight * denoise + lam * anchor, Adam with a cosine learning
rate decay to 0 (the last steps settle instead of leaving the model mid-stride). theta* are the compressed
weights before recovery and Omega^ is SPP's diffusion importance (scanner/spp/diffusion.py) of
the compressed model, divided by its mean so that lam does not depend on the model's size or
loss scale. Important parameters are held near the values pruning left them; freed ones
(Omega = 0) move at no cost. lam = 0 is plain distillation fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scanner.sampling import NoiseSchedule
from scanner.spp.diffusion import denoising_batches
from scanner.spp.importance import Importance
from scanner.spp.regularized import anchor_penalty


@dataclass(frozen=True, kw_only=True)
class RecoverConfig:
    steps: int = 1000
    batch: int = 32
    lr: float = 1e-3
    distill_weight: float = 1.0
    denoise_weight: float = 0.0
    lam: float = 0.0  # SPP's anchor; on the validation model lam = 1e-3 cost quality (docs/compress.md)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1 or self.lr <= 0:
            raise ValueError(f"need steps >= 0, batch >= 1, lr > 0; got {self.steps}, {self.batch}, {self.lr}")
        if min(self.distill_weight, self.denoise_weight, self.lam) < 0:
            raise ValueError("loss weights and lam must be >= 0")


def normalized(omega: Importance) -> Importance:
    """Omega divided by its mean over every element (all zeros stay zeros)."""
    total = sum(float(o.sum()) for o in omega.values())
    count = sum(o.numel() for o in omega.values())
    scale = count / total if total > 0 else 0.0
    return {n: o * scale for n, o in omega.items()}


def recover(student: torch.nn.Module, teacher: torch.nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, *,
            omega: Importance | None, config: RecoverConfig, generator: torch.Generator) -> dict[str, float]:
    """Fine-tune `student` in place; returns UNet evaluations spent and the last losses."""
    if config.steps == 0:
        return {"unet_evals": 0.0}
    anchors = {n: p.detach().clone() for n, p in student.named_parameters()}
    weights = normalized(omega) if omega is not None and config.lam > 0 else None
    student.train().requires_grad_(True)
    opt = torch.optim.Adam(student.parameters(), lr=config.lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    last: dict[str, float] = {}
    for x_t, t, eps in denoising_batches(schedule, x0, batches=config.steps, batch=config.batch, generator=generator):
        out = student(x_t, t).sample
        with torch.no_grad():
            teach = teacher(x_t, t).sample
        distill = (out - teach).pow(2).mean()
        denoise = (out - eps).pow(2).mean()
        loss = config.distill_weight * distill + config.denoise_weight * denoise
        anchor = anchor_penalty(student, weights, anchors) if weights is not None else torch.zeros(())
        loss = loss + config.lam * anchor
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
        last = {"distill": float(distill.detach()), "denoise": float(denoise.detach()), "anchor": float(anchor.detach())}
    student.eval().requires_grad_(False)
    return {"unet_evals": float(2 * config.batch * config.steps), **last}
