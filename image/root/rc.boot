#!/bin/sh
# Second stage, PID 1 on the read-only root: read the settings the user put
# on the boot partition, mount the data disk, add users, bring up the
# network, and keep rest-server running.
PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs tmpfs /tmp
hostname rest-server

log() { echo "rest-server image: $*"; }

# The boot partition: the first partition of the disk the root is on.
root_dev=$(awk '$2 == "/" { print $1 }' /proc/mounts | tail -n 1)
boot_dev=${root_dev%2}1
mkdir -p /run/boot
mount -t vfat -o ro "$boot_dev" /run/boot || log "no boot partition at $boot_dev"

# Settings from /boot/rest-server.conf: KEY=value lines, only known keys.
LISTEN=:8000
DATA_LABEL=RESTIC
APPEND_ONLY=no
PRIVATE_REPOS=yes
TLS=no
ARGS=
if [ -r /run/boot/rest-server.conf ]; then
    while IFS='=' read -r key value; do
        case "$key" in
            LISTEN) LISTEN=$value ;;
            DATA_LABEL) DATA_LABEL=$value ;;
            APPEND_ONLY) APPEND_ONLY=$value ;;
            PRIVATE_REPOS) PRIVATE_REPOS=$value ;;
            TLS) TLS=$value ;;
            ARGS) ARGS=$value ;;
        esac
    done </run/boot/rest-server.conf
fi

# Data on the disk labelled DATA_LABEL; without one, on the root partition
# (which then has to be writable).
data=/data
data_dev=$(findfs "LABEL=$DATA_LABEL" 2>/dev/null)
if [ -n "$data_dev" ] && mount -t ext4 -o noatime "$data_dev" /data; then
    log "data on $data_dev (label $DATA_LABEL)"
else
    mount -o remount,rw /
    data=/var/lib/restic
    mkdir -p "$data"
    log "no disk labelled $DATA_LABEL: data on the root partition ($data)"
fi

# Network: DHCP on the first Ethernet interface.
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.script -b -q -t 10 >/dev/null 2>&1 || log "no DHCP answer on eth0"

# Changes to the boot partition: written, flushed, and read-only again.
boot_write() {
    mount -o remount,rw /run/boot && "$@"
    sync
    mount -o remount,ro /run/boot
}

# First boot: users from /boot/users (name:password lines) are hashed into
# the data directory's .htpasswd, then the plain file is deleted.
if [ -r /run/boot/users ]; then
    while IFS=: read -r name password; do
        [ -n "$name" ] || continue
        printf '%s\n' "$password" | rest-server --path "$data" user add --update "$name" \
            && log "added user $name"
    done </run/boot/users
    boot_write rm -f /run/boot/users
fi

# TLS=yes without a certificate: make one for the board's names and address,
# and put it and its fingerprint on the boot partition for clients to pin
# (restic --cacert rest-server.crt).
tls_flag=
if [ "$TLS" = yes ]; then
    tls_flag=--tls
    if [ ! -e "$data/public_key" ]; then
        address=$(ip -4 -o addr show eth0 | awk '{ split($4, a, "/"); print a[1]; exit }')
        set -- --name rest-server --name rest-server.local --name localhost
        [ -n "$address" ] && set -- "$@" --name "$address"
        if rest-server --path "$data" tls generate "$@" >/run/fingerprint.txt; then
            boot_write cp "$data/public_key" /run/boot/rest-server.crt
            boot_write cp /run/fingerprint.txt /run/boot/rest-server-fingerprint.txt
            log "made a TLS certificate: $(cat /run/fingerprint.txt)"
        fi
    fi
fi

flags="--path $data --listen $LISTEN $tls_flag"
[ "$APPEND_ONLY" = yes ] && flags="$flags --append-only"
[ "$PRIVATE_REPOS" = yes ] && flags="$flags --private-repos"
log "starting: rest-server $flags $ARGS"
# Respawn if it ever exits; PID 1 must not.
while true; do
    # shellcheck disable=SC2086  # flags and ARGS hold several words
    rest-server $flags $ARGS
    log "rest-server exited ($?); restarting in 5 s"
    sleep 5
done
