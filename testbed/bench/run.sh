#!/usr/bin/env bash
# Load benchmark of the gateway against a plain reverse_proxy (baseline)
# and forward_auth, all on 127.0.0.1. Not part of CI: it takes minutes and
# its figures depend on the machine. See docs/performance.md.
#
#   testbed/bench/run.sh            full run (about 6½ minutes)
#   testbed/bench/run.sh -quick     short run (about 1½ minutes)
#
# Other flags go to the Go driver (testbed/bench/cmd/loadbench); -h lists
# them. It builds from the repository root, whose go.work holds both
# modules.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null; then
	echo "installing wrk" >&2
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends wrk >/dev/null
fi

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
echo "building Caddy with the module and the benchmark driver" >&2
go build -o "$bin/caddy" ./cmd/caddy
go build -o "$bin/loadbench" ./testbed/bench/cmd/loadbench

"$bin/loadbench" -caddy "$bin/caddy" -wrk "$(command -v wrk)" "$@"
