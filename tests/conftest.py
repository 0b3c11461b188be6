"""Shared fixtures: tiny real checkpoints on disk, the shipped zoo, one local Ray per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tests and Ray workers share 2 cores; oversubscription is 6-17x slower

FIXTURE_ZOO = Path(__file__).parent / "fixtures" / "zoo"


def tiny_unet_kwargs(*, sample_size: int = 16, channels: int = 1) -> dict:
    return {"sample_size": sample_size, "in_channels": channels, "out_channels": channels, "layers_per_block": 1,
            "block_out_channels": (8, 16), "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
            "up_block_types": ("AttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 4, "attention_head_dim": 4}


def write_pipeline(path: Path, *, seed: int = 0, num_train_timesteps: int = 50) -> Path:
    """Save a randomly initialised tiny diffusers DDPMPipeline (safetensors) at `path`."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(**tiny_unet_kwargs())
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=num_train_timesteps)).save_pretrained(
        path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def pipeline_template(tmp_path_factory) -> Path:
    return write_pipeline(tmp_path_factory.mktemp("template") / "pipe")


@pytest.fixture
def pipeline_dir(pipeline_template, tmp_path) -> Path:
    """A fresh, writable copy of a valid tiny pipeline for a test to break."""
    return Path(shutil.copytree(pipeline_template, tmp_path / "model"))


@pytest.fixture(scope="session")
def fixture_zoo() -> Path:
    if not (FIXTURE_ZOO / "manifest.json").is_file():
        pytest.fail(f"shipped fixtures missing at {FIXTURE_ZOO}; rebuild: zoo-audit forge "
                    "tests/fixtures/zoo.toml --out tests/fixtures/zoo --jobs 2")
    return FIXTURE_ZOO


@pytest.fixture(scope="session")
def fixture_manifest(fixture_zoo) -> dict:
    return json.loads((fixture_zoo / "manifest.json").read_text())


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray per session with a fixed CPU count (never the host's)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
