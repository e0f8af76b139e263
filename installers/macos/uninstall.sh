#!/bin/bash
# Removes m6t from this Mac:
#   sudo "/Library/Application Support/m6t/uninstall.sh"          keeps client.toml and the state
#   sudo "/Library/Application Support/m6t/uninstall.sh" --purge  also the configuration, state,
#                                                                 logs and the m6t group
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run it with sudo" >&2
  exit 1
fi
purge=0
if [ "${1:-}" = "--purge" ]; then
  purge=1
fi

support="/Library/Application Support/m6t"

# The helper takes the tunnel down and undoes its routes when launchd stops it.
launchctl bootout system/org.m6t.helper 2>/dev/null || true
console_uid=$(stat -f %u /dev/console)
if [ "$console_uid" -ne 0 ]; then
  launchctl bootout "gui/$console_uid/org.m6t.tray" 2>/dev/null || true
fi

rm -f /Library/LaunchDaemons/org.m6t.helper.plist /Library/LaunchAgents/org.m6t.tray.plist /usr/local/bin/m6t
rm -rf /Applications/m6t.app
if [ "$purge" = 1 ]; then
  rm -rf "$support" /Library/Logs/m6t
  dseditgroup -o delete m6t 2>/dev/null || true
elif [ -d "$support" ]; then
  find "$support" -mindepth 1 -maxdepth 1 ! -name client.toml ! -name state -exec rm -rf {} +
fi
pkgutil --forget org.m6t.pkg >/dev/null 2>&1 || true
echo "m6t removed$([ "$purge" = 1 ] || echo "; kept $support/client.toml and $support/state")"
