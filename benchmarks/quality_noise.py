"""How finely can the repair's quality metric resolve a change? Print its spread over noise seeds.

    .venv/bin/python benchmarks/quality_noise.py                 # 4 benchmark models, about 12 min with 2 processes
    .venv/bin/python benchmarks/quality_noise.py --models bd-box10 --seeds 2

For each *unrepaired* model: 20-step DDIM samples from `--seeds` independent noise draws of
2,048, and the digits Frechet distance (scanner/repair/quality.py) of the first 256, 1,024 and
2,048 of each draw. The spread is max / min - 1 over the draws: a change in quality smaller than
this cannot be told from the noise at that sample count. docs/repair.md quotes the table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import BENCH_ZOO, ensure_zoo  # noqa: E402  (benchmarks/ is a folder of scripts)

COUNTS = (256, 1024, 2048)


def spread_of(zoo: Path, path: str, seeds: int) -> dict[int, list[float]]:
    torch.set_num_threads(1)
    from scanner.checkpoint import load_checkpoint
    from scanner.repair.quality import digits_features, frechet_distance, reference_features
    from scanner.repair.repair import ddim_samples

    features = digits_features()
    reference = reference_features(features)
    ckpt = load_checkpoint(zoo / path)
    c, h = ckpt.unet.config.in_channels, ckpt.unet.config.sample_size
    draws = []
    for seed in range(seeds):
        noise = torch.randn(max(COUNTS), c, h, h, generator=torch.Generator().manual_seed(100 + seed))
        with torch.no_grad():
            samples = torch.cat([ddim_samples(ckpt.unet, ckpt.schedule, n, 20) for n in noise.split(256)])
        draws.append(features(samples))
    return {n: [frechet_distance(f[:n], reference) for f in draws] for n in COUNTS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", type=Path, default=BENCH_ZOO)
    ap.add_argument("--models", default="bd-box10,vd-stripes,bd-box12,vd-box8")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    ensure_zoo(args.zoo)
    manifest = json.loads((args.zoo / "manifest.json").read_text())
    names = args.models.split(",")
    paths = {m["name"]: m["path"] for m in manifest["models"]}
    unknown = [n for n in names if n not in paths]
    if unknown:
        raise SystemExit(f"not in {args.zoo / 'manifest.json'}: {unknown}")
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(spread_of, [args.zoo] * len(names), [paths[n] for n in names], [args.seeds] * len(names)))
    print("\n| model | samples | Frechet distance per noise draw | spread |")
    print("|---|---|---|---|")
    for name, result in zip(names, results):
        for n, values in result.items():
            print(f"| {name} | {n} | {' '.join(f'{v:.1f}' for v in values)} | {100 * (max(values) / min(values) - 1):.0f} % |")


if __name__ == "__main__":
    main()
