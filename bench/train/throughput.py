"""Training throughput of a segkd run after warm-up: images / training seconds between the log event at iteration
WARM and the last one (metrics.jsonl). Usage: throughput.py METRICS_JSONL WARM GLOBAL_BATCH"""
import json
import sys

events = [json.loads(line) for line in open(sys.argv[1]) if '"train"' in line]
warm, batch = int(sys.argv[2]), int(sys.argv[3])
first = next(e for e in events if e["iter"] == warm)
last = events[-1]
print(f"{(last['iter'] - first['iter']) * batch / (last['train_s'] - first['train_s']):.3f}")
