"""Dynamic batching: ``policy`` (pure: batch sizes, waits, admission by time,
from the model's timings) and ``batcher`` (the threaded queue and inference
loop that follow it)."""
