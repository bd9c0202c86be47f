#!/usr/bin/env sh
# Run a command inside a network namespace that holds only loopback, so everything the tests
# start (HTTP servers, Ray) can reach 127.0.0.1 and nothing else. Ray ignores a loopback
# --node-ip-address on a machine with a real interface and uses the machine's own address
# (ray-project/ray#26293, #59110); here it has no other address to pick.
# Where namespaces are not allowed (no root, a locked-down container) the command runs as is.
if command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 \
   && unshare -n sh -c 'ip link set lo up' >/dev/null 2>&1; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "loopback_only: no network namespace here; running without one" >&2
exec "$@"
