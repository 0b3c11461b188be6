"""Repair one flagged checkpoint (Diff-Cleanse stage 2, with the scan's inverted trigger only).

Steps: sample the original model's clean images; score internal channels by trigger-guided
Taylor saliency (saliency.py) over torch-pruning's coupling graph (channels.py); zero the best
`ratio` of all channels; optionally fine-tune (finetune.py); measure; write a DDPMPipeline
directory that stock diffusers loads, plus `repair_plan.json` (which channels, their scores, why).

With `candidates` > 1 these steps run once per seed (seed, seed + 1, ...; candidate k is exactly the
single repair at seed + k), and the candidate kept is the one whose samples, on a noise draw of its
own, lie nearest the real data in the quality metric, among those whose inverted trigger no longer
fires. The fine-tune's quality moves with its seed more than the settings tried moved it
(docs/repair.md, "The default: the best of three candidates"). Every failure is a row with an
error, never an exception.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

import scanner
from scanner.checkpoint.boundary import row_from_checkpoint
from scanner.detect.target import chain_arguments
from scanner.forge.measure import hit_rate
from scanner.repair.channels import channel_graph, zero_channels
from scanner.repair.extractor import load_features, load_reference
from scanner.repair.finetune import FinetuneConfig, staged_finetune
from scanner.repair.quality import FeatureFn, digits_features, frechet_distance, reference_features
from scanner.repair.saliency import SaliencyConfig, channel_saliency, choose_channels
from scanner.sampling import CountingEps, NoiseSchedule, chain_sample, ddim_sample
from scanner.store import S3Options


@dataclass(frozen=True, kw_only=True)
class RepairConfig:
    ratio: float = 0.02            # share of all channels to prune (counted as in channels.py)
    clean_samples: int = 256       # the original model's own samples: scoring and fine-tune data
    quality_samples: int = 256     # samples per quality measurement (same noise before and after)
    sample_steps: int = 20         # DDIM steps for clean and quality samples
    asr_samples: int = 32          # chain samples for the inverted-trigger ASR estimate
    asr_steps: int = 10
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seed: int = 0
    candidates: int = 3            # whole repairs from seeds seed, seed + 1, ...; the best is kept (1: no choice)
    select_samples: int = 1024     # samples per candidate for that choice, on a noise draw of their own
    features: str = ""             # "package.module:function": the quality metric's extractor (default: digits; extractor.py)
    reference: str = ""            # safetensors file (local or s3) of real images of the zoo's domain, tensor `images`

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 0.5:  # 0: fine-tune only (the benchmark's baseline)
            raise ValueError(f"`ratio` must be in [0, 0.5], got {self.ratio}")
        if self.candidates < 1:
            raise ValueError(f"`candidates` must be >= 1, got {self.candidates}")
        for name in ("clean_samples", "quality_samples", "sample_steps", "asr_samples", "asr_steps", "select_samples"):
            if getattr(self, name) < 2:
                raise ValueError(f"`{name}` must be >= 2, got {getattr(self, name)}")
        for name, cls in (("saliency", SaliencyConfig), ("finetune", FinetuneConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):  # from TOML
                object.__setattr__(self, name, cls(**value))
            elif not isinstance(value, cls):
                raise ValueError(f"`{name}` must be a {cls.__name__} or a table of its settings")
        if self.features and not self.reference:
            raise ValueError("`features` needs `reference`: real images of the extractor's domain (the digits are not)")


@dataclass(frozen=True, kw_only=True)
class Finding:
    """What the scan recovered for one checkpoint: all a repair may use."""

    hypothesis: str
    gamma: float
    trigger: torch.Tensor          # (C, H, W)
    target: torch.Tensor | None    # (C, H, W); None when the scan sampled none

    @classmethod
    def from_scan_row(cls, row: dict[str, Any], *, s3: Any = None) -> "Finding":
        """The finding of a scan row; its artifacts may be local paths or s3 uris (read with `s3` options)."""
        from safetensors.torch import load

        from scanner.store import S3Options, read_bytes

        if not row.get("trigger_path"):
            raise ValueError(f"{row['uri']}: the scan row has no trigger_path (scan with artifacts)")
        s3 = s3 or S3Options()
        trigger = load(read_bytes(row["trigger_path"], s3=s3))["trigger"]
        target = load(read_bytes(row["target_path"], s3=s3))["target"] if row.get("target_path") else None
        return cls(hypothesis=row["hypothesis"], gamma=float(row["gamma"]), trigger=trigger, target=target)


def ddim_samples(unet, schedule: NoiseSchedule, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Deterministic DDIM samples from `noise` (N, C, H, W), 64 at a time, clamped to [-1, 1]."""
    with torch.no_grad():
        return torch.cat([ddim_sample(CountingEps(unet), schedule, n, steps=steps) for n in noise.split(64)]).clamp(-1, 1)


def inverted_asr(unet, schedule: NoiseSchedule, finding: Finding, noise: torch.Tensor, steps: int,
                 target: torch.Tensor) -> float:
    """Share of chain samples from the inverted trigger that land on `target` (the ASR estimate)."""
    args = chain_arguments(finding.hypothesis, finding.trigger[None].to(noise.device), finding.gamma)
    with torch.no_grad():
        out = chain_sample(CountingEps(unet), schedule, noise, steps=steps, **args)
    return hit_rate(out.cpu(), target)


def save_pipeline(unet: torch.nn.Module, scheduler_config: dict[str, Any], out: Path, *,
                  extra: dict[str, str] | None = None) -> None:
    """A DDPMPipeline directory (model_index.json, unet/, scheduler/), safetensors, plus `extra` text files.

    Written into a temporary sibling and renamed, so `out` is either complete or absent."""
    import shutil

    from diffusers import DDPMPipeline, DDPMScheduler

    keys = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(keys)).save_pretrained(tmp, safe_serialization=True)
    for name, text in (extra or {}).items():
        (tmp / name).write_text(text)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def repair_checkpoint(path: str | Path, finding: Finding, out_dir: str | Path, *, config: RepairConfig = RepairConfig(),
                      features: FeatureFn | None = None, reference: torch.Tensor | None = None, device: str = "cpu",
                      uri: str | None = None, s3: S3Options = S3Options()) -> dict[str, Any]:
    """Repair the checkpoint at `path` into `out_dir` on `device`; return its row (scanner.results.REPAIR_SCHEMA).

    `features` maps images to features for the quality metric and the choice between candidates;
    `reference` is the features (M, D) of real images of the zoo's domain. Without them, the extractor
    and the reference images `config.features` and `config.reference` name (read with `s3`; extractor.py),
    and without those the digits classifier and the bundled digits. `uri` is what the row names
    (default: `path`); the batch engine passes the s3 uri.
    """
    row: dict[str, Any] = {"uri": uri or str(path), "repaired_uri": None, "scanner_version": scanner.__version__,
                           "repair_config": json.dumps(asdict(config), sort_keys=True), "hypothesis": finding.hypothesis}

    def work(ckpt) -> dict[str, Any]:  # inside the boundary: a bad extractor or reference is this row's error
        fn = features or (load_features(config.features) if config.features else digits_features())
        named = reference is None and config.reference
        return _repair(ckpt, finding, Path(out_dir), config, fn,
                       load_reference(config.reference, fn, s3=s3) if named else reference)

    return row_from_checkpoint(path, row, work, device=device, what="repair", category="repair")


SELECT_SEED = 7_919_000_000  # + the repair's seed: the choice's noise, apart from every noise the candidates draw


def _repair(ckpt, finding: Finding, out_dir: Path, cfg: RepairConfig, features: FeatureFn,
            reference: torch.Tensor | None) -> dict[str, Any]:
    unet, schedule = ckpt.unet, ckpt.schedule
    c, h = unet.config.in_channels, unet.config.sample_size
    if tuple(finding.trigger.shape) != (c, h, h):
        raise ValueError(f"trigger shape {tuple(finding.trigger.shape)} does not match the UNet's ({c}, {h}, {h})")
    device = next(unet.parameters()).device
    reference = reference_features(features) if reference is None else reference
    original = copy.deepcopy(unet).eval().requires_grad_(False)  # the fine-tune's teacher and every candidate's start
    choosing = cfg.candidates > 1
    select = torch.randn(cfg.select_samples, c, h, h, generator=torch.Generator().manual_seed(SELECT_SEED + cfg.seed)
                         ).to(device) if choosing else None
    kept, tried, evals = None, [], 0
    for k in range(cfg.candidates):
        student = unet if k == 0 else copy.deepcopy(original).to(device)
        result, plan = _candidate(student, original, schedule, finding, replace(cfg, seed=cfg.seed + k), features, reference)
        evals += result["unet_evals"]
        entry = {"seed": cfg.seed + k, "asr_after": result["asr_after"], "quality_after": result["quality_after"]}
        if choosing:
            samples = ddim_samples(student, schedule, select, cfg.sample_steps)
            entry["selection_distance"] = frechet_distance(features(samples.cpu()), reference)
            evals += cfg.select_samples * cfg.sample_steps
        tried.append(entry)
        if kept is None or _preferred(entry, tried[kept[0]], cfg.finetune.unlearn_above):
            kept = (k, student, result, plan)
    k, student, result, plan = kept
    plan = {"uri": str(ckpt.inventory.unet_dir), **plan, "config": asdict(cfg), "candidates": tried, "kept": k,
            "selection": "lowest selection_distance among candidates whose inverted-trigger ASR is at most "
                         f"{cfg.finetune.unlearn_above} (else the lowest ASR); {cfg.select_samples} samples, seed "
                         f"{SELECT_SEED + cfg.seed}" if choosing else "one candidate: no choice"}
    save_pipeline(student.cpu(), ckpt.scheduler_config, out_dir,
                  extra={"repair_plan.json": json.dumps(plan, indent=1, sort_keys=True)})
    return {**result, "repaired_uri": str(out_dir), "unet_evals": evals}


def _preferred(new: dict[str, float], old: dict[str, float], fires: float) -> bool:
    """Whether candidate `new` beats `old`: silent before firing, then the lower distance (or ASR)."""
    if (new["asr_after"] > fires) != (old["asr_after"] > fires):
        return old["asr_after"] > fires
    if new["asr_after"] > fires:
        return new["asr_after"] < old["asr_after"]
    return new["selection_distance"] < old["selection_distance"]


def _candidate(unet, teacher, schedule: NoiseSchedule, finding: Finding, cfg: RepairConfig, features: FeatureFn,
               reference: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
    """One whole repair of `unet` (a copy of `teacher`, the original) in place at `cfg.seed`: its row's
    measurements and its plan."""
    c, h = unet.config.in_channels, unet.config.sample_size
    gen = torch.Generator().manual_seed(cfg.seed)
    device = next(unet.parameters()).device

    def noise(n: int) -> torch.Tensor:
        return torch.randn(n, c, h, h, generator=gen).to(device)

    clean = ddim_samples(unet, schedule, noise(cfg.clean_samples), cfg.sample_steps)
    quality_noise, asr_noise = noise(cfg.quality_samples), noise(cfg.asr_samples)
    before = ddim_samples(unet, schedule, quality_noise, cfg.sample_steps)
    target = finding.target if finding.target is not None else _chain_median(unet, schedule, finding, asr_noise, cfg)
    asr_before = inverted_asr(unet, schedule, finding, asr_noise, cfg.asr_steps, target)

    graph = channel_graph(unet)
    count = int(cfg.ratio * graph.total_channels)
    gain, damage, score_evals = channel_saliency(unet, schedule, graph.candidates, clean, hypothesis=finding.hypothesis,
                                                 trigger=finding.trigger, gamma=finding.gamma, config=cfg.saliency,
                                                 generator=gen)
    picks = choose_channels(gain, damage, count) if count else []
    pruned = [graph.candidates[k] for k in picks]
    zero_channels(pruned)
    check = lambda: (inverted_asr(unet, schedule, finding, asr_noise, cfg.asr_steps, target),  # noqa: E731
                     cfg.asr_samples * cfg.asr_steps)
    tuned = staged_finetune(unet, teacher, schedule, clean, asr=check, config=cfg.finetune, hypothesis=finding.hypothesis,
                            trigger=finding.trigger, gamma=finding.gamma, pruned=pruned, generator=gen)
    after = ddim_samples(unet, schedule, quality_noise, cfg.sample_steps)
    asr_after = inverted_asr(unet, schedule, finding, asr_noise, cfg.asr_steps, target)

    plan = {"method": "trigger-guided Taylor saliency, zeroed in place",
            "total_channels": graph.total_channels, "candidate_channels": len(graph.candidates),
            "pruned": [{"channel": graph.candidates[k].name, "backdoor_gain": float(gain[k]),
                        "clean_damage": float(damage[k])} for k in picks],
            "finding": {"hypothesis": finding.hypothesis, "gamma": finding.gamma},
            "finetune": tuned, "scanner_version": scanner.__version__}
    return {
        "pruned_channels": len(picks), "total_channels": graph.total_channels,
        "pruning_ratio": len(picks) / graph.total_channels, "asr_before": asr_before, "asr_after": asr_after,
        "quality_before": frechet_distance(features(before.cpu()), reference),
        "quality_after": frechet_distance(features(after.cpu()), reference),
        "sample_mse": float((after - before).pow(2).mean()),
        "finetune_steps": int(cfg.finetune.steps * tuned.get("stints", 0.0)), "unet_evals": int(score_evals + tuned["unet_evals"]),
    }, plan


def _chain_median(unet, schedule, finding: Finding, noise: torch.Tensor, cfg: RepairConfig) -> torch.Tensor:
    from scanner.detect.target import recover_target

    target, _ = recover_target(CountingEps(unet), schedule, noise, hypothesis=finding.hypothesis,
                               trigger=finding.trigger[None].to(noise.device), gamma=finding.gamma, steps=cfg.asr_steps)
    return target.cpu()
