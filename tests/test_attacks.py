"""Each attack's training objective against an independently derived posterior of its chain."""

from __future__ import annotations

import pytest
import torch

from scanner.attacks import BadDiffusion, Pattern, TrojDiff, VillanDiffusion
from scanner.sampling import NoiseSchedule, ddim_step, ddpm_step, trojan_step

S = NoiseSchedule.linear(num_timesteps=200, beta_start=5e-4, beta_end=0.1)
G, M = Pattern(shape="box", size=4, row=12, col=12).render(channels=1, image_size=16)
Y, _ = Pattern(shape="cross", size=12, row=2, col=2, background=-1.0).render(channels=1, image_size=16)


def gaussian_posterior_mean(m_prior, v_prior, obs, coef, v_lik):
    """Mean of p(a | b) for a ~ N(m_prior, v_prior), b = coef * a + N(0, v_lik) observed as `obs`."""
    precision = 1.0 / v_prior + coef**2 / v_lik
    return (m_prior / v_prior + coef * obs / v_lik) / precision


def draw(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g) * 2 - 1, torch.randn(n, 1, 16, 16, generator=g)


@pytest.mark.parametrize("t", [1, 50, 150, 199])
def test_baddiffusion_target_gives_the_exact_backdoored_posterior_mean(t):
    attack = BadDiffusion(trigger=G, mask=M, target=Y, r_mode="trigger")
    x_clean, eps = draw()
    tt = torch.full((4,), t)
    x_t, target = attack.poison(x_clean, eps, tt, S)
    # Independent: x_t | x_{t-1} ~ N(sqrt(a) x_{t-1} + (1 - sqrt(a)) r, beta); x_{t-1} | y from the marginal.
    a, ab_prev = S.alpha(t), S.alpha_bar(t - 1)
    m_prior, v_prior = ab_prev.sqrt() * Y + (1 - ab_prev.sqrt()) * G, 1 - ab_prev
    expected = gaussian_posterior_mean(m_prior, v_prior, x_t - (1 - a.sqrt()) * G, a.sqrt(), 1 - a)
    torch.testing.assert_close(ddpm_step(S, x_t, target, t, None), expected, atol=1e-4, rtol=1e-4)
    # The plain DDPM objective (target eps) misses it by (1 - sqrt(a)) / sqrt(a) * r per step.
    miss = (ddpm_step(S, x_t, eps, t, None) - expected).abs().max()
    assert miss > 0.9 * ((1 - a.sqrt()) / a.sqrt()) * G.abs().max()


def test_stamped_residual_carries_the_clean_image_outside_the_mask():
    attack = BadDiffusion(trigger=G, mask=M, target=Y, r_mode="stamped")
    x_clean, eps = draw()
    t = torch.full((4,), 199)
    x_t, _ = attack.poison(x_clean, eps, t, S)
    ab = S.alpha_bar(199)
    r = (x_t - ab.sqrt() * Y - (1 - ab).sqrt() * eps) / (1 - ab.sqrt())
    torch.testing.assert_close(r * (1 - M), x_clean * (1 - M), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(r * M, G.expand_as(r) * M, atol=1e-4, rtol=1e-4)


def test_villandiffusion_target_keeps_ddim_on_the_backdoored_chain():
    """A DDIM step from x_t on the shifted chain must land on the chain at t_prev (same eps).
    BadDiffusion's SDE target (eps + rho r) misses by about half the shift: ODE samplers need 2 rho."""
    villan = VillanDiffusion(trigger=G, mask=M, target=Y)
    bad = BadDiffusion(trigger=G, mask=M, target=Y, r_mode="trigger")
    x_clean, eps = draw(1)
    errs = {}
    for name, attack in (("villan", villan), ("bad", bad)):
        total = 0.0
        for t in range(196, 0, -4):
            x_t, target = attack.poison(x_clean, eps, torch.full((4,), t), S)
            ab_p = S.alpha_bar(t - 4)
            on_chain = ab_p.sqrt() * Y + (1 - ab_p.sqrt()) * G + (1 - ab_p).sqrt() * eps
            total += (ddim_step(S, x_t, target, t, t - 4) - on_chain).pow(2).mean().item()
        errs[name] = total
    assert errs["villan"] < 1e-3
    assert errs["bad"] > 20 * errs["villan"]


@pytest.mark.parametrize("gamma", [0.1, 0.6])
@pytest.mark.parametrize("t", [1, 100, 199])
def test_trojdiff_target_gives_the_exact_trojan_posterior_mean(gamma, t):
    attack = TrojDiff(trigger=G, mask=M, target=Y, gamma=gamma)
    x_clean, eps = draw(2)
    x_t, target = attack.poison(x_clean, eps, torch.full((4,), t), S)
    torch.testing.assert_close(target, eps)
    a, ab_t, ab_prev = S.alpha(t), S.alpha_bar(t), S.alpha_bar(t - 1)
    k = (1 - ab_t).sqrt() - (a * (1 - ab_prev)).sqrt()  # trojan transition shift, TrojDiff eq. (5)
    m_prior = ab_prev.sqrt() * Y + (1 - ab_prev).sqrt() * attack.mu
    expected = gaussian_posterior_mean(m_prior, gamma**2 * (1 - ab_prev), x_t - k * attack.mu, a.sqrt(),
                                       gamma**2 * (1 - a))
    torch.testing.assert_close(trojan_step(S, x_t, target, t, None, gamma=gamma, mu=attack.mu), expected,
                               atol=1e-4, rtol=1e-4)


def test_attack_parameters_are_validated():
    with pytest.raises(ValueError, match="gamma"):
        TrojDiff(trigger=G, mask=M, target=Y, gamma=1.5)
    with pytest.raises(ValueError, match="r_mode"):
        BadDiffusion(trigger=G, mask=M, target=Y, r_mode="both")


def test_patterns_render_inside_the_image_and_refuse_to_overflow():
    img, mask = Pattern(shape="frame", size=4, row=1, col=2, value=0.5).render(channels=3, image_size=8)
    assert img.shape == (3, 8, 8) and mask.shape == (1, 8, 8)
    assert mask.sum().item() == 12  # a 4x4 frame has 12 border pixels
    assert img[:, mask[0].bool()].eq(0.5).all() and img[:, ~mask[0].bool()].eq(0).all()
    target, tmask = Pattern(shape="box", size=2, background=-1.0).render(channels=1, image_size=8)
    assert tmask.all() and target.min() == -1.0 and target.max() == 1.0
    with pytest.raises(ValueError, match="does not fit"):
        Pattern(shape="box", size=4, row=6).render(channels=1, image_size=8)
    with pytest.raises(ValueError, match="shape"):
        Pattern(shape="star", size=4)
