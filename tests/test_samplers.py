"""Our samplers against diffusers' schedulers, step for step, with the same noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from scanner.sampling import (CountingEps, NoiseSchedule, ddim_sample, ddim_timesteps, ddpm_sample,
                              trojan_sample)

T = 50


def toy_eps(x: torch.Tensor, t: int) -> torch.Tensor:
    """A deterministic, state-dependent stand-in for a UNet (keeps the test fast and exact)."""
    return 0.3 * x + 0.05 * torch.sin(3.0 * x + t / 10.0)


def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_scheduler_config({"num_train_timesteps": T, "beta_start": 1e-3, "beta_end": 0.2})


@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_matches_diffusers_step_for_step(clip):
    sched = DDPMScheduler(num_train_timesteps=T, beta_start=1e-3, beta_end=0.2, clip_sample=clip)
    sched.set_timesteps(T)
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x, gen = x0.clone(), torch.Generator().manual_seed(1)
    for t in sched.timesteps:
        x = sched.step(toy_eps(x, int(t)), t, x, generator=gen).prev_sample
    ours = ddpm_sample(toy_eps, schedule(), x0, generator=torch.Generator().manual_seed(1), clip_sample=clip)
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", [10, 25])
def test_ddim_matches_diffusers(steps):
    sched = DDIMScheduler(num_train_timesteps=T, beta_start=1e-3, beta_end=0.2, clip_sample=False)
    sched.set_timesteps(steps)
    assert [int(t) for t in sched.timesteps] == ddim_timesteps(T, steps)
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x = x0.clone()
    for t in sched.timesteps:
        x = sched.step(toy_eps(x, int(t)), t, x, eta=0.0).prev_sample
    torch.testing.assert_close(ddim_sample(toy_eps, schedule(), x0, steps=steps), x, atol=1e-5, rtol=1e-5)


def test_trojan_sampler_with_gamma_one_and_no_shift_is_ddpm():
    x0 = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    a = trojan_sample(toy_eps, schedule(), x0, gamma=1.0, mu=torch.zeros(1, 8, 8),
                      generator=torch.Generator().manual_seed(3))
    b = ddpm_sample(toy_eps, schedule(), x0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_schedule_matches_diffusers_betas_and_edges():
    s = schedule()
    torch.testing.assert_close(s.alphas_cumprod.float(), DDPMScheduler(num_train_timesteps=T, beta_start=1e-3,
                                                                       beta_end=0.2).alphas_cumprod)
    assert s.alpha_bar(-1).item() == 1.0 and s.alpha_bar(-7).item() == 1.0
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule(betas=torch.tensor([0.1, 1.5]))


def test_counting_counts_images_times_steps(pipeline_template):
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(pipeline_template / "unet")
    counter = CountingEps(unet)
    with torch.no_grad():
        ddim_sample(counter, schedule(), torch.randn(3, 1, 16, 16), steps=5)
        assert counter.evals == 3 * 5
        ddpm_sample(counter, schedule(), torch.randn(2, 1, 16, 16))
    assert counter.evals == 3 * 5 + 2 * T
