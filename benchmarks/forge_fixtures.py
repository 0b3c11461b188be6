"""Re-measure every model of a forged zoo on fresh noise and print the table docs/forge.md quotes.

    .venv/bin/python benchmarks/forge_fixtures.py [--zoo tests/fixtures/zoo] [--samples 64] [--seed 2026]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from scanner.forge.verify import verify_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=Path(__file__).parents[1] / "tests" / "fixtures" / "zoo")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = json.loads((args.zoo / "manifest.json").read_text())
    print(f"| model | attack | sampler | ASR | clean-hit | max zoo-trigger ASR | UNet evals | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for m in manifest["models"]:
        r = verify_model(args.zoo, manifest, m["name"], samples=args.samples, seed=args.seed)
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"| {m['name']} | {m['attack']} | {m['sampler']} | {fmt(r['asr'])} | {fmt(r['clean_hit_rate'])} "
              f"| {fmt(r['max_trigger_asr'])} | {r['unet_evals']} | {r['seconds']:.0f} |", flush=True)
    print(f"\n{args.samples} samples per measurement, seed {args.seed}, one torch thread.")


if __name__ == "__main__":
    main()
