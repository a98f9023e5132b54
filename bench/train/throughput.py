"""Training throughput of a segkd run after warm-up: images / training seconds between the log event at iteration
WARM and the last one (metrics.jsonl). With PHASES_OUT, also appends one line to that file: the run's ms per step
of each phase (data_wait, student_forward, teacher_forward, loss, backward, communication, optimizer), averaged over
the same iterations. Usage: throughput.py METRICS_JSONL WARM GLOBAL_BATCH [PHASES_OUT LABEL]"""
import json
import sys

PHASES = ["data_wait", "student_forward", "teacher_forward", "loss", "backward", "communication", "optimizer"]

events = [json.loads(line) for line in open(sys.argv[1]) if '"train"' in line]
warm, batch = int(sys.argv[2]), int(sys.argv[3])
first = next(e for e in events if e["iter"] == warm)
last = events[-1]
print(f"{(last['iter'] - first['iter']) * batch / (last['train_s'] - first['train_s']):.3f}")
if len(sys.argv) > 5:
    timed, prev, sums = 0, warm, {p: 0.0 for p in PHASES}
    for e in events:
        if e["iter"] <= warm:
            continue
        n = e["iter"] - prev  # each event's "ms" is the mean over the iterations since the previous event
        prev = e["iter"]
        timed += n
        for p in PHASES:
            sums[p] += e["ms"].get(p, 0.0) * n
    with open(sys.argv[4], "a") as out:
        out.write(sys.argv[5] + " " + " ".join(f"{p} {sums[p] / timed:.1f}" for p in PHASES) + "\n")
