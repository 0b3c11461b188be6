"""Detection benchmark: run every detector on every model of a forged zoo and print the tables docs/detect.md quotes.

    .venv/bin/python benchmarks/detect.py                       # the benchmark zoo (forged first if missing)
    .venv/bin/python benchmarks/detect.py --zoo benchmarks/holdout   # the second held-out zoo (likewise)
    .venv/bin/python benchmarks/detect.py --zoo tests/fixtures/zoo   # the calibration split

Per detector: per attack family and overall TPR, TNR, AUC, mean UNet evaluations and seconds
per model; per backdoored model, the ASR of the *inverted* trigger under the attacker's own
sampler (ground truth from the manifest, used only to measure) and the recovered target's MSE.
Models run in `--jobs` processes with one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH_ZOO, FIXTURES = ROOT / "benchmarks" / "zoo", ROOT / "tests" / "fixtures" / "zoo"
SPECS = {BENCH_ZOO: ROOT / "benchmarks" / "zoo.toml", ROOT / "benchmarks" / "holdout": ROOT / "benchmarks" / "holdout.toml"}


def ensure_zoo(zoo: Path) -> None:
    """Forge a benchmark zoo (SPECS) if its manifest is missing, reusing the fixture zoo's base (same spec)."""
    if (zoo / "manifest.json").is_file():
        return
    spec = SPECS[zoo.resolve()]
    zoo.mkdir(parents=True, exist_ok=True)
    if not (zoo / "base").exists():
        shutil.copytree(FIXTURES / "base", zoo / "base")
        shutil.copy(FIXTURES / "base.json", zoo / "base.json")
    subprocess.run([sys.executable, "-m", "ray_jobs.cli", "forge", str(spec), "--out", str(zoo), "--jobs", "2"],
                   check=True, cwd=ROOT)


def trigger_asr(unet, schedule, manifest: dict[str, Any], name: str, trigger: torch.Tensor, *, samples: int,
                seed: int) -> float:
    """ASR of `trigger` fed to model `name`'s attacker's own sampler (its true gamma / DDIM steps), for a UNet in memory."""
    from scanner.forge.measure import hit_rate
    from scanner.forge.spec import spec_from_dict
    from scanner.sampling import CountingEps

    spec = next(m for m in spec_from_dict(manifest["spec"]).models if m.name == name)
    cfg = unet.config
    attack = spec.build_attack(channels=cfg.in_channels, image_size=cfg.sample_size)
    attack.trigger, attack.mask = trigger, torch.ones_like(trigger[:1])
    noise = torch.randn(samples, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = attack.triggered_sample(CountingEps(unet), schedule, noise, torch.Generator().manual_seed(seed + 1))
    return hit_rate(out, attack.target)


def inverted_asr(zoo: Path, manifest: dict[str, Any], rec: dict[str, Any], trigger: torch.Tensor, *,
                 samples: int, seed: int) -> float:
    """ASR of `trigger` under the attacker's own sampler, for the checkpoint on disk."""
    from scanner.checkpoint import load_checkpoint

    ckpt = load_checkpoint(zoo / rec["path"])
    return trigger_asr(ckpt.unet, ckpt.schedule, manifest, rec["name"], trigger, samples=samples, seed=seed)


def run_one(zoo: Path, manifest: dict[str, Any], rec: dict[str, Any], detector: str, samples: int,
            seed: int) -> dict[str, Any]:
    from safetensors.torch import load_file

    from scanner.checkpoint import load_checkpoint
    from scanner.detect import DETECTORS, make_config

    ckpt = load_checkpoint(zoo / rec["path"])
    det = DETECTORS[detector][1](ckpt.unet, ckpt.schedule, config=make_config(detector, {"seed": seed}))
    row = {"name": rec["name"], "attack": rec["attack"], "backdoored": rec["backdoored"], "detector": detector,
           "verdict": det.verdict, "score": det.score, "statistic": det.statistic, "gamma": det.gamma,
           "hypothesis": det.hypothesis,
           "unet_evals": det.unet_evals, "seconds": det.seconds, "asr_inverted": None, "target_mse": None}
    if rec["backdoored"]:
        truth = load_file(str(zoo / "ground_truth" / f"{rec['name']}.safetensors"))
        row["target_mse"] = float((det.target - truth["target"]).pow(2).mean())
        row["asr_inverted"] = inverted_asr(zoo, manifest, rec, det.trigger, samples=samples, seed=seed + 7)
    return row


def auc(pos: list[float], neg: list[float]) -> float:
    """P(score of a random backdoored model > score of a random clean one), ties count half."""
    if not pos or not neg:
        return float("nan")
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def report(rows: list[dict[str, Any]], detector: str) -> None:
    rows = [r for r in rows if r["detector"] == detector]
    clean = [r for r in rows if not r["backdoored"]]
    tnr = sum(r["verdict"] == "clean" for r in clean) / max(len(clean), 1)
    print(f"\n### {detector}\n")
    print("| family | models | TPR | TNR | AUC | mean UNet evals | mean seconds |")
    print("|---|---|---|---|---|---|---|")
    for fam in sorted({r["attack"] for r in rows if r["backdoored"]}) + ["all"]:
        pos = [r for r in rows if r["backdoored"] and (fam == "all" or r["attack"] == fam)]
        fam_rows = pos + clean
        tpr = sum(r["verdict"] == "backdoored" for r in pos) / max(len(pos), 1)
        print(f"| {fam} | {len(pos)} + {len(clean)} clean | {tpr:.0%} | {tnr:.0%} "
              f"| {auc([r['score'] for r in pos], [r['score'] for r in clean]):.2f} "
              f"| {sum(r['unet_evals'] for r in fam_rows) / len(fam_rows):.0f} "
              f"| {sum(r['seconds'] for r in fam_rows) / len(fam_rows):.1f} |")
    print("\n| model | attack | verdict | score | statistic | hypothesis | gamma | inverted-trigger ASR | target MSE | UNet evals |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {r['name']} | {r['attack']} | {r['verdict']} | {r['score']:.3f} | {r['statistic']:.4f} "
              f"| {r['hypothesis']} | {r['gamma']:.2f} | {f(r['asr_inverted'])} | {f(r['target_mse'])} | {r['unet_evals']} |")


def _init() -> None:
    torch.set_num_threads(1)


def main() -> None:
    from scanner.detect import DETECTORS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=BENCH_ZOO)
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=32, help="samples per inverted-trigger ASR")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.zoo.resolve() in SPECS:
        ensure_zoo(args.zoo)
    manifest = json.loads((args.zoo / "manifest.json").read_text())
    detectors = args.detectors.split(",")
    jobs = [(args.zoo, manifest, rec, d, args.samples, args.seed) for d in detectors for rec in manifest["models"]]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init) as pool:
        rows = list(pool.map(run_one, *zip(*jobs)))
    print(f"Zoo: {args.zoo} ({len(manifest['models'])} models), seed {args.seed}, one torch thread per process.")
    for d in detectors:
        report(rows, d)


if __name__ == "__main__":
    main()
