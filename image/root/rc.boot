#!/bin/sh
# Second stage, busybox init's sysinit step on the read-only root (see
# /etc/inittab): read the settings the user put on the boot partition, mount
# the data disk, add users, make a certificate, and leave the settings the
# services need in /run/rest-server.env. init then starts the services
# (/etc/service/*, udhcpc) and restarts them when they exit.
PATH=/usr/bin:/bin:/sbin
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
NTP=
MDNS_NAME=rest-server.local
ARGS=
if [ -r /run/boot/rest-server.conf ]; then
    while IFS='=' read -r key value; do
        case "$key" in
            LISTEN) LISTEN=$value ;;
            DATA_LABEL) DATA_LABEL=$value ;;
            APPEND_ONLY) APPEND_ONLY=$value ;;
            PRIVATE_REPOS) PRIVATE_REPOS=$value ;;
            TLS) TLS=$value ;;
            NTP) NTP=$value ;;
            MDNS_NAME) MDNS_NAME=$value ;;
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

# Network: DHCP on the first Ethernet interface, by the udhcpc that init
# keeps running (/etc/inittab); only a first boot that has to put the
# address in a new certificate waits for a lease here (below).
ip link set lo up
ip link set eth0 up

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
        udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 5 -T 3 >/dev/null 2>&1 ||
            log "no DHCP answer on eth0: the certificate names no address"
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
# For the services: /etc/service/* read it as shell, each value in single
# quotes (a quote inside one written as '\'').
setting() { printf "%s='%s'\n" "$1" "$(printf '%s' "$2" | sed "s/'/'\\\\''/g")"; }
{
    setting FLAGS "$flags $ARGS"
    setting LISTEN "$LISTEN"
    setting TLS "$TLS"
    setting NTP "$NTP"
    setting MDNS_NAME "$MDNS_NAME"
} >/run/rest-server.env
