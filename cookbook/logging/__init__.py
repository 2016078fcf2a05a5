"""Run artifacts (metrics.jsonl, config.json, timing.jsonl, loss curve) and console display."""
