"""Parquet result tables. Every job kind has a fixed schema (docs/detect.md lists the scan columns).

A table is a directory (`OUT/scan/`) of part files, each written once under a unique name
through a temporary file and a rename, so a reader never sees half a part.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCAN_SCHEMA = pa.schema([
    ("uri", pa.string()),               # checkpoint directory as given in SOURCE
    ("verdict", pa.string()),           # backdoored | clean | error
    ("score", pa.float64()),            # P(backdoor), calibrated (docs/detect.md); 0.5 on error
    ("unet_evals", pa.int64()),         # UNet image-evaluations spent (forward), counted
    ("backward_evals", pa.int64()),     # of those, how many were also backpropagated
    ("seconds", pa.float64()),          # wall time for this checkpoint, loading included
    ("error", pa.string()),             # null unless verdict is error
    ("error_category", pa.string()),    # unsafe_format | corrupt | bad_config | missing_file | not_a_model | detector
    ("detector", pa.string()),
    ("detector_config", pa.string()),   # JSON of the detector's config
    ("config_hash", pa.string()),       # sha256[:16] of detector name + config + scanner version
    ("seed", pa.int64()),
    ("statistic", pa.float64()),        # the detector's decision statistic (small = backdoor)
    ("threshold", pa.float64()),        # statistic < threshold gives verdict backdoored
    ("hypothesis", pa.string()),        # the backdoor chain the inversion assumed
    ("gamma", pa.float64()),            # inverted noise scale (1.0 for shift chains)
    ("stats", pa.string()),             # JSON of the detector's other statistics
    ("trigger_path", pa.string()),      # inverted trigger, safetensors (a PNG beside it)
    ("target_path", pa.string()),       # recovered target, safetensors (a PNG beside it)
    ("weights_sha256", pa.string()),
    ("scanner_version", pa.string()),
])


REPAIR_SCHEMA = pa.schema([
    ("uri", pa.string()),               # the flagged checkpoint directory
    ("repaired_uri", pa.string()),      # OUT/repaired/<name>/: a DDPMPipeline directory; null on error
    ("pruned_channels", pa.int64()),    # channels zeroed (docs/repair.md)
    ("total_channels", pa.int64()),     # channels of the coupling graph: the ratio's denominator
    ("pruning_ratio", pa.float64()),    # pruned_channels / total_channels
    ("asr_before", pa.float64()),       # inverted-trigger ASR estimate (chain samples vs recovered target)
    ("asr_after", pa.float64()),        # the same after repair, same noise
    ("quality_before", pa.float64()),   # Frechet distance to the digits (or user) features; lower is better
    ("quality_after", pa.float64()),
    ("sample_mse", pa.float64()),       # per-pixel MSE between original and repaired samples, same noise
    ("finetune_steps", pa.int64()),
    ("unet_evals", pa.int64()),         # UNet image-evaluations of scoring and fine-tuning
    ("seconds", pa.float64()),
    ("error", pa.string()),             # null unless the repair failed: the path and the reason
    ("hypothesis", pa.string()),        # the scan's backdoor chain used for the repair
    ("repair_config", pa.string()),     # JSON of every repair setting
    ("scanner_version", pa.string()),
])


def write_part(rows: list[dict[str, Any]], table_dir: str | Path, *, schema: pa.Schema = SCAN_SCHEMA) -> Path:
    """Write `rows` as one new part file in `table_dir`; keys outside the schema raise."""
    table_dir = Path(table_dir)
    table_dir.mkdir(parents=True, exist_ok=True)
    for row in rows:
        extra = set(row) - set(schema.names)
        if extra:
            raise ValueError(f"row for {row.get('uri')!r} has columns not in the schema: {sorted(extra)}")
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    path = table_dir / f"part-{uuid.uuid4().hex}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.rename(path)
    return path


def read_table(table_dir: str | Path, *, schema: pa.Schema = SCAN_SCHEMA) -> pa.Table:
    """Read every part of a table directory (an empty table when there are none)."""
    parts = sorted(Path(table_dir).glob("part-*.parquet"))
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(pq.read_table(p) for p in parts)
