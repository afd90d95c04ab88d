#!/usr/bin/env bash
# Install what the tests need, then run every check and test.
#
#   ./test.sh
#
# Run as root on Debian 12 (it installs Debian packages with apt-get). The
# Rust toolchain pinned in rust-toolchain.toml comes from rustup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# Debian packages: busybox-static and a static C toolchain for the
# differential tests' fixtures; sqlite3, python3 and python3-venv for the
# real programs they run; runsc (upstream's 2022 Go build) for the interop
# tests against its gofer; Go 1.19 and upstream's 2022 Go sources to build
# compat/lisafs-client, upstream's own lisafs client driving our gofer;
# socat and iproute2 for the netstack cases (a 100 MiB stream; `lo` up in
# the native run's fresh network namespace); containerd, runc, podman,
# docker.io and umoci for runsc/tests/hosts.rs (real hosts driving our
# runsc), protoc for cri-client's CRI protos.
packages=(busybox-static gcc libc6-dev sqlite3 python3 python3-venv runsc socat iproute2
	golang-1.19-go golang-gvisor-gvisor-dev golang-golang-x-sys-dev golang-golang-x-time-dev
	containerd runc podman docker.io umoci protobuf-compiler)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "test.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}"
fi

toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup run "$toolchain" cargo --version >/dev/null 2>&1 ||
	! rustup component list --toolchain "$toolchain" --installed | grep -q '^clippy' ||
	! rustup component list --toolchain "$toolchain" --installed | grep -q '^rustfmt'; then
	rustup toolchain install "$toolchain" --profile minimal --component clippy,rustfmt
fi

set -x
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# One profile for every test: the release build is also what the
# differential tests run as target/release/runsc. Every test binary runs
# even after one fails, so one run shows every failure.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The workspace's programs first: tests run some that are not their own
# package's (runsc/tests/hosts.rs runs cri-client).
cargo build --workspace --release --bins
cargo test --workspace --release --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
set +x
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
	END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
