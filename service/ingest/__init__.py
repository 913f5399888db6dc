"""Ping ingest: tracker messages in, flagged, evaluated and durably stored by group commit."""
