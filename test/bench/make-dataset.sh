#!/usr/bin/env bash
# Usage: bench/make-dataset.sh [DIR [scale]]     (defaults: /tmp/scbench/data, 1)
#
# Builds deterministic benchmark datasets under DIR:
#   DIR/mixed  1000 x 1 KiB, 100 x 1 MiB, 10 x 50 MiB, 1 x 1 GiB in nested dirs,
#              a few odd names (spaces, UTF-8, emoji); ~30% of the 1 KiB and
#              1 MiB files and 2 of the 50 MiB files are text-like (compressible).
#   DIR/small  20,000 x 4 KiB across 200 dirs (100 files each).
#   DIR/delta  base.bin (1 GiB) and three modified copies:
#              changed-overwrite.bin  100 scattered 4 KiB overwrites (same size)
#              changed-insert.bin     1 MiB inserted in the middle (shifts offsets)
#              changed-delete.bin     1 MiB deleted from the middle
# scale < 1 shrinks: byte sizes of files >= 1 MiB are multiplied by scale, and so
# are the counts of the 1 KiB / 4 KiB files (minimum 1; small keeps >= 1 file/dir).
# Content is AES-128-CTR keystream from fixed keys (openssl), so every run with the
# same scale yields byte-identical trees; all mtimes are fixed (2023-11-14 22:13:20 UTC).
# Env: DATASETS="mixed small delta" selects which to build; FORCE=1 rebuilds.
# A dataset whose marker DIR/.NAME.complete matches the scale is skipped.
# The trees are byte-identical to those of the original harness script (same keys, sizes,
# names and mtimes), so results from either compare directly.
set -euo pipefail

if [[ $# -gt 2 || ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
ROOT=${1:-/tmp/scbench/data}
SCALE=${2:-1}
DATASETS=${DATASETS:-mixed small delta}
FORCE=${FORCE:-0}
MTIME=@1700000000
umask 022
export LC_ALL=C.UTF-8

KiB=1024
MiB=$((1024 * 1024))
GiB=$((1024 * MiB))

# scaled BYTES -> integer bytes (>= 1)
scaled() {
  awk -v b="$1" -v s="$SCALE" 'BEGIN { v = int(b * s); if (v < 1) v = 1; printf "%.0f\n", v }'
}

# keystream TAG BYTES: deterministic pseudo-random bytes; TAG is any string.
keystream() {
  local key iv
  key=$(printf '%s' "scbench-key-$1" | sha256sum | cut -c1-32)
  iv=$(printf '%s' "scbench-iv-$1" | sha256sum | cut -c1-32)
  head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$key" -iv "$iv"
}

# textstream TAG BYTES: text-like, compressible (~2-3:1 with gzip/zstd): keystream
# mapped to a skewed alphabet with spaces and newlines.
# shellcheck disable=SC2020 # intentional many-to-one character mapping
# Runs in a subshell without pipefail: head may close the pipe a few bytes early.
textstream() (
  set +o pipefail
  # shellcheck disable=SC2017 # ceil(N/4)*3 bytes -> exactly 4*ceil(N/4) base64 chars
  keystream "$1" "$(( ($2 + 3) / 4 * 3 ))" | base64 -w 0 \
    | tr 'A-Za-z0-9+/' 'eeeetttaaoinnsshhrrdlcumwfgypbvk  \n\n.,etaoinshrdlueeetttaaooiinnss' \
    | head -c "$2"
)

fix_times() {
  find "$1" -exec touch -h -d "$MTIME" {} +
}

# completion markers live beside the dataset (ROOT/.NAME.complete), not inside it
done_marker_ok() {
  [[ $FORCE != 1 && -f $ROOT/.$1.complete && $(cat "$ROOT/.$1.complete") == "scale=$SCALE" ]]
}
mark_done() {
  echo "scale=$SCALE" > "$ROOT/.$1.complete"
}

make_mixed() {
  local d=$ROOT/mixed i n text
  if done_marker_ok mixed; then echo "mixed: up to date ($d)"; return; fi
  rm -rf "$d"; mkdir -p "$d"
  echo "mixed: building in $d (scale $SCALE)"
  # 1000 x 1 KiB in 10 dirs of 100 (class sizes of 1 KiB are not scaled, counts are)
  local per cnt sub
  n=$(scaled 1000); per=$(( (n + 9) / 10 ))
  for ((i = 0; i < 10 && i * per < n; i++)); do
    cnt=$per; (( cnt > n - i * per )) && cnt=$(( n - i * per ))
    sub=$d/tiny/group-$i/sub; mkdir -p "$sub"
    if (( i < 3 )); then # 30% text-like
      textstream "tiny-$i" $(( cnt * KiB )) | (cd "$sub" && split -b "$KiB" -d -a 3 --additional-suffix=.txt - note-)
    else
      keystream "tiny-$i" $(( cnt * KiB )) | (cd "$sub" && split -b "$KiB" -d -a 3 --additional-suffix=.dat - blob-)
    fi
  done
  # 100 x 1 MiB (30 text-like)
  local m1; m1=$(scaled "$MiB")
  mkdir -p "$d/medium/text" "$d/medium/bin"
  textstream medium-text $(( 30 * m1 )) | (cd "$d/medium/text" && split -b "$m1" -d -a 3 --additional-suffix=.log - doc-)
  keystream medium-bin $(( 70 * m1 )) | (cd "$d/medium/bin" && split -b "$m1" -d -a 3 --additional-suffix=.bin - part-)
  # 10 x 50 MiB (2 text-like)
  local m50; m50=$(scaled $(( 50 * MiB )))
  mkdir -p "$d/large/deep/er/still"
  for ((i = 0; i < 10; i++)); do
    if (( i < 2 )); then text=1; else text=0; fi
    if (( text )); then textstream "large-$i" "$m50" > "$d/large/deep/er/still/large-$i.csv"
    else keystream "large-$i" "$m50" > "$d/large/deep/er/still/large-$i.img"; fi
  done
  # 1 x 1 GiB
  mkdir -p "$d/huge"
  keystream huge "$(scaled "$GiB")" > "$d/huge/disk.img"
  # odd names: rename a few existing files (keeps the counts exact)
  mkdir -p "$d/odd names dir/日本語"
  mv "$d/medium/bin/part-000.bin" "$d/odd names dir/file with spaces.bin"
  mv "$d/medium/text/doc-000.log" "$d/odd names dir/日本語/résumé – naïve.log"
  mv "$d/medium/bin/part-001.bin" "$d/odd names dir/🚀 rocket 🎉.bin"
  [[ -e $d/tiny/group-3/sub/blob-000.dat ]] && mv "$d/tiny/group-3/sub/blob-000.dat" "$d/odd names dir/Ünïcödé'quote\"dq.dat"
  fix_times "$d"
  mark_done mixed
}

make_small() {
  local d=$ROOT/small i n per
  if done_marker_ok small; then echo "small: up to date ($d)"; return; fi
  rm -rf "$d"; mkdir -p "$d"
  echo "small: building in $d (scale $SCALE)"
  n=$(scaled 20000)
  per=$(( n / 200 )); (( per < 1 )) && per=1
  for ((i = 0; i < 200; i++)); do
    local sub; sub=$d/$(printf 'd%02d/s%03d' $(( i / 20 )) "$i")
    mkdir -p "$sub"
    keystream "small-$i" $(( per * 4 * KiB )) | (cd "$sub" && split -b $(( 4 * KiB )) -d -a 3 --additional-suffix=.bin - f)
  done
  fix_times "$d"
  mark_done small
}

make_delta() {
  local d=$ROOT/delta size edit mid i off
  if done_marker_ok delta; then echo "delta: up to date ($d)"; return; fi
  rm -rf "$d"; mkdir -p "$d"
  echo "delta: building in $d (scale $SCALE)"
  size=$(scaled "$GiB")
  edit=$MiB; (( edit > size / 16 )) && edit=$(( size / 16 ))
  mid=$(( size / 2 + 12345 ))             # deliberately not block aligned
  keystream delta-base "$size" > "$d/base.bin"
  # (i) 100 scattered 4 KiB overwrites at deterministic, unaligned offsets
  cp "$d/base.bin" "$d/changed-overwrite.bin"
  local blk=$(( 4 * KiB )); (( blk > size / 200 )) && blk=$(( size / 200 ))
  for ((i = 0; i < 100; i++)); do
    off=$(( (i * size / 100) + (i * 7919 * 4099) % (size / 100 - blk) ))
    keystream "delta-ow-$i" "$blk" | dd of="$d/changed-overwrite.bin" bs="$blk" count=1 \
      oflag=seek_bytes seek="$off" conv=notrunc status=none
  done
  # (ii) 1 MiB inserted in the middle
  { head -c "$mid" "$d/base.bin"; keystream delta-insert "$edit"; tail -c +$(( mid + 1 )) "$d/base.bin"; } \
    > "$d/changed-insert.bin"
  # (iii) 1 MiB deleted from the middle
  { head -c "$mid" "$d/base.bin"; tail -c +$(( mid + edit + 1 )) "$d/base.bin"; } > "$d/changed-delete.bin"
  fix_times "$d"
  touch -d @1700086400 "$d"/changed-*.bin   # changed files are one day newer
  mark_done delta
}

mkdir -p "$ROOT"
for ds in $DATASETS; do
  case $ds in
    mixed) make_mixed ;;
    small) make_small ;;
    delta) make_delta ;;
    *) echo "unknown dataset: $ds" >&2; exit 2 ;;
  esac
  printf '%s: %s files, %s bytes\n' "$ds" \
    "$(find "$ROOT/$ds" -type f | wc -l)" \
    "$(find "$ROOT/$ds" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
done
