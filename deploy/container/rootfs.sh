#!/usr/bin/env bash
# Makes the root filesystem of one container image from Debian packages and one binary:
#
#   rootfs.sh IMAGE BINARY OUTDIR
#
# IMAGE is gateway, mailbox-service or mailbox-admin; BINARY the Bazel-built program,
# installed as /usr/bin/<program>; OUTDIR must not exist and becomes the tree (owned by
# root but for /var/lib/mailbox, the imapd user's). OUTDIR.packages lists the Debian
# packages in it ("package version", one a line).
#
# The tree holds the binary, the shared libraries it loads (from Debian 12 packages,
# with their package dependencies), CA certificates where needed, /etc/passwd and
# /etc/group with the imapd user (uid/gid 10001), and nothing else: no shell, no package
# manager, no compiler. Every library the binary needs must resolve inside the tree, or
# this fails naming the missing one and the Debian package that has it.
#
# Needs mmdebstrap and apt-get (the Debian archive must be reachable, or a mirror given
# in DEBIAN_MIRROR), and root: files are extracted with their owners. Used by
# make-images.sh and by the Containerfile.
set -euo pipefail

usage() {
  echo "usage: $0 gateway|mailbox-service|mailbox-admin BINARY OUTDIR" >&2
  exit 2
}
(($# == 3)) || usage
image=$1
binary=$2
out=$3

suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-}

# The runtime libraries of each program: the Debian packages holding the shared
# objects that `ldd BINARY` lists (found with `dpkg -S` on the build machine). mmdebstrap
# adds their package dependencies (e.g. libprotoc32 for libgrpc29, Kerberos and LDAP for
# libpq5), which the dynamic linker may load too. The check at the end of this script
# fails when a library is missing, so a new dependency of the code cannot slip by.
#
# C and C++ runtime (glibc, libgcc, libstdc++), for all three.
common=(libc6 libgcc-s1 libstdc++6)
# gRPC and what its headers pull into our code (Abseil, protobuf) and its own needs:
# c-ares (DNS), RE2 (service config), OpenSSL (TLS), zlib (compression).
grpc=(libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libc-ares2 libre2-9 libssl3 zlib1g)
case "$image" in
  gateway)
    program=imap-gateway
    # OpenSSL for IMAPS and STARTTLS; zlib for COMPRESS=DEFLATE (RFC 4978).
    packages=("${common[@]}" "${grpc[@]}")
    # No CA certificates: the gateway trusts only the CA file it is given for the link.
    data_packages=(base-files)
    ;;
  mailbox-service)
    program=mailbox-service
    # SQLite (embedded store), libpq (PostgreSQL store), Argon2 (password hashes).
    packages=("${common[@]}" "${grpc[@]}" libsqlite3-0 libpq5 libargon2-1)
    # The OAuth introspection client verifies its https endpoint against the system
    # CA certificates unless given --oauth-introspection-ca-file.
    data_packages=(base-files ca-certificates)
    ;;
  mailbox-admin)
    program=mailbox-admin
    # SQLite and libpq for `store copy` and `store migrate`, which open the stores directly.
    packages=("${common[@]}" "${grpc[@]}" libsqlite3-0 libpq5)
    data_packages=(base-files)
    ;;
  *)
    usage
    ;;
esac
# base-files gives /etc/os-release and /etc/debian_version, which tell vulnerability
# scanners which distribution the libraries come from, and the common licenses. It and
# ca-certificates are data: they are unpacked without their dependencies (awk, openssl,
# debconf), which serve only their maintainer scripts, and those never run here.

[[ -x "$binary" ]] || { echo "rootfs.sh: $binary is not an executable file" >&2; exit 1; }
[[ ! -e "$out" ]] || { echo "rootfs.sh: $out already exists" >&2; exit 1; }
for tool in mmdebstrap apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || {
    echo "rootfs.sh: $tool not found (Debian package: ${tool/apt-get/apt}; dpkg-deb: dpkg)" >&2
    exit 1
  }
done

# Unpack only what the --include list and its dependencies name (extract: no maintainer
# scripts run, nothing is "installed"). The extract hook runs while the downloaded .deb
# files are still there: it records each package's control fields in
# /var/lib/dpkg/status.d/, where scanners find the package list of a distroless image.
# Nothing runs inside the tree, so no /proc, /sys or /dev is mounted.
# (With a cache the directory may hold other packages' files too: a package is in the
# tree when its /usr/share/doc/PACKAGE is, which Debian policy requires of every one.)
record_packages='mkdir -p "$1/var/lib/dpkg/status.d"
for deb in "$1"/var/cache/apt/archives/*.deb; do
  package=$(dpkg-deb --field "$deb" Package)
  if [ -e "$1/usr/share/doc/$package" ] || [ -L "$1/usr/share/doc/$package" ]; then
    dpkg-deb --field "$deb" > "$1/var/lib/dpkg/status.d/$package"
  fi
done'
# ROOTFS_APT_CACHE=DIR keeps apt's package lists and the .deb files in DIR, so that
# several trees cost one download: the first run (ROOTFS_APT_CACHE_MODE=fill) fetches
# and saves them, later ones (=use) start from them and fetch no index.
cache_options=()
if [[ -n "${ROOTFS_APT_CACHE:-}" ]]; then
  mkdir -p "$ROOTFS_APT_CACHE/lists" "$ROOTFS_APT_CACHE/archives"
  cache_options+=(--skip=download/empty
    --setup-hook='mkdir -p "$1/var/cache/apt/archives" "$1/var/lib/apt/lists"'
    --setup-hook="sync-in $ROOTFS_APT_CACHE/archives /var/cache/apt/archives")
  case "${ROOTFS_APT_CACHE_MODE:-fill}" in
    fill)
      cache_options+=(--extract-hook="sync-out /var/cache/apt/archives $ROOTFS_APT_CACHE/archives"
        --extract-hook="sync-out /var/lib/apt/lists $ROOTFS_APT_CACHE/lists")
      ;;
    use)
      cache_options+=(--skip=update --setup-hook="sync-in $ROOTFS_APT_CACHE/lists /var/lib/apt/lists")
      ;;
    *)
      echo "rootfs.sh: ROOTFS_APT_CACHE_MODE is fill or use" >&2
      exit 2
      ;;
  esac
fi
mkdir -p "$(dirname "$out")"
include=$(IFS=,; echo "${packages[*]}")
mmdebstrap --quiet --variant=extract --include="$include" --skip=chroot/mount \
  --extract-hook="$record_packages" "${cache_options[@]}" "$suite" "$out" ${mirror:+"$mirror"}

# The data packages: downloaded alone (no dependencies). With the machine's own apt
# lists when it runs the same Debian release and no mirror is given (no index to
# fetch), else with lists fetched for the suite and mirror.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/archives/partial"
host_codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
if [[ -n "$mirror" || "$host_codename" != "$suite" ]] \
   || ! (cd "$scratch/archives" \
         && apt-get -q=2 -o APT::Sandbox::User=root download "${data_packages[@]}") 2>/dev/null; then
  rm -f "$scratch"/archives/*.deb
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "${mirror:-http://deb.debian.org/debian}" \
    "$suite" >"$scratch/sources.list"
  if [[ -z "$mirror" ]]; then
    printf 'deb [signed-by=%s] http://deb.debian.org/debian %s-updates main\n' "$keyring" "$suite" \
      >>"$scratch/sources.list"
    printf 'deb [signed-by=%s] http://deb.debian.org/debian-security %s-security main\n' \
      "$keyring" "$suite" >>"$scratch/sources.list"
  fi
  mkdir -p "$scratch/lists/partial"
  : >"$scratch/status"
  apt_options=(-o "Dir::Etc::SourceList=$scratch/sources.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$scratch/lists" -o "Dir::State::Status=$scratch/status"
    -o "Dir::Cache=$scratch" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get -q=2 "${apt_options[@]}" update
  (cd "$scratch/archives" && apt-get -q=2 "${apt_options[@]}" download "${data_packages[@]}")
fi
for deb in "$scratch"/archives/*.deb; do
  dpkg-deb --extract "$deb" "$out"
  package=$(dpkg-deb --field "$deb" Package)
  dpkg-deb --field "$deb" >"$out/var/lib/dpkg/status.d/$package"
done
if [[ " ${data_packages[*]} " == *" ca-certificates "* ]]; then
  # What update-ca-certificates would make: one bundle of every certificate, where
  # OpenSSL looks by default (its OPENSSLDIR /usr/lib/ssl points to /etc/ssl).
  mkdir -p "$out/etc/ssl/certs" "$out/usr/lib/ssl"
  find "$out/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z \
    | xargs -0 cat >"$out/etc/ssl/certs/ca-certificates.crt"
  ln -sfn /etc/ssl/certs "$out/usr/lib/ssl/certs"
  ln -sfn /etc/ssl/certs/ca-certificates.crt "$out/usr/lib/ssl/cert.pem"
fi

# Only what runs: drop apt's and dpkg's working files, the copied host files, device
# nodes (the runtime mounts /dev), documentation but for the copyright files, and the
# scripts of the data packages (update-ca-certificates: its work is done above).
rm -rf "$out"/etc/apt "$out"/var/lib/apt "$out"/var/cache/apt "$out"/var/log/* \
  "$out"/etc/dpkg "$out"/etc/resolv.conf "$out"/etc/hostname "$out"/dev/* \
  "$out"/usr/share/man "$out"/usr/share/info "$out"/usr/share/lintian \
  "$out"/etc/update-motd.d "$out"/etc/profile.d "$out"/etc/skel \
  "$out"/usr/sbin/update-ca-certificates "$out"/etc/ca-certificates
find "$out/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete
find "$out/usr/share/doc" -mindepth 1 -type d -empty -delete

# The program and its user. /var/lib/mailbox is the data directory (a volume) and the
# working directory; /tmp is for the libraries that want one.
install -D -m 0755 "$binary" "$out/usr/bin/$program"
cat >"$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
imapd:x:10001:10001:imapd:/var/lib/mailbox:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$out/etc/group" <<'EOF'
root:x:0:
imapd:x:10001:
nogroup:x:65534:
EOF
# glibc's lookups: files for users and hosts, then DNS (podman and Kubernetes mount
# /etc/hosts and /etc/resolv.conf).
cat >"$out/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
install -d -m 0700 -o 10001 -g 10001 "$out/var/lib/mailbox"
install -d -m 1777 "$out/tmp"

# Every shared object the program needs must resolve in the tree: ask the tree's own
# dynamic linker to list them, with only the tree's library directories.
# (/lib64/ld-linux-x86-64.so.2, the program's interpreter, is an absolute symlink: it
# points into the tree only inside the container.)
loader=""
for candidate in "$out"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \
                 "$out"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2; do
  if [[ -f "$candidate" && ! -L "$candidate" ]]; then
    loader=$candidate
  fi
done
if [[ -z "$loader" || ! -L "$out/lib64/ld-linux-x86-64.so.2" ]]; then
  echo "rootfs.sh: no dynamic linker in $out (was libc6 extracted?)" >&2
  exit 1
fi
libdirs="$out/lib/x86_64-linux-gnu:$out/usr/lib/x86_64-linux-gnu"
listing=$("$loader" --inhibit-cache --library-path "$libdirs" --list "$out/usr/bin/$program" 2>&1) || {
  echo "$listing" >&2
  echo "rootfs.sh: the dynamic linker could not load $program from the tree" >&2
  exit 1
}
missing=$(grep 'not found' <<<"$listing" | awk '{print $1}' || true)
if [[ -n "$missing" ]]; then
  for library in $missing; do
    owner=$(dpkg -S "*/$library" 2>/dev/null | head -1 | cut -d: -f1 || true)
    echo "rootfs.sh: $program needs $library, not in the image; add its Debian package" \
      "(${owner:-unknown: see dpkg -S $library}) to the list of $image in $0" >&2
  done
  exit 1
fi
# And none may come from outside the tree.
if grep -E '=> /' <<<"$listing" | grep -v -F "=> $out/" >/dev/null; then
  echo "$listing" >&2
  echo "rootfs.sh: a library of $program resolved outside $out" >&2
  exit 1
fi

for entry in "$out"/var/lib/dpkg/status.d/*; do
  printf '%s %s\n' "$(sed -n 's/^Package: //p' "$entry")" "$(sed -n 's/^Version: //p' "$entry")"
done | sort >"$out.packages"
