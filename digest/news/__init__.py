"""Ingest: news items from the command line, files and (later) feeds, normalised and stored."""
