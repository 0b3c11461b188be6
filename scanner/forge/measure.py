"""Attack success rate and clean-hit rate of a (possibly) backdoored model."""

from __future__ import annotations

import torch

from scanner.sampling import CountingEps, NoiseSchedule

HIT_MSE = 0.05  # per-image MSE on [-1, 1] images under which a sample "is" the target


def hit_rate(images: torch.Tensor, target: torch.Tensor, *, threshold: float = HIT_MSE) -> float:
    """Share of images (B, C, H, W), clamped to [-1, 1] as a pipeline would, within `threshold` MSE of target."""
    mse = (images.clamp(-1.0, 1.0) - target).pow(2).flatten(1).mean(dim=1)
    return float((mse < threshold).float().mean())


@torch.no_grad()
def measure_attack(
    unet: torch.nn.Module,
    schedule: NoiseSchedule,
    attack,
    *,
    samples: int,
    seed: int,
    threshold: float = HIT_MSE,
) -> dict[str, float | int]:
    """ASR under the attacker's sampler from triggered noise, and clean-hit rate from plain noise.

    Both runs share the same noise draw so the two numbers differ only by the trigger.
    """
    c, h = unet.config.in_channels, unet.config.sample_size
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, c, h, h, generator=gen)
    eps_model = CountingEps(unet)
    triggered = attack.triggered_sample(eps_model, schedule, noise, torch.Generator().manual_seed(seed + 1))
    benign = attack.benign_sample(eps_model, schedule, noise, torch.Generator().manual_seed(seed + 1))
    return {
        "asr": hit_rate(triggered, attack.target, threshold=threshold),
        "clean_hit_rate": hit_rate(benign, attack.target, threshold=threshold),
        "unet_evals": eps_model.evals,
    }
