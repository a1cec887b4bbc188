#!/usr/bin/env python3
"""A/B of two modelauth binaries, interleaved: cold `call auth.resolve` (median, p10) on a
store of 100 profiles (one store per binary, each made by its own binary, so binaries of
different schema versions compare), and warm `serve` throughput (N resolves piped into one
process, 5 runs each, alternated).

Usage: bench/ab.py BEFORE AFTER [COLD_RUNS=200] [WARM_REQUESTS=20000]
  e.g. bench/ab.py /tmp/before/release/modelauth $CARGO_TARGET_DIR/release/modelauth
"""
import json, os, statistics, subprocess, sys, tempfile, time
bins = sys.argv[1:3]; runs = int(sys.argv[3]) if len(sys.argv) > 3 else 200
reqs = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
def store(b, d):
    p = os.path.join(d, "s.db")
    lines = [json.dumps({"jsonrpc":"2.0","id":i,"method":"profiles.put","params":{"profile":{"id":["openai","anthropic","mistral","deepseek"][i%4]+f":k{i}","type":"api_key","key":f"sk-bench-{i:04d}"}}}) for i in range(100)]
    subprocess.run([b, "--store", p, "serve"], input="\n".join(lines).encode(), stdout=subprocess.DEVNULL, check=True)
    return p
dirs = [tempfile.mkdtemp() for _ in bins]; stores = [store(b, d) for b, d in zip(bins, dirs)]
cold = [[] for _ in bins]
for r in range(runs):
    for i, b in enumerate(bins):
        t = time.perf_counter()
        subprocess.run([b, "--store", stores[i], "call", "auth.resolve", '{"provider":"openai"}'], stdout=subprocess.DEVNULL, check=True)
        cold[i].append(time.perf_counter() - t)
payload = ("\n".join(json.dumps({"jsonrpc":"2.0","id":i,"method":"auth.resolve","params":{"provider":"openai"}}) for i in range(reqs)) + "\n").encode()
warm = [[] for _ in bins]
for r in range(5):
    for i, b in enumerate(bins):
        t = time.perf_counter()
        subprocess.run([b, "--store", stores[i], "serve"], input=payload, stdout=subprocess.DEVNULL, check=True)
        warm[i].append(reqs / (time.perf_counter() - t))
for i, b in enumerate(bins):
    c = sorted(cold[i])
    print(f"{b}: cold median {statistics.median(c)*1000:.2f} ms, p10 {c[len(c)//10]*1000:.2f} ms; warm median {statistics.median(warm[i]):,.0f} resolves/s (runs {', '.join(f'{w:,.0f}' for w in warm[i])})")
