#!/bin/sh
# The image's entry point: `banksim serve` on all interfaces with the container's fixed
# ports and state directory. Extra arguments starting with `-` are passed to serve (later
# options win: `--clock accelerated:60`); any other command runs as given (`banksim clock
# show`, `sh`).
#
# BANKSIM_PROFILE       profile YAML (default: /etc/banksim/profile.yaml when mounted there,
#                       else the embedded default profile)
# BANKSIM_ADMIN_TOKEN   X-Admin-Token the control API requires; serving off loopback needs
#                       one, so without it the development token below is used and printed.
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

DEV_TOKEN=banksim-dev-admin
if [ -z "${BANKSIM_ADMIN_TOKEN:-}" ]; then
    echo "banksim: BANKSIM_ADMIN_TOKEN is not set; the control API token is '$DEV_TOKEN'" \
         "(development only: set BANKSIM_ADMIN_TOKEN for anything shared)" >&2
    BANKSIM_ADMIN_TOKEN=$DEV_TOKEN
fi
export BANKSIM_ADMIN_TOKEN

if [ -n "${BANKSIM_PROFILE:-}" ]; then
    if [ ! -f "$BANKSIM_PROFILE" ]; then
        echo "banksim: BANKSIM_PROFILE=$BANKSIM_PROFILE: no such file (mount it into the container)" >&2
        exit 2
    fi
    set -- --profile "$BANKSIM_PROFILE" "$@"
elif [ -f /etc/banksim/profile.yaml ]; then
    set -- --profile /etc/banksim/profile.yaml "$@"
fi

exec banksim serve --host 0.0.0.0 --http-port 8600 --sftp-port 2222 \
    --state-dir /var/lib/banksim "$@"
