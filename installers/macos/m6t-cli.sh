#!/bin/sh
# /usr/local/bin/m6t: the m6t CLI, pointed at the macOS helper's socket (the built-in default,
# /run/m6t/helper.sock, is a Linux path).  M6T_SOCKET or --socket still override it.
set -eu
: "${M6T_SOCKET:=/var/run/m6t/helper.sock}"
export M6T_SOCKET
exec "/Library/Application Support/m6t/m6t" "$@"
