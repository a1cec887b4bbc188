#!/usr/bin/env python3
"""Sealed vs unsealed store (issue 22), side by side in one run, in rounds so machine noise
hits both alike:
  * warm `auth.resolve`/s: N requests piped into one `modelauth serve`,
  * cold one-shot `modelauth call auth.resolve` (median, p90),
each on a store of 100 api_key profiles (4 providers); then the time `modelauth store seal`
takes on a plaintext store of 10,000 profiles (and `store rekey` with two keys).

Usage: bench/sealed.py [--bin $CARGO_TARGET_DIR/release/modelauth] [--requests 20000] [--runs 100]
                       [--rounds 3] [--pg postgres:///db?host=/var/run/postgresql]
"""
import argparse, json, os, statistics, subprocess, tempfile, time

PROVIDERS = ["openai", "anthropic", "mistral", "groq"]


def env_for(store, key=None, schema=None):
    e = {"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir(), "MODELAUTH_STORE": store}
    if schema:
        e["MODELAUTH_PG_SCHEMA"] = schema
    if key:
        e["MODELAUTH_STORE_KEY"] = key
    return e


def fill(bin_, env, n):
    lines = []
    for i in range(n):
        p = PROVIDERS[i % len(PROVIDERS)]
        prof = {"id": f"{p}:k{i}", "type": "api_key", "key": f"sk-bench-{i:06d}-abcdefghijklmnop"}
        lines.append(json.dumps({"jsonrpc": "2.0", "id": i, "method": "profiles.put", "params": {"profile": prof}}))
    subprocess.run([bin_, "serve"], input=("\n".join(lines) + "\n").encode(), env=env,
                   stdout=subprocess.DEVNULL, check=True)


def warm(bin_, env, n):
    req = "".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "auth.resolve",
                              "params": {"provider": PROVIDERS[i % 4]}}) + "\n" for i in range(n)).encode()
    t0 = time.perf_counter()
    out = subprocess.run([bin_, "serve"], input=req, env=env, stdout=subprocess.PIPE, check=True).stdout
    dt = time.perf_counter() - t0
    assert out.count(b'"secret"') == n, "every resolve answered with a secret"
    return n / dt


def cold(bin_, env, runs):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([bin_, "call", "auth.resolve", '{"provider":"openai"}'], env=env,
                       stdout=subprocess.DEVNULL, check=True)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return statistics.median(ts) * 1000, ts[int(len(ts) * 0.9)] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--bin",
        default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "modelauth"),
        help="the binary (default: %(default)s, from $CARGO_TARGET_DIR)",
    )
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seal-profiles", type=int, default=10000)
    ap.add_argument("--pg", default=None)
    a = ap.parse_args()
    key = subprocess.run([a.bin, "store", "keygen"], stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    key2 = subprocess.run([a.bin, "store", "keygen"], stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    d = tempfile.mkdtemp()
    nonce = f"{os.getpid()}_{int(time.time())}"
    if a.pg:
        subjects = {"unsealed": env_for(a.pg, None, f"bench_plain_{nonce}"),
                    "sealed": env_for(a.pg, key, f"bench_sealed_{nonce}")}
    else:
        subjects = {"unsealed": env_for(os.path.join(d, "plain.db")),
                    "sealed": env_for(os.path.join(d, "sealed.db"), key)}
    for e in subjects.values():
        fill(a.bin, e, 100)
    res = {k: {"warm": [], "cold": [], "p90": []} for k in subjects}
    for _ in range(a.rounds):
        for name, e in subjects.items():
            res[name]["warm"].append(warm(a.bin, e, a.requests))
            m, p = cold(a.bin, e, a.runs)
            res[name]["cold"].append(m)
            res[name]["p90"].append(p)
    backend = "PostgreSQL" if a.pg else "SQLite"
    print(f"{backend}, 100 profiles, {a.rounds} rounds; {a.requests} warm resolves, {a.runs} cold calls per round")
    for name, r in res.items():
        print(f"  {name:9s} warm {statistics.median(r['warm']):9.0f} resolves/s   cold call median {statistics.median(r['cold']):6.2f} ms  p90 {statistics.median(r['p90']):6.2f} ms")
    w = statistics.median(res["sealed"]["warm"]) / statistics.median(res["unsealed"]["warm"]) - 1
    c = statistics.median(res["sealed"]["cold"]) - statistics.median(res["unsealed"]["cold"])
    print(f"  sealed vs unsealed: warm {w * 100:+.1f} %, cold {c:+.2f} ms")
    # Sealing an existing plaintext store of N profiles.
    n = a.seal_profiles
    big = env_for(a.pg, None, f"bench_big_{nonce}") if a.pg else env_for(os.path.join(d, "big.db"))
    fill(a.bin, big, n)
    e = dict(big, MODELAUTH_STORE_KEY=key)
    t0 = time.perf_counter()
    r = json.loads(subprocess.run([a.bin, "store", "seal"], env=e, stdout=subprocess.PIPE, check=True).stdout)
    ts = time.perf_counter() - t0
    e2 = dict(big, MODELAUTH_STORE_KEY=f"{key2}\n{key}")
    t0 = time.perf_counter()
    r2 = json.loads(subprocess.run([a.bin, "store", "rekey"], env=e2, stdout=subprocess.PIPE, check=True).stdout)
    tr = time.perf_counter() - t0
    print(f"  store seal of {n} profiles: {ts:.2f} s ({r['profiles']} rewritten, {r['transactions']} transactions)")
    print(f"  store rekey of {n} profiles: {tr:.2f} s ({r2['profiles']} rewritten, {r2['transactions']} transactions)")


if __name__ == "__main__":
    main()
