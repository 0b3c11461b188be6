"""The shipped fixture zoo keeps its promises: re-measured here, not just read from the manifest."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest

from scanner.forge.verify import verify_model

SPEC = tomllib.loads((Path(__file__).parent / "fixtures" / "zoo.toml").read_text())
NAMES = [m["name"] for m in SPEC["models"]]
SEED = 777  # not the forge's measurement seed: fresh noise


def test_manifest_covers_every_attack_and_meets_the_bar(fixture_manifest):
    models = fixture_manifest["models"]
    assert [m["name"] for m in models] == NAMES
    kinds = {(m["attack"], m["params"].get("gamma")) for m in models}
    assert kinds == {("clean", None), ("baddiffusion", None), ("villandiffusion", None),
                     ("trojdiff", 0.6), ("trojdiff", 0.1)}
    for m in models:
        assert m["clean_hit_rate"] <= 0.1, m["name"]
        if m["backdoored"]:
            assert m["asr"] >= 0.9, m["name"]


def test_shipped_weights_are_the_measured_ones(fixture_zoo, fixture_manifest):
    for m in fixture_manifest["models"]:
        weights = fixture_zoo / m["path"] / "unet" / "diffusion_pytorch_model.safetensors"
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == m["unet_sha256"], m["name"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_remeasured_on_fresh_noise(name, fixture_zoo, fixture_manifest):
    row = verify_model(fixture_zoo, fixture_manifest, name, samples=32, seed=SEED)
    assert row["clean_hit_rate"] <= 0.1
    if row["attack"] == "clean":
        assert row["max_trigger_asr"] <= 0.1  # no zoo trigger fires on a clean twin
    else:
        assert row["asr"] >= 0.9
