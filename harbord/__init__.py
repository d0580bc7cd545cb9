"""harbord: an ingest daemon for a home media library."""

__version__ = "0.1.0"
