"""Repair: the coupling graph, the quality metric, and `zoo-audit repair` end to end on a real backdoor."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from ray_jobs.cli import app
from scanner.repair import channel_graph, frechet_distance, paired_change, zero_channels
from scanner.results import REPAIR_SCHEMA, write_part
from tests.conftest import tiny_unet_kwargs

SMALL = """
[repair]
quality_samples = 32
clean_samples = 32
candidates = 2
select_samples = 32
[repair.finetune]
steps = 10
batch = 8
"""


def test_channel_graph_lists_internal_channels_and_zeroing_silences_every_coupled_slice():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**tiny_unet_kwargs()).eval()
    graph = channel_graph(unet)
    roots = {ch.name.split("[")[0] for ch in graph.candidates}
    assert roots and all(r.endswith((".conv1", ".to_v")) for r in roots)
    assert graph.total_channels > len(graph.candidates)  # residual-stream groups count but are not candidates
    ch = next(c for c in graph.candidates if c.name.startswith("down_blocks.0.resnets.0.conv1["))
    idx = int(ch.name.split("[")[1].rstrip("]"))
    block = unet.down_blocks[0].resnets[0]
    seen = {}
    block.norm2.register_forward_hook(lambda m, i, o: seen.update(out=o))
    zero_channels([ch])
    unet(torch.randn(2, 1, 16, 16), torch.tensor([3, 3]))
    assert seen["out"][:, idx].abs().max() == 0  # conv1 row, bias, time projection and GroupNorm affine all zeroed
    assert block.conv2.weight[:, idx].abs().max() == 0  # and conv2's input column
    assert seen["out"][:, (idx + 1) % seen["out"].shape[1]].abs().max() > 0


def test_frechet_distance_is_zero_on_equal_sets_and_the_squared_mean_shift_on_shifted_ones():
    a = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + torch.tensor([1.0, 2.0, 0.0, 0.0])) == pytest.approx(5.0, rel=1e-6)
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(a, a[:, :3])


def test_paired_change_is_zero_for_an_unchanged_model_and_brackets_a_real_shift_that_pairing_resolves():
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(2000, 4, generator=gen)
    before = torch.randn(400, 4, generator=gen) + torch.tensor([1.0, 0.0, 0.0, 0.0])  # distance about 1
    assert paired_change(before, before.clone(), reference) == (0.0, 0.0, 0.0)
    after = before + torch.tensor([0.3, 0.0, 0.0, 0.0])  # the same samples, moved further away
    change, low, high = paired_change(before, after, reference, resamples=100)
    exact = frechet_distance(after, reference) / frechet_distance(before, reference) - 1
    assert change == pytest.approx(exact) and 0.5 < change < 0.8  # (1.3^2 - 1) = 0.69 for the mean term
    assert 0.0 < low < change < high
    # Heavy-tailed features, as a CNN's ReLU features are: the distance's finite-sample bias pulls the ratio
    # towards 0 (2,048 samples understate a 50 % change as 43 %), and more so in a resample. A plain percentile
    # interval would lean below the estimate, away from the truth; the basic interval leans up, towards it.
    z = torch.randn(20000, 32, generator=gen)
    skew_before, skew_after, skew_ref = (1.05 * z + 0.1).exp(), (1.05 * z + 0.15).exp(), torch.randn(1800, 32, generator=gen).exp()
    truth = frechet_distance(skew_after, skew_ref) / frechet_distance(skew_before, skew_ref) - 1
    change, low, high = paired_change(skew_before[:2048], skew_after[:2048], skew_ref)
    assert change < truth and high - change > change - low and abs(high - truth) < abs(change - truth)
    with pytest.raises(ValueError, match="equal shapes"):
        paired_change(before, after[:10], reference)


@pytest.mark.slow
def test_digits_classifier_is_a_real_classifier():
    from scanner.repair import digits_classifier

    _, accuracy = digits_classifier(16)
    assert accuracy >= 0.9


def test_repair_turns_an_unreadable_or_stale_finding_into_an_error_row(ray_local, pipeline_template, tmp_path):
    zoo, table = tmp_path / "zoo", tmp_path / "scan"
    for name in ("m", "n"):
        shutil.copytree(pipeline_template, zoo / name)
    write_part([{"uri": str(zoo / "m"), "verdict": "backdoored", "hypothesis": "trojan", "gamma": 0.5},
                {"uri": str(zoo / "n"), "verdict": "backdoored", "hypothesis": "trojan", "gamma": 0.5,
                 "trigger_path": str(tmp_path / "t.safetensors"), "content_version": "0" * 64},
                {"uri": str(zoo / "gone"), "verdict": "backdoored", "hypothesis": "trojan", "gamma": 0.5}], table)
    result = CliRunner().invoke(app, ["repair", str(zoo), "--out", str(tmp_path / "out"), "--scan-table", str(table)])
    assert result.exit_code == 2, result.output
    rows = {Path(r["uri"]).name: r for r in pq.read_table(tmp_path / "out" / "repair", schema=REPAIR_SCHEMA).to_pylist()}
    assert sorted(rows) == ["gone", "m", "n"] and all(r["repaired_uri"] is None for r in rows.values())
    assert "no trigger_path" in rows["m"]["error"] and rows["m"]["error_category"] == "finding"
    assert "changed since it was scanned" in rows["n"]["error"]
    assert "is not under SOURCE" in rows["gone"]["error"]


@pytest.mark.slow
def test_repair_cli_repairs_the_flagged_model_only_and_stock_diffusers_loads_it(ray_local, fixture_zoo, tmp_path):
    zoo = tmp_path / "zoo"
    for name in ("baddiffusion-box10", "clean-twin-a"):
        shutil.copytree(fixture_zoo / "models" / name, zoo / name)
    config = tmp_path / "repair.toml"
    config.write_text(SMALL)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["repair", str(zoo), "--out", str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / "repair").to_pylist()
    assert [Path(r["uri"]).name for r in rows] == ["baddiffusion-box10"]  # the twin was scanned clean: not written
    row = rows[0]
    assert row["error"] is None and 0 < row["pruning_ratio"] <= 0.02
    assert row["asr_before"] >= 0.5 and row["asr_after"] <= 0.1
    assert sorted(p.name for p in (out / "repaired").iterdir()) == ["baddiffusion-box10"]
    repaired = Path(row["repaired_uri"])
    plan = json.loads((repaired / "repair_plan.json").read_text())
    assert len(plan["pruned"]) == row["pruned_channels"] < plan["candidate_channels"] < row["total_channels"]
    assert [c["seed"] for c in plan["candidates"]] == [0, 1]  # two whole repairs; the row is the kept one's
    assert row["asr_after"] == plan["candidates"][plan["kept"]]["asr_after"]
    code = (  # a fresh interpreter that imports only diffusers: stock loading, then sampling
        "import sys, torch\n"
        "from diffusers import DDPMPipeline, UNet2DModel\n"
        f"pipe = DDPMPipeline.from_pretrained({str(repaired)!r})\n"
        f"UNet2DModel.from_pretrained({str(repaired / 'unet')!r})\n"
        "img = pipe(batch_size=2, num_inference_steps=3, output_type='np').images\n"
        "assert img.shape == (2, 16, 16, 1), img.shape\n"
        "assert not any(m.split('.')[0] in ('scanner', 'ray_jobs') for m in sys.modules)\n"
        "w = pipe.unet.state_dict()\n"
        "print('ok', sum(int((v == 0).all()) for v in w.values()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(repaired / "unet")
    first = plan["pruned"][0]["channel"]
    module_name, idx = first.split("[")[0], int(first.split("[")[1].rstrip("]"))
    assert unet.get_submodule(module_name).weight[int(idx)].abs().max() == 0  # the plan's channel is zero on disk


@pytest.mark.parametrize("distilled_asr, stints", [(0.0, 1), (0.5, 2)])
def test_staged_finetune_unlearns_a_trojan_only_when_the_distilled_model_still_fires(distilled_asr, stints):
    from dataclasses import replace

    from diffusers import UNet2DModel

    from scanner.repair import FinetuneConfig, staged_finetune
    from scanner.sampling import NoiseSchedule

    torch.manual_seed(0)
    unet = UNet2DModel(**tiny_unet_kwargs()).eval().requires_grad_(False)
    teacher = UNet2DModel(**tiny_unet_kwargs()).eval().requires_grad_(False)
    schedule = NoiseSchedule.linear(num_timesteps=50, beta_start=1e-4, beta_end=0.02)
    clean, trigger = torch.rand(8, 1, 16, 16) * 2 - 1, torch.zeros(1, 16, 16)
    trigger[:, :4, :4] = 1.0
    calls: list[int] = []

    def asr() -> tuple[float, int]:
        calls.append(1)
        return distilled_asr, 320

    config = FinetuneConfig(steps=3, batch=2)
    tuned = staged_finetune(unet, teacher, schedule, clean, asr=asr, config=config, hypothesis="trojan",
                            trigger=trigger, gamma=0.5, pruned=[], generator=torch.Generator().manual_seed(0))
    assert calls == [1] and tuned["stints"] == stints and tuned["asr_distilled"] == distilled_asr
    # a distilling step: teacher and student on 2 x batch; an unlearning step adds the student on the clean twins
    # and the teacher on the shifted inputs
    assert tuned["unet_evals"] == 3 * 4 * 2 + (stints - 1) * 3 * 6 * 2 + 320
    for hypothesis, cfg in (("shift(kappa=0)", config), ("trojan", replace(config, distill_first=()))):
        once = staged_finetune(unet, teacher, schedule, clean, asr=asr, config=cfg, hypothesis=hypothesis,
                               trigger=trigger, gamma=0.5, pruned=[], generator=torch.Generator().manual_seed(0))
        assert once["stints"] == 1 and once["unet_evals"] == 3 * 6 * 2  # one stint, unlearning from the start
    assert len(calls) == 1  # only the staged trojan fine-tune asked for the ASR
    assert FinetuneConfig(distill_first=["trojan", "shift"]).distill_first == ("trojan", "shift")
    with pytest.raises(ValueError, match="distill_first"):
        FinetuneConfig(distill_first=("villan",))


def test_finetune_anchor_adds_the_clean_twins_and_the_ema_lags_the_last_step_after_a_warm_up():
    from dataclasses import replace

    from diffusers import UNet2DModel

    from scanner.repair import FinetuneConfig, finetune
    from scanner.sampling import NoiseSchedule

    torch.manual_seed(0)
    teacher = UNet2DModel(**tiny_unet_kwargs()).eval().requires_grad_(False)
    schedule = NoiseSchedule.linear(num_timesteps=50, beta_start=1e-4, beta_end=0.02)
    clean, trigger = torch.rand(8, 1, 16, 16) * 2 - 1, torch.zeros(1, 16, 16)
    trigger[:, :6, :6] = 2.0
    base = FinetuneConfig(steps=6, batch=4, lr=2e-3, anchor=False, ema=0.0)

    def tune(config):
        unet = UNet2DModel(**tiny_unet_kwargs()).eval().requires_grad_(False)
        unet.load_state_dict(teacher.state_dict())
        stats = finetune(unet, teacher, schedule, clean, hypothesis="shift(kappa=0)", trigger=trigger, gamma=1.0,
                         pruned=[], config=config, generator=torch.Generator().manual_seed(0))
        return stats, torch.cat([(p - s).flatten() for p, s in zip(unet.parameters(), teacher.parameters())])

    plain, plain_step = tune(base)
    anchored, anchored_step = tune(replace(base, anchor=True))
    assert plain["unet_evals"] == 6 * 5 * 4 and anchored["unet_evals"] == 6 * 6 * 4  # the twins cost the student n more
    assert plain["backward_evals"] == 6 * 2 * 4 and anchored["backward_evals"] == 6 * 3 * 4
    assert not torch.equal(plain_step, anchored_step)  # the twins enter the loss
    _, ema_step = tune(replace(base, ema=0.95))
    # the average lags the last step, but its warm-up keeps a 6-step fine-tune from being averaged away
    assert 0.5 * plain_step.norm() < ema_step.norm() < 0.98 * plain_step.norm()
    with pytest.raises(ValueError, match="ema"):
        FinetuneConfig(ema=1.0)


def test_directed_unlearning_counts_the_backdoor_direction_fully_and_the_rest_by_across():
    from scanner.repair import FinetuneConfig, finetune
    from scanner.repair.finetune import _unlearn_loss

    torch.manual_seed(0)
    backdoor = torch.randn(3, 1, 8, 8)
    across = torch.randn(3, 1, 8, 8)
    across -= (across * backdoor).sum((1, 2, 3), keepdim=True) / backdoor.pow(2).sum((1, 2, 3), keepdim=True) * backdoor
    along = 0.7 * backdoor
    plain = lambda r: r.pow(2).mean()  # noqa: E731  the undirected loss
    assert torch.allclose(_unlearn_loss(along + across, None, 0.0), plain(along + across))
    assert torch.allclose(_unlearn_loss(along + across, backdoor, 1.0), plain(along + across))
    assert torch.allclose(_unlearn_loss(along + across, backdoor, 0.0), plain(along))  # only the backdoor's direction
    assert torch.allclose(_unlearn_loss(along + across, backdoor, 0.25), plain(along) + 0.25 * plain(across))
    with pytest.raises(ValueError, match="unlearn_across"):
        FinetuneConfig(unlearn_across=1.5)

    from diffusers import UNet2DModel

    from scanner.sampling import NoiseSchedule

    teacher = UNet2DModel(**tiny_unet_kwargs()).eval().requires_grad_(False)
    schedule = NoiseSchedule.linear(num_timesteps=50, beta_start=1e-4, beta_end=0.02)
    clean, trigger = torch.rand(8, 1, 16, 16) * 2 - 1, torch.zeros(1, 16, 16)
    trigger[:, :6, :6] = 2.0
    steps = {}
    for value in (1.0, 0.0):
        unet = UNet2DModel(**tiny_unet_kwargs()).eval().requires_grad_(False)
        unet.load_state_dict(teacher.state_dict())
        config = FinetuneConfig(steps=3, batch=4, ema=0.0, unlearn_across=value)
        stats = finetune(unet, teacher, schedule, clean, hypothesis="shift(kappa=0)", trigger=trigger, gamma=1.0, pruned=[],
                         config=config, generator=torch.Generator().manual_seed(0))
        assert stats["unet_evals"] == 3 * (5 if value == 1.0 else 6) * 4  # the teacher also answers the shifted inputs
        assert stats["unet_evals"] == 3 * config.unlearning_step_evals()  # what the benchmark's equal compute assumes
        steps[value] = torch.cat([(p - s).flatten() for p, s in zip(unet.parameters(), teacher.parameters())])
    assert not torch.equal(steps[1.0], steps[0.0])


@pytest.mark.slow
def test_repair_keeps_the_candidate_nearest_the_data_and_each_candidate_is_the_single_repair_at_its_seed(
        pipeline_template, tmp_path):
    from safetensors.torch import load_file

    from scanner.repair import Finding, FinetuneConfig, RepairConfig, repair_checkpoint
    from scanner.repair.repair import _preferred

    trigger = torch.zeros(1, 16, 16)
    trigger[:, :5, -5:] = 1.5
    finding = Finding(hypothesis="shift(kappa=0)", gamma=1.0, trigger=trigger, target=torch.full((1, 16, 16), -1.0))
    features = lambda x: torch.nn.functional.avg_pool2d(x[:, :1], 8).flatten(1)  # noqa: E731  (N, 4), cheap
    small = dict(clean_samples=8, quality_samples=8, select_samples=16, sample_steps=3, asr_samples=4, asr_steps=2,
                 finetune=FinetuneConfig(steps=2, batch=2))

    def repair(name: str, reference: torch.Tensor | None = None, **settings):
        row = repair_checkpoint(pipeline_template, finding, tmp_path / name, features=features, reference=reference,
                                config=RepairConfig(**small, **settings))
        assert row["error"] is None, row["error"]
        return row, json.loads((tmp_path / name / "repair_plan.json").read_text()), \
            load_file(str(tmp_path / name / "unet" / "diffusion_pytorch_model.safetensors"))

    row, plan, weights = repair("chosen", candidates=2, seed=5)
    tried = plan["candidates"]
    assert [c["seed"] for c in tried] == [5, 6] and all(c["selection_distance"] > 0 for c in tried)
    assert all(c["asr_after"] <= 0.05 for c in tried)  # both silent: the nearer one is kept
    assert plan["kept"] == min((0, 1), key=lambda k: tried[k]["selection_distance"])
    assert _preferred({"asr_after": 0.0, "selection_distance": 9.0}, {"asr_after": 0.5, "selection_distance": 1.0}, 0.05)
    assert not _preferred({"asr_after": 0.5, "selection_distance": 1.0}, {"asr_after": 0.0, "selection_distance": 9.0}, 0.05)
    assert _preferred({"asr_after": 0.3, "selection_distance": 9.0}, {"asr_after": 0.5, "selection_distance": 1.0}, 0.05)
    single, single_plan, single_weights = repair("single", candidates=1, seed=5 + plan["kept"])
    assert single_plan["candidates"] == [{"seed": 5 + plan["kept"], "asr_after": single["asr_after"],
                                          "quality_after": single["quality_after"]}]
    assert weights.keys() == single_weights.keys() and all(torch.equal(weights[k], single_weights[k]) for k in weights)
    assert row["quality_after"] == single["quality_after"] and row["pruned_channels"] == single["pruned_channels"]
    assert row["unet_evals"] == 2 * single["unet_evals"] + 2 * 16 * 3  # both repairs and the choice's samples
    own = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))  # a zoo's own real-image features
    measured, _, measured_weights = repair("own", reference=own, candidates=1, seed=5 + plan["kept"])
    assert all(torch.equal(measured_weights[k], single_weights[k]) for k in weights)  # the same repair,
    assert measured["quality_before"] != single["quality_before"]  # measured against the zoo's own reference
    with pytest.raises(ValueError, match="candidates"):
        RepairConfig(candidates=0)


def _reference_file(path: Path, images: torch.Tensor) -> Path:
    from safetensors.torch import save_file

    save_file({"images": images.contiguous()}, str(path))
    return path


def test_a_named_extractor_and_reference_measure_exactly_as_the_same_functions_passed_in(pipeline_template, tmp_path):
    from scanner.data import load_digits_images
    from scanner.repair import Finding, FinetuneConfig, RepairConfig, repair_checkpoint
    from scanner.repair.quality import pixel_features

    trigger = torch.zeros(1, 16, 16)
    trigger[:, :5, -5:] = 1.5
    finding = Finding(hypothesis="shift(kappa=0)", gamma=1.0, trigger=trigger, target=torch.full((1, 16, 16), -1.0))
    images = load_digits_images(size=16)[0][:300]
    real = _reference_file(tmp_path / "real.safetensors", images)
    small = dict(clean_samples=8, quality_samples=16, select_samples=16, sample_steps=3, asr_samples=4, asr_steps=2,
                 candidates=1, finetune=FinetuneConfig(steps=2, batch=2))
    spec = "scanner.repair.quality:pixel_features"
    named = repair_checkpoint(pipeline_template, finding, tmp_path / "named",
                              config=RepairConfig(**small, features=spec, reference=str(real)))
    passed = repair_checkpoint(pipeline_template, finding, tmp_path / "passed", config=RepairConfig(**small),
                               features=pixel_features, reference=pixel_features(images))
    digits = repair_checkpoint(pipeline_template, finding, tmp_path / "digits", config=RepairConfig(**small))
    assert named["error"] is None and passed["error"] is None and digits["error"] is None, named["error"]
    assert (named["quality_before"], named["quality_after"]) == (passed["quality_before"], passed["quality_after"])
    assert named["quality_before"] != digits["quality_before"]  # not the digits metric
    assert named["sample_mse"] == digits["sample_mse"]  # the same repair, measured another way
    assert json.loads(named["repair_config"])["features"] == spec
    assert json.loads((tmp_path / "named" / "repair_plan.json").read_text())["config"]["reference"] == str(real)

    def error(name: str, **settings) -> str:
        row = repair_checkpoint(pipeline_template, finding, tmp_path / name, config=RepairConfig(**small, **settings))
        assert row["repaired_uri"] is None and not (tmp_path / name).exists()
        return row["error"]

    assert "features 'nosuch.module:f': cannot import nosuch.module" in error("a", features="nosuch.module:f",
                                                                               reference=str(real))
    assert f"reference {tmp_path / 'gone.safetensors'}: cannot read" in error("b", reference=str(tmp_path / "gone.safetensors"))
    loud = _reference_file(tmp_path / "loud.safetensors", images * 255)
    assert "must lie in [-1, 1]" in error("c", features=spec, reference=str(loud))
    wrong = _reference_file(tmp_path / "wrong.safetensors", images[:, 0])
    assert "needs a float tensor 'images' (N >= 2, C, H, W)" in error("d", features=spec, reference=str(wrong))
    with pytest.raises(ValueError, match="`features` needs `reference`"):
        RepairConfig(features=spec)


def test_repair_cli_and_entry_point_refuse_an_unimportable_extractor_before_any_work(tmp_path, capsys):
    config = tmp_path / "repair.toml"
    config.write_text(f'[repair]\nfeatures = "nosuch_pkg:features"\nreference = "{tmp_path / "real.safetensors"}"\n')
    result = CliRunner().invoke(app, ["repair", str(tmp_path / "zoo"), "--out", str(tmp_path / "out"),
                                      "--config", str(config)])
    assert result.exit_code == 4, result.output
    assert "features 'nosuch_pkg:features': cannot import nosuch_pkg" in result.output
    assert not (tmp_path / "out").exists()  # nothing scanned, nothing written
    from ray_jobs.repair import main  # the `ray job submit` entry point stops the same way

    assert main([str(tmp_path / "zoo"), "--out", str(tmp_path / "out"), "--config", str(config)]) == 4
    assert "cannot import nosuch_pkg" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_repair_on_ray_measures_with_the_extractor_and_the_s3_reference_its_settings_name(ray_local, moto_s3,
                                                                                           pipeline_template, tmp_path):
    from safetensors.torch import save_file

    from scanner.data import load_digits_images
    from scanner.repair import Finding, RepairConfig, repair_checkpoint
    from scanner.repair.quality import pixel_features
    from scanner.store import S3Options, s3_client

    zoo, table = tmp_path / "zoo", tmp_path / "scan"
    shutil.copytree(pipeline_template, zoo / "m")
    trigger = torch.zeros(1, 16, 16)
    trigger[:, :5, -5:] = 1.5
    save_file({"trigger": trigger}, str(tmp_path / "trigger.safetensors"))
    save_file({"target": torch.full((1, 16, 16), -1.0)}, str(tmp_path / "target.safetensors"))
    write_part([{"uri": str(zoo / "m"), "verdict": "backdoored", "hypothesis": "shift(kappa=0)", "gamma": 1.0,
                 "trigger_path": str(tmp_path / "trigger.safetensors"),
                 "target_path": str(tmp_path / "target.safetensors")}], table)
    images = load_digits_images(size=16)[0][:300]
    client, bucket = s3_client(S3Options(endpoint_url=moto_s3)), "real-images"
    client.create_bucket(Bucket=bucket)
    client.upload_file(str(_reference_file(tmp_path / "real.safetensors", images)), bucket, "digits.safetensors")
    settings = ("clean_samples = 8\nquality_samples = 16\nsample_steps = 3\nasr_samples = 4\nasr_steps = 2\n"
                "candidates = 1\n")
    config = tmp_path / "repair.toml"
    config.write_text(f'[repair]\n{settings}features = "scanner.repair.quality:pixel_features"\n'
                      f'reference = "s3://{bucket}/digits.safetensors"\n[repair.finetune]\nsteps = 2\nbatch = 2\n')
    result = CliRunner().invoke(app, ["repair", str(zoo), "--out", str(tmp_path / "out"), "--scan-table", str(table),
                                      "--config", str(config), "--endpoint-url", moto_s3])
    assert result.exit_code == 0, result.output
    [row] = pq.read_table(tmp_path / "out" / "repair", schema=REPAIR_SCHEMA).to_pylist()
    finding = Finding(hypothesis="shift(kappa=0)", gamma=1.0, trigger=trigger, target=torch.full((1, 16, 16), -1.0))
    local = RepairConfig(clean_samples=8, quality_samples=16, sample_steps=3, asr_samples=4, asr_steps=2, candidates=1,
                         finetune={"steps": 2, "batch": 2})
    here = repair_checkpoint(zoo / "m", finding, tmp_path / "here", config=local, features=pixel_features,
                             reference=pixel_features(images))
    assert row["error"] is None and here["error"] is None, row["error"]
    # the worker measured with the named extractor against the images in the bucket (the digits metric reads otherwise)
    assert row["quality_before"] == pytest.approx(here["quality_before"], rel=1e-4)
    assert row["quality_after"] == pytest.approx(here["quality_after"], rel=1e-4)
