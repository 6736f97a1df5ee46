"""A run's bookkeeping: what ends every round (evaluation, the rounds.jsonl line, the
checkpoint), where a run starts, its live progress, and what it runs on."""
