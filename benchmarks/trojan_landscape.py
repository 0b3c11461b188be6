"""Why a trojan inversion misses: print the whitening residual's landscape and what the search finds.

    .venv/bin/python benchmarks/trojan_landscape.py --models tj-box4                 # about 1 min a model
    .venv/bin/python benchmarks/trojan_landscape.py --zoo tests/fixtures/zoo --models trojdiff-patch,trojdiff-blend

For each TrojDiff model: the residual r(mu, gamma) that `trojan_residual` minimises
(scanner/detect/trojan_residual.py) on `--noises` fixed noises, along gamma, at the true mean
mu = (1 - gamma) g (g the ground-truth trigger, used only to measure) and at mu = 0, i.e. plain
scaled noise with no trigger at all. Then the combined detector's trojan component (its settings,
seeds 0 and 1), once as the gradient search alone (`belief_iters = 0`) and once as it runs, with the
model's own belief refining what the search found (scanner/detect/trojan_belief.py): the gamma and
residual each stops at, the mean of its mu on the trigger's pixels and off them (and the true
values), and the ASR of its trigger under the attacker's own sampler (32 samples). The masked
refinement that docs/detect.md quotes from 2026-11-29 was removed with it; commit be46964 has it.
docs/detect.md quotes the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import BENCH_ZOO, ensure_zoo, trigger_asr  # noqa: E402  (benchmarks/ is a folder of scripts)

GAMMAS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
def landscape(zoo: Path, manifest: dict, name: str, noises: int) -> tuple[list[str], list[str], list[str]]:
    from safetensors.torch import load_file

    from scanner.checkpoint import load_checkpoint
    from scanner.detect.combined import DEFAULT_PARTS
    from scanner.detect.trojan_residual import detect_trojan_residual, whitening_residual
    from scanner.sampling import CountingEps

    rec = next(m for m in manifest["models"] if m["name"] == name)
    if rec["attack"] != "trojdiff":
        raise SystemExit(f"{name} is a {rec['attack']} model; this benchmark reads TrojDiff models only")
    ckpt = load_checkpoint(zoo / rec["path"])
    truth = load_file(str(zoo / "ground_truth" / f"{name}.safetensors"))
    g = truth["trigger"][None]
    mask = truth["mask"][None].bool().expand_as(g)
    true_gamma = float(rec["params"]["gamma"])
    c, h = ckpt.unet.config.in_channels, ckpt.unet.config.sample_size
    noise = torch.randn(noises, c, h, h, generator=torch.Generator().manual_seed(5))
    eps_model, T = CountingEps(ckpt.unet), ckpt.schedule.num_timesteps - 1
    rows = []
    with torch.no_grad():
        for gamma in GAMMAS:
            at = [float(whitening_residual(eps_model, T, mu, torch.tensor(gamma), noise)) for mu in ((1 - gamma) * g, 0 * g)]
            rows.append(f"| {name} | {gamma:.2f} | {at[0]:.3f} | {at[1]:.3f} |")
    found, believed = [], []
    for seed in (0, 1):
        for table, iters in ((found, 0), (believed, DEFAULT_PARTS["trojan"].belief_iters)):
            d = detect_trojan_residual(ckpt.unet, ckpt.schedule,
                                       config=replace(DEFAULT_PARTS["trojan"], seed=seed, belief_iters=iters))
            mu = (1 - d.gamma) * d.trigger[None]
            on, off = mu.expand_as(g)[mask], mu.expand_as(g)[~mask]
            asr = trigger_asr(ckpt.unet, ckpt.schedule, manifest, name, d.trigger, samples=32, seed=7)
            table.append(f"| {name} | {seed} | {d.gamma:.2f} | {d.statistic:.3f} | {float(on.mean()):.2f} / {float(off.abs().mean()):.3f} "
                         f"| {true_gamma:.2f} / {float(((1 - true_gamma) * g)[mask].mean()):.2f} | {asr:.2f} | {d.unet_evals} |")
    return rows, found, believed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", type=Path, default=BENCH_ZOO)
    ap.add_argument("--models", default="tj-box4,tj-checker6,tj-blend-checker")
    ap.add_argument("--noises", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ensure_zoo(args.zoo)
    manifest = json.loads((args.zoo / "manifest.json").read_text())
    names = args.models.split(",")
    unknown = [n for n in names if n not in {m["name"] for m in manifest["models"]}]
    if unknown:
        raise SystemExit(f"not in {args.zoo / 'manifest.json'}: {unknown}")
    results = [landscape(args.zoo, manifest, n, args.noises) for n in names]
    print("\n| model | gamma | residual at the true mu = (1 - gamma) g | residual at mu = 0 (no trigger) |")
    print("|---|---|---|---|")
    for rows, _, _ in results:
        print("\n".join(rows))
    head = ("| model | search seed | gamma | residual | mean mu on the trigger / mean abs mu off it "
            "| true gamma / true mu on the trigger | ASR of the trigger | UNet evals |\n|---|---|---|---|---|---|---|---|")
    for title, k in (("The gradient search alone", 1), ("The search and the model's belief (the detector)", 2)):
        print(f"\n{title}:\n{head}")
        for result in results:
            print("\n".join(result[k]))


if __name__ == "__main__":
    main()
