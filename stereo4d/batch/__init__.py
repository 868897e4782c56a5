"""Batch runs above the stages: plan (clips, flags, resources), executors (local pool, Ray),
scheduler (dependencies, freshness, retries, ``--keep``) and records (JSONL, report).

The stages never import this package; it runs their commands.
"""
