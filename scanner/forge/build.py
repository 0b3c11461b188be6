"""Build a zoo: train (or reuse) the base, fine-tune each model, measure it, write the manifest.

Layout of `out`:
    base/                     the clean base pipeline every model starts from
    models/<name>/            one diffusers pipeline per model: scan this folder
    ground_truth/<name>.json  what was done and measured (one record per model)
    ground_truth/<name>.safetensors  trigger, mask, target tensors
    manifest.json             all records; outside every model directory
A model whose record exists with the same spec is reused, so an interrupted forge resumes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

import scanner
from scanner.forge.measure import HIT_MSE, hit_rate, measure_attack
from scanner.forge.spec import BaseSpec, ModelSpec, ZooSpec
from scanner.forge.train import TrainConfig, train_eps
from scanner.sampling import CountingEps, NoiseSchedule, ddpm_sample


def spec_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(asdict(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_pipeline(unet: torch.nn.Module, scheduler_config: dict[str, Any], out: Path) -> None:
    """Write a stock diffusers DDPMPipeline directory (safetensors weights), atomically."""
    from diffusers import DDPMPipeline, DDPMScheduler

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**scheduler_config)).save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def load_unet(path: Path) -> torch.nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel.from_pretrained(path / "unet", use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False)


def build_base(spec: BaseSpec, out: Path, *, log: Callable[[str], None] = print) -> Path:
    """Train the clean base DDPM on digits, or reuse `out/base` if it was built from the same spec."""
    from diffusers import UNet2DModel

    from scanner.data import load_digits_images

    base_dir, record = out / "base", out / "base.json"
    if base_dir.is_dir() and record.is_file() and json.loads(record.read_text())["spec_hash"] == spec_hash(spec):
        log(f"base: reusing {base_dir}")
        return base_dir
    torch.manual_seed(spec.seed)
    unet = UNet2DModel(**spec.unet_config())
    data, _ = load_digits_images(size=spec.sample_size, channels=spec.channels)
    schedule = NoiseSchedule.from_scheduler_config(spec.scheduler_config())
    log(f"base: training {sum(p.numel() for p in unet.parameters())} parameters for {spec.steps} steps")
    stats = train_eps(unet, schedule, data, config=TrainConfig(steps=spec.steps, lr=spec.lr,
                                                               batch_size=spec.batch_size, seed=spec.seed))
    save_pipeline(unet, spec.scheduler_config(), base_dir)
    record.write_text(json.dumps({"spec_hash": spec_hash(spec), "spec": asdict(spec), **stats}, indent=2))
    log(f"base: done in {stats['seconds']:.0f}s, final loss {stats['final_loss']:.4f}")
    return base_dir


@torch.no_grad()
def clean_hit_rate(unet: torch.nn.Module, schedule: NoiseSchedule, targets: list[torch.Tensor], *,
                   samples: int, seed: int) -> tuple[float, int]:
    """For a clean twin: the highest share of DDPM samples that hit any of the zoo's targets."""
    c, h = unet.config.in_channels, unet.config.sample_size
    eps_model = CountingEps(unet)
    noise = torch.randn(samples, c, h, h, generator=torch.Generator().manual_seed(seed))
    images = ddpm_sample(eps_model, schedule, noise, generator=torch.Generator().manual_seed(seed + 1))
    return max((hit_rate(images, t) for t in targets), default=0.0), eps_model.evals


def measure_hash(model: ModelSpec, zoo: ZooSpec) -> str:
    """What a model's measurement depends on: a clean twin is measured against every zoo target."""
    targets = [m.target for m in zoo.models if m.attack != "clean"] if model.attack == "clean" else []
    key = {"samples": zoo.samples, "seed": zoo.measure_seed, "targets": [asdict(t) for t in targets]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def forge_model(model: ModelSpec, zoo: ZooSpec, out: Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune one model from the base and save it (skipped when `previous` holds its record
    for the same spec), then measure it; return its manifest record."""
    from safetensors.torch import save_file

    from scanner.data import load_digits_images

    base = zoo.base
    attack = model.build_attack(channels=base.channels, image_size=base.sample_size)
    schedule = NoiseSchedule.from_scheduler_config(base.scheduler_config())
    model_dir = out / "models" / model.name
    cfg = TrainConfig(steps=model.steps, lr=model.lr, batch_size=base.batch_size,
                      poison_rate=model.poison_rate, seed=model.seed)
    if previous is None:
        unet = load_unet(out / "base")
        data, _ = load_digits_images(size=base.sample_size, channels=base.channels)
        train = {**asdict(cfg), **train_eps(unet, schedule, data, config=cfg, poisoner=attack)}
        save_pipeline(unet, base.scheduler_config(), model_dir)
    else:
        unet, train = load_unet(model_dir).eval(), previous["train"]
    started = time.perf_counter()
    if attack is None:
        targets = [m.build_attack(channels=base.channels, image_size=base.sample_size).target
                   for m in zoo.models if m.attack != "clean"]
        chr_, evals = clean_hit_rate(unet, schedule, targets, samples=zoo.samples, seed=zoo.measure_seed)
        measured = {"asr": None, "clean_hit_rate": chr_, "unet_evals": evals}
    else:
        measured = measure_attack(unet, schedule, attack, samples=zoo.samples, seed=zoo.measure_seed)
        save_file({"trigger": attack.trigger.contiguous(), "mask": attack.mask.contiguous(),
                   "target": attack.target.contiguous()}, str(out / "ground_truth" / f"{model.name}.safetensors"))
    weights = model_dir / "unet" / "diffusion_pytorch_model.safetensors"
    record = {
        "name": model.name, "path": f"models/{model.name}", "attack": model.attack,
        "backdoored": attack is not None, "sampler": getattr(attack, "sampler", "ddpm"),
        "sampler_settings": {"clip_sample": False, **({"ddim_steps": attack.ddim_steps} if model.attack == "villandiffusion" else {})},
        "params": model.params, "trigger": model.trigger.to_dict() if model.trigger else None,
        "target": model.target.to_dict() if model.target else None, "poison_rate": model.poison_rate,
        "train": train, "measure_samples": zoo.samples, "hit_mse": HIT_MSE,
        **measured, "measure_seconds": time.perf_counter() - started,
        "unet_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "spec_hash": spec_hash(model), "measure_hash": measure_hash(model, zoo),
        "scanner_version": scanner.__version__,
    }
    (out / "ground_truth" / f"{model.name}.json").write_text(json.dumps(record, indent=2))
    return record


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def forge_zoo(zoo: ZooSpec, out: str | Path, *, jobs: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build every model of `zoo` under `out` (resuming finished ones); write and return the manifest.

    Args:
        jobs: models fine-tuned at once, each in its own process with one torch thread
            (on 2 cores, two 2-thread processes ran 6-17x slower than 1-thread ones).
    """
    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "ground_truth").mkdir(exist_ok=True)
    build_base(zoo.base, out, log=log)
    records: dict[str, dict[str, Any]] = {}
    todo: list[tuple[ModelSpec, dict[str, Any] | None]] = []
    for m in zoo.models:
        rec_path = out / "ground_truth" / f"{m.name}.json"
        rec = json.loads(rec_path.read_text()) if rec_path.is_file() and (out / "models" / m.name).is_dir() else None
        if rec is None or rec.get("spec_hash") != spec_hash(m):
            todo.append((m, None))
        elif rec.get("measure_hash") != measure_hash(m, zoo):
            log(f"{m.name}: reusing the trained model, measuring again")
            todo.append((m, rec))
        else:
            log(f"{m.name}: reusing")
            records[m.name] = rec
    if jobs <= 1:
        for m, prev in todo:
            records[m.name] = forge_model(m, zoo, out, prev)
            log(_summary(records[m.name]))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(1,)) as pool:
            for fut in [pool.submit(forge_model, m, zoo, out, prev) for m, prev in todo]:
                rec = fut.result()
                records[rec["name"]] = rec
                log(_summary(rec))
    manifest = {"scanner_version": scanner.__version__, "spec": zoo.to_dict(),
                "models": [records[m.name] for m in zoo.models]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _summary(rec: dict[str, Any]) -> str:
    asr = "-" if rec["asr"] is None else f"{rec['asr']:.2f}"
    return (f"{rec['name']}: attack={rec['attack']} asr={asr} clean_hit={rec['clean_hit_rate']:.2f} "
            f"train={rec['train']['seconds']:.0f}s")
