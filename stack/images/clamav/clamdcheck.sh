#!/bin/bash
# Health check of the offline clamav stand-in, same name and contract as the official image's
# clamdcheck.sh: exit 0 only if clamd answers PING with PONG on 127.0.0.1:3310. The official one
# uses busybox nc; this image has no nc, so bash's /dev/tcp speaks the clamd protocol
# ("zPING\0" -> "PONG\0"), bounded by `timeout` so a hung clamd fails the check instead of
# blocking it.
set -u

if [ "${CLAMAV_NO_CLAMD:-}" = true ]; then
	exit 0
fi

reply="$(timeout "${CLAMDCHECK_TIMEOUT:-5}" bash -c '
	exec 3<>/dev/tcp/127.0.0.1/3310 || exit 1
	printf "zPING\0" >&3
	IFS= read -r -d "" answer <&3
	printf "%s" "$answer"
' 2>/dev/null)"

if [ "$reply" != PONG ]; then
	echo "ERROR: Unable to contact server"
	exit 1
fi
echo "Clamd is up"
