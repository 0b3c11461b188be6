"""Short repair fine-tune: Diff-Cleanse's dual loss on the model's own samples, plus an unlearning term.

No clean training set is needed: the clean images x0 are the *original* model's own samples
(plain DDIM from plain noise; the backdoor does not fire there). Per step:

    denoise  = ||eps_theta(x_t) - eps||^2                  x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t uniform
    distill  = ||eps_theta(x_t) - eps_orig(x_t)||^2        the original, unpruned model as teacher
    unlearn  = ||eps_theta(x~_t) - eps_orig(x_t) - (x~_t - x_t) / sqrt(1 - ab_t)||^2,   t >= unlearn_from * T

where x~_t is the same point moved along the *inverted* backdoor chain (scanner/sampling/chain.py:
x~_t = sqrt(ab_t) x0 + c_t m + sqrt(1 - ab_t) gamma eps). The unlearning target is what a
clean model does with an unexpected shift: it passes it through as noise. The first two
terms are Diff-Cleanse's dual loss; the third is ours and uses only the scan's trigger.
Defaults come from trials on two benchmark models (docs/repair.md): distillation alone lets a
VillanDiffusion backdoor come back (true-trigger ASR 0.78 after pruning had cut it), unlearning
at every t costs quality, and the denoising term on self-generated samples costs quality too,
so it is off (weight 0) by default. Pruned channels are re-zeroed after every optimiser step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scanner.detect.target import chain_arguments
from scanner.repair.channels import Channel, zero_channels
from scanner.sampling import NoiseSchedule
from scanner.sampling.chain import chain_coefficients


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    steps: int = 200
    batch: int = 16
    lr: float = 5e-4
    unlearn_weight: float = 1.0
    denoise_weight: float = 0.0  # Diff-Cleanse's denoising term; on self-generated samples it cost quality (docs/repair.md)
    unlearn_from: float = 0.5  # unlearning only at t >= unlearn_from * T, where the trigger dominates
    cosine: bool = False  # decay the learning rate to 0 over the steps (scanner/compress/recover.py does)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1:
            raise ValueError(f"need steps >= 0 and batch >= 1, got {self.steps}, {self.batch}")
        if self.lr <= 0 or min(self.unlearn_weight, self.denoise_weight) < 0:
            raise ValueError(f"need lr > 0 and weights >= 0, got {self.lr}, {self.unlearn_weight}, {self.denoise_weight}")
        if not 0.0 <= self.unlearn_from < 1.0:
            raise ValueError(f"`unlearn_from` must be in [0, 1), got {self.unlearn_from}")


def finetune(unet: torch.nn.Module, teacher: torch.nn.Module, schedule: NoiseSchedule, clean: torch.Tensor, *,
             hypothesis: str, trigger: torch.Tensor, gamma: float, pruned: list[Channel], config: FinetuneConfig,
             generator: torch.Generator) -> dict[str, float]:
    """Fine-tune the pruned `unet` in place on `clean` images (N, C, H, W), distilling from `teacher` (the
    original, unpruned model); returns UNet evaluations and final losses."""
    if config.steps == 0:
        return {"unet_evals": 0.0, "backward_evals": 0.0}
    device = next(unet.parameters()).device
    args = chain_arguments(hypothesis, trigger.to(device), gamma)
    kappa = args.get("kappa", 1.0)
    T = schedule.num_timesteps
    coeff = torch.stack([chain_coefficients(schedule, t, args["chain"], kappa)[0] for t in range(T)]).to(device)
    unet.train().requires_grad_(True)
    opt = torch.optim.Adam(unet.parameters(), lr=config.lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps) if config.cosine else None
    n, evals = config.batch, 0
    low = int(config.unlearn_from * T)
    for _ in range(config.steps):
        x0 = clean[torch.randint(0, len(clean), (2 * n,), generator=generator)].to(device)
        t = torch.cat([torch.randint(0, T, (n,), generator=generator), torch.randint(low, T, (n,), generator=generator)])
        ab = schedule.alpha_bar(t).to(device).view(-1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        x_clean = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # (2n, C, H, W): n for the dual loss, n for unlearning
        x_trig = x_clean[n:] + coeff[t[n:]].view(-1, 1, 1, 1) * args["shift"] + (1 - ab[n:]).sqrt() * (args["gamma"] - 1) * eps[n:]
        t = t.to(device)
        with torch.no_grad():
            teach = teacher(x_clean, t).sample
        out = unet(torch.cat([x_clean[:n], x_trig]), t).sample
        evals += 4 * n  # teacher 2n, student 2n (the student's are also backpropagated)
        denoise = (out[:n] - eps[:n]).pow(2).mean()
        distill = (out[:n] - teach[:n]).pow(2).mean()
        unlearn = (out[n:] - teach[n:] - (x_trig - x_clean[n:]) / (1 - ab[n:]).sqrt()).pow(2).mean()
        loss = config.denoise_weight * denoise + distill + config.unlearn_weight * unlearn
        opt.zero_grad()
        loss.backward()
        opt.step()
        if decay is not None:
            decay.step()
        zero_channels(pruned)
    unet.eval().requires_grad_(False)
    return {"unet_evals": float(evals), "backward_evals": float(2 * n * config.steps),
            "denoise": float(denoise.detach()), "distill": float(distill.detach()), "unlearn": float(unlearn.detach())}
