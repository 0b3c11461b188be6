"""Sources and sinks against a real S3 endpoint (a moto server over HTTP) and local directories."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from scanner.results import SCAN_SCHEMA, TableSink
from scanner.store import FetchError, S3Options, fetch, list_checkpoints, parse_uri


def test_parse_uri_accepts_s3_file_and_paths_and_names_what_it_refuses():
    s3 = parse_uri("s3://zoo/models/")
    assert (s3.bucket, s3.key, str(s3.child("scan"))) == ("zoo", "models", "s3://zoo/models/scan")
    assert parse_uri("file:///data/zoo").path == "/data/zoo" and parse_uri("rel/zoo").path == "rel/zoo"
    with pytest.raises(ValueError, match="needs a bucket"):
        parse_uri("s3:///models")
    with pytest.raises(ValueError, match="unsupported scheme 'gs'"):
        parse_uri("gs://zoo/models")


def test_s3_listing_finds_the_same_checkpoints_and_content_as_the_local_one(s3_zoo, fixture_zoo, tmp_path):
    bucket, endpoint, client = s3_zoo
    opts = S3Options(endpoint_url=endpoint)
    local = list_checkpoints(fixture_zoo / "models")
    remote = list_checkpoints(f"s3://{bucket}/models/", s3=opts)
    assert [c.uri.rsplit("/", 1)[-1] for c in remote] == [c.uri.rsplit("/", 1)[-1] for c in local]
    assert len(remote) == 6
    for lc, rc in zip(local, remote):
        assert sorted(f.rel for f in rc.files) == sorted(f.rel for f in lc.files) and rc.size == lc.size
        got = fetch(rc, cache_dir=tmp_path / "cache", s3=opts)
        assert got.downloaded and got.sha256 == fetch(lc, cache_dir=tmp_path).sha256  # the bytes, hashed on the way
        assert fetch(rc, cache_dir=tmp_path / "cache", s3=opts).downloaded is False  # reused from the cache
    assert list_checkpoints(f"s3://{bucket}/models/clean-twin-a", s3=opts)[0].uri == f"s3://{bucket}/models/clean-twin-a"
    assert list_checkpoints(f"s3://{bucket}/model", s3=opts) == []  # a prefix is a folder, not a string prefix


def test_an_object_replaced_after_listing_is_refused_by_name_and_changes_the_fingerprint(s3_zoo, tmp_path):
    bucket, endpoint, client = s3_zoo
    opts = S3Options(endpoint_url=endpoint)
    before = list_checkpoints(f"s3://{bucket}/models/clean-twin-b", s3=opts)[0]
    key = f"models/clean-twin-b/unet/config.json"
    client.put_object(Bucket=bucket, Key=key, Body=b'{"changed": true}')
    with pytest.raises(FetchError, match=f"s3://{bucket}/{key}: changed since it was listed"):
        fetch(before, cache_dir=tmp_path, s3=opts)
    after = list_checkpoints(f"s3://{bucket}/models/clean-twin-b", s3=opts)[0]
    assert after.fingerprint != before.fingerprint


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_row_key_is_written_once_whatever_happens(where, moto_s3, tmp_path):
    from scanner.store import s3_client

    if where == "s3":
        s3_client(S3Options(endpoint_url=moto_s3)).create_bucket(Bucket="results")
    uri = str(tmp_path / "scan") if where == "local" else "s3://results/run/scan"
    sink = TableSink(uri, schema=SCAN_SCHEMA, s3=S3Options(endpoint_url=moto_s3))
    assert sink.keys() == set() and sink.read().num_rows == 0
    assert sink.write({"uri": "a", "verdict": "clean", "score": 0.1}, key="ab12") is True
    assert sink.write({"uri": "a", "verdict": "backdoored", "score": 0.9}, key="ab12") is False  # refused, not replaced
    assert sink.write({"uri": "b", "verdict": "clean", "score": 0.2}, key="cd34") is True
    table = sink.read()
    assert sink.keys() == {"ab12", "cd34"} and table.num_rows == 2 and table.schema.equals(SCAN_SCHEMA)
    assert {r["uri"]: r["verdict"] for r in table.to_pylist()} == {"a": "clean", "b": "clean"}
    assert [r["uri"] for r in sink.read(keys={"cd34", "9999"}).to_pylist()] == ["b"]
    with pytest.raises(ValueError, match="not in the schema: \\['colour'\\]"):
        sink.write({"uri": "c", "colour": "red"}, key="ef56")
    if where == "local":  # no temporary files left; pyarrow reads the directory as one dataset
        assert sorted(p.name for p in (tmp_path / "scan").iterdir()) == ["part-ab12.parquet", "part-cd34.parquet"]
        assert pq.read_table(tmp_path / "scan").num_rows == 2
