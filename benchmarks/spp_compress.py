"""Compression of the benchmark zoo's clean digits DDPM: SPP importance vs magnitude vs Taylor, equal recovery.

    .venv/bin/python benchmarks/spp_compress.py                 # 30 % and 50 %, 3 importances, 2 seeds, 2 processes

Model: the zoo's clean base DDPM (benchmarks/zoo/base; tests/fixtures/zoo/base is the same file,
used when the benchmark zoo is not built): 16x16 digits, widths (16, 32), 8 GroupNorm groups.
Every run is `scanner.compress.compress_checkpoint` with the default CompressConfig except the
sparsity, the importance, lam and the seed, so all runs get the same data budget (256 self-samples),
the same recovery budget (RecoverConfig: steps x batch) and the same quality noise. The seed
changes the self-samples, the importance minibatches and the recovery minibatches.
Quality: the digits Frechet distance (docs/repair.md) of 256 samples, 20 DDIM steps, same noise
before and after; lower is better. "worse" = quality_after / quality_before - 1.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _init() -> None:
    import torch

    torch.set_num_threads(1)


def _run(model: str, sparsity: float, importance: str, lam: float | None, seed: int) -> dict:
    from scanner.compress import CompressConfig, compress_checkpoint

    cfg = CompressConfig(sparsity=sparsity, importance=importance, seed=seed)
    if lam is not None:
        cfg = replace(cfg, recover=replace(cfg.recover, lam=lam))
    with tempfile.TemporaryDirectory() as tmp:
        row = compress_checkpoint(model, Path(tmp, "out"), config=cfg)
    if row["error"]:
        raise RuntimeError(row["error"])
    return {**row, "sparsity": sparsity, "lam": cfg.recover.lam, "seed": seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: benchmarks/zoo/base, else tests/fixtures/zoo/base")
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.3, 0.5])
    ap.add_argument("--importances", nargs="+", default=["spp", "magnitude", "taylor"])
    ap.add_argument("--lams", type=float, nargs="*", default=[0.0],
                    help="extra recovery lam values run with SPP importance at the first sparsity (ablation)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write every row here")
    args = ap.parse_args()
    model = args.model or str(next(p for p in (ROOT / "benchmarks/zoo/base", ROOT / "tests/fixtures/zoo/base")
                                   if (p / "unet").is_dir()))
    runs = [(model, s, imp, None, seed) for s in args.sparsities for imp in args.importances for seed in args.seeds]
    runs += [(model, args.sparsities[0], "spp", lam, seed) for lam in args.lams for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init) as pool:
        rows = list(pool.map(_run, *zip(*runs)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    print(f"model: {model}; seeds {args.seeds}; mean over seeds (per-seed quality in brackets)\n")
    print("| sparsity asked | channels removed | importance | recovery lam | params | MACs | quality before "
          "| pruned only | after recovery | worse | sample MSE | s/run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = {(r["sparsity"], r["importance"], r["lam"]) for r in rows}
    default_lam = rows[0]["lam"] if rows else 0.0  # the first runs use the default config
    for s, imp, lam in sorted(keys, key=lambda k: (k[0], k[2] != default_lam, args.importances.index(k[1]), k[2])):
        group = [r for r in rows if (r["sparsity"], r["importance"], r["lam"]) == (s, imp, lam)]
        r0 = group[0]

        def mean(key: str) -> float:
            return statistics.mean(r[key] for r in group)

        after = [r["quality_after"] for r in group]
        print(f"| {s:.0%} | {r0['channel_sparsity']:.1%} {r0['block_out_channels']} | {imp} | {lam:g} "
              f"| {r0['params_before']:,} → {r0['params_after']:,} (−{1 - r0['params_after'] / r0['params_before']:.0%}) "
              f"| {r0['macs_before'] / 1e6:.1f}M → {r0['macs_after'] / 1e6:.1f}M (−{1 - r0['macs_after'] / r0['macs_before']:.0%}) "
              f"| {mean('quality_before'):.1f} | {mean('quality_pruned'):.0f} "
              f"| {statistics.mean(after):.1f} [{', '.join(f'{a:.1f}' for a in after)}] "
              f"| {statistics.mean(after) / mean('quality_before') - 1:+.1%} | {mean('sample_mse'):.3f} "
              f"| {mean('seconds'):.0f} |")


if __name__ == "__main__":
    main()
