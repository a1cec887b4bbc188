#!/usr/bin/env python3
"""PostgreSQL store vs SQLite store, and vs pgbench on the same server (issue 15).

Measured side by side in one run, in rounds (so machine noise hits every subject alike):
  * `pgbench -S -c 1` select-only transactions/s on the server (the ceiling of one
    client connection doing one round trip per transaction),
  * warm `auth.resolve`/s for one `modelauth serve` (requests piped in, answers read),
    on PostgreSQL and on SQLite,
  * p50 / p99 of one resolve (request, wait for the answer, next request),
  * 8 `serve` processes together (total resolves/s),
  * a cold one-shot `modelauth call auth.resolve` (median, p90),
each on a store of 100 api_key profiles (4 providers).

Usage: bench/fleet.py [--bin $CARGO_TARGET_DIR/release/modelauth] [--pgbouncer URL]
                      [--pg postgres:///modelauth_bench?host=/var/run/postgresql]
                      [--requests 20000] [--pings 2000] [--runs 100] [--rounds 3]
Needs: a running PostgreSQL whose database exists (created with createdb if missing),
pgbench (postgresql-contrib / postgresql package).
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time


def env_for(store, schema):
    e = {"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir()}
    if store.startswith("postgres"):
        e["MODELAUTH_STORE"] = store
        e["MODELAUTH_PG_SCHEMA"] = schema
    else:
        e["MODELAUTH_STORE"] = store
    return e


def make_store(bin_, env, n=100):
    profiles = {}
    for i in range(n):
        prov = ["openai", "anthropic", "google", "openrouter"][i % 4]
        profiles[f"{prov}:p{i}"] = {"type": "api_key", "provider": prov, "key": f"sk-bench-{i:06d}"}
    req = {"jsonrpc": "2.0", "id": 1, "method": "store.import",
           "params": {"document": {"version": 1, "profiles": profiles}}}
    out = subprocess.run([bin_, "serve"], input=(json.dumps(req) + "\n").encode(),
                         stdout=subprocess.PIPE, check=True, env=env)
    assert b'"result"' in out.stdout, out.stdout[:300]


REQ = b'{"jsonrpc":"2.0","id":1,"method":"auth.resolve","params":{"provider":"openai"}}\n'


def throughput(bin_, env, m, procs=1):
    """m resolves piped into each of `procs` serve processes at once; total resolves/s."""
    data = REQ * m
    t0 = time.perf_counter()
    ps = [subprocess.Popen([bin_, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, env=env) for _ in range(procs)]
    import threading
    outs = [None] * procs

    def feed(i, p):
        outs[i] = p.communicate(data)[0]

    ts = [threading.Thread(target=feed, args=(i, p)) for i, p in enumerate(ps)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    for o in outs:
        lines = o.count(b"\n")
        assert lines == m, f"{lines} answers for {m} requests"
        assert b'"error"' not in o, o[:300]
    return procs * m / dt


def latencies(bin_, env, n):
    """n resolves one at a time through one serve; per-request seconds."""
    p = subprocess.Popen([bin_, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env)
    out = []
    for _ in range(50):  # warm up
        p.stdin.write(REQ); p.stdin.flush(); p.stdout.readline()
    for _ in range(n):
        t0 = time.perf_counter()
        p.stdin.write(REQ); p.stdin.flush()
        line = p.stdout.readline()
        out.append(time.perf_counter() - t0)
        assert b'"result"' in line, line
    p.stdin.close(); p.wait()
    return out


def cold(bin_, env):
    t0 = time.perf_counter()
    r = subprocess.run([bin_, "call", "auth.resolve", '{"provider":"openai"}'],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    dt = time.perf_counter() - t0
    assert r.returncode == 0
    return dt


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def pgbench(db_args, seconds):
    out = subprocess.run(["pgbench", "-S", "-c", "1", "-T", str(seconds), "-n"] + db_args,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout.decode()
    m = re.search(r"tps = ([0-9.]+)", out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    target_dir = os.environ.get("CARGO_TARGET_DIR") or "target"
    ap.add_argument("--bin", default=os.path.join(target_dir, "release", "modelauth"),
                    help="the binary (default: %(default)s, from $CARGO_TARGET_DIR)")
    ap.add_argument("--pg", default="postgres:///modelauth_bench?host=/var/run/postgresql")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pgbench-seconds", type=int, default=5)
    ap.add_argument("--pgbouncer", default=None,
                    help="also measure through PgBouncer (transaction mode), e.g. "
                         "postgres:///modelauth_bench?host=/tmp/pgb&port=6432")
    a = ap.parse_args()

    m = re.match(r"postgres(?:ql)?://[^/]*/([^?]+)(?:\?(.*))?", a.pg)
    db = m.group(1)
    host = "/var/run/postgresql"
    for kv in (m.group(2) or "").split("&"):
        if kv.startswith("host="):
            host = kv[5:]
    db_args = ["-h", host, db]
    subprocess.run(["createdb", "-h", host, db], stderr=subprocess.DEVNULL)
    subprocess.run(["pgbench", "-i", "-s", "1", "-q"] + db_args, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    tmp = tempfile.mkdtemp()
    schema = f"bench_{os.getpid()}"
    subjects = {
        "postgres": env_for(a.pg, schema),
        "sqlite": env_for(os.path.join(tmp, "store.db"), ""),
    }
    make_store(a.bin, subjects["postgres"])
    make_store(a.bin, subjects["sqlite"])
    if a.pgbouncer:
        # The same store (schema) through PgBouncer.
        subjects["postgres via pgbouncer"] = env_for(a.pgbouncer, schema)

    res = {k: {"tput": [], "tput8": [], "lat": [], "cold": []} for k in subjects}
    pgb = []
    for r in range(a.rounds):
        pgb.append(pgbench(db_args, a.pgbench_seconds))
        for k, env in subjects.items():
            res[k]["tput"].append(throughput(a.bin, env, a.requests))
            res[k]["tput8"].append(throughput(a.bin, env, a.requests // 8, procs=8))
            res[k]["lat"] += latencies(a.bin, env, a.pings // a.rounds)
        for _ in range(a.runs // a.rounds):
            for k, env in subjects.items():
                res[k]["cold"].append(cold(a.bin, env))
        print(f"round {r + 1}/{a.rounds}: pgbench {pgb[-1]:.0f} tps, "
              + ", ".join(f"{k} {res[k]['tput'][-1]:.0f}/s" for k in subjects), file=sys.stderr)

    pgbench_tps = statistics.median(pgb)
    print(f"\npgbench -S -c 1 (select-only, one connection): {pgbench_tps:,.0f} tps (median of {a.rounds})\n")
    print("| store | warm resolves/s, 1 serve | vs pgbench -S -c 1 | p50 | p99 | 8 serves together, resolves/s | cold `call` median | p90 |")
    print("|---|---|---|---|---|---|---|---|")
    for k in subjects:
        t = statistics.median(res[k]["tput"])
        t8 = statistics.median(res[k]["tput8"])
        lat = res[k]["lat"]
        c = res[k]["cold"]
        vs = f"{100 * t / pgbench_tps:.0f} %" if k.startswith("postgres") else "—"
        print(f"| {k} | {t:,.0f} | {vs} | {1e6 * pct(lat, 0.5):.0f} µs | {1e6 * pct(lat, 0.99):.0f} µs "
              f"| {t8:,.0f} | {1e3 * statistics.median(c):.2f} ms | {1e3 * pct(c, 0.9):.2f} ms |")
    subprocess.run(["psql", "-h", host, db, "-qc", f"DROP SCHEMA {schema} CASCADE"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
