#!/bin/sh
# Builds a flashable aarch64 disk image: a FAT boot partition laid out as a
# Raspberry Pi 3/4 expects it (firmware, kernel, device trees, initramfs,
# config.txt, cmdline.txt, and the user's settings), and a small read-only
# ext4 root with busybox and rest-server. No Docker, no loop mounts: Debian's
# arm64 packages are fetched with a private apt configuration, partitions are
# built as files (mkfs.vfat -C + mcopy, mkfs.ext4 -d) and put together with
# sfdisk and dd.
#
#   image/build.sh --binary target/aarch64-unknown-linux-musl/release/rest-server [--out DIR]
#
# Output in DIR (default target/image): rest-server-aarch64.img, and the
# kernel and initramfs alone (vmlinuz, initrd.img) for a direct kernel boot
# under qemu. Packages are cached in DIR/cache.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
binary=""
out="$here/../target/image"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: $0 --binary FILE [--out DIR]" >&2; exit 2 ;;
    esac
done
[ -x "$binary" ] || { echo "build.sh: --binary must name the aarch64 rest-server" >&2; exit 2; }
for tool in apt-get dpkg-deb depmod modprobe cpio mkfs.vfat mcopy mkfs.ext4 sfdisk; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing" >&2; exit 1; }
done

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
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main non-free-firmware" >"$cache/sources.list"
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
# (virtio), the Raspberry Pi 3/4 (SD card, USB disks, Ethernet), ext4 and FAT.
modules="virtio_pci virtio_blk virtio_net ext4 vfat nls_cp437 nls_ascii nls_iso8859_1
    sdhci_iproc bcm2835 xhci_pci usb_storage uas genet smsc95xx lan78xx"
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

# The root partition: busybox, rest-server, the boot script.
root="$work/root"
mkdir -p "$root/bin" "$root/usr/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" \
    "$root/run" "$root/tmp" "$root/data" "$root/var/lib"
cp "$kernel_dir/bin/busybox" "$root/bin/busybox"
for applet in sh mount umount ip udhcpc findfs hostname awk sleep mkdir rm sync cat; do
    ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$binary" "$root/usr/bin/rest-server"
install -m 0755 "$here/root/rc.boot" "$root/etc/rc.boot"
install -m 0755 "$here/root/udhcpc.script" "$root/etc/udhcpc.script"
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
