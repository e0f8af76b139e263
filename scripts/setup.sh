#!/usr/bin/env bash
# Installs what m6t needs on a fresh Debian 12 machine (run as root): the lab's network tools
# from Debian, and the project with its GUI and dev extras into ./.venv.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  python3 python3-venv python3-pip
  iproute2 nftables conntrack iputils-ping tcpdump procps kmod util-linux
  # the gateway's kernel fast lane drives nftables through libnftables' own binding (linked below)
  python3-nftables
  iperf3 socat
  dpkg-dev
  # the Debian packages' checks (tests/lab/test_installed_system.py): lintian, the desktop entries'
  # validator, and a Debian 12 machine built by mmdebstrap and booted by systemd-nspawn
  lintian desktop-file-utils mmdebstrap systemd-container
  # the Windows installer's compile check (makensis, 7zz to look inside it); shell and workflow lint
  nsis 7zip shellcheck
  xvfb xauth trayer x11-utils
  # the CLI's translations: xgettext, msgmerge, msgfmt (scripts/update-translations.sh and its tests)
  gettext
  # the polkit authorization tests start a private bus and the real polkitd on it
  dbus-daemon polkitd
  # the tray's secret-agent test keeps an access key in a real Secret Service on a private bus
  gnome-keyring
  # Qt's xcb/offscreen platform plugins load these at run time
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0
  libxcb-render-util0 libxcb-image0
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup.sh: m6t needs Python >= 3.11 ($python is $("$python" --version))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# libnftables' Python binding comes from Debian, matched to the installed libnftables, and is not on PyPI.
# It is pure Python over ctypes, so any interpreter can import it: a link to that one package in the
# venv's site-packages, rather than --system-site-packages, which would let every Debian Python package
# shadow the venv's own (and give nothing at all to a venv made from a non-Debian Python).
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
if [ -d /usr/lib/python3/dist-packages/nftables ] && [ ! -e "$site/nftables" ]; then
  ln -s /usr/lib/python3/dist-packages/nftables "$site/nftables"
fi
stamp=.venv/.m6t-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[gui,dev]'
  touch "$stamp"
fi
