"""A result table in a local directory or under an s3:// prefix, written once per row key.

Each row is one Parquet part named `part-<row_key>.parquet`. The name is the idempotence:
- local: written to a hidden temporary file, then hard-linked to its final name, which
  fails if the name exists (unlike rename, which would replace it silently);
- s3: PutObject with `IfNoneMatch="*"`, which the store refuses (412) if the key exists.
So a row that is written twice (a retried worker whose first attempt finished after all,
a driver restarted mid-write) lands once, and a reader never sees half a part: temporary
files start with "." and pyarrow, pandas, duckdb and polars skip such names.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scanner.store.s3 import S3Options, s3_client
from scanner.store.uri import parse_uri

PART = re.compile(r"^part-([0-9a-f]+)\.parquet$")


class TableSink:
    """The table at `uri` (local directory or s3 prefix) with schema `schema`."""

    def __init__(self, uri: str | Path, *, schema: pa.Schema, s3: S3Options = S3Options()) -> None:
        self.loc, self.schema = parse_uri(uri), schema
        self._client = s3_client(s3) if self.loc.is_s3 else None

    def __str__(self) -> str:
        return str(self.loc)

    def keys(self) -> set[str]:
        """Row keys already written (from part names; nothing is downloaded)."""
        return {m.group(1) for name in self._names() if (m := PART.match(name))}

    def write(self, row: dict[str, Any], *, key: str) -> bool:
        """Write `row` under `key`; False when that key was already written (nothing changes)."""
        extra = set(row) - set(self.schema.names)
        if extra:
            raise ValueError(f"row for {row.get('uri')!r} has columns not in the schema: {sorted(extra)}")
        if not re.fullmatch(r"[0-9a-f]+", key):
            raise ValueError(f"row key must be lowercase hex, got {key!r}")
        table = pa.Table.from_pylist([{k: row.get(k) for k in self.schema.names}], schema=self.schema)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        name = f"part-{key}.parquet"
        return self._put_s3(name, buf.getvalue()) if self.loc.is_s3 else self._put_local(name, buf.getvalue())

    def read(self, *, keys: set[str] | None = None) -> pa.Table:
        """Every row (or only those with these row keys, fetching no other part), as one table."""
        names = sorted(n for n in self._names() if (m := PART.match(n)) and (keys is None or m.group(1) in keys))
        tables = [pq.read_table(io.BytesIO(self._get(n))) for n in names]
        return pa.concat_tables(tables) if tables else self.schema.empty_table()

    def _names(self) -> list[str]:
        if not self.loc.is_s3:
            d = Path(self.loc.path)
            return [p.name for p in d.iterdir()] if d.is_dir() else []
        prefix, names = f"{self.loc.key}/" if self.loc.key else "", []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.loc.bucket, Prefix=prefix):
            names += [o["Key"][len(prefix):] for o in page.get("Contents", []) if "/" not in o["Key"][len(prefix):]]
        return names

    def _get(self, name: str) -> bytes:
        if not self.loc.is_s3:
            return (Path(self.loc.path) / name).read_bytes()
        return self._client.get_object(Bucket=self.loc.bucket, Key=self.loc.child(name).key)["Body"].read()

    def _put_local(self, name: str, data: bytes) -> bool:
        d = Path(self.loc.path)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        try:
            os.link(tmp, d / name)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def _put_s3(self, name: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.put_object(Bucket=self.loc.bucket, Key=self.loc.child(name).key, Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
