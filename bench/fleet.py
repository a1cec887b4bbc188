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
  * (issue 19) a cold one-shot `modelauth get openai` against `pgbench -C -S -c 1` (a new
    connection and one select per transaction: both pay backend start and authentication),
    per-transaction time = 1 / tps, on the same server, database and route,
each on a store of 100 api_key profiles (4 providers).
Every PostgreSQL route given is measured: --pg (Unix socket), --tcp (e.g. SCRAM on
127.0.0.1, password from $PGPASSWORD), --pgbouncer / --pgbouncer-tcp (PgBouncer in
transaction mode in front of the same server).

Usage: bench/fleet.py [--bin $CARGO_TARGET_DIR/release/modelauth] [--pgbouncer URL]
                      [--pg postgres:///modelauth_bench?host=/var/run/postgresql]
                      [--tcp postgres://mt@127.0.0.1/mtdb] [--pgbouncer-tcp URL] [--no-sqlite]
                      [--requests 20000] [--pings 2000] [--runs 100] [--rounds 3]
Needs: a running PostgreSQL whose database exists (created with createdb if missing),
pgbench (postgresql-contrib / postgresql package).
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time


def env_for(store, schema):
    e = {"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir()}
    for k in ("PGPASSWORD", "PGSSLMODE"):  # a TCP route's password / TLS mode, as libpq
        if k in os.environ:
            e[k] = os.environ[k]
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


def cold_get(bin_, env):
    """One cold `modelauth get openai` (what a shell's `$(modelauth get openai)` pays)."""
    t0 = time.perf_counter()
    r = subprocess.run([bin_, "get", "openai"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
    dt = time.perf_counter() - t0
    assert r.returncode == 0
    return dt


def pg_args(url):
    """pgbench/psql arguments (-h -p -U db) of a postgres:// URL (no password: $PGPASSWORD)."""
    m = re.match(r"postgres(?:ql)?://(?:([^@/:]*)(?::[^@/]*)?@)?([^/:]*)(?::(\d+))?/([^?]+)(?:\?(.*))?", url)
    user, host, port, db, query = m.groups()
    for kv in (query or "").split("&"):
        if kv.startswith("host="):
            host = kv[5:]
        if kv.startswith("port="):
            port = kv[5:]
    args = ["-h", host or "/var/run/postgresql"]
    if port:
        args += ["-p", port]
    if user:
        args += ["-U", user]
    return args + [db]


def pgbench_connect(db_args, seconds):
    """`pgbench -C -S -c 1`: a new connection per select; seconds per transaction (1/tps,
    connection included) and pgbench's average connection time."""
    out = subprocess.run(["pgbench", "-C", "-S", "-c", "1", "-T", str(seconds), "-n"] + db_args,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout.decode()
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
    conn = re.search(r"average connection time = ([0-9.]+) ms", out)
    return 1 / tps, float(conn.group(1)) / 1e3 if conn else float("nan")


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
    ap.add_argument("--tcp", default=None,
                    help="also a TCP route with a password ($PGPASSWORD), e.g. postgres://mt@127.0.0.1/mtdb")
    ap.add_argument("--pgbouncer-tcp", default=None,
                    help="PgBouncer in front of the --tcp database, e.g. postgres://mt@127.0.0.1:6432/mtdb")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--skip-unix", action="store_true", help="measure only the --tcp routes")
    ap.add_argument("--cold-only", action="store_true",
                    help="only the cold `get` against `pgbench -C` (no warm or latency runs)")
    a = ap.parse_args()

    db_args = pg_args(a.pg)
    if not a.skip_unix:
        subprocess.run(["createdb"] + db_args[:-1] + [db_args[-1]], stderr=subprocess.DEVNULL)
        subprocess.run(["pgbench", "-i", "-s", "1", "-q"] + db_args, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if a.tcp:
        subprocess.run(["pgbench", "-i", "-s", "1", "-q"] + pg_args(a.tcp), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    tmp = tempfile.mkdtemp()
    schema = f"bench_{os.getpid()}"
    subjects, anchors = {}, {}  # label -> env; label -> pgbench args of the same route
    if not a.skip_unix:
        subjects["postgres"], anchors["postgres"] = env_for(a.pg, schema), db_args
        make_store(a.bin, subjects["postgres"])
        if a.pgbouncer:
            # The same store (schema) through PgBouncer.
            subjects["postgres via pgbouncer"] = env_for(a.pgbouncer, schema)
            anchors["postgres via pgbouncer"] = pg_args(a.pgbouncer)
    if a.tcp:
        subjects["postgres tcp"], anchors["postgres tcp"] = env_for(a.tcp, schema), pg_args(a.tcp)
        make_store(a.bin, subjects["postgres tcp"])
        if a.pgbouncer_tcp:
            subjects["postgres tcp via pgbouncer"] = env_for(a.pgbouncer_tcp, schema)
            anchors["postgres tcp via pgbouncer"] = pg_args(a.pgbouncer_tcp)
    if not a.no_sqlite:
        subjects["sqlite"] = env_for(os.path.join(tmp, "store.db"), "")
        make_store(a.bin, subjects["sqlite"])

    res = {k: {"tput": [], "tput8": [], "lat": [], "cold": [], "get": [], "pgb": [], "pgbc": [], "conn": []}
           for k in subjects}
    pgb = []
    for r in range(a.rounds):
        for k, args in anchors.items():
            if not a.cold_only:
                res[k]["pgb"].append(pgbench(args, a.pgbench_seconds))
            tx, conn = pgbench_connect(args, a.pgbench_seconds)
            res[k]["pgbc"].append(tx)
            res[k]["conn"].append(conn)
        pgb.append(res[next(iter(anchors))]["pgb"][-1] if anchors and not a.cold_only else float("nan"))
        for k, env in ({} if a.cold_only else subjects).items():
            res[k]["tput"].append(throughput(a.bin, env, a.requests))
            res[k]["tput8"].append(throughput(a.bin, env, a.requests // 8, procs=8))
            res[k]["lat"] += latencies(a.bin, env, a.pings // a.rounds)
        for _ in range(a.runs // a.rounds):
            for k, env in subjects.items():
                if not a.cold_only:
                    res[k]["cold"].append(cold(a.bin, env))
                res[k]["get"].append(cold_get(a.bin, env))
        print(f"round {r + 1}/{a.rounds}: pgbench {pgb[-1]:.0f} tps, "
              + ", ".join(f"{k} {res[k]['tput'][-1] if res[k]['tput'] else float('nan'):.0f}/s"
                          for k in subjects), file=sys.stderr)

    if a.cold_only:
        subjects_warm = {}
    else:
        subjects_warm = subjects
    print("\n| store, route | `pgbench -S -c 1` tps | warm resolves/s, 1 serve | vs pgbench | p50 | p99 "
          "| 8 serves together, resolves/s | cold `call` median | p90 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in subjects_warm:
        t = statistics.median(res[k]["tput"])
        t8 = statistics.median(res[k]["tput8"])
        lat = res[k]["lat"]
        c = res[k]["cold"]
        pt = statistics.median(res[k]["pgb"]) if res[k]["pgb"] else None
        vs = f"{100 * t / pt:.0f} %" if pt else "—"
        print(f"| {k} | {f'{pt:,.0f}' if pt else '—'} | {t:,.0f} | {vs} | {1e6 * pct(lat, 0.5):.0f} µs "
              f"| {1e6 * pct(lat, 0.99):.0f} µs | {t8:,.0f} | {1e3 * statistics.median(c):.2f} ms "
              f"| {1e3 * pct(c, 0.9):.2f} ms |")
    print("\n| store, route | `pgbench -C -S -c 1` per transaction (1/tps) | its average connection time "
          "| cold `get openai` median | p90 | get / pgbench -C |")
    print("|---|---|---|---|---|---|")
    for k in subjects:
        g = res[k]["get"]
        if res[k]["pgbc"]:
            tx = statistics.median(res[k]["pgbc"])
            conn = statistics.median(res[k]["conn"])
            print(f"| {k} | {1e3 * tx:.2f} ms | {1e3 * conn:.2f} ms | {1e3 * statistics.median(g):.2f} ms "
                  f"| {1e3 * pct(g, 0.9):.2f} ms | **{statistics.median(g) / tx:.2f}×** |")
        else:
            print(f"| {k} | — | — | {1e3 * statistics.median(g):.2f} ms | {1e3 * pct(g, 0.9):.2f} ms | — |")
    for url in ([] if a.skip_unix else [a.pg]) + ([a.tcp] if a.tcp else []):
        subprocess.run(["psql"] + pg_args(url) + ["-qc", f"DROP SCHEMA {schema} CASCADE"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
