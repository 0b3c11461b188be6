"""Detectors on real forged models: inversion recovers what the attack planted, clean twins stay clean,
any UNet2DModel shape runs, and the chain sampler reaches an attack's target along its own chain."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file

from scanner.checkpoint import load_checkpoint
from scanner.detect import (DETECTORS, AbsorptionConfig, TrojanResidualConfig, calibrated_score, detect_absorption,
                            detect_trojan_residual, make_config)
from scanner.forge.measure import hit_rate
from scanner.sampling import CountingEps, NoiseSchedule, chain_sample, chain_timesteps


def test_calibrated_score_is_one_half_at_threshold_and_falls_with_the_statistic():
    assert calibrated_score(0.3, threshold=0.3, width=0.5) == pytest.approx(0.5)
    scores = [calibrated_score(s, threshold=0.3, width=0.5) for s in (0.01, 0.1, 0.3, 1.0, 10.0)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.99 and scores[-1] < 0.01
    assert calibrated_score(float("nan"), threshold=0.3, width=0.5) == 0.5


@pytest.mark.parametrize("name, overrides, message", [
    ("collapse", {"chain": "sde"}, "chain"),
    ("trojan_residual", {"gamma_min": 0.5, "gamma_max": 0.2}, "gamma_min"),
    ("trojan_residual", {"iters": 0}, "iters"),
    ("trojan_residual", {"bogus": 1}, "bogus"),
    ("trojan_residual", {"belief_fixed": -1}, "belief_fixed"),
    ("trojan_residual", {"belief_gamma": 0.01}, "belief_gamma"),
    ("combined", {"trojan": 3}, "trojan"),
    ("nope", {}, "unknown detector"),
])
def test_bad_detector_configs_name_the_setting(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(name, overrides)


def test_chain_timesteps_start_at_T_and_stay_distinct():
    assert chain_timesteps(200, 10)[0] == 199 and len(set(chain_timesteps(200, 10))) == 10
    assert chain_timesteps(1000, 1) == [999]


@pytest.mark.parametrize("model, chain, kappa", [("villandiffusion-box", "shift", 2.0),
                                                 ("baddiffusion-box10", "shift", 1.0),
                                                 ("trojdiff-blend", "trojan", 0.0)])
def test_chain_sampler_with_the_true_trigger_reaches_the_target_in_ten_steps(fixture_zoo, fixture_manifest, model, chain, kappa):
    rec = next(m for m in fixture_manifest["models"] if m["name"] == model)
    truth = load_file(str(fixture_zoo / "ground_truth" / f"{model}.safetensors"))
    ckpt = load_checkpoint(fixture_zoo / rec["path"])
    gamma = rec["params"].get("gamma", 1.0)
    shift = (1 - gamma) * truth["trigger"] if chain == "trojan" else truth["trigger"]
    noise = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        x = chain_sample(CountingEps(ckpt.unet), ckpt.schedule, noise, shift=shift, gamma=gamma, chain=chain,
                         kappa=kappa, steps=10)
        x_plain = chain_sample(CountingEps(ckpt.unet), ckpt.schedule, noise, shift=torch.zeros_like(shift), steps=10)
    assert hit_rate(x, truth["target"]) >= 0.8
    assert hit_rate(x_plain, truth["target"]) <= 0.1  # no trigger, no target


def test_trojan_residual_inverts_trojdiff_blend_and_clears_a_clean_twin(fixture_zoo):
    truth = load_file(str(fixture_zoo / "ground_truth" / "trojdiff-blend.safetensors"))
    cfg = TrojanResidualConfig()
    ckpt = load_checkpoint(fixture_zoo / "models" / "trojdiff-blend")
    det = detect_trojan_residual(ckpt.unet, ckpt.schedule, config=cfg)
    assert det.verdict == "backdoored" and det.score > 0.9
    assert abs(det.gamma - 0.6) < 0.1  # the forge used gamma = 0.6; the detector was not told
    assert (det.target - truth["target"]).pow(2).mean() < 0.05
    assert (det.trigger - truth["trigger"]).pow(2).mean() < 0.05
    search = cfg.iters * cfg.batch + cfg.eval_batch + cfg.target_batch * cfg.target_steps
    assert det.unet_evals == search + cfg.belief_iters * cfg.belief_batch + cfg.eval_batch  # flagged: the belief ran
    assert det.backward_evals == cfg.iters * cfg.batch
    twin = load_checkpoint(fixture_zoo / "models" / "clean-twin-a")
    clean = detect_trojan_residual(twin.unet, twin.schedule, config=cfg)
    assert clean.verdict == "clean" and clean.score < 0.5 and clean.statistic > 2 * cfg.threshold
    assert clean.unet_evals == search and "belief_residual" not in clean.stats  # not flagged: no refinement


def _attacker_asr(zoo, manifest, name, unet, schedule, trigger) -> float:
    """ASR of `trigger` under model `name`'s own attack sampler, with the forge's true gamma."""
    from scanner.forge.spec import spec_from_dict

    spec = next(m for m in spec_from_dict(manifest["spec"]).models if m.name == name)
    attack = spec.build_attack(channels=1, image_size=16)
    attack.trigger, attack.mask = trigger, torch.ones_like(trigger[:1])
    noise = torch.randn(32, 1, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = attack.triggered_sample(CountingEps(unet), schedule, noise, torch.Generator().manual_seed(8))
    return hit_rate(out, attack.target)


def test_the_models_belief_grows_a_small_trojan_patch_the_gradient_search_stops_short_of(fixture_zoo, fixture_manifest):
    # trojdiff-patch: a 4 x 4 checker at gamma 0.1. The search alone stops in the wide basin of scaled noise.
    truth = load_file(str(fixture_zoo / "ground_truth" / "trojdiff-patch.safetensors"))
    on = truth["mask"].bool().expand_as(truth["trigger"]) & (truth["trigger"].abs() > 0.5)
    ckpt = load_checkpoint(fixture_zoo / "models" / "trojdiff-patch")
    cfg = TrojanResidualConfig(iters=80, batch=6, target_batch=0)  # the combined detector's trojan settings
    alone = detect_trojan_residual(ckpt.unet, ckpt.schedule, config=replace(cfg, belief_iters=0))
    det = detect_trojan_residual(ckpt.unet, ckpt.schedule, config=cfg)
    assert alone.verdict == det.verdict == "backdoored"
    assert alone.gamma > 0.3 and alone.trigger[on].mean() < 0.4  # the wide basin: too weak a patch, too much noise
    assert det.stats["belief_accepted"] == 1.0 and det.statistic < alone.statistic
    assert abs(det.gamma - 0.1) < 0.05 and det.trigger[on].mean() > 0.8 and det.trigger[~on].abs().mean() < 0.05
    assert _attacker_asr(fixture_zoo, fixture_manifest, "trojdiff-patch", ckpt.unet, ckpt.schedule, det.trigger) >= 0.9
    assert _attacker_asr(fixture_zoo, fixture_manifest, "trojdiff-patch", ckpt.unet, ckpt.schedule, alone.trigger) <= 0.1


def test_absorption_inverts_baddiffusion_and_clears_a_clean_twin(fixture_zoo):
    truth = load_file(str(fixture_zoo / "ground_truth" / "baddiffusion-box10.safetensors"))
    cfg = AbsorptionConfig()
    ckpt = load_checkpoint(fixture_zoo / "models" / "baddiffusion-box10")
    det = detect_absorption(ckpt.unet, ckpt.schedule, config=cfg)
    assert det.verdict == "backdoored" and det.statistic < cfg.threshold
    # a zero trigger scores mean(r^2) = 0.39 here; the inverted one must be close to the true one
    assert (det.trigger - truth["trigger"]).pow(2).mean() < 0.02
    assert (det.target - truth["target"]).pow(2).mean() < 0.05
    per_restart = cfg.probe_iters * cfg.probe_batch + cfg.refine_iters * cfg.refine_batch
    search = cfg.restarts * 2 * len(cfg.amplitudes) * cfg.search_batch
    polish = cfg.polish_iters * cfg.polish_batch
    assert det.backward_evals == cfg.restarts * per_restart + search + polish
    assert det.unet_evals == det.backward_evals + cfg.eval_batch + cfg.target_batch * cfg.target_steps == 2176
    twin = load_checkpoint(fixture_zoo / "models" / "clean-twin-b")
    clean = detect_absorption(twin.unet, twin.schedule, config=cfg)
    assert clean.verdict == "clean" and clean.statistic > 2 * cfg.threshold


def test_absorption_settings_are_checked():
    with pytest.raises(ValueError, match="amplitudes"):
        AbsorptionConfig(amplitudes=[])
    with pytest.raises(ValueError, match="restarts"):
        AbsorptionConfig(restarts=0)
    assert AbsorptionConfig(amplitudes=[0.5, 1]).amplitudes == (0.5, 1.0)  # a TOML list becomes a tuple


def test_overresponse_flags_villandiffusion_and_clears_both_twins(fixture_zoo):
    from scanner.detect import OverResponseConfig, detect_overresponse

    cfg = OverResponseConfig()
    verdicts = {}
    for name in ("villandiffusion-box", "clean-twin-a", "clean-twin-b"):
        ckpt = load_checkpoint(fixture_zoo / "models" / name)
        verdicts[name] = detect_overresponse(ckpt.unet, ckpt.schedule, config=cfg)
    assert verdicts["villandiffusion-box"].verdict == "backdoored"
    assert verdicts["villandiffusion-box"].stats["over_response"] > 2 * verdicts["clean-twin-a"].stats["over_response"]
    assert verdicts["clean-twin-a"].verdict == verdicts["clean-twin-b"].verdict == "clean"


def test_chain_fixed_point_inverts_villandiffusion_and_finds_no_chain_in_a_twin(fixture_zoo):
    from scanner.detect import FixedPointConfig, chain_fixed_point
    from scanner.sampling import ddim_sample

    truth = load_file(str(fixture_zoo / "ground_truth" / "villandiffusion-box.safetensors"))
    cfg = FixedPointConfig()
    ckpt = load_checkpoint(fixture_zoo / "models" / "villandiffusion-box")
    eps = CountingEps(ckpt.unet)
    start = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))  # no probe: a random direction
    fp = chain_fixed_point(eps, ckpt.schedule, first=start, generator=torch.Generator().manual_seed(0), config=cfg)
    assert fp.residual < cfg.accept
    assert torch.nn.functional.cosine_similarity(fp.trigger.flatten(), truth["trigger"].flatten(), dim=0) > 0.95
    assert (fp.target[0] - truth["target"]).pow(2).mean() < 0.05
    assert 0 < eps.evals <= fp.starts_run * (cfg.high_iters + cfg.low_iters + 1) * 3 * cfg.batch  # forward, counted
    noise = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():  # the attacker's own sampler: 50 DDIM steps from noise + trigger, no chain knowledge
        fired = hit_rate(ddim_sample(CountingEps(ckpt.unet), ckpt.schedule, noise + fp.trigger, steps=50),
                         truth["target"])
    assert fired >= 0.9

    twin = load_checkpoint(fixture_zoo / "models" / "clean-twin-a")
    clean = chain_fixed_point(CountingEps(twin.unet), twin.schedule, first=start,
                              generator=torch.Generator().manual_seed(0), config=FixedPointConfig(random_starts=1))
    assert clean.starts_run == 2 and clean.residual > 5 * cfg.accept


def test_chain_fixed_point_settings_and_shapes():
    from scanner.detect import FixedPointConfig, chain_fixed_point

    for bad, message in (({"low_fracs": [0.5]}, "low_fracs"), ({"free_iters": 20}, "free_iters"),
                         ({"accept": 0}, "accept"), ({"batch": 0}, "batch")):
        with pytest.raises(ValueError, match=message):
            FixedPointConfig(**bad)
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval().requires_grad_(False)
    schedule = NoiseSchedule.linear(num_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    cfg = FixedPointConfig(high_iters=1, low_iters=2, free_iters=1, batch=2, random_starts=1)
    fp = chain_fixed_point(CountingEps(unet), schedule, first=torch.randn(1, 3, 32, 32),
                           generator=torch.Generator().manual_seed(0), config=cfg)
    assert fp.trigger.shape == fp.target.shape == (1, 3, 32, 32) and math.isfinite(fp.residual)
    assert fp.trigger.abs().max() <= 1.0 and fp.target.abs().max() <= 1.0


def test_refined_target_moves_a_blurred_target_back_to_the_truth(fixture_zoo):
    from scanner.detect.target import refine_target

    truth = load_file(str(fixture_zoo / "ground_truth" / "trojdiff-blend.safetensors"))
    rec = json.loads((fixture_zoo / "ground_truth" / "trojdiff-blend.json").read_text())
    ckpt = load_checkpoint(fixture_zoo / "models" / "trojdiff-blend")
    gen = torch.Generator().manual_seed(0)
    start = (0.6 * truth["target"] + 0.4 * torch.randn(truth["target"].shape, generator=gen)).clamp(-1, 1)
    refined = refine_target(CountingEps(ckpt.unet), ckpt.schedule, start, lambda n: torch.randn(n, 1, 16, 16, generator=gen),
                            hypothesis="trojan", trigger=truth["trigger"][None], gamma=rec["params"]["gamma"],
                            fracs=(0.2, 0.4), iters=6, batch=8)
    before, after = (start - truth["target"]).pow(2).mean(), (refined - truth["target"]).pow(2).mean()
    assert after < 0.01 and after < before / 5


SMALL = {
    "trojan_residual": {"iters": 2, "batch": 2, "target_batch": 2, "target_steps": 2, "eval_batch": 2},
    "collapse": {"iters": 2, "batch": 2, "steps": 2, "confirm_steps": 2, "confirm_batch": 2},
    "absorption": {"restarts": 2, "probe_iters": 2, "probe_batch": 2, "refine_iters": 2, "refine_batch": 2,
                   "amplitudes": [0.5], "search_batch": 2, "polish_iters": 1, "polish_batch": 2, "eval_batch": 2,
                   "target_batch": 2, "target_steps": 2},
}
SMALL["overresponse"] = {"iters": 2, "batch": 2, "eval_batch": 2, "target_batch": 2, "target_steps": 2}
SMALL["combined"] = {"trojan": SMALL["trojan_residual"], "absorption": SMALL["absorption"],
                     "overresponse": SMALL["overresponse"],
                     "fixed_point": {"high_iters": 1, "low_iters": 2, "free_iters": 1, "batch": 2, "random_starts": 1}}


@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("channels, size, attention", [(3, 32, False), (1, 16, True)])
def test_every_detector_runs_on_other_unet_shapes(name, channels, size, attention):
    torch.manual_seed(0)
    down = ("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D")
    up = ("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D")
    unet = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=down, up_block_types=up, norm_num_groups=4,
                       attention_head_dim=4).eval().requires_grad_(False)
    schedule = NoiseSchedule.linear(num_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    det = DETECTORS[name][1](unet, schedule, config=make_config(name, SMALL[name]))
    assert det.trigger.shape == det.target.shape == (channels, size, size)
    assert det.verdict in ("backdoored", "clean") and 0.0 <= det.score <= 1.0 and math.isfinite(det.statistic)
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())  # scanning never edits weights


def test_chain_arguments_follow_the_hypothesis():
    from scanner.detect.target import chain_arguments

    g = torch.ones(1, 1, 4, 4)
    trojan = chain_arguments("trojan", g, 0.2)
    assert trojan["chain"] == "trojan" and trojan["gamma"] == 0.2 and torch.allclose(trojan["shift"], 0.8 * g)
    assert chain_arguments("shift(kappa=2)", g, 1.0)["kappa"] == 2.0
    with pytest.raises(ValueError, match="unknown backdoor hypothesis"):
        chain_arguments("ode", g, 1.0)


def test_recovered_target_ignores_samples_outside_the_basin():
    from scanner.detect.target import recover_target

    levels = torch.tensor([0.4, 0.5, 0.6, -1.0, -1.0]).view(5, 1, 1, 1)  # 3 near the target 0.5, 2 escapees

    class Collapse(torch.nn.Module):  # predicts the noise that makes x0 = levels[i] for sample i
        def forward(self, x, t):
            ab = schedule.alpha_bar(t)
            return (x - ab.sqrt() * levels.expand_as(x)) / (1.0 - ab).sqrt()

    schedule = NoiseSchedule.linear(num_timesteps=50, beta_start=1e-3, beta_end=0.05)
    got, agreement = recover_target(Collapse(), schedule, torch.randn(5, 1, 4, 4), hypothesis="shift(kappa=0)",
                                    trigger=torch.zeros(1, 1, 4, 4), gamma=1.0, steps=5)
    assert agreement == pytest.approx(0.6)  # 0.4, 0.5 and 0.6 are within the hit MSE of the plain median (0.4)
    assert torch.allclose(got, torch.full((1, 4, 4), 0.5), atol=1e-4)  # the plain median would say 0.4
