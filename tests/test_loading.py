"""Safe loading: every failure category on a real file, and no pickle is ever executed."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from scanner.checkpoint import LoadError, describe_checkpoint, find_checkpoints, inventory, load_checkpoint

WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"


class _Payload:
    """Unpickling this writes `marker`: proof of code execution if a loader ever unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


def plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))


def assert_load_error(path: Path, category: str, names: str) -> LoadError:
    with pytest.raises(LoadError) as info:
        load_checkpoint(path)
    assert info.value.category == category, str(info.value)
    assert names in info.value.path or names in info.value.reason, str(info.value)
    return info.value


def test_valid_pipeline_loads_with_inventory_and_sha256(pipeline_dir):
    ckpt = load_checkpoint(pipeline_dir)
    assert ckpt.inventory.kind == "pipeline"
    assert ckpt.schedule.num_timesteps == 50
    (w,) = ckpt.inventory.weights
    assert w.sha256 == hashlib.sha256((pipeline_dir / WEIGHTS).read_bytes()).hexdigest()
    assert not any(p.requires_grad for p in ckpt.unet.parameters())


def test_bare_unet_directory_loads_with_default_schedule(pipeline_dir):
    ckpt = load_checkpoint(pipeline_dir / "unet")
    assert ckpt.inventory.kind == "unet" and ckpt.schedule.num_timesteps == 1000


def test_truncated_safetensors_is_corrupt(pipeline_dir):
    f = pipeline_dir / WEIGHTS
    f.write_bytes(f.read_bytes()[:-1000])
    err = assert_load_error(pipeline_dir, "corrupt", "diffusion_pytorch_model.safetensors")
    assert "truncated" in err.reason


def test_pickle_only_checkpoint_is_refused_and_never_executed(pipeline_dir, tmp_path):
    marker = tmp_path / "pwned"
    (pipeline_dir / WEIGHTS).unlink()
    plant_pickle(pipeline_dir / "unet" / "diffusion_pytorch_model.bin", marker)
    assert_load_error(pipeline_dir, "unsafe_format", "diffusion_pytorch_model.bin")
    assert describe_checkpoint(pipeline_dir)["error_category"] == "unsafe_format"
    assert not marker.exists()
    pickle.loads((pipeline_dir / "unet" / "diffusion_pytorch_model.bin").read_bytes())  # the payload is live:
    assert marker.exists()  # unpickling runs it, so the absence above means something


def test_pickle_named_safetensors_is_refused_and_never_executed(pipeline_dir, tmp_path):
    marker = tmp_path / "pwned"
    plant_pickle(pipeline_dir / WEIGHTS, marker)
    assert_load_error(pipeline_dir, "unsafe_format", "diffusion_pytorch_model.safetensors")
    assert not marker.exists()


def test_pickle_beside_safetensors_is_ignored_with_a_warning(pipeline_dir, tmp_path):
    marker = tmp_path / "pwned"
    plant_pickle(pipeline_dir / "unet" / "diffusion_pytorch_model.bin", marker)
    ckpt = load_checkpoint(pipeline_dir)
    assert ckpt.warnings == ["ignored pickle file unet/diffusion_pytorch_model.bin (never unpickled)"]
    assert not marker.exists()


@pytest.mark.parametrize(("key", "value", "names"), [
    ("sample_size", 10**6, "sample_size"),
    ("block_out_channels", [8, 10**7], "block_out_channels"),
    ("in_channels", 0, "in_channels"),
    ("down_block_types", ["DownBlock2D", "EvilBlock"], "EvilBlock"),
    ("_class_name", "UNet2DConditionModel", "UNet2DConditionModel"),
    ("norm_num_groups", 3, "norm_num_groups"),
])
def test_bad_unet_config_is_refused_before_allocation(pipeline_dir, key, value, names):
    cfg_path = pipeline_dir / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg[key] = value
    cfg_path.write_text(json.dumps(cfg))
    err = assert_load_error(pipeline_dir, "bad_config", names)
    assert err.path.endswith("config.json")


def test_bad_scheduler_config_is_refused(pipeline_dir):
    p = pipeline_dir / "scheduler" / "scheduler_config.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "num_train_timesteps": 10**9}))
    assert_load_error(pipeline_dir, "bad_config", "num_train_timesteps")


def test_unparsable_model_index_is_bad_config(pipeline_dir):
    (pipeline_dir / "model_index.json").write_text("{not json")
    assert_load_error(pipeline_dir, "bad_config", "model_index.json")


def test_missing_weights_is_missing_file(pipeline_dir):
    (pipeline_dir / WEIGHTS).unlink()
    assert_load_error(pipeline_dir, "missing_file", "unet")


def test_missing_scheduler_config_is_missing_file(pipeline_dir):
    (pipeline_dir / "scheduler" / "scheduler_config.json").unlink()
    assert_load_error(pipeline_dir, "missing_file", "scheduler_config.json")


def test_weights_lacking_a_tensor_are_corrupt_not_silently_initialised(pipeline_dir):
    f = pipeline_dir / WEIGHTS
    state = load_file(f)
    state.pop(sorted(state)[0])
    save_file(state, f)
    err = assert_load_error(pipeline_dir, "corrupt", "missing")
    assert sorted(load_file(f)) != [] and "unet" in err.path


def test_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_load_error(tmp_path, "not_a_model", "model_index.json")
    assert_load_error(tmp_path / "notes.txt", "not_a_model", "notes.txt")


def test_load_error_survives_pickling_with_its_payload():
    err = LoadError("corrupt", "/zoo/m", "truncated")
    back = pickle.loads(pickle.dumps(err))
    assert (back.category, back.path, back.reason, str(back)) == ("corrupt", "/zoo/m", "truncated", str(err))
    assert back.to_dict() == {"category": "corrupt", "path": "/zoo/m", "reason": "truncated"}
    with pytest.raises(ValueError, match="category"):
        LoadError("oops", "/x", "y")


def test_describe_returns_rows_for_good_and_bad(pipeline_dir, tmp_path):
    good = describe_checkpoint(pipeline_dir)
    assert good["status"] == "ok" and good["parameters"] > 0 and good["error"] is None
    bad = describe_checkpoint(tmp_path / "nowhere")
    assert bad["status"] == "error" and bad["error_category"] == "not_a_model" and "nowhere" in bad["error"]


def test_find_checkpoints_lists_pipelines_bare_unets_and_weight_dirs(pipeline_dir, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(pipeline_dir, zoo / "a" / "pipe")
    shutil.copytree(pipeline_dir / "unet", zoo / "b" / "bare-unet")
    (zoo / "c" / "pickled").mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, zoo / "c" / "pickled" / "model.ckpt")
    (zoo / "d").mkdir()
    assert find_checkpoints(zoo) == [zoo / "a" / "pipe", zoo / "b" / "bare-unet", zoo / "c" / "pickled"]
    assert inventory(zoo / "a" / "pipe").unet_dir == str(zoo / "a" / "pipe" / "unet")
    assert describe_checkpoint(zoo / "c" / "pickled")["error_category"] == "unsafe_format"
