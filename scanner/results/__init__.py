"""Result tables: one Parquet schema per job kind, written as write-once part files."""

from scanner.results.table import SCAN_SCHEMA, read_table, write_part

__all__ = ["SCAN_SCHEMA", "read_table", "write_part"]
