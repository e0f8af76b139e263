#!/bin/sh
# /usr/local/bin/m6t: the m6t CLI installed in /Library/Application Support/m6t, put on the PATH.  The
# socket is the built-in default, the same path the LaunchDaemon passes; M6T_SOCKET or --socket override it.
set -eu
: "${M6T_SOCKET:=/var/run/m6t/helper.sock}"
export M6T_SOCKET
exec "/Library/Application Support/m6t/m6t" "$@"
