#!/bin/sh
# Builds the Debian packages (.deb) of rest-server from the static binaries,
# with dpkg-deb alone (no debhelper, no source package):
#
#   board/deb/build.sh [--out DIR] [--revision N] [ARCH=BINARY]...
#
# ARCH is arm64, armhf or amd64. Without ARCH=BINARY arguments it packages
# all three from the release builds (cargo build-aarch64, cargo build-armv7,
# cargo build-x86_64; in $CARGO_TARGET_DIR, default target/). Writes
# DIR/rest-server_<version>-<revision>_<arch>.deb (DIR: default
# <target dir>/deb); the version is Cargo.toml's, the revision 1 unless given.
#
# The maintainer named in the package is $DEBFULLNAME <$DEBEMAIL>, as for
# dch. File dates are the last commit's (or $SOURCE_DATE_EPOCH), so the same
# binaries and sources give the same packages.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$project/target}
out=$target_dir/deb
revision=1

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

pairs=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --revision) revision=$2; shift 2 ;;
        -h | --help) usage ;;
        arm64=* | armhf=* | amd64=*) pairs="$pairs $1"; shift ;;
        *) echo "build.sh: unknown argument $1" >&2; usage ;;
    esac
done
case "$revision" in
    "" | *[!0-9a-zA-Z.+~]*) echo "build.sh: bad revision '$revision'" >&2; exit 2 ;;
esac

for tool in dpkg-deb gzip file cargo md5sum; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing" >&2; exit 1; }
done

# triple ARCH: the Rust target whose binary the package holds.
triple() {
    case "$1" in
        arm64) echo aarch64-unknown-linux-musl ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
        amd64) echo x86_64-unknown-linux-musl ;;
    esac
}

if [ -z "$pairs" ]; then
    for arch in arm64 armhf amd64; do
        pairs="$pairs $arch=$target_dir/$(triple "$arch")/release/rest-server"
    done
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$project/Cargo.toml" | head -n 1)
[ -n "$version" ] || { echo "build.sh: no version in Cargo.toml" >&2; exit 1; }
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$project" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
commit=$(git -C "$project" rev-parse --short HEAD 2>/dev/null || echo unknown)
# The copyright years: from the first commit's to the last's.
last_year=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
first_year=$(git -C "$project" log --reverse --format=%ad --date=format:%Y 2>/dev/null | head -n 1)
years=${first_year:-$last_year}
[ "$years" = "$last_year" ] || years=$years-$last_year
maintainer="${DEBFULLNAME:-rest-server maintainers} <${DEBEMAIL:-rest-server@example.org}>"

# check_binary ARCH FILE: FILE is a static ELF program for ARCH.
check_binary() {
    [ -f "$2" ] || {
        echo "build.sh: $2 is missing (build it: cargo build --release --target $(triple "$1"))" >&2
        exit 1
    }
    # e_machine, at byte 18 of the ELF header (little endian on all three).
    machine=$(od -An -tu2 -j18 -N2 "$2" | tr -d ' ')
    case "$1:$machine" in
        arm64:183 | armhf:40 | amd64:62) ;;
        *) echo "build.sh: $2 is not an $1 program (ELF machine $machine)" >&2; exit 1 ;;
    esac
    case "$(file -b "$2")" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) echo "build.sh: $2 is not statically linked; the package declares no libc dependency" >&2; exit 1 ;;
    esac
}

# crates ARCH: the crates linked into the binary, "name version: license",
# as continuation lines of the copyright file's Comment.
crates() {
    (cd "$project" && cargo tree --locked -q -e normal,no-proc-macro \
        --target "$(triple "$1")" --prefix none --format '{p}: {l}') |
        sed -e 's/ (\*)$//' -e 's/ v\([0-9]\)/ \1/' |
        grep -v "^rest-server " | sort -u | sed 's/^/ /'
}

libc() {
    case "$1" in
        # Lines of the Comment field (awk -v makes a newline of \n).
        armhf) printf '%s\\n%s\\n%s' "the GNU C Library (LGPL-2.1-or-later, see" \
            " /usr/share/common-licenses/LGPL-2.1); to link the program with another" \
            " glibc, build it from this project's source (cargo build-armv7)." ;;
        *) echo "musl (MIT)." ;;
    esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022
mkdir -p "$out"

for pair in $pairs; do
    arch=${pair%%=*}
    binary=${pair#*=}
    check_binary "$arch" "$binary"
    root=$work/$arch
    doc=$root/usr/share/doc/rest-server
    mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/default" \
        "$root/usr/share/man/man8" "$doc" "$root/usr/share/lintian/overrides"

    install -m 0755 "$binary" "$root/usr/bin/rest-server"
    # The board's unit, with the package's path of the binary and its manual.
    sed -e 's|/usr/local/bin/rest-server|/usr/bin/rest-server|' \
        -e 's|^Description=.*|&\nDocumentation=man:rest-server(8)|' "$here/../systemd/rest-server.service" \
        >"$root/lib/systemd/system/rest-server.service"
    grep -q '^ExecStart=/usr/bin/rest-server ' "$root/lib/systemd/system/rest-server.service" || {
        echo "build.sh: board/systemd/rest-server.service has no ExecStart=/usr/local/bin/rest-server" >&2
        exit 1
    }
    cp "$here/../systemd/rest-server.socket" "$root/lib/systemd/system/"
    cp "$here/../rest-server.default" "$root/etc/default/rest-server"
    sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)/" \
        "$here/rest-server.8" | gzip -9n >"$root/usr/share/man/man8/rest-server.8.gz"
    cp "$here/lintian-overrides" "$root/usr/share/lintian/overrides/rest-server"

    crates "$arch" >"$work/crates"
    awk -v libc="$(libc "$arch")" -v years="$years" -v crates="$work/crates" '
        /^@CRATES@$/ { while ((getline line < crates) > 0) print line; next }
        { sub(/@LIBC@/, libc); sub(/@YEARS@/, years); print }' "$here/copyright" >"$doc/copyright"
    cat >"$work/changelog" <<EOF
rest-server ($version-$revision) unstable; urgency=medium

  * rest-server $version, commit $commit, built for
    $(triple "$arch") (docs/packages.md).

 -- $maintainer  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF
    gzip -9n <"$work/changelog" >"$doc/changelog.Debian.gz"

    for script in postinst prerm postrm; do
        install -m 0755 "$here/$script" "$root/DEBIAN/$script"
    done
    cp "$here/conffiles" "$root/DEBIAN/conffiles"
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
        xargs md5sum) >"$root/DEBIAN/md5sums"
    size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    sed -e "s/@VERSION@/$version-$revision/" -e "s/@ARCH@/$arch/" \
        -e "s/@MAINTAINER@/$maintainer/" -e "s/@INSTALLED_SIZE@/$size/" \
        "$here/control" >"$root/DEBIAN/control"

    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    deb=$out/rest-server_${version}-${revision}_$arch.deb
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    echo "$deb: $(stat -c %s "$deb") bytes"
done
