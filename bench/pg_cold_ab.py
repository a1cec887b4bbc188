#!/usr/bin/env python3
"""Cold `modelauth get openai` of two builds against `pgbench -C -S -c 1`, interleaved call by
call on one PostgreSQL route (issue 19, item 5): the ratio each build reaches in one run.

Usage: PGPASSWORD=... bench/pg_cold_ab.py BEFORE_BIN [AFTER_BIN] [--url URL] [--rounds 4] [--runs 50]
AFTER_BIN defaults to $CARGO_TARGET_DIR/release/modelauth (target/ when unset).
URL defaults to postgres://mt@127.0.0.1/mtdb (SCRAM, TLS preferred). Uses bench/fleet.py's
helpers; the store is a schema `bench_ab` of 100 profiles, dropped at the end.
"""
import argparse, os, random, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet  # noqa: E402
import process  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("before")
ap.add_argument("after", nargs="?", default=os.path.join(
    os.environ.get("CARGO_TARGET_DIR") or "target", "release", "modelauth"))
ap.add_argument("--url", default="postgres://mt@127.0.0.1/mtdb")
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--runs", type=int, default=50)
ap.add_argument("--page-cache", choices=["copied", "dropped", "as-is"], default="copied",
                help="the page-cache state of both builds (process.py same_page_cache_state)")
a = ap.parse_args()
# Both builds in one page-cache state: a binary's state there moves its start by ~0.1 ms
# and drifts as the kernel reclaims (the same file measured 0.3 ms apart an hour later).
tmpdir = process.tempfile.mkdtemp(prefix="modelauth-pg-ab-")
a.before, a.after = process.same_page_cache_state([a.before, a.after], tmpdir, a.page_cache)

env = fleet.env_for(a.url, "bench_ab")
fleet.make_store(a.before, env)
args = fleet.pg_args(a.url)
res = {"before": [], "after": [], "pgb": []}
rng = random.Random(19)
try:
    for _ in range(a.rounds):
        res["pgb"].append(fleet.pgbench_connect(args, 3)[0])
        for _ in range(a.runs):
            # Which build goes first changes each time (a place in the pair moves the time).
            for k in rng.sample(["before", "after"], 2):
                res[k].append(fleet.cold_get(getattr(a, k), env))
finally:
    subprocess.run(["psql"] + args + ["-qc", "DROP SCHEMA bench_ab CASCADE"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process.shutil.rmtree(tmpdir, ignore_errors=True)
pg = statistics.median(res["pgb"])
print(f"| build | cold `get` median | / `pgbench -C -S -c 1` ({1e3 * pg:.2f} ms per transaction) |")
print("|---|---|---|")
for k in ("before", "after"):
    m = statistics.median(res[k])
    print(f"| {k} | {1e3 * m:.2f} ms | **{m / pg:.2f}×** |")
