#!/usr/bin/env bash
# Counts the write-ish syscalls a cold read makes on the store's directory (issue 19 item 1:
# "a read writes nothing"). Usage: bench/strace-read.sh [path/to/modelauth]
# (default: target/release/modelauth, else $CARGO_TARGET_DIR/release/modelauth).
# Prints one line per read method: the method, then the count of calls that create, write,
# chmod/chown, truncate, sync or remove a file in the store's directory, and the count of
# opens with O_CREAT there (SQLite opens an existing -wal with O_CREAT; the listing printed
# at the end shows whether anything was created).
set -euo pipefail
BIN=${1:-}
if [ -z "$BIN" ]; then
  for c in target/release/modelauth "${CARGO_TARGET_DIR:-target}/release/modelauth"; do
    [ -x "$c" ] && BIN=$c && break
  done
fi
[ -x "${BIN:-}" ] || { echo "usage: $0 path/to/modelauth" >&2; exit 2; }
command -v strace >/dev/null || { echo "strace is needed (apt-get install -y strace)" >&2; exit 2; }
DIR=$(mktemp -d)
trap 'rm -rf "$DIR" "$DIR.trace"' EXIT
STORE=$DIR/store.db
# As root, SQLite re-asserts the owner of -wal/-shm with fchown on every open (a no-op
# but for ctime). Run as nobody instead, as any user's helper runs (AS_ROOT=1 keeps root).
AS=()
if [ "$(id -u)" = 0 ] && [ -z "${AS_ROOT:-}" ] && command -v setpriv >/dev/null; then
  chown 65534:65534 "$DIR"
  AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
printf '%s' '{"profile":{"id":"openai:default","provider":"openai","type":"api_key","key":"sk-bench-0000"}}' \
  | "${AS[@]}" "$BIN" --store "$STORE" call profiles.put - >/dev/null
count() { # METHOD ARGS...: write-ish syscalls touching $DIR during one cold run
  local log=$DIR.trace
  strace -f -y -qq -o "$log" \
    -e trace=openat,open,creat,write,pwrite64,writev,pwritev,pwritev2,ftruncate,truncate,fallocate,unlink,unlinkat,rename,renameat,renameat2,mkdir,mkdirat,fchmod,fchmodat,chmod,fchown,fchownat,chown,fsync,fdatasync \
    "$@" >/dev/null 2>&1 </dev/null || true
  # openat counts only with O_CREAT; every other call counts when its path or fd is in $DIR.
  grep -F "$DIR" "$log" | grep -v -E '^[0-9]+ +open(at)?\(' | grep -c -v -E '= -1 E' || true
  grep -F "$DIR" "$log" | grep -E '^[0-9]+ +open(at)?\(.*O_CREAT' | grep -c -v -E '= -1 E' || true
  rm -f "$log"
}
for m in auth.resolve order.get auth.status helper.info; do
  params='{"provider":"openai"}'
  [ "$m" = helper.info ] && params='{}'
  set -- $(count "${AS[@]}" "$BIN" --store "$STORE" call "$m" "$params")
  echo "$m: $1 write-ish calls, $2 O_CREAT opens"
done
set -- $(count "${AS[@]}" "$BIN" --store "$STORE" check)
echo "check: $1 write-ish calls, $2 O_CREAT opens"
# What the writers pay: one cold write on the same store.
set -- $(count "${AS[@]}" sh -c "printf '%s' '{\"profile\":{\"id\":\"openai:w\",\"provider\":\"openai\",\"type\":\"api_key\",\"key\":\"sk-bench-1111\"}}' | \"\$0\" --store \"\$1\" call profiles.put -" "$BIN" "$STORE")
echo "profiles.put (a write): $1 write-ish calls, $2 O_CREAT opens"
ls -la --time-style=full-iso "$DIR" | sed 1d
