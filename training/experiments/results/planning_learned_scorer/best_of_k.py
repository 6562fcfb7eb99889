"""Best-of-k from a `mmsim plan` report with K samples: each k <= K uses the report's first k proposals (i.i.d.
draws), so one K = 16 run also gives the K = 8 planner. Prints oracle success of the first proposal, the
scorer's pick among k and the oracle's pick among k (any of the k reaching the goal).

    python best_of_k.py plan_learned.json plan_embedding.json --k 4 8 16
"""
import argparse, json
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("reports", nargs="+"); p.add_argument("--k", type=int, nargs="+", default=[8])
a = p.parse_args()
print("| report | k | first | scorer's pick | oracle's pick | scorer / first | scorer / oracle |")
print("|---|---:|---:|---:|---:|---:|---:|")
for path in a.reports:
    r = json.load(open(path))
    for k in a.k:
        first, pick, ceil = [], [], []
        for s in r["steps"]:
            reached = np.asarray(s["reached"][:k]); scores = np.asarray(s["scores"][:k])
            first.append(reached[0]); pick.append(reached[int(np.argmax(scores))]); ceil.append(reached.any())
        f, sp, o = (float(np.mean(x)) for x in (first, pick, ceil))
        print(f"| {path} ({r['config']['scorer']}) | {k} | {f:.3f} | {sp:.3f} | {o:.3f} | "
              f"{sp / f if f else float('nan'):.2f}x | {sp / o if o else float('nan'):.2f} |")
