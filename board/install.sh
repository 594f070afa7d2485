#!/bin/sh
# Installs rest-server as a service on this machine, for the init system it
# finds (systemd, OpenRC, OpenWrt procd, or sysvinit/busybox init.d):
# the binary, the service file, /etc/default/rest-server (kept if it exists),
# the service user, and the data directory owned by that user.
#
#   board/install.sh [--binary FILE] [--init systemd|openrc|openwrt|sysvinit] [--root DIR]
#   board/install.sh --uninstall [--init ...] [--root DIR]
#
# Running it again is harmless. --root installs below DIR instead of / and
# then only copies files: no user, no service enabling (for packaging and
# tests). --uninstall removes the binary and service files, not the data nor
# /etc/default/rest-server.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
binary=""
init=""
root=""
uninstall=false
user=rest-server
data=/srv/restic

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --init) init=$2; shift 2 ;;
        --root) root=${2%/}; shift 2 ;;
        --uninstall) uninstall=true; shift ;;
        -h | --help) usage ;;
        *) echo "install.sh: unknown argument $1" >&2; usage ;;
    esac
done

if [ -z "$init" ]; then
    if [ -d /run/systemd/system ]; then
        init=systemd
    elif [ -f /etc/rc.common ] && [ -x /sbin/procd ]; then
        init=openwrt
    elif [ -x /sbin/openrc-run ]; then
        init=openrc
    else
        init=sysvinit
    fi
fi

case "$init" in
    systemd | openrc | sysvinit) bin_dir=/usr/local/bin ;;
    openwrt) bin_dir=/usr/bin ;;
    *) echo "install.sh: unknown init system $init" >&2; exit 2 ;;
esac

# Service file: (source in board/, target path).
case "$init" in
    systemd) service_files="systemd/rest-server.service:/etc/systemd/system/rest-server.service systemd/rest-server.socket:/etc/systemd/system/rest-server.socket" ;;
    openrc) service_files="openrc/rest-server:/etc/init.d/rest-server" ;;
    openwrt) service_files="openwrt/rest-server:/etc/init.d/rest-server" ;;
    sysvinit) service_files="init.d/rest-server:/etc/init.d/rest-server" ;;
esac

live() { [ -z "$root" ]; }

if $uninstall; then
    if live; then
        case "$init" in
            systemd) systemctl disable --now rest-server.service rest-server.socket 2>/dev/null || true ;;
            openrc) rc-service rest-server stop 2>/dev/null || true; rc-update del rest-server 2>/dev/null || true ;;
            openwrt) /etc/init.d/rest-server stop 2>/dev/null || true; /etc/init.d/rest-server disable 2>/dev/null || true ;;
            sysvinit)
                /etc/init.d/rest-server stop 2>/dev/null || true
                if command -v update-rc.d >/dev/null; then update-rc.d -f rest-server remove >/dev/null || true; fi ;;
        esac
    fi
    for pair in $service_files; do
        rm -f "$root${pair#*:}"
    done
    rm -f "$root$bin_dir/rest-server"
    if live && [ "$init" = systemd ]; then systemctl daemon-reload; fi
    echo "rest-server removed ($init); kept $data and /etc/default/rest-server"
    exit 0
fi

if [ -z "$binary" ]; then
    for candidate in "$here/../target/release/rest-server" "$here/rest-server" ./rest-server; do
        if [ -x "$candidate" ]; then binary=$candidate; break; fi
    done
fi
if [ -z "$binary" ] || [ ! -x "$binary" ]; then
    echo "install.sh: no rest-server binary found; pass --binary FILE" >&2
    exit 1
fi

mkdir -p "$root$bin_dir" "$root/etc/default"
install -m 0755 "$binary" "$root$bin_dir/rest-server.new"
mv -f "$root$bin_dir/rest-server.new" "$root$bin_dir/rest-server"
for pair in $service_files; do
    target=$root${pair#*:}
    mkdir -p "$(dirname "$target")"
    mode=0644
    case "$target" in */init.d/*) mode=0755 ;; esac
    install -m "$mode" "$here/${pair%%:*}" "$target"
done
if [ ! -e "$root/etc/default/rest-server" ]; then
    install -m 0644 "$here/rest-server.default" "$root/etc/default/rest-server"
fi
mkdir -p "$root$data"

if live; then
    if ! id "$user" >/dev/null 2>&1; then
        if command -v useradd >/dev/null; then
            useradd --system --no-create-home --home-dir "$data" --shell /usr/sbin/nologin "$user"
        else
            # busybox
            adduser -S -D -H -h "$data" -s /sbin/nologin "$user"
        fi
    fi
    chown "$user:" "$data"
    chmod 0700 "$data"
    case "$init" in
        systemd) systemctl daemon-reload; systemctl enable rest-server.service ;;
        openrc) rc-update add rest-server default ;;
        openwrt) /etc/init.d/rest-server enable ;;
        sysvinit)
            if command -v update-rc.d >/dev/null; then update-rc.d rest-server defaults >/dev/null; fi ;;
    esac
    echo "rest-server installed ($init). Add a user, then start it:"
    echo "  $bin_dir/rest-server --path $data user add NAME"
else
    echo "rest-server files installed below $root ($init); no user or service set up"
fi
