#!/usr/bin/env bash
# Freezes m6t with PyInstaller for the OS it runs on (Linux, macOS, or Windows under Git Bash):
#   dist/pyinstaller/m6t-helper/   m6t-helper and m6t (CLI), from installers/pyinstaller/m6t-helper.spec
#   dist/pyinstaller/m6t-tray/     m6t-tray, from installers/pyinstaller/m6t-tray.spec
#   dist/pyinstaller/m6t.app       (macOS) the tray as an app bundle
# then runs each program's --help as a smoke test.  These folders are what installers/macos/build-pkg.sh
# and installers/windows/m6t.nsi package.  PyInstaller does not cross-compile: build each OS on itself.
#
# The build environment is a venv of its own (build/pyinstaller/venv, reused) holding PyInstaller and
# m6t installed from a copy of the tree, not editable: the frozen helper reads its version from the
# package metadata, and an editable install would leave build/ and *.egg-info in the tree.
#
# Usage: scripts/build-pyinstaller.sh [--python PYTHON] [--out DIR] [--build DIR]
#   --python  the interpreter to build with (default: python3; >= 3.11).  The frozen programs carry it.
#   --out     where the programs go (default: dist/pyinstaller)
#   --build   the build venv and PyInstaller's work files (default: build/pyinstaller)
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/dist/pyinstaller"
build="$root/build/pyinstaller"
python=python3
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

die() {
  echo "build-pyinstaller.sh: $*" >&2
  exit 1
}

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$python is older than Python 3.11"

venv="$build/venv"
if [ ! -d "$venv" ]; then
  "$python" -m venv "$venv"
fi
# Windows venvs put programs in Scripts\ and name them .exe.
if [ -x "$venv/Scripts/python.exe" ]; then
  vpython="$venv/Scripts/python.exe"
  exe=.exe
else
  vpython="$venv/bin/python"
  exe=
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/m6t-pyinstaller.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$root" && tar --exclude=__pycache__ -cf - pyproject.toml README.md m6t) | tar -C "$work" -xf -

echo "== build environment $venv"
"$vpython" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$vpython" -m pip install --quiet --disable-pip-version-check "pyinstaller>=6.10" "${work}[gui]"
# The same version number as an earlier build's: make pip replace it anyway.
"$vpython" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$work"

for spec in m6t-helper m6t-tray; do
  echo "== $spec.spec"
  "$vpython" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$out" --workpath "$build/work" "$root/installers/pyinstaller/$spec.spec"
done

if [ -d "$out/m6t.app" ]; then
  tray="$out/m6t.app/Contents/MacOS/m6t-tray"
else
  tray="$out/m6t-tray/m6t-tray$exe"
fi

echo "== smoke test"
# The tray parses its arguments before it touches a display; offscreen covers any later change.
export QT_QPA_PLATFORM=offscreen
for program in "$out/m6t-helper/m6t-helper$exe" "$out/m6t-helper/m6t$exe" "$tray"; do
  if ! "$program" --help >"$work/help" 2>&1; then
    cat "$work/help" >&2
    die "$program --help failed"
  fi
  echo "   ${program#"$root"/}: $(head -n 1 "$work/help")"
done
