#!/bin/sh
# Builds a flashable aarch64 disk image: a FAT boot partition laid out as a
# Raspberry Pi 3/4 expects it (firmware, kernel, device trees, initramfs,
# config.txt, cmdline.txt, and the user's settings), and a small read-only
# ext4 root with busybox and rest-server. No Docker, no loop mounts: Debian's
# arm64 packages are fetched with a private apt configuration, partitions are
# built as files (mkfs.vfat -C + mcopy, mkfs.ext4 -d) and put together with
# sfdisk and dd.
#
#   image/build.sh --binary target/aarch64-unknown-linux-musl/release/rest-server [--out DIR] [--mirror URI]
#   image/build.sh --print-mirror [--mirror URI]
#
# Output in DIR (default target/image): rest-server-aarch64.img, and the
# kernel and initramfs alone (vmlinuz, initrd.img) for a direct kernel boot
# under qemu. Packages are cached in DIR/cache.
#
# The Debian mirror (any archive with bookworm's arm64 packages: a public
# mirror, a local one, or a cache such as apt-cacher-ng) is the first of:
# --mirror URI; the IMAGE_DEBIAN_MIRROR environment variable; the first http(s)
# URI of a Debian release in the build host's apt sources (sources.list, and
# sources.list.d/*.list and *.sources, in /etc/apt or in the folder named by
# IMAGE_APT_SOURCES_DIR). --print-mirror prints the choice and stops.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
binary=""
out="$here/../target/image"
mirror=""
mirror_from=""
print_mirror=no
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --mirror) mirror=$2; mirror_from="--mirror"; shift 2 ;;
        --print-mirror) print_mirror=yes; shift ;;
        *) echo "usage: $0 --binary FILE [--out DIR] [--mirror URI] | --print-mirror [--mirror URI]" >&2; exit 2 ;;
    esac
done
if [ "$print_mirror" = no ]; then
    [ -x "$binary" ] || { echo "build.sh: --binary must name the aarch64 rest-server" >&2; exit 2; }
    for tool in apt-get dpkg-deb depmod modprobe cpio mkfs.vfat mcopy mkfs.ext4 sfdisk; do
        command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing" >&2; exit 1; }
    done
fi

# debian_mirror_in FILE: the first http(s) URI of FILE's enabled `deb` entries
# for a Debian release (by suite name: not its -security, -updates or
# -backports suites, nor another distribution's), FILE being in apt's
# one-line format (*.list) or deb822 (*.sources); nothing if there is none.
debian_mirror_in() {
    case "$1" in
        *.sources) format=deb822 ;;
        *) format=one-line ;;
    esac
    awk -v format="$format" '
        function debian(suite) {
            return suite ~ /^(oldoldstable|oldstable|stable|testing|unstable|sid|jessie|stretch|buster|bullseye|bookworm|trixie|forky|duke)$/
        }
        function found(uri) {
            print uri
            done = 1
            exit
        }
        # deb822: the stanza just read.
        function stanza(   enabled, n, i, a, deb, release) {
            enabled = tolower(field["enabled"])
            gsub(/[ \t]/, "", enabled)
            n = split(field["types"], a)
            for (i = 1; i <= n; i++) if (a[i] == "deb") deb = 1
            n = split(field["suites"], a)
            for (i = 1; i <= n; i++) if (debian(a[i])) release = 1
            if (enabled !~ /^(no|false|off|without|disable)$/ && deb && release) {
                n = split(field["uris"], a)
                for (i = 1; i <= n; i++) if (a[i] ~ /^https?:\/\//) found(a[i])
            }
            split("", field)
            name = ""
        }
        { sub(/\r$/, "") }
        format == "one-line" {
            sub(/#.*/, "")
            gsub(/\[[^]]*\]/, " ")
            if ($1 == "deb" && $2 ~ /^https?:\/\// && debian($3)) found($2)
            next
        }
        # deb822: "Field: value" lines in stanzas separated by blank lines; a
        # line that starts with a blank continues the field before it.
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { stanza(); next }
        /^[ \t]/ { if (name != "") field[name] = field[name] " " $0; next }
        index($0, ":") > 0 {
            name = tolower(substr($0, 1, index($0, ":") - 1))
            field[name] = substr($0, index($0, ":") + 1)
        }
        END { if (!done && format == "deb822") stanza() }
    ' "$1"
}

# mirror_from_host: sets mirror and mirror_from from the host's apt sources,
# read in apt's order; fails when none of them names a Debian mirror.
apt_sources=${IMAGE_APT_SOURCES_DIR:-/etc/apt}
mirror_from_host() {
    for file in "$apt_sources/sources.list" "$apt_sources"/sources.list.d/*; do
        case "$file" in
            *.list | *.sources) [ -f "$file" ] || continue ;;
            *) continue ;;
        esac
        mirror=$(debian_mirror_in "$file")
        if [ -n "$mirror" ]; then
            mirror_from=$file
            return 0
        fi
    done
    return 1
}

if [ -n "$mirror_from" ]; then
    : # --mirror
elif [ -n "${IMAGE_DEBIAN_MIRROR:-}" ]; then
    mirror=$IMAGE_DEBIAN_MIRROR
    mirror_from=IMAGE_DEBIAN_MIRROR
elif ! mirror_from_host; then
    echo "build.sh: found no Debian mirror (an http(s) deb entry for a Debian release) in $apt_sources/sources.list or $apt_sources/sources.list.d; name one with --mirror URI or IMAGE_DEBIAN_MIRROR=URI, e.g. http://HOST:3142/debian for an apt-cacher-ng cache" >&2
    exit 1
fi
case "$mirror" in
    *[[:space:]]*) uri=no ;;
    [a-z]*:?*) uri=yes ;;
    *) uri=no ;;
esac
if [ "$uri" = no ]; then
    echo "build.sh: the Debian mirror \"$mirror\" (from $mirror_from) is not a URI" >&2
    exit 2
fi
echo "build.sh: Debian mirror $mirror (from $mirror_from)"
if [ "$print_mirror" = yes ]; then
    exit 0
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
cache="$out/cache"
work="$out/work"
rm -rf "$work"
mkdir -p "$cache/apt/state" "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$work"

# Debian's arm64 packages, without touching the system's apt setup.
cat >"$cache/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$cache/apt/state";
Dir::State::Lists "$cache/apt/lists";
Dir::Cache "$cache/apt";
Dir::Cache::Archives "$cache/apt/archives";
Dir::Etc::SourceList "$cache/sources.list";
Dir::Etc::SourceParts "$cache/no-parts";
EOF
mkdir -p "$cache/no-parts"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main non-free-firmware" >"$cache/sources.list"
touch "$cache/apt/state/status"
export APT_CONFIG="$cache/apt.conf"
apt-get update -qq
kernel_pkg=$(apt-cache depends linux-image-arm64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
kver=${kernel_pkg#linux-image-}
(cd "$cache" && for pkg in "$kernel_pkg" busybox-static raspi-firmware; do
    ls "$pkg"_*.deb >/dev/null 2>&1 || apt-get download -qq "$pkg" 2>/dev/null
done)
unset APT_CONFIG
for pkg in "$kernel_pkg" busybox-static raspi-firmware; do
    for deb in "$cache/$pkg"_*.deb; do
        dpkg-deb -x "$deb" "$work/pkgs"
    done
done
kernel_dir="$work/pkgs"
depmod -b "$kernel_dir" "$kver"

# Drivers, with their dependencies in load order: qemu's virt machine
# (virtio, the i6300esb watchdog), the Raspberry Pi 3/4 (SD card, USB
# disks, Ethernet, the bcm2835 watchdog), ext4 and FAT.
modules="virtio_pci virtio_blk virtio_net i6300esb ext4 vfat nls_cp437 nls_ascii nls_iso8859_1
    sdhci_iproc bcm2835 xhci_pci usb_storage uas genet smsc95xx lan78xx bcm2835_wdt"
initramfs="$work/initramfs"
mkdir -p "$initramfs/bin" "$initramfs/lib/modules" "$initramfs/proc" "$initramfs/sys" "$initramfs/dev"
: >"$initramfs/modules.list"
for module in $modules; do
    # A misspelt or vanished module must stop the build, not go missing.
    modprobe -d "$kernel_dir" -S "$kver" --show-depends "$module" >"$work/deps"
    awk '$1 == "insmod" { print $2 }' "$work/deps" |
        while read -r file; do
            name=/lib/modules/$(basename "$file")
            grep -qx "$name" "$initramfs/modules.list" && continue
            cp "$file" "$initramfs$name"
            echo "$name" >>"$initramfs/modules.list"
        done
done
cp "$kernel_dir/bin/busybox" "$initramfs/bin/busybox"
install -m 0755 "$here/initramfs-init" "$initramfs/init"
(cd "$initramfs" && find . | cpio -o -H newc --quiet | gzip -9) >"$out/initrd.img"
cp "$kernel_dir/boot/vmlinuz-$kver" "$out/vmlinuz"

# The root partition: busybox (init is PID 1), rest-server, the boot script
# and the services init keeps running (image/root/inittab).
root="$work/root"
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/etc/service" "$root/proc" "$root/sys" \
    "$root/dev" "$root/run" "$root/tmp" "$root/data" "$root/var/lib"
cp "$kernel_dir/bin/busybox" "$root/bin/busybox"
for applet in sh mount umount ip udhcpc findfs hostname awk sed sleep mkdir rm sync cat \
    reboot poweroff kill ps pidof nc timeout head tr date ls; do
    ln -s busybox "$root/bin/$applet"
done
ln -s ../bin/busybox "$root/sbin/init"
install -m 0755 "$binary" "$root/usr/bin/rest-server"
install -m 0755 "$here/root/rc.boot" "$root/etc/rc.boot"
install -m 0644 "$here/root/inittab" "$root/etc/inittab"
install -m 0755 "$here/root/udhcpc.script" "$root/etc/udhcpc.script"
install -m 0644 "$here/root/service/functions" "$root/etc/service/functions"
for service in rest-server ntp watchdog mdns; do
    install -m 0755 "$here/root/service/$service" "$root/etc/service/$service"
done
ln -s /run/resolv.conf "$root/etc/resolv.conf"
rm -f "$work/root.img"
mkfs.ext4 -q -L rsroot -d "$root" "$work/root.img" 64M

# The boot partition, as the Raspberry Pi firmware reads it.
boot="$work/boot"
mkdir -p "$boot"
cp "$kernel_dir"/usr/lib/raspi-firmware/* "$boot/"
cp "$kernel_dir/usr/lib/linux-image-$kver/broadcom/"bcm2711-rpi-4-b.dtb \
    "$kernel_dir/usr/lib/linux-image-$kver/broadcom/"bcm2837-rpi-3-b*.dtb "$boot/"
cp "$out/vmlinuz" "$out/initrd.img" "$boot/"
install -m 0644 "$here/boot/config.txt" "$here/boot/cmdline.txt" "$here/boot/rest-server.conf" \
    "$here/boot/README.txt" "$boot/"
rm -f "$work/boot.img"
mkfs.vfat -C -n RSBOOT "$work/boot.img" $((64 * 1024)) >/dev/null
mcopy -s -i "$work/boot.img" "$boot"/* ::/

# Both partitions in one image, 1 MiB aligned.
image="$out/rest-server-aarch64.img"
rm -f "$image"
truncate -s $((1 + 64 + 64 + 1))M "$image"
sfdisk -q "$image" <<EOF
label: dos
start=1MiB, size=64MiB, type=c, bootable
start=65MiB, size=64MiB, type=83
EOF
dd if="$work/boot.img" of="$image" bs=1M seek=1 conv=notrunc status=none
dd if="$work/root.img" of="$image" bs=1M seek=65 conv=notrunc status=none
rm -rf "$work"
echo "built $image ($kver)"
