#!/bin/bash
# Benchmark (prints figures, asserts nothing): wall time of `run` (create+start+wait+delete) of a static `true`, median
# of N, and idle RSS (KiB) of the sandbox's processes running `sleep`.
set -u
OURS=${OURS:-$(dirname "$0")/../../target/release/runsc}
OURS=$(realpath "$OURS")
W=$(mktemp -d); cd "$W"; trap 'rm -rf "$W"' EXIT
B=$PWD/bundle; mkdir -p $B/rootfs; cp /bin/busybox $B/rootfs/true; cp /bin/busybox $B/rootfs/sleep  # busybox runs the applet its name says
cfg() { python3 - "$@" <<'PY'
import json,sys
json.dump({"ociVersion":"1.0.2","process":{"terminal":False,"user":{"uid":0,"gid":0},"args":sys.argv[2:],"env":["PATH=/"],"cwd":"/"},"root":{"path":"rootfs","readonly":True},"hostname":"b","linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"ipc"},{"type":"uts"},{"type":"network"}]},"mounts":[{"destination":"/proc","type":"proc","source":"proc"}]},open(sys.argv[1],"w"))
PY
}
N=${N:-10}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_run() { # name cmd...
  local name=$1; shift
  for i in $(seq $N); do
    s=$(date +%s%N); "$@" run --bundle $B bench-$i >/dev/null 2>&1 </dev/null; e=$(date +%s%N)
    echo $(( (e-s)/1000000 ))
  done | median | sed "s/^/$name run(true) ms: /"
}
rss_of_tree() { # sum VmRSS of pid and descendants
  local total=0
  for p in "$@"; do
    for q in $p $(pgrep -P $p) $(for c in $(pgrep -P $p); do pgrep -P $c; done); do
      r=$(awk '/VmRSS/{print $2}' /proc/$q/status 2>/dev/null); total=$((total + ${r:-0}))
    done
  done
  echo $total
}
cfg $B/config.json /true
time_run ours $OURS --root=$PWD/st-ours
time_run upstream /usr/bin/runsc --root=$PWD/st-up --network=none
time_run runc runc --root=$PWD/st-runc
cfg $B/config.json /sleep 1000
$OURS --root=$PWD/st-ours run --detach --bundle $B idle </dev/null >/dev/null 2>&1; sleep 1
S=$(python3 -c "import json;d=json.load(open('$PWD/st-ours/idle_sandbox:idle.state'));print(d['sandbox']['pid'],d['goferPid'])")
echo "ours idle RSS KiB (sentry+stubs, gofer): $(rss_of_tree ${S% *}) + $(rss_of_tree ${S#* })"
$OURS --root=$PWD/st-ours delete --force idle
/usr/bin/runsc --root=$PWD/st-up --network=none run --detach --bundle $B idle </dev/null >/dev/null 2>&1; sleep 1
S=$(python3 -c "import json;d=json.load(open('$PWD/st-up/idle_sandbox:idle.state'));print(d['sandbox']['pid'],d['goferPid'])")
echo "upstream idle RSS KiB (sentry+stubs, gofer): $(rss_of_tree ${S% *}) + $(rss_of_tree ${S#* })"
/usr/bin/runsc --root=$PWD/st-up delete --force idle
