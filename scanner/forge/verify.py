"""Re-measure a forged model from its files on disk, loaded the way a scanner loads it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from scanner.checkpoint import load_checkpoint
from scanner.forge.build import clean_hit_rate
from scanner.forge.measure import measure_attack
from scanner.forge.spec import spec_from_dict


def verify_model(zoo_dir: str | Path, manifest: dict[str, Any], name: str, *, samples: int,
                 seed: int) -> dict[str, Any]:
    """ASR and clean-hit rate of model `name` on fresh noise (`seed`).

    A clean twin has no ASR of its own; it reports `max_trigger_asr`, the highest ASR any of
    the zoo's attacks reaches on it with that attack's trigger and sampler (should be ~0).
    """
    zoo = spec_from_dict(manifest["spec"])
    model = next((m for m in zoo.models if m.name == name), None)
    if model is None:
        raise KeyError(f"model {name!r} is not in the manifest")
    started = time.perf_counter()
    ckpt = load_checkpoint(Path(zoo_dir) / "models" / name)
    size, ch = zoo.base.sample_size, zoo.base.channels
    row: dict[str, Any] = {"name": name, "attack": model.attack, "samples": samples}
    if model.attack == "clean":
        attacks = [m.build_attack(channels=ch, image_size=size) for m in zoo.models if m.attack != "clean"]
        hit, evals = clean_hit_rate(ckpt.unet, ckpt.schedule, [a.target for a in attacks], samples=samples, seed=seed)
        measured = [measure_attack(ckpt.unet, ckpt.schedule, a, samples=samples, seed=seed) for a in attacks]
        row.update(asr=None, clean_hit_rate=hit, max_trigger_asr=max(m["asr"] for m in measured),
                   unet_evals=evals + sum(m["unet_evals"] for m in measured))
    else:
        attack = model.build_attack(channels=ch, image_size=size)
        row.update(measure_attack(ckpt.unet, ckpt.schedule, attack, samples=samples, seed=seed), max_trigger_asr=None)
    row["seconds"] = time.perf_counter() - started
    return row
