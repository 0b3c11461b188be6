"""Repair benchmark: scan, then repair every backdoored model of a forged zoo three ways; print the tables docs/repair.md quotes.

    .venv/bin/python benchmarks/repair.py                      # the benchmark zoo (forged first if missing)
    .venv/bin/python benchmarks/repair.py --zoo tests/fixtures/zoo
    .venv/bin/python benchmarks/repair.py --models bd-box10 --config trial.toml --variants prune+ft   # a trial

Per backdoored model: the *true* trigger's ASR under the attacker's own sampler (ground truth
from the forge manifest, used only to measure) before and after repair; the digits Frechet
distance (scanner/repair/quality.py) of `--quality-samples` 20-step DDIM samples from one noise
draw, before and after, with a 90 % paired-bootstrap interval of its relative change; the
per-pixel MSE between those samples; % channels pruned; UNet evaluations and seconds. The
benchmark measures quality itself, on the repaired checkpoint as loaded from disk, with more
samples than the repair's own 256 (docs/repair.md: at 256 the distance cannot resolve 10 %).
Every variant keeps the best of the repair's `candidates` (three by default; the table names the kept
seed), chosen on the repair's own noise, never on the benchmark's. Variants, all from the scan's
inverted trigger:
  prune      zero `ratio` of the channels, no fine-tune;
  prune+ft   the default: prune, then the fine-tune of scanner/repair/finetune.py;
  ft-only    no pruning; the same fine-tune with extra steps for the scoring's UNet evaluations
             (equal compute), so the pruning claim is tested, not assumed.
Models run in `--jobs` processes with one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import tempfile
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import BENCH_ZOO, ensure_zoo, trigger_asr  # noqa: E402  (benchmarks/ is a folder of scripts)


def run_one(zoo: Path, manifest: dict[str, Any], rec: dict[str, Any], seed: int, settings: dict[str, Any],
            quality_samples: int, names: tuple[str, ...], repair_seed: int) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    from diffusers import UNet2DModel
    from safetensors.torch import load_file

    from scanner.checkpoint import load_checkpoint
    from scanner.repair import Finding, RepairConfig, repair_checkpoint
    from scanner.repair.quality import digits_features, frechet_distance, paired_change, reference_features
    from scanner.repair.repair import ddim_samples
    from scanner.scan import scan_checkpoint

    path = zoo / rec["path"]
    truth = load_file(str(zoo / "ground_truth" / f"{rec['name']}.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        scan = scan_checkpoint(path, artifacts=Path(tmp) / "artifacts")
        if scan["verdict"] != "backdoored":
            return [{"name": rec["name"], "attack": rec["attack"], "variant": "-", "error": f"scan said {scan['verdict']}"}]
        finding = Finding.from_scan_row(scan)
        ckpt = load_checkpoint(path)
        before = trigger_asr(ckpt.unet, ckpt.schedule, manifest, rec["name"], truth["trigger"], samples=32, seed=7)
        c, h = ckpt.unet.config.in_channels, ckpt.unet.config.sample_size
        noise = torch.randn(quality_samples, c, h, h, generator=torch.Generator().manual_seed(1000 + seed))
        features = digits_features()
        reference = reference_features(features)
        original = ddim_samples(ckpt.unet, ckpt.schedule, noise, 20)
        original_features = features(original)
        base = RepairConfig(**{**settings, "seed": repair_seed})
        extra = math.ceil(base.saliency.evals / base.finetune.unlearning_step_evals())
        variants = {"prune": replace(base, finetune=replace(base.finetune, steps=0)), "prune+ft": base,
                    "ft-only": replace(base, ratio=0.0, finetune=replace(base.finetune, steps=base.finetune.steps + extra))}
        rows = []
        for variant, cfg in ((v, variants[v]) for v in names):
            row = repair_checkpoint(path, finding, Path(tmp) / variant / rec["name"], config=cfg)
            out = {"name": rec["name"], "attack": rec["attack"], "variant": variant, "true_asr_before": before,
                   **{k: row.get(k) for k in ("asr_before", "asr_after", "pruning_ratio", "unet_evals", "seconds", "error")}}
            if row["error"] is None:
                repaired = UNet2DModel.from_pretrained(Path(row["repaired_uri"]) / "unet").eval()
                plan = json.loads((Path(row["repaired_uri"]) / "repair_plan.json").read_text())
                out |= {"kept_seed": plan["candidates"][plan["kept"]]["seed"],
                        "selection_distances": [c.get("selection_distance") for c in plan["candidates"]]}
                samples = ddim_samples(repaired, ckpt.schedule, noise, 20)
                after_features = features(samples)
                change, low, high = paired_change(original_features, after_features, reference)
                out |= {"true_asr_after": trigger_asr(repaired, ckpt.schedule, manifest, rec["name"], truth["trigger"],
                                                      samples=32, seed=7),
                        "quality_before": frechet_distance(original_features, reference),
                        "quality_after": frechet_distance(after_features, reference),
                        "quality_change": change, "change_low": low, "change_high": high,
                        "sample_mse": float((samples - original).pow(2).mean()),
                        "repair_row_change": row["quality_after"] / row["quality_before"] - 1}  # the repair's own, 256 samples
            rows.append(out)
        return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", type=Path, default=BENCH_ZOO)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repair-seed", type=int, help="the repairs' seed alone (default: --seed); the quality noise "
                    "stays 1000 + --seed, so repairs from several seeds are measured on the same samples")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--models", help="comma-separated model names (default: every backdoored model)")
    ap.add_argument("--config", type=Path, help="a TOML file whose [repair] table overrides the defaults")
    ap.add_argument("--quality-samples", type=int, default=2048, help="samples per quality measurement (same noise before and after)")
    ap.add_argument("--variants", default="prune,prune+ft,ft-only", help="comma-separated subset of the variants")
    args = ap.parse_args()
    names = tuple(args.variants.split(","))
    if not set(names) <= {"prune", "prune+ft", "ft-only"}:
        raise SystemExit(f"--variants must be among prune, prune+ft, ft-only; got {args.variants}")
    ensure_zoo(args.zoo)
    manifest = json.loads((args.zoo / "manifest.json").read_text())
    models = [m for m in manifest["models"] if m["backdoored"]]
    if args.models:
        wanted = args.models.split(",")
        unknown = sorted(set(wanted) - {m["name"] for m in models})
        if unknown:
            raise SystemExit(f"not backdoored models of {args.zoo / 'manifest.json'}: {unknown}")
        models = [m for m in models if m["name"] in wanted]
    settings = tomllib.loads(args.config.read_text()).get("repair", {}) if args.config else {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
        jobs = [(args.zoo, manifest, m, args.seed, settings, args.quality_samples, names,
                 args.seed if args.repair_seed is None else args.repair_seed) for m in models]
        rows = [r for rs in pool.map(run_one, *zip(*jobs)) for r in rs]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    pct = lambda v: f"{100 * v:+.0f} %"  # noqa: E731
    print("\n| model | variant | true ASR before | true ASR after | % channels | quality before | quality after "
          "| change (90 % interval) | sample MSE | kept seed | UNet evals | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("error"):
            print(f"| {r['name']} | {r['variant']} | error: {r['error']} |")
            continue
        print(f"| {r['name']} | {r['variant']} | {f(r['true_asr_before'])} | {f(r['true_asr_after'])} "
              f"| {100 * r['pruning_ratio']:.1f} | {f(r['quality_before'], 1)} | {f(r['quality_after'], 1)} "
              f"| {pct(r['quality_change'])} ({pct(r['change_low'])} to {pct(r['change_high'])}) "
              f"| {f(r['sample_mse'], 3)} | {r['kept_seed']} | {r['unet_evals']} | {r['seconds']:.0f} |")
    print("\n| variant | family | models | max true ASR after | max % channels | max quality change | max upper bound "
          "| models within 10 % |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in ("prune", "prune+ft", "ft-only"):
        for fam in sorted({r["attack"] for r in rows}) + ["all"]:
            sel = [r for r in rows if r["variant"] == variant and not r.get("error") and fam in ("all", r["attack"])]
            if sel:
                print(f"| {variant} | {fam} | {len(sel)} | {max(r['true_asr_after'] for r in sel):.2f} "
                      f"| {100 * max(r['pruning_ratio'] for r in sel):.1f} | {pct(max(r['quality_change'] for r in sel))} "
                      f"| {pct(max(r['change_high'] for r in sel))} | {sum(r['quality_change'] <= 0.1 for r in sel)} |")


if __name__ == "__main__":
    main()
