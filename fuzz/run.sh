#!/usr/bin/env bash
# Fuzzes one target with AFL++ for a while: fuzz/run.sh <target> <seconds> [afl-fuzz options]
#
# Builds the AFL++-instrumented targets (cargo afl build), starts from the committed seed corpus
# (plus, for `frame`, the eventstream vectors in ../shared/reference when present, read in
# place), and leaves AFL++'s output in $GGJH_FUZZ_OUT/<target> (default
# ~/.cache/ggjh-fuzz/<target>). Exits non-zero when a crash or a hang was found, after copying
# each one into fuzz/findings/<target>/ for the replay test. Needs cargo-afl on PATH
# (see fuzz/README.md; .ci/fuzz-smoke installs it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${1:?usage: fuzz/run.sh <target> <seconds> [afl-fuzz options]}"
seconds="${2:?usage: fuzz/run.sh <target> <seconds> [afl-fuzz options]}"
shift 2
case "$target" in
  frame|rpc_client|ipc_session|jobs_responses|document|config|journal) ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="${GGJH_FUZZ_TARGET_DIR:-$HOME/.cache/ggjh-fuzz-target}"
(cd "$here" && cargo afl build --quiet --locked --release --features afl --bin "$target")
binary="$CARGO_TARGET_DIR/release/$target"

out="${GGJH_FUZZ_OUT:-$HOME/.cache/ggjh-fuzz}/$target"
rm -rf "$out"
mkdir -p "$out"
seeds="$out.seeds"
rm -rf "$seeds"
mkdir -p "$seeds"
cp "$here/corpus/$target/"* "$seeds/"
shared="${GGJH_SHARED:-$(cd "$here/../.." && pwd)/shared}"
if [ "$target" = frame ] && [ -d "$shared/reference/eventstream-vectors" ]; then
  # Other projects' vectors are read from shared/, never committed: raw, and CRC-fixed.
  while IFS= read -r -d '' f; do
    name="$(echo "${f#"$shared"/reference/eventstream-vectors/}" | tr '/' '_')"
    { printf '\000'; cat "$f"; } > "$seeds/vector-$name.raw"
    { printf '\001'; cat "$f"; } > "$seeds/vector-$name.crc"
  done < <(find "$shared/reference/eventstream-vectors" -path '*encoded*' -type f -print0 \
             -o -path '*derived*' -type f -print0)
fi
dict=()
case "$target" in
  document|config) dict=(-x "$here/dict/json.dict") ;;
esac

# Containers have no core-dump helper or CPU governor worth checking; no UI without a terminal.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_NO_AFFINITY=1 AFL_SKIP_CRASHES=1 AFL_QUIET=1
nice cargo afl fuzz -V "$seconds" -i "$seeds" -o "$out" "${dict[@]}" "$@" -- "$binary" \
  > "$out.log" 2>&1 || { tail -30 "$out.log" >&2; exit 1; }

stats="$out/default/fuzzer_stats"
field() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
echo "$target: $(field execs_done) execs in $(field run_time) s, corpus $(field corpus_count)," \
     "coverage $(field bitmap_cvg), crashes $(field saved_crashes), hangs $(field saved_hangs)"
found=0
for kind in crashes hangs; do
  for f in "$out/default/$kind"/id:*; do
    [ -e "$f" ] || continue
    mkdir -p "$here/findings/$target"
    cp "$f" "$here/findings/$target/$kind-$(sha1sum "$f" | cut -c1-12)"
    found=1
  done
done
if [ "$found" = 1 ]; then
  echo "$target: findings copied to fuzz/findings/$target/ (replay: cd fuzz && cargo test)" >&2
  exit 1
fi
