"""Shared fixtures: tiny real checkpoints on disk, the shipped zoo, one local Ray per session."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tests and Ray workers share 2 cores; oversubscription is 6-17x slower
# Fake credentials for the moto S3 server, set before any Ray starts so its workers inherit them.
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "RAY_ADDRESS"):
    os.environ.pop(_var, None)
ROOT = Path(__file__).resolve().parents[1]

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

    if not ray.is_initialized():  # a CLI test may have started it first, with the same 2 CPUs
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_s3():
    """A moto S3 server subprocess on loopback (infra/local/moto-s3.sh); yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(["bash", str(ROOT / "infra" / "local" / "moto-s3.sh"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"moto server did not start on {endpoint}")
            time.sleep(0.2)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


def upload_dir(client, local: Path, bucket: str, prefix: str) -> None:
    for p in sorted(local.rglob("*")):
        if p.is_file():
            client.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(local).as_posix()}")


@pytest.fixture
def s3_zoo(moto_s3, fixture_zoo):
    """A fresh bucket holding the fixture models under models/; yields (bucket, endpoint, client)."""
    from scanner.store import S3Options, s3_client

    client = s3_client(S3Options(endpoint_url=moto_s3))
    bucket = f"zoo-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    upload_dir(client, fixture_zoo / "models", bucket, "models")
    return bucket, moto_s3, client
