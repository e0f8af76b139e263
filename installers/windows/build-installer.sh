#!/usr/bin/env bash
# Builds dist/m6t-<version>-setup.exe with NSIS from the PyInstaller output of
# scripts/build-pyinstaller.sh (run on Windows, e.g. in Git Bash).  makensis also runs on Linux
# (Debian: apt-get install nsis), which compiles the same installer from a copied dist folder.
#
# Usage: installers/windows/build-installer.sh [--dist DIR] [--out DIR] [--python PYTHON]
#   --dist    the PyInstaller output (default: dist/pyinstaller); DIST/m6t-helper/ must also hold
#             wintun.dll, staged by installers/windows/stage_wintun.py from the pinned wheel
#   --python  the interpreter that runs stage_wintun.py --check (default: python3; >= 3.11)
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dist="$root/dist/pyinstaller"
out="$root/dist"
python=python3
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) dist=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

die() {
  echo "build-installer.sh: $*" >&2
  exit 1
}

command -v makensis >/dev/null || die "makensis is missing (NSIS 3: https://nsis.sourceforge.io/, Debian: nsis)"
# The installer carries the pinned, signed wintun.dll built for the helper's processor, and is made
# for that processor only (m6t.nsi refuses to install elsewhere).
arch=$("$python" "$here/stage_wintun.py" --check --dist "$dist") ||
  die "$dist cannot be packaged (see above)"

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/pyproject.toml" | head -n 1)
[ -n "$version" ] || die "no version in pyproject.toml"
# File properties want four numbers: 1.2.3rc1 -> 1.2.3.0.
numeric=${version%%[!0-9.]*}
IFS=. read -r major minor patch _ <<<"$numeric"
quad="${major:-0}.${minor:-0}.${patch:-0}.0"

mkdir -p "$out"
out=$(cd "$out" && pwd)
makensis -V2 -WX -DVERSION="$version" -DVERSION_QUAD="$quad" -DARCH="$arch" -DDIST="$dist" -DROOT="$root" \
  -DOUTFILE="$out/m6t-$version-setup.exe" "$here/m6t.nsi"
echo "$out/m6t-$version-setup.exe"
