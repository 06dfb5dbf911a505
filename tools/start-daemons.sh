#!/bin/bash
# Start virtlogd and libvirtd when they are not running (machines without
# systemd, such as CI containers), and wait until libvirt answers.
set -euo pipefail
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 60); do
    virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
    sleep 0.5
done
echo "start-daemons.sh: libvirtd does not answer on qemu:///system" >&2
exit 1
