"""Ray drivers and `ray job submit` entry points that schedule `scanner` work; the typer CLI."""
