"""List every checkpoint under a source (a local directory or an s3:// prefix) with a content fingerprint.

A checkpoint is found by the rule of scanner/checkpoint/discover.py, applied to object keys
the same way as to directories: a directory (key prefix) holding model_index.json,
config.json or a weight file directly is a checkpoint, and nothing below it is listed
separately. Every file under it belongs to it.

The fingerprint is what the result key hashes (ray_jobs/keys.py): sha256 over the sorted
(path, size, identity) of the checkpoint's files, where identity is the file's sha256 for
a local file and its ETag for an object. It changes when any file changes, so a new
upload under the same uri is scanned again; an ETag is the store's own statement of
content and costs no download, which matters for a zoo of multi-GB checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.checkpoint.discover import find_checkpoints
from scanner.checkpoint.inventory import WEIGHT_SUFFIXES, sha256_file
from scanner.store.s3 import S3Options, s3_client
from scanner.store.uri import Location, parse_uri

MARKERS = ("model_index.json", "config.json")


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    rel: str            # path inside the checkpoint, "/"-separated
    size: int
    identity: str       # sha256 (local) or ETag (s3)


@dataclass(frozen=True, kw_only=True)
class SourceCheckpoint:
    uri: str            # a local directory path or s3://bucket/prefix
    files: tuple[SourceFile, ...]

    @property
    def fingerprint(self) -> str:
        manifest = [(f.rel, f.size, f.identity) for f in sorted(self.files, key=lambda f: f.rel)]
        return hashlib.sha256(json.dumps(manifest).encode()).hexdigest()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "files": [vars(f) for f in self.files]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourceCheckpoint":
        return cls(uri=d["uri"], files=tuple(SourceFile(**f) for f in d["files"]))


def list_checkpoints(source: str | Path, *, s3: S3Options = S3Options()) -> list[SourceCheckpoint]:
    """Every checkpoint under `source`, sorted by uri; raises ValueError/FileNotFoundError naming the source."""
    loc = parse_uri(source)
    return _list_s3(loc, s3) if loc.is_s3 else _list_local(Path(loc.path))


def _list_local(root: Path) -> list[SourceCheckpoint]:
    if not root.is_dir():
        raise FileNotFoundError(f"SOURCE {root} is not a directory")
    found = []
    for ckpt in find_checkpoints(root):
        files = tuple(SourceFile(rel=p.relative_to(ckpt).as_posix(), size=p.stat().st_size, identity=sha256_file(p))
                      for p in sorted(ckpt.rglob("*")) if p.is_file())
        found.append(SourceCheckpoint(uri=str(ckpt), files=files))
    return found


def _list_s3(loc: Location, options: S3Options) -> list[SourceCheckpoint]:
    client = s3_client(options)
    prefix = f"{loc.key}/" if loc.key else ""
    objects: dict[str, tuple[int, str]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):  # "directory marker" objects hold nothing
                objects[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    by_dir: dict[str, list[str]] = {}
    for key in objects:
        by_dir.setdefault(posixpath.dirname(key), []).append(posixpath.basename(key))
    candidates = sorted(d for d, names in by_dir.items()
                        if any(n in MARKERS or n.endswith(WEIGHT_SUFFIXES) for n in names))
    roots: list[str] = []
    for d in candidates:  # sorted, so an ancestor comes before its descendants
        if not any(d == r or d.startswith(r + "/") or r == "" for r in roots):
            roots.append(d)
    found = []
    for r in roots:
        under = r + "/" if r else ""
        files = tuple(SourceFile(rel=k[len(under):], size=objects[k][0], identity=objects[k][1])
                      for k in sorted(objects) if k.startswith(under))
        found.append(SourceCheckpoint(uri=f"s3://{loc.bucket}/{r}", files=files))
    return found
