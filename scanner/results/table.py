"""Parquet result tables: one schema per job kind, every column documented in the schema itself.

Each column's meaning is stored as the field's "doc" metadata, so docs/results.md, the HTML
report's schema page and `zoo-audit report` read one source. A table is a directory (or s3
prefix) of write-once parts (scanner/results/sink.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _schema(columns: list[tuple[str, pa.DataType, str]]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype, metadata={"doc": doc}) for name, dtype, doc in columns])


# Written by the batch engine (ray_jobs/engine.py) for every job kind.
ENGINE_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("row_key", pa.string(), "sha256[:32] of (uri, content_version, job, config_hash): the part's name; "
                             "a rerun skips every key already in the table"),
    ("content_version", pa.string(), "sha256 over the checkpoint's sorted (file, size, identity), identity = "
                                     "the file's sha256 (local) or ETag (s3), from the listing"),
    ("content_sha256", pa.string(), "sha256 over the sorted (file, sha256 of its bytes) actually scanned; "
                                    "null when the checkpoint could not be fetched"),
    ("content_bytes", pa.int64(), "total size of the checkpoint's files"),
    ("node", pa.string(), "Ray node id that produced the row (\"in-process\" without Ray)"),
    ("attempts", pa.int64(), "workers that took this checkpoint: 1, or more after a worker died"),
    ("finished_at", pa.timestamp("us", tz="UTC"), "when the row was written"),
]

SCAN_SCHEMA = _schema([
    ("uri", pa.string(), "checkpoint directory: a local path or s3://bucket/prefix"),
    ("verdict", pa.string(), "backdoored | clean | error | timeout"),
    ("score", pa.float64(), "P(backdoor) from the detector's calibration (docs/detect.md); 0.5 when not judged"),
    ("unet_evals", pa.int64(), "UNet image-evaluations spent (forward), counted by the scanner"),
    ("backward_evals", pa.int64(), "of those, how many were also backpropagated"),
    ("seconds", pa.float64(), "wall time for this checkpoint: fetch, load and detection"),
    ("error", pa.string(), "null unless verdict is error or timeout: the checkpoint and the reason"),
    ("error_category", pa.string(), "unsafe_format | corrupt | bad_config | missing_file | not_a_model | detector | "
                                    "fetch | timeout | worker_lost | internal; null when none"),
    ("detector", pa.string(), "detector name (scanner/detect/)"),
    ("detector_config", pa.string(), "JSON of the detector's config"),
    ("config_hash", pa.string(), "sha256[:16] of detector name + config + scanner version"),
    ("seed", pa.int64(), "detector seed"),
    ("statistic", pa.float64(), "the detector's decision statistic (small = backdoor)"),
    ("threshold", pa.float64(), "statistic < threshold gives verdict backdoored"),
    ("hypothesis", pa.string(), "the backdoor chain the inversion assumed: trojan or shift(kappa=K)"),
    ("gamma", pa.float64(), "inverted noise scale (1.0 for shift chains)"),
    ("stats", pa.string(), "JSON of the detector's other statistics"),
    ("trigger_path", pa.string(), "inverted trigger, safetensors (trigger.png beside it); local path or s3 uri"),
    ("target_path", pa.string(), "recovered target, safetensors (target.png and samples.png beside it)"),
    ("weights_sha256", pa.string(), "sha256 of the UNet's safetensors file"),
    ("scanner_version", pa.string(), "zoo-audit version that wrote the row"),
    *ENGINE_COLUMNS,
])

REPAIR_SCHEMA = _schema([
    ("uri", pa.string(), "the flagged checkpoint directory"),
    ("repaired_uri", pa.string(), "OUT/repaired/<name>/: a DDPMPipeline directory; null on error"),
    ("pruned_channels", pa.int64(), "channels zeroed (docs/repair.md)"),
    ("total_channels", pa.int64(), "channels of the coupling graph: the ratio's denominator"),
    ("pruning_ratio", pa.float64(), "pruned_channels / total_channels"),
    ("asr_before", pa.float64(), "inverted-trigger ASR estimate (chain samples vs recovered target)"),
    ("asr_after", pa.float64(), "the same after repair, same noise"),
    ("quality_before", pa.float64(), "Frechet distance to the digits (or user) features; lower is better"),
    ("quality_after", pa.float64(), "the same after repair"),
    ("sample_mse", pa.float64(), "per-pixel MSE between original and repaired samples, same noise"),
    ("finetune_steps", pa.int64(), "fine-tune steps run by the kept candidate"),
    ("unet_evals", pa.int64(), "UNet image-evaluations of every candidate's scoring and fine-tuning, and of the choice"),
    ("seconds", pa.float64(), "wall time of the repair"),
    ("error", pa.string(), "null unless the repair failed: the path and the reason"),
    ("error_category", pa.string(), "repair | finding | fetch | timeout | worker_lost | internal, or a load category "
                                    "(corrupt, unsafe_format, ...); null when none"),
    ("hypothesis", pa.string(), "the scan's backdoor chain used for the repair"),
    ("repair_config", pa.string(), "JSON of every repair setting"),
    ("config_hash", pa.string(), "sha256[:16] of the repair config, the scan row's key and scanner version"),
    ("scanner_version", pa.string(), "zoo-audit version that wrote the row"),
    *ENGINE_COLUMNS,
])

COMPRESS_SCHEMA = _schema([
    ("uri", pa.string(), "the checkpoint directory compressed"),
    ("compressed_uri", pa.string(), "OUT/compressed/<name>/: a DDPMPipeline directory; null on error"),
    ("params_before", pa.int64(), "UNet parameters before (torch-pruning's counter)"),
    ("params_after", pa.int64(), "UNet parameters after"),
    ("macs_before", pa.int64(), "multiply-accumulates of one forward pass at batch 1 (torch-pruning's counter)"),
    ("macs_after", pa.int64(), "the same after compression"),
    ("channel_sparsity", pa.float64(), "share of every channel space removed, k/G whole GroupNorm groups (docs/compress.md)"),
    ("block_out_channels", pa.string(), "JSON list of the compressed UNet's level widths"),
    ("quality_before", pa.float64(), "Frechet distance to the digits (or user) features; lower is better"),
    ("quality_after", pa.float64(), "the same after compression and recovery, same noise"),
    ("quality_pruned", pa.float64(), "the same right after pruning, before recovery"),
    ("sample_mse", pa.float64(), "per-pixel MSE between original and compressed samples, same noise"),
    ("recover_steps", pa.int64(), "recovery fine-tune steps run"),
    ("unet_evals", pa.int64(), "UNet image-evaluations of the recovery fine-tune (teacher and student)"),
    ("importance", pa.string(), "channel importance used: spp | magnitude | taylor"),
    ("seconds", pa.float64(), "wall time of the compression"),
    ("error", pa.string(), "null unless the compression failed: the path and the reason"),
    ("error_category", pa.string(), "compress | fetch | timeout | worker_lost | internal, or a load category "
                                    "(corrupt, unsafe_format, ...); null when none"),
    ("compress_config", pa.string(), "JSON of every compression setting"),
    ("config_hash", pa.string(), "sha256[:16] of the compression config and scanner version"),
    ("scanner_version", pa.string(), "zoo-audit version that wrote the row"),
    *ENGINE_COLUMNS,
])

SCHEMAS = {"scan": SCAN_SCHEMA, "repair": REPAIR_SCHEMA, "compress": COMPRESS_SCHEMA}


def column_docs(schema: pa.Schema) -> list[tuple[str, str, str]]:
    """(name, arrow type, meaning) per column, in table order."""
    return [(f.name, str(f.type), (f.metadata or {}).get(b"doc", b"").decode()) for f in schema]


def write_part(rows: list[dict[str, Any]], table_dir: str | Path, *, schema: pa.Schema = SCAN_SCHEMA) -> Path:
    """Write `rows` as one new uniquely named part in a local `table_dir`; keys outside the schema raise.

    For tests and one-off tables; the batch engine writes keyed parts (TableSink).
    """
    table_dir = Path(table_dir)
    table_dir.mkdir(parents=True, exist_ok=True)
    for row in rows:
        extra = set(row) - set(schema.names)
        if extra:
            raise ValueError(f"row for {row.get('uri')!r} has columns not in the schema: {sorted(extra)}")
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    path = table_dir / f"part-{uuid.uuid4().hex}.parquet"
    tmp = table_dir / f".{path.name}.tmp"
    pq.write_table(table, tmp)
    tmp.rename(path)
    return path


def read_table(table: str | Path, *, schema: pa.Schema = SCAN_SCHEMA, s3=None) -> pa.Table:
    """Every row of a table directory or s3 prefix (an empty table when there are none)."""
    from scanner.results.sink import TableSink
    from scanner.store.s3 import S3Options

    return TableSink(table, schema=schema, s3=s3 or S3Options()).read()
