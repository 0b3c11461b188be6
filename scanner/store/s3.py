"""One boto3 S3 client configured for AWS and for S3-compatible stores (MinIO, Ceph, moto).

- standard retry mode: retries throttling and transient 5xx with backoff, bounded attempts;
- path-style addressing when an endpoint URL is given: non-AWS stores rarely serve
  virtual-hosted buckets (bucket.host);
- request checksums only when an operation requires them: since botocore 1.36 the default
  adds CRC32 checksums that several non-AWS stores reject (../shared/FINDINGS.md).
Credentials and region come from the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE,
AWS_DEFAULT_REGION, ...); `endpoint_url` falls back to AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    max_attempts: int = 8
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"`max_attempts` must be >= 1, got {self.max_attempts}")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"`endpoint_url` must start with http:// or https://, got {self.endpoint_url!r}")

    def resolved_endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def s3_client(options: S3Options = S3Options()) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = options.resolved_endpoint()
    config = Config(
        retries={"mode": "standard", "max_attempts": options.max_attempts},
        s3={"addressing_style": "path" if endpoint else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=options.connect_timeout_s,
        read_timeout=options.read_timeout_s,
    )
    return boto3.client("s3", endpoint_url=endpoint, region_name=options.region, config=config)
