#!/usr/bin/env bash
# Builds dist/m6t-<version>.pkg on macOS from the PyInstaller output of scripts/build-pyinstaller.sh:
#   /Library/Application Support/m6t/   m6t-helper, m6t (CLI), their _internal/, client.example.toml,
#                                       uninstall.sh; client.toml and state/ are created by postinstall
#   /Library/LaunchDaemons/org.m6t.helper.plist, /Library/LaunchAgents/org.m6t.tray.plist
#   /Applications/m6t.app, /usr/local/bin/m6t (the CLI, pointed at the helper's socket)
#
# Usage: installers/macos/build-pkg.sh [--dist DIR] [--out DIR | --stage DIR]
#   --dist   the PyInstaller output (default: dist/pyinstaller)
#   --stage  only lay out the package's payload (DIR/root) and scripts (DIR/scripts) in DIR, a new
#            folder, and stop before pkgbuild: this part runs anywhere (tests/unit/test_macos_package.py)
# Signing: set M6T_PKG_SIGN_IDENTITY to a "Developer ID Installer: ..." identity in the keychain (and
# M6T_CODESIGN_IDENTITY when freezing, for the programs themselves); then notarize the .pkg with
# "xcrun notarytool submit" and staple it.  Unsigned packages only install with Gatekeeper's consent.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dist="$root/dist/pyinstaller"
out="$root/dist"
stage=
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) dist=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

die() {
  echo "build-pkg.sh: $*" >&2
  exit 1
}

if [ -z "$stage" ]; then
  for tool in pkgbuild productbuild ditto /usr/libexec/PlistBuddy; do
    command -v "$tool" >/dev/null || die "$tool is missing: build the package on macOS"
  done
fi
if [ ! -x "$dist/m6t-helper/m6t-helper" ] || [ ! -x "$dist/m6t-helper/m6t" ]; then
  die "$dist/m6t-helper/ is incomplete: run scripts/build-pyinstaller.sh first"
fi
[ -d "$dist/m6t.app" ] || die "$dist/m6t.app is missing: run scripts/build-pyinstaller.sh first"

# The system python3 may predate tomllib: read the one line directly.
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/pyproject.toml" | head -n 1)
[ -n "$version" ] || die "no version in pyproject.toml"

if [ -n "$stage" ]; then
  [ ! -e "$stage" ] || die "$stage exists: --stage makes a new folder"
  mkdir -p "$stage"
  work=$(cd "$stage" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/m6t-pkg.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
payload="$work/root"
support="$payload/Library/Application Support/m6t"

mkdir -p "$support" "$payload/Library/LaunchDaemons" "$payload/Library/LaunchAgents" \
  "$payload/Applications" "$payload/usr/local/bin" "$work/scripts"
# ditto keeps symlinks, extended attributes and code signatures intact.  Staging elsewhere than on
# macOS, cp copies the same files and links (without the extended attributes, which only macOS has).
copy_tree() {
  if command -v ditto >/dev/null; then
    ditto "$1" "$2"
  else
    mkdir -p "$2"
    cp -PRp "$1/." "$2"
  fi
}
copy_tree "$dist/m6t-helper" "$support"
copy_tree "$dist/m6t.app" "$payload/Applications/m6t.app"
install -m 0644 "$root/installers/linux/client.example.toml" "$support/client.example.toml"
install -m 0755 "$here/uninstall.sh" "$support/uninstall.sh"
install -m 0644 "$here/org.m6t.helper.plist" "$payload/Library/LaunchDaemons/org.m6t.helper.plist"
install -m 0644 "$here/org.m6t.tray.plist" "$payload/Library/LaunchAgents/org.m6t.tray.plist"
install -m 0755 "$here/m6t-cli.sh" "$payload/usr/local/bin/m6t"
install -m 0755 "$here/scripts/preinstall" "$here/scripts/postinstall" "$work/scripts/"
if [ -n "$stage" ]; then
  echo "$work"
  exit 0
fi

# Installer would otherwise "relocate" the app: update whatever copy with the same bundle identifier
# it finds (a build folder, a mounted image) instead of installing into /Applications.
pkgbuild --analyze --root "$payload" "$work/components.plist" >/dev/null
i=0
while /usr/libexec/PlistBuddy -c "Print :$i" "$work/components.plist" >/dev/null 2>&1; do
  /usr/libexec/PlistBuddy -c "Set :$i:BundleIsRelocatable false" "$work/components.plist"
  i=$((i + 1))
done

pkgbuild --root "$payload" --component-plist "$work/components.plist" --scripts "$work/scripts" \
  --identifier org.m6t.pkg --version "$version" --install-location / --ownership recommended \
  "$work/m6t-component.pkg"
productbuild --synthesize --package "$work/m6t-component.pkg" "$work/distribution.xml"
# A title for the installer window (the synthesized distribution has none), and the startup volume
# only: a daemon installed on another volume would not run, and the scripts bootstrap the running system.
sed -i '' 's|<installer-gui-script minSpecVersion="\([0-9]*\)">|&<title>m6t</title><domains enable_anywhere="false" enable_currentUserHome="false" enable_localSystem="true"/>|' \
  "$work/distribution.xml"

mkdir -p "$out"
sign=()
if [ -n "${M6T_PKG_SIGN_IDENTITY:-}" ]; then
  sign=(--sign "$M6T_PKG_SIGN_IDENTITY")
fi
# macOS's bash 3.2 calls an empty "${sign[@]}" unbound under set -u; this form expands to nothing.
productbuild --distribution "$work/distribution.xml" --package-path "$work" ${sign[@]+"${sign[@]}"} \
  "$out/m6t-$version.pkg"
echo "$out/m6t-$version.pkg"
