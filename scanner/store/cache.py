"""Bring a checkpoint to local disk: stream each object into a cache directory, hashing as it goes.

A local checkpoint is used where it is. An s3 checkpoint is downloaded into
`cache_dir/<fingerprint[:32]>/` file by file, each through a temporary name and a rename,
with `IfMatch` on the listed ETag: an object replaced between listing and download fails
with a clear error instead of being scanned under the old version's key. A `.complete`
marker makes a finished download reusable by the next job on the same node.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from scanner.store.listing import SourceCheckpoint
from scanner.store.s3 import S3Options, s3_client
from scanner.store.uri import parse_uri

CHUNK = 8 << 20


@dataclass(frozen=True, kw_only=True)
class Fetched:
    path: Path              # local checkpoint directory
    sha256: str             # sha256 over the sorted (path, sha256 of bytes) of its files
    downloaded: bool        # False when it was local or already in the cache


class FetchError(RuntimeError):
    """A checkpoint could not be brought to local disk; the message names the object and the reason."""


def content_sha256(file_hashes: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(file_hashes.items())).encode()).hexdigest()


def fetch(ckpt: SourceCheckpoint, *, cache_dir: str | Path, s3: S3Options = S3Options()) -> Fetched:
    if not ckpt.is_s3:
        return Fetched(path=Path(ckpt.uri), sha256=content_sha256({f.rel: f.identity for f in ckpt.files}),
                       downloaded=False)
    root = Path(cache_dir) / ckpt.fingerprint[:32]
    marker = root / ".complete"
    if marker.is_file():
        return Fetched(path=root, sha256=marker.read_text().strip(), downloaded=False)
    loc, client, hashes = parse_uri(ckpt.uri), s3_client(s3), {}
    for f in ckpt.files:
        key = f"{loc.key}/{f.rel}" if loc.key else f.rel
        dest = root / f.rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        hashes[f.rel] = _download(client, loc.bucket, key, f.identity, f.size, dest)
    digest = content_sha256(hashes)
    marker.write_text(digest)
    return Fetched(path=root, sha256=digest, downloaded=True)


def evict(fetched: Fetched) -> None:
    """Remove a downloaded checkpoint from the cache (local sources are never touched)."""
    if fetched.downloaded:
        shutil.rmtree(fetched.path, ignore_errors=True)


def _download(client, bucket: str, key: str, etag: str, size: int, dest: Path) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    h, got = hashlib.sha256(), 0
    try:
        body = client.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
        with tmp.open("wb") as out:
            for block in body.iter_chunks(CHUNK):
                h.update(block)
                out.write(block)
                got += len(block)
    except ClientError as exc:
        tmp.unlink(missing_ok=True)
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("PreconditionFailed", "412"):
            raise FetchError(f"s3://{bucket}/{key}: changed since it was listed (ETag no longer {etag})") from None
        raise FetchError(f"s3://{bucket}/{key}: download failed: {code or exc}") from None
    except (OSError, BotoCoreError) as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"s3://{bucket}/{key}: download failed: {exc}") from None
    if got != size:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"s3://{bucket}/{key}: got {got} bytes, the listing said {size}")
    tmp.rename(dest)
    return h.hexdigest()
