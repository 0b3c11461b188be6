"""Copy a finished local directory of small files (artifacts, a repaired checkpoint) to an s3 prefix."""

from __future__ import annotations

from pathlib import Path

from scanner.store.s3 import S3Options, s3_client
from scanner.store.uri import Location


def put_dir(local: str | Path, dest: Location, *, s3: S3Options = S3Options()) -> dict[str, str]:
    """Upload every file under `local` to `dest`/<relative path>; return {relative path: s3 uri}."""
    client, local, uris = s3_client(s3), Path(local), {}
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = path.relative_to(local).as_posix()
        target = dest.child(rel)
        client.upload_file(str(path), target.bucket, target.key)
        uris[rel] = str(target)
    return uris
