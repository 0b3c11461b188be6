"""Where checkpoints and results live: local directories and s3:// prefixes (boto3). Never imports Ray."""

from scanner.store.cache import Fetched, FetchError, evict, fetch
from scanner.store.listing import SourceCheckpoint, SourceFile, list_checkpoints
from scanner.store.read import read_bytes
from scanner.store.s3 import S3Options, s3_client
from scanner.store.upload import put_dir
from scanner.store.uri import Location, folder_names, parse_uri

__all__ = ["Fetched", "FetchError", "Location", "folder_names", "S3Options", "SourceCheckpoint", "SourceFile", "evict", "fetch",
           "list_checkpoints", "parse_uri", "put_dir", "read_bytes", "s3_client"]
