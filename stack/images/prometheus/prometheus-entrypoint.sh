#!/bin/sh
# Entrypoint of the offline Prometheus stand-in (Debian's Prometheus 2.42).
#
# Prometheus >= 3.8 takes the TSDB retention from the config file (storage.tsdb.retention.time /
# .size) and deprecates the flags; 2.42 refuses that block ("field retention not found"). So that
# the stack keeps ONE prometheus.yml, this script, when the config file has such a block:
#   1. builds a shadow of the config directory in /tmp/prometheus-config: symlinks to every entry
#      (rules/, file_sd files...; relative paths in the config keep working) and a copy of the
#      config file without the retention block;
#   2. passes the block's time and size as --storage.tsdb.retention.time/.size, unless the
#      command line already sets them (flags given explicitly win, and are then the truth);
#   3. execs /bin/prometheus with --config.file pointing at the copy.
# Without a retention block it execs Prometheus with the arguments unchanged. Only block style
# (retention: NEWLINE time: ...) and flow style (retention: {time: 30d, size: 10GB}) are read;
# `percentage` has no 2.42 equivalent and stops the start with a message.
set -eu

config=/etc/prometheus/prometheus.yml
want_time=yes
want_size=yes
expect_config=no
for arg in "$@"; do
  if [ "$expect_config" = yes ]; then config=$arg; expect_config=no; continue; fi
  case "$arg" in
    --config.file=*) config=${arg#--config.file=} ;;
    --config.file) expect_config=yes ;;
    --storage.tsdb.retention.time=* | --storage.tsdb.retention=* | --storage.tsdb.retention.time | --storage.tsdb.retention) want_time=no ;;
    --storage.tsdb.retention.size=* | --storage.tsdb.retention.size) want_size=no ;;
  esac
done

if [ ! -r "$config" ]; then
  exec /bin/prometheus "$@" # Prometheus itself reports the missing file
fi

shadow=/tmp/prometheus-config
base=$(basename "$config")
rm -rf "$shadow"
mkdir -p "$shadow"

# Strip storage.tsdb.retention from the copy; print "time VALUE" / "size VALUE" / "percentage V".
found=$(awk -v out="$shadow/$base" '
  function indent(s) { match(s, /^ */); return RLENGTH }
  function clean(v) { sub(/[ \t]+#.*$/, "", v); gsub(/^[ \t"'"'"']+|[ \t"'"'"']+$/, "", v); return v }
  {
    line = $0
    blank = (line ~ /^[ \t]*(#.*)?$/)
    ind = indent(line)
    if (!blank) {
      if (in_ret && ind <= ret_ind) in_ret = 0
      if (in_tsdb && ind <= tsdb_ind) in_tsdb = 0
      if (in_storage && ind == 0) in_storage = 0
      if (ind == 0 && line ~ /^storage:[ \t]*(#.*)?$/) { in_storage = 1; print line > out; next }
      if (in_storage && !in_tsdb && line ~ /^[ \t]+tsdb:[ \t]*(#.*)?$/) {
        in_tsdb = 1; tsdb_ind = ind; print line > out; next
      }
      if (in_tsdb && !in_ret && line ~ /^[ \t]+retention:/) {
        rest = line; sub(/^[ \t]+retention:[ \t]*/, "", rest); rest = clean(rest)
        if (rest ~ /^\{.*\}$/) {
          gsub(/^\{|\}$/, "", rest); n = split(rest, kv, ",")
          for (i = 1; i <= n; i++) {
            split(kv[i], p, ":"); k = clean(p[1]); v = clean(p[2]); if (k != "") print k, v
          }
          next
        }
        in_ret = 1; ret_ind = ind; next
      }
      if (in_ret) {
        k = line; sub(/^[ \t]+/, "", k); v = k
        sub(/:.*$/, "", k); sub(/^[^:]*:/, "", v)
        print clean(k), clean(v)
        next
      }
    }
    print line > out
  }
' "$config")

if [ -z "$found" ]; then
  rm -rf "$shadow"
  exec /bin/prometheus "$@"
fi

for entry in "$(dirname "$config")"/* "$(dirname "$config")"/.[!.]*; do
  [ -e "$entry" ] || continue
  [ "$(basename "$entry")" = "$base" ] && continue
  ln -s "$entry" "$shadow/$(basename "$entry")"
done

unknown=$(echo "$found" | awk '$1 != "time" && $1 != "size" { print $1 }')
if [ -n "$unknown" ]; then
  echo "prometheus-entrypoint: storage.tsdb.retention.$unknown in $config has no equivalent in" \
    "Prometheus 2.42; remove it or set --storage.tsdb.retention.* flags" >&2
  exit 2
fi
extra=""
r_time=$(echo "$found" | awk '$1 == "time" { print $2 }')
r_size=$(echo "$found" | awk '$1 == "size" { print $2 }')

n=$#
skip_next=no
for arg in "$@"; do
  if [ "$skip_next" = yes ]; then skip_next=no; continue; fi
  case "$arg" in
    --config.file=*) arg="--config.file=$shadow/$base" ;;
    --config.file) skip_next=yes; arg="--config.file=$shadow/$base" ;;
  esac
  set -- "$@" "$arg"
done
shift "$n"
if [ "$want_time" = yes ] && [ -n "$r_time" ]; then
  set -- "$@" "--storage.tsdb.retention.time=$r_time"
  extra="$extra --storage.tsdb.retention.time=$r_time"
fi
if [ "$want_size" = yes ] && [ -n "$r_size" ]; then
  set -- "$@" "--storage.tsdb.retention.size=$r_size"
  extra="$extra --storage.tsdb.retention.size=$r_size"
fi
case " $* " in
  *" --config.file="*) ;;
  *) set -- "--config.file=$shadow/$base" "$@" ;;
esac
echo "prometheus-entrypoint: storage.tsdb.retention of $config passed as flags:${extra:- none (set on the command line)}; config read from $shadow/$base" >&2
exec /bin/prometheus "$@"
