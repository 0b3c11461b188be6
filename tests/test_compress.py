"""Compression: width plans, the time-embedding fold, torch-pruning surgery, SPP's diffusion importance,
and `zoo-audit compress` end to end with stock-diffusers loading in a fresh process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from ray_jobs.cli import app
from scanner.compress import CompressConfig, RecoverConfig, compress_checkpoint, count, prune_unet, width_plan
from scanner.compress.timeembed import fold_time_embedding, timestep_features
from scanner.results import COMPRESS_SCHEMA
from scanner.sampling import NoiseSchedule
from scanner.spp import diffusion_spp_importance
from tests.conftest import tiny_unet_kwargs

FAST = {"self_samples": 16, "quality_samples": 16, "sample_steps": 4, "importance_batches": 2, "importance_batch": 4,
        "recover": {"steps": 3, "batch": 4}}


def _config(widths, groups, head_dim=8, attn=("DownBlock2D", "AttnDownBlock2D")):
    return {"block_out_channels": list(widths), "norm_num_groups": groups, "attention_head_dim": head_dim,
            "down_block_types": list(attn), "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}


def test_width_plan_removes_whole_groups_nearest_to_the_sparsity_and_keeps_whole_heads():
    plan = width_plan(_config((16, 32), 8), 0.3)
    assert (plan.removed_groups, plan.new_widths, plan.sparsity) == (2, (12, 24), 0.25)
    assert width_plan(_config((16, 32), 8), 0.5).new_widths == (8, 16)
    # G = 32: 0.3 * 32 = 9.6, but 64 * (32 - k) / 32 must hold whole 8-channel heads, so k is a multiple of 4
    assert width_plan(_config((32, 64), 32), 0.3).removed_groups == 8
    assert width_plan(_config((32, 64), 32, head_dim=None), 0.3).removed_groups == 10
    with pytest.raises(ValueError, match="multiples of norm_num_groups"):
        width_plan(_config((12, 32), 8), 0.3)
    with pytest.raises(ValueError, match="sparsity"):
        width_plan(_config((16, 32), 8), 1.0)


def test_time_embedding_fold_is_exact_at_full_rank_and_reports_its_error_below():
    gen = torch.Generator().manual_seed(0)
    features, weight = torch.randn(50, 6, generator=gen), torch.randn(20, 6, generator=gen)
    table, new_weight, error = fold_time_embedding(features, weight, 6)
    assert error < 1e-6 and torch.allclose(table @ new_weight.T, features @ weight.T, atol=1e-4)
    _, _, lossy = fold_time_embedding(features, weight, 3)
    assert 0.1 < lossy < 1.0


def test_prune_unet_keeps_the_top_scored_units_and_yields_a_stock_unet_of_the_new_widths():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**tiny_unet_kwargs()).eval()  # widths (8, 16), 4 GroupNorm groups, 4-channel heads
    scores = {n: torch.ones_like(p) for n, p in unet.named_parameters()}
    scores["conv_in.weight"] = torch.arange(8.0).repeat_interleave(9).view(8, 1, 3, 3) * 100  # unit u scores ~ u
    small, plan = prune_unet(unet, scores, sparsity=0.25, num_train_timesteps=50)
    assert plan["new_widths"] == [6, 12] and list(small.config.block_out_channels) == [6, 12]
    conv_in = next(g for g in plan["groups"] if g["group"] == "conv_in")
    assert conv_in["unit"] == 2 and conv_in["removed_units"] == [0]  # channels 0, 1: the lowest scores
    assert torch.equal(small.conv_in.weight, unet.conv_in.weight[2:])
    attn = next(g for g in plan["groups"] if g["group"].endswith("attentions.0.to_v"))
    assert attn["unit"] == 4 and len(attn["kept_units"]) == 3  # whole heads
    assert count(small)[0] < 0.75 * count(unet)[0] and count(small)[1] < 0.75 * count(unet)[1]
    # the learned time table reproduces what the original gives linear_1 at every integer timestep
    t = torch.arange(50)
    with torch.no_grad():
        want = unet.time_embedding.linear_1(unet.time_proj(t))
        got = small.time_embedding.linear_1(small.time_proj(t))
    assert small.config.time_embedding_type == "learned" and plan["time_embedding_error"] < 1e-3
    assert torch.allclose(got, want, atol=5e-3)
    assert timestep_features(small, 50).shape == (50, 6)


class _Affine(torch.nn.Module):
    """eps_theta(x, t) = a * x + b: two parameters, an importance checkable by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Parameter(torch.tensor(0.7)), torch.nn.Parameter(torch.tensor(-0.2))

    def forward(self, x, t):
        return SimpleNamespace(sample=self.a * x + self.b)


def test_spp_diffusion_importance_matches_an_independent_finite_difference_computation():
    schedule = NoiseSchedule.linear(num_timesteps=20, beta_start=1e-3, beta_end=0.2)
    x0 = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    model = _Affine()
    omega = diffusion_spp_importance(model, schedule, x0, batches=1, batch=6, generator=torch.Generator().manual_seed(5))
    # the same minibatch, redrawn: x_t, t, eps from the same seed
    from scanner.spp.diffusion import denoising_batches

    x_t, t, eps = next(denoising_batches(schedule, x0, batches=1, batch=6, generator=torch.Generator().manual_seed(5)))

    def info(a: float, b: float) -> float:
        return float(((a * x_t + b - eps) ** 2).mean())

    h, a, b = 1e-4, 0.7, -0.2
    g = {"a": (info(a + h, b) - info(a - h, b)) / (2 * h), "b": (info(a, b + h) - info(a, b - h)) / (2 * h)}
    for name, theta in (("a", a), ("b", b)):
        want = max(0.0, g[name] * theta + 0.5 * theta**2 * g[name] ** 2)
        assert float(omega[name]) == pytest.approx(want, rel=1e-3, abs=1e-7)


def test_compress_checkpoint_writes_a_smaller_pipeline_and_a_full_row(fixture_zoo, tmp_path):
    cfg = CompressConfig(**{**FAST, "sparsity": 0.3})
    row = compress_checkpoint(fixture_zoo / "base", tmp_path / "small", config=cfg)
    assert row["error"] is None, row["error"]
    assert row["params_after"] <= 0.75 * row["params_before"] and row["macs_after"] <= 0.75 * row["macs_before"]
    assert row["channel_sparsity"] == 0.25 and json.loads(row["block_out_channels"]) == [12, 24]
    assert row["quality_before"] > 0 and row["quality_after"] > 0 and row["unet_evals"] == 2 * 4 * 3
    plan = json.loads((tmp_path / "small" / "compress_plan.json").read_text())
    assert plan["new_widths"] == [12, 24] and plan["recover"]["unet_evals"] == 24
    bad = tmp_path / "corrupt" / "unet"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text("{not json")
    failed = compress_checkpoint(bad.parent, tmp_path / "nope", config=cfg)
    assert failed["error"] and str(bad.parent) in failed["error"] and not (tmp_path / "nope").exists()


def test_recover_with_lam_zero_is_plain_distillation_and_lam_holds_weights_closer():
    from diffusers import UNet2DModel

    from scanner.compress import recover

    schedule = NoiseSchedule.linear(num_timesteps=50, beta_start=1e-3, beta_end=0.1)
    x0 = torch.rand(16, 1, 16, 16) * 2 - 1
    torch.manual_seed(0)
    teacher = UNet2DModel(**tiny_unet_kwargs()).eval().requires_grad_(False)
    drift = {}
    for lam in (0.0, 100.0):
        torch.manual_seed(1)
        student = UNet2DModel(**tiny_unet_kwargs())
        start = {n: p.detach().clone() for n, p in student.named_parameters()}
        omega = {n: torch.ones_like(p) for n, p in student.named_parameters()}
        recover(student, teacher, schedule, x0, omega=omega, config=RecoverConfig(steps=5, batch=4, lam=lam, lr=1e-2),
                generator=torch.Generator().manual_seed(2))
        drift[lam] = sum(float((p.detach() - start[n]).pow(2).sum()) for n, p in student.named_parameters())
    assert drift[100.0] < 0.5 * drift[0.0]


@pytest.mark.slow
def test_zoo_audit_compress_end_to_end_loads_in_stock_diffusers_and_resumes(fixture_zoo, tmp_path, ray_local):
    zoo = tmp_path / "zoo"
    shutil.copytree(fixture_zoo / "base", zoo / "base")
    (zoo / "corrupt" / "unet").mkdir(parents=True)
    (zoo / "corrupt" / "unet" / "config.json").write_text("{not json")
    settings = tmp_path / "compress.toml"
    settings.write_text("[compress]\n" + "".join(f"{k} = {v}\n" for k, v in FAST.items() if k != "recover")
                        + "[compress.recover]\nsteps = 3\nbatch = 4\n")
    args = ["compress", str(zoo), "--out", str(tmp_path / "out"), "--config", str(settings), "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output  # one checkpoint failed: errors are rows, the batch goes on
    table = pq.read_table(tmp_path / "out" / "compress", schema=COMPRESS_SCHEMA).to_pylist()
    rows = {Path(r["uri"]).parent.name if Path(r["uri"]).name == "unet" else Path(r["uri"]).name: r for r in table}
    assert set(rows) == {"base", "corrupt"}  # corrupt/unet is found as a bare UNet directory
    assert rows["corrupt"]["error"] and "corrupt" in rows["corrupt"]["error"] and rows["base"]["error"] is None
    assert rows["base"]["compressed_uri"] == str(tmp_path / "out" / "compressed" / "base")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "(2 already done)" in " ".join(again.output.split()), again.output
    assert len(list((tmp_path / "out" / "compress").glob("part-*.parquet"))) == 2
    probe = ("import sys, torch\nfrom diffusers import DDPMPipeline\n"
             "pipe = DDPMPipeline.from_pretrained(sys.argv[1])\n"
             "img = pipe(batch_size=2, num_inference_steps=3, generator=torch.manual_seed(0), output_type='np').images\n"
             "assert 'scanner' not in sys.modules and 'ray_jobs' not in sys.modules\n"
             "print(pipe.unet.config.block_out_channels, img.shape)\n")
    out = subprocess.run([sys.executable, "-c", probe, rows["base"]["compressed_uri"]], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "[12, 24]" in out.stdout and "(2, 16, 16, 1)" in out.stdout
