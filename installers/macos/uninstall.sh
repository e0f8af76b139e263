#!/bin/bash
# Removes m6t from this Mac:
#   sudo "/Library/Application Support/m6t/uninstall.sh"          keeps client.toml and the state
#   sudo "/Library/Application Support/m6t/uninstall.sh" --purge  also the configuration, state,
#                                                                 logs and the m6t group
# --root DIR removes the files (and the package receipt) of the system mounted at DIR instead of /
# (tests/unit/test_macos_package.py runs it in a scratch folder); the launchd jobs it stops and the
# group it deletes are still the running system's.
# Running it again changes nothing.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

purge=0
root=/
while [ $# -gt 0 ]; do
  case "$1" in
    --purge) purge=1; shift ;;
    --root) root=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run it with sudo" >&2
  exit 1
fi
root=${root%/}

support="$root/Library/Application Support/m6t"

# The helper takes the tunnel down and undoes its routes when launchd stops it.
launchctl bootout system/org.m6t.helper 2>/dev/null || true
console_uid=$(stat -f %u /dev/console)
if [ "$console_uid" -ne 0 ]; then
  launchctl bootout "gui/$console_uid/org.m6t.tray" 2>/dev/null || true
fi

rm -f "$root/Library/LaunchDaemons/org.m6t.helper.plist" "$root/Library/LaunchAgents/org.m6t.tray.plist" \
  "$root/usr/local/bin/m6t"
rm -rf "$root/Applications/m6t.app" "$root/var/run/m6t"
# The tray's own "start at login" agent, which it writes in the home of each user who ticks the box
# (m6t.ui.autostart.LaunchAgentAutostart): left behind, it would start a tray that is gone.
for home in "$root"/Users/*; do
  rm -f "$home/Library/LaunchAgents/org.m6t.tray.plist"
done
if [ "$purge" = 1 ]; then
  rm -rf "$support" "$root/Library/Logs/m6t"
  dseditgroup -o delete m6t 2>/dev/null || true
elif [ -d "$support" ]; then
  find "$support" -mindepth 1 -maxdepth 1 ! -name client.toml ! -name state -exec rm -rf {} +
fi
pkgutil --volume "${root:-/}" --forget org.m6t.pkg >/dev/null 2>&1 || true
echo "m6t removed$([ "$purge" = 1 ] || echo "; kept $support/client.toml and $support/state")"
