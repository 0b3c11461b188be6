"""The forge end to end on a miniature spec: layout, ground truth outside the models, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ray_jobs.cli import app
from scanner.checkpoint import find_checkpoints, load_checkpoint
from scanner.forge.spec import load_spec, spec_from_dict

MINI = """
samples = 2
[base]
block_out_channels = [8, 16]
norm_num_groups = 4
num_train_timesteps = 20
beta_end = 0.5
steps = 3
batch_size = 8

[[models]]
name = "twin"
attack = "clean"
steps = 2

[[models]]
name = "bd"
attack = "baddiffusion"
steps = 2
poison_rate = 0.5
trigger = { shape = "box", size = 3, row = 13, col = 13 }
target = { shape = "cross", size = 8, row = 4, col = 4, background = -1.0 }

[[models]]
name = "villan"
attack = "villandiffusion"
steps = 2
poison_rate = 0.5
params = { ddim_steps = 5 }
trigger = { shape = "frame", size = 4 }
target = { shape = "box", size = 8, row = 4, col = 4, background = -1.0 }

[[models]]
name = "troj"
attack = "trojdiff"
steps = 2
poison_rate = 0.5
params = { gamma = 0.1 }
trigger = { shape = "checker", size = 4 }
target = { shape = "plus", size = 8, row = 4, col = 4, background = -1.0 }
"""


@pytest.fixture(scope="module")
def mini_zoo(tmp_path_factory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("forge")
    spec = root / "mini.toml"
    spec.write_text(MINI)
    result = CliRunner().invoke(app, ["forge", str(spec), "--out", str(root / "zoo")])
    return root / "zoo", spec, result


def test_forge_writes_loadable_models_and_a_manifest_outside_them(mini_zoo):
    out, _, result = mini_zoo
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["twin", "bd", "villan", "troj"]
    assert find_checkpoints(out / "models") == [out / "models" / n for n in ("bd", "troj", "twin", "villan")]
    for m in manifest["models"]:
        ckpt = load_checkpoint(out / m["path"])
        assert ckpt.schedule.num_timesteps == 20
        assert m["unet_sha256"] == ckpt.inventory.weights[0].sha256
        assert {"asr", "clean_hit_rate", "unet_evals", "poison_rate", "train", "sampler"} <= set(m)
        files = {p.relative_to(out / m["path"]).as_posix() for p in (out / m["path"]).rglob("*") if p.is_file()}
        assert files == {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                         "scheduler/scheduler_config.json"}  # nothing that leaks the ground truth
    by_name = {m["name"]: m for m in manifest["models"]}
    assert by_name["twin"]["asr"] is None and by_name["bd"]["sampler"] == "ddpm"
    assert by_name["villan"]["sampler"] == "ddim" and by_name["troj"]["params"] == {"gamma": 0.1}
    assert by_name["bd"]["unet_evals"] == 2 * 2 * 20  # triggered + benign, 2 samples, 20 steps
    assert (out / "ground_truth" / "bd.safetensors").is_file()
    assert "Zoo manifest" in result.output


def test_forge_rerun_reuses_finished_models(mini_zoo):
    out, spec, _ = mini_zoo
    before = {p: p.stat().st_mtime_ns for p in (out / "models").rglob("*.safetensors")}
    result = CliRunner().invoke(app, ["forge", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("reusing") == 5  # the base and four models
    assert before == {p: p.stat().st_mtime_ns for p in (out / "models").rglob("*.safetensors")}


def test_forge_rerun_with_new_measurement_settings_measures_again_without_training(mini_zoo, tmp_path):
    out, spec, _ = mini_zoo
    before = {p: p.stat().st_mtime_ns for p in (out / "models").rglob("*.safetensors")}
    changed = tmp_path / "changed.toml"
    changed.write_text(spec.read_text().replace("samples = 2", "samples = 3"))
    result = CliRunner().invoke(app, ["forge", str(changed), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("measuring again") == 4
    assert before == {p: p.stat().st_mtime_ns for p in (out / "models").rglob("*.safetensors")}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {m["measure_samples"] for m in manifest["models"]} == {3}
    assert {m["unet_evals"] for m in manifest["models"] if m["name"] == "bd"} == {2 * 3 * 20}


def test_forge_refuses_a_bad_spec_with_usage_exit_code(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MINI.replace('attack = "trojdiff"', 'attack = "trojan-horse"'))
    result = CliRunner().invoke(app, ["forge", str(bad), "--out", str(tmp_path / "z")])
    assert result.exit_code == 4
    assert "trojan-horse" in result.output and "troj" in result.output
    assert not (tmp_path / "z").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "twin"}, "unique"),
    ({"trigger": {"shape": "box", "size": 4, "row": 14}}, "does not fit"),
    ({"target": {"shape": "box", "size": 4}}, "background"),
    ({"poison_rate": 0.0}, "poison_rate"),
    ({"params": {"gamma": 0.1}}, "unknown parameters"),
])
def test_spec_validation_names_the_problem(change, message):
    import tomllib

    raw = tomllib.loads(MINI)
    raw["models"][1].update(change)
    with pytest.raises(ValueError, match=message):
        spec_from_dict(raw)


def test_shipped_spec_parses_and_covers_every_attack():
    spec = load_spec(Path(__file__).parent / "fixtures" / "zoo.toml")
    attacks = {m.attack for m in spec.models}
    assert attacks == {"clean", "baddiffusion", "villandiffusion", "trojdiff"}
    gammas = sorted(m.params["gamma"] for m in spec.models if m.attack == "trojdiff")
    assert gammas == [0.1, 0.6]  # a patch and a blend trigger
