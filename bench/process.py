#!/usr/bin/env python3
"""Whole-process benchmark of modelauth (no third-party tools needed).

Measures, interleaved in one run so that machine noise hits every subject alike:
  * one cold `modelauth call auth.resolve` on a store of N profiles (default 100),
  * `git credential-store get` on an equivalent credentials file,
  * `/bin/true` (the cost of spawning anything),
reporting median wall time, ratios and peak RSS (from wait4's ru_maxrss); then the
throughput of M auth.resolve requests piped into one `modelauth serve` process, and the
same with 10 % writes (profiles.put, fsync-bound).

Usage: bench/process.py [--bin $CARGO_TARGET_DIR/release/modelauth] [--profiles 100] [--runs 200]
                        [--requests 100000] [--scale]
       bench/process.py --methods [--sizes 10,1000,100000]   every walking method at scale
       bench/process.py --compare before=BIN after=BIN [--runs N]   cold calls of several builds
       bench/process.py --warm before=BIN after=BIN [--requests N --rounds R]   warm serve
"""
import argparse, json, os, random, shutil, statistics, subprocess, sys, tempfile, time


def run_once(argv, stdin_bytes=None, env=None):
    """Spawn argv, feed stdin, wait; return (seconds, peak RSS KiB, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    if stdin_bytes is not None:
        p.stdin.write(stdin_bytes)
        p.stdin.close()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return dt, ru.ru_maxrss, p.returncode


def peak_rss_kib(argv, stdin_bytes=None, env=None, runs=5):
    """Peak RSS (KiB) of argv via GNU time (%M); wait4 from Python would count the
    Python parent's pages copied at fork. Falls back to wait4 if /usr/bin/time is absent."""
    if not os.path.exists("/usr/bin/time"):
        return max(run_once(argv, stdin_bytes, env)[1] for _ in range(runs))
    best = 0
    for _ in range(runs):
        p = subprocess.run(["/usr/bin/time", "-f", "%M"] + argv, input=stdin_bytes,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        best = max(best, int(p.stderr.decode().strip().splitlines()[-1]))
    return best


def make_store(bin_, path, n, hot=None):
    """A store of n api_key profiles spread over 4 providers, written in one transaction
    with store.import. With `hot`, provider `openai` gets exactly `hot` of them and the rest
    go to 1,000 other providers (to show cost follows the provider's size, not the store's)."""
    profiles = {}
    for i in range(n):
        if hot is None:
            prov = ["openai", "anthropic", "google", "openrouter"][i % 4]
        else:
            prov = "openai" if i < hot else f"prov{i % 1000}"
        profiles[f"{prov}:p{i}"] = {"type": "api_key", "provider": prov, "key": f"sk-bench-{i:06d}"}
    req = {"jsonrpc": "2.0", "id": 1, "method": "store.import",
           "params": {"document": {"version": 1, "profiles": profiles}}}
    out = subprocess.run([bin_, "--store", path, "serve", "--max-message-bytes", "1000000000"], input=(json.dumps(req) + "\n").encode(),
                         stdout=subprocess.PIPE, check=True)
    assert b'"result"' in out.stdout, out.stdout[:300]


def scale(bin_, env, tmp, runs, requests):
    """Cold one-shot and warm throughput for stores of 10, 1,000 and 100,000 profiles."""
    print("# scaling: store size -> cold `call auth.resolve` median, serve auth.resolve/s")
    print(f"{'profiles':>9} {'layout':>22} {'cold ms':>8} {'serve req/s':>12}")
    for n in (10, 1000, 100_000):
        for hot in (None, min(n, 25)):
            store = os.path.join(tmp, f"scale-{n}-{hot}.db")
            make_store(bin_, store, n, hot)
            argv = [bin_, "--store", store, "call", "auth.resolve", '{"provider":"openai"}']
            run_once(argv, None, env)
            ts = sorted(run_once(argv, None, env)[0] for _ in range(runs))
            reqs = requests if n < 100_000 or hot else max(200, requests // 100)
            data = ("\n".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "auth.resolve",
                                          "params": {"provider": "openai"}}) for i in range(reqs)) + "\n").encode()
            dt, _, code = run_once([bin_, "--store", store, "serve"], data, env)
            assert code == 0
            layout = "n/4 per provider" if hot is None else f"{hot} openai + rest"
            print(f"{n:>9} {layout:>22} {statistics.median(ts)*1e3:8.2f} {reqs/dt:12,.0f}")


def method_scale(bin_, env, tmp, runs, sizes=(10, 1000, 100_000)):
    """Cold one-shot time of every walking method on one provider of n profiles: nothing
    may be quadratic (issue 19: each within 5x of auth.resolve at the same size)."""
    print("# methods at scale: one provider of n profiles, cold one-shot median (ms)")
    methods = [("auth.resolve", ["call", "auth.resolve", '{"provider":"openai"}']),
               ("order.get", ["call", "order.get", '{"provider":"openai"}']),
               ("auth.candidates", ["call", "auth.candidates", '{"provider":"openai"}']),
               ("auth.status", ["call", "auth.status", '{"provider":"openai"}']),
               ("check", ["check", "--provider", "openai"])]
    print(f"{'profiles':>9} " + " ".join(f"{m:>16}" for m, _ in methods) + f" {'worst/resolve':>14}")
    for n in sizes:
        store = os.path.join(tmp, f"methods-{n}.db")
        make_store(bin_, store, n, hot=n)
        k = runs if n < 100_000 else max(3, runs // 10)
        med = {}
        for m, args in methods:
            argv = [bin_, "--store", store] + args
            run_once(argv, None, env)
            med[m] = statistics.median(run_once(argv, None, env)[0] for _ in range(k)) * 1e3
        worst = max(v for m, v in med.items() if m != "auth.resolve") / med["auth.resolve"]
        print(f"{n:>9} " + " ".join(f"{med[m]:16.2f}" for m, _ in methods) + f" {worst:14.2f}")


def git_store(tmp, n):
    """A git credential-store file of n credentials and the stdin of a `get` in its middle."""
    cred = os.path.join(tmp, "git-credentials")
    with open(cred, "w") as f:
        for i in range(n):
            f.write(f"https://user{i}:sk-bench-{i:06d}@host{i}.example.com\n")
    os.chmod(cred, 0o600)
    return cred, f"protocol=https\nhost=host{n // 2}.example.com\n\n".encode()


def same_page_cache_state(binaries, tmp, mode):
    """Puts every subject's executable in the same page-cache state, since that state moves
    a cold start by ~5-10 % on Linux 6.x: a file just written sits in large folios (fewer
    page faults when it is mapped), a file read back from disk in small ones.
    `copied`: each binary (git's and /bin/true too) is run from a fresh copy in `tmp`, the
    state `cargo install` leaves; `dropped`: the page cache is dropped first (root), the
    state after a reboot; `as-is`: nothing is done. Returns the paths to run."""
    if mode == "copied":
        out = []
        for i, b in enumerate(binaries):
            dst = os.path.join(tmp, f"bin{i}-{os.path.basename(b)}")
            shutil.copy2(b, dst)
            out.append(dst)
        return out
    if mode == "dropped":
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    return list(binaries)


def compare(pairs, store, tmp, env, runs, n, page_cache="copied"):
    """Cold `call auth.resolve` of each LABEL=BIN on one store, interleaved call by call
    with `git credential-store get` and `/bin/true` in a shuffled order each round, every
    executable in the same page-cache state (`same_page_cache_state`); medians, ratios to
    git, peak RSS."""
    cred, inp = git_store(tmp, n)
    labels = [p.partition("=")[0] for p in pairs]
    paths = [os.path.abspath(p.partition("=")[2]) for p in pairs]
    *paths, git, true = same_page_cache_state(paths + [shutil.which("git"), "/bin/true"], tmp, page_cache)
    subjects = {}
    for label, b in zip(labels, paths):
        subjects[label] = ([b, "--store", store, "call", "auth.resolve",
                            '{"provider":"openai"}'], None)
    subjects["git credential-store get"] = ([git, "credential-store", "--file", cred, "get"], inp)
    subjects["/bin/true"] = ([true], None)
    res = {k: [] for k in subjects}
    for argv, i in subjects.values():
        run_once(argv, i, env)
    # A new order every round: a subject's place in the round moves its time (the one
    # right after `/bin/true` ran ~5 % faster on the project's VM), so no subject keeps one.
    rng = random.Random(19)
    order = list(subjects)
    for _ in range(runs):
        rng.shuffle(order)
        for k in order:
            argv, i = subjects[k]
            dt, _, code = run_once(argv, i, env)
            assert code == 0, (k, code)
            res[k].append(dt)
    git = statistics.median(res["git credential-store get"])
    print(f"# cold one-shot, {runs} interleaved runs each, store of {n} profiles, page cache: {page_cache}")
    print(f"{'subject':28} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'/ git':>6} {'peak RSS MiB':>13}")
    for k, (argv, i) in subjects.items():
        v = sorted(res[k])
        rss = peak_rss_kib(argv, i, env)
        print(f"{k:28} {statistics.median(v)*1e3:10.2f} {v[len(v)//10]*1e3:8.2f} {v[len(v)*9//10]*1e3:8.2f} "
              f"{statistics.median(v)/git:6.2f} {rss/1024:13.1f}")


def warm(pairs, store, env, requests, rounds, batch=100, pings=2000):
    """Warm `serve` of each LABEL=BIN (issue 19 item 3): auth.resolve against trivial
    methods (settings.get, helper.info), as single-line requests piped in, as batches of
    `batch`, and one at a time (request, wait for the answer, next); medians of `rounds`
    interleaved rounds."""
    methods = [("auth.resolve", {"provider": "openai"}), ("settings.get", {}), ("helper.info", {})]
    # A store modified in the last 2 s is not trusted as a read-cache key by a read-only
    # connection (store::sqlite::open::readonly_marker): let the new store settle.
    time.sleep(2.5)
    res = {}
    for _ in range(rounds):
        for pair in pairs:
            label, _, b = pair.partition("=")
            argv = [os.path.abspath(b), "--store", store, "serve"]
            for m, params in methods:
                single = "".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": params}) + "\n"
                                 for i in range(requests)).encode()
                batches = "".join(json.dumps([{"jsonrpc": "2.0", "id": i * batch + j, "method": m, "params": params}
                                              for j in range(batch)]) + "\n"
                                  for i in range(requests // batch)).encode()
                for mode, data in (("single", single), (f"batch of {batch}", batches)):
                    dt, _, code = run_once(argv, data, env)
                    assert code == 0
                    res.setdefault((label, m, mode), []).append(requests / dt)
                p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
                line = (json.dumps({"jsonrpc": "2.0", "id": 1, "method": m, "params": params}) + "\n").encode()
                lat = []
                for k in range(pings + 50):
                    t0 = time.perf_counter()
                    p.stdin.write(line)
                    p.stdin.flush()
                    assert b'"result"' in p.stdout.readline()
                    if k >= 50:
                        lat.append(time.perf_counter() - t0)
                p.stdin.close()
                p.wait()
                res.setdefault((label, m, "one at a time"), []).append(1 / statistics.median(lat))
    print(f"# warm serve, requests/s, median of {rounds} interleaved rounds ({requests} requests piped in;"
          f" one at a time = 1 / median round trip of {pings})")
    print("| binary | mode | auth.resolve | settings.get | helper.info | resolve / settings.get |")
    print("|---|---|---|---|---|---|")
    for pair in pairs:
        label = pair.partition("=")[0]
        for mode in ("single", f"batch of {batch}", "one at a time"):
            r = {m: statistics.median(res[(label, m, mode)]) for m, _ in methods}
            print(f"| {label} | {mode} | {r['auth.resolve']:,.0f} | {r['settings.get']:,.0f} | "
                  f"{r['helper.info']:,.0f} | {r['auth.resolve'] / r['settings.get']:.2f} |")


def main():
    ap = argparse.ArgumentParser()
    target_dir = os.environ.get("CARGO_TARGET_DIR") or "target"
    ap.add_argument("--bin", default=os.path.join(target_dir, "release", "modelauth"),
                    help="the binary (default: %(default)s, from $CARGO_TARGET_DIR)")
    ap.add_argument("--profiles", type=int, default=100)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--scale", action="store_true", help="also measure 10 / 1,000 / 100,000 profiles")
    ap.add_argument("--methods", action="store_true", help="only: every walking method at 10 / 1,000 / 100,000 profiles of one provider")
    ap.add_argument("--sizes", default="10,1000,100000", help="store sizes for --methods")
    ap.add_argument("--warm", nargs="+", metavar="LABEL=BIN",
                    help="only: warm serve of several binaries, resolve vs trivial methods, "
                         "single requests and batches (--requests per run, --rounds)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--page-cache", choices=["copied", "dropped", "as-is"], default="copied",
                    help="--compare: the page-cache state of every executable: fresh copies "
                         "(as `cargo install` leaves a binary; default), dropped first (as after "
                         "a reboot; root), or as they are")
    ap.add_argument("--compare", nargs="+", metavar="LABEL=BIN",
                    help="only: cold one-shot of several binaries (e.g. before=... after=...), "
                         "interleaved with git credential-store get and /bin/true, plus peak RSS")
    a = ap.parse_args()
    bin_ = os.path.abspath(a.bin)
    tmp = tempfile.mkdtemp(prefix="modelauth-bench-")
    try:
        if a.methods:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
            method_scale(bin_, env, tmp, min(a.runs, 20), tuple(int(x) for x in a.sizes.split(",")))
            return
        store = os.path.join(tmp, "store.db")
        make_store(bin_, store, a.profiles)
        if a.compare:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
            compare(a.compare, store, tmp, env, a.runs, a.profiles, a.page_cache)
            return
        if a.warm:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
            warm(a.warm, store, env, a.requests, a.rounds)
            return
        cred, git_in = git_store(tmp, a.profiles)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        git = shutil.which("git")
        subjects = {
            "modelauth call auth.resolve": ([bin_, "--store", store, "call", "auth.resolve",
                                             '{"provider":"openai"}'], None),
            "/bin/true": (["/bin/true"], None),
        }
        if git:
            subjects["git credential-store get"] = (
                [git, "credential-store", "--file", cred, "get"], git_in)
        res = {k: [] for k in subjects}
        rss = {k: 0 for k in subjects}
        for name, (argv, inp) in subjects.items():  # warm the page cache
            run_once(argv, inp, env)
        for _ in range(a.runs):
            for name, (argv, inp) in subjects.items():
                dt, r, code = run_once(argv, inp, env)
                assert code == 0, (name, code)
                res[name].append(dt)
        for name, (argv, inp) in subjects.items():
            rss[name] = peak_rss_kib(argv, inp, env)
        print(f"# cold one-shot, {a.runs} interleaved runs each, store of {a.profiles} profiles")
        print(f"{'subject':32} {'median ms':>10} {'p90 ms':>8} {'peak RSS MiB':>13}")
        med = {}
        for k, v in res.items():
            v.sort()
            med[k] = statistics.median(v)
            print(f"{k:32} {med[k]*1e3:10.2f} {v[int(len(v)*0.9)]*1e3:8.2f} {rss[k]/1024:13.1f}")
        m = med["modelauth call auth.resolve"]
        if git:
            print(f"ratio modelauth / git credential-store get: {m / med['git credential-store get']:.2f}")
        print(f"ratio modelauth / /bin/true: {m / med['/bin/true']:.2f}")

        def throughput(write_every):
            lines = []
            for i in range(a.requests):
                if write_every and i % write_every == 0:
                    lines.append(json.dumps({"jsonrpc": "2.0", "id": i, "method": "profiles.put", "params": {
                        "profile": {"id": f"openai:w{i % 50}", "type": "api_key", "key": f"sk-w-{i}"}}}))
                else:
                    lines.append(json.dumps({"jsonrpc": "2.0", "id": i, "method": "auth.resolve",
                                             "params": {"provider": ["openai", "anthropic"][i % 2]}}))
            data = ("\n".join(lines) + "\n").encode()
            dt, _, code = run_once([bin_, "--store", store, "serve"], data, env)
            assert code == 0
            return a.requests / dt, dt, peak_rss_kib([bin_, "--store", store, "serve"], data, env, runs=1)

        rate, dt, r = throughput(0)
        print(f"# serve throughput: {a.requests} auth.resolve in {dt:.2f} s = {rate:,.0f} req/s, peak RSS {r/1024:.1f} MiB")
        n = a.requests
        a.requests = max(1000, n // 10)
        rate, dt, r = throughput(10)
        print(f"# serve throughput with 10 % writes: {a.requests} requests in {dt:.2f} s = {rate:,.0f} req/s, peak RSS {r/1024:.1f} MiB")
        if a.scale:
            scale(bin_, env, tmp, min(a.runs, 30), max(1000, n // 5))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
