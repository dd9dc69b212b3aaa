"""Shared core of the HA PostgreSQL functions, shipped in the Lambda layer."""
