"""Read one small file (an artifact) from a local path or an s3 uri."""

from __future__ import annotations

from pathlib import Path

from scanner.store.s3 import S3Options, s3_client
from scanner.store.uri import parse_uri


def read_bytes(uri: str | Path, *, s3: S3Options = S3Options()) -> bytes:
    loc = parse_uri(uri)
    if not loc.is_s3:
        return Path(loc.path).read_bytes()
    from botocore.exceptions import ClientError

    try:
        return s3_client(s3).get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
    except ClientError as exc:
        raise FileNotFoundError(f"{uri}: {exc.response.get('Error', {}).get('Code', exc)}") from None
