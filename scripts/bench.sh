#!/usr/bin/env bash
# Runs the tunnel benchmark (root): installs its own Debian packages first (iperf3, socat, openvpn and
# the lab's network tools), then `python -m bench.tunnels` with this script's arguments, e.g.
#   ./scripts/bench.sh                         full run: 3 rounds, every scenario, m6t-only figures
#   ./scripts/bench.sh --quick --scenarios kernel,socat
# Results: bench/results/latest.json and latest.md. Python: $PYTHON, else ./.venv (scripts/setup.sh), else python3.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench.sh: run as root (network namespaces, TUN devices, Debian packages)" >&2
  exit 1
fi

apt_packages=(iperf3 socat openvpn iproute2 nftables conntrack iputils-ping procps)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench.sh: installing ${missing[*]}"
  apt-get update -qq
  # noninteractive: iperf3 would otherwise ask whether to run as a daemon (the answer must stay no).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
if ! "$python" -c 'import sys, psutil; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bench.sh: $python needs Python >= 3.11 with psutil (run scripts/setup.sh, or set PYTHON=...)" >&2
  exit 1
fi
exec "$python" -m bench.tunnels "$@"
