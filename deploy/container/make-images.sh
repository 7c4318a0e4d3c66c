#!/usr/bin/env bash
# Builds the OCI images of imap-gateway, mailbox-service and mailbox-admin from built
# binaries and Debian packages, with no base image and no registry, and writes each as
# an OCI archive:
#
#   make-images.sh --version V --out DIR --gateway BIN --mailbox-service BIN
#                  --mailbox-admin BIN [--revision R] [--source URL] [--no-debug]
#
# DIR receives, for each IMAGE of imapd-gateway, imapd-mailbox-service and
# imapd-mailbox-admin: IMAGE-V.oci.tar (the image localhost/IMAGE:V), IMAGE-V-debug.oci.tar
# (localhost/IMAGE:V-debug: the same plus busybox, for a shell; not with --no-debug) and
# IMAGE-V.packages (the Debian packages inside); and images.txt, one line per image:
# "NAME ARCHIVE". Load one with `podman load -i DIR/IMAGE-V.oci.tar`.
#
# How: deploy/container/rootfs.sh makes each image's tree (mmdebstrap, Debian 12);
# buildah turns it into a one-layer image from scratch (its own storage in a temporary
# directory, vfs driver, chroot isolation: no daemon, no overlay mounts), and skopeo
# writes the archive. Nothing is left in the machine's container storage. Needs root,
# mmdebstrap, buildah and skopeo; deploy/container/build-images.sh builds the binaries
# with Bazel first and calls this.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

version="" out="" revision="" source_url="" debug=1
declare -A binary=()
while (($#)); do
  case "$1" in
    --version) version=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --revision) revision=${2:?}; shift 2 ;;
    --source) source_url=${2:?}; shift 2 ;;
    --gateway) binary[gateway]=${2:?}; shift 2 ;;
    --mailbox-service) binary[mailbox-service]=${2:?}; shift 2 ;;
    --mailbox-admin) binary[mailbox-admin]=${2:?}; shift 2 ;;
    --no-debug) debug=0; shift ;;
    -h|--help) usage ;;
    *) echo "make-images.sh: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n "$version" && -n "$out" ]] || usage
for image in gateway mailbox-service mailbox-admin; do
  [[ -n "${binary[$image]:-}" ]] || { echo "make-images.sh: --$image BIN is missing" >&2; usage; }
done
# An image tag: letters, digits, "_", "." and "-", at most 128, not starting with "." or "-".
if ! [[ "$version" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}$ ]]; then
  echo "make-images.sh: version \"$version\" cannot be an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]*)" >&2
  exit 2
fi
if [[ $(id -u) != 0 ]]; then
  echo "make-images.sh: run as root (the image trees keep their files' owners)" >&2
  exit 1
fi
for tool in mmdebstrap buildah skopeo; do
  command -v "$tool" >/dev/null || {
    echo "make-images.sh: $tool not found; install it: apt-get install $tool" >&2
    exit 1
  }
done

# Creation time of the images and the time stamp of their files: the commit's, so that
# images of one commit differ only where the Debian packages changed.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
revision=${revision:-unknown}
source_url=${source_url:-unknown}

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/imapd-images.XXXXXX")
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
export BUILDAH_ISOLATION=chroot
cleanup() {
  buildah "${storage[@]}" rm --all >/dev/null 2>&1 || true
  buildah "${storage[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

declare -A program=([gateway]=imap-gateway [mailbox-service]=mailbox-service
                    [mailbox-admin]=mailbox-admin)
declare -A title=([gateway]=imapd-gateway [mailbox-service]=imapd-mailbox-service
                  [mailbox-admin]=imapd-mailbox-admin)
declare -A description=(
  [gateway]="imapd IMAP gateway: IMAPS on 9993, IMAP with STARTTLS on 9143, operator HTTP on 8143; stateless, talks gRPC to the mailbox service"
  [mailbox-service]="imapd mailbox service: gRPC on 50051, operator HTTP on 8151; SQLite data in /var/lib/mailbox or PostgreSQL"
  [mailbox-admin]="imapd mailbox-admin: users, mailboxes, imports and quotas over the mailbox service's gRPC API")

# The trees. Most of the time goes to apt: the service's tree (whose packages include
# the others') fetches the package lists and files into a cache, then the other two
# are made from it at once.
cache="$work/apt-cache"
declare -A pid=()
failed=0
make_tree() {  # make_tree IMAGE fill|use (in the background; pid[IMAGE])
  mkdir -p "$work/$1"
  ROOTFS_APT_CACHE=$cache ROOTFS_APT_CACHE_MODE=$2 \
    "$here/rootfs.sh" "$1" "${binary[$1]}" "$work/$1/rootfs" >"$work/$1/rootfs.log" 2>&1 &
  pid[$1]=$!
}
wait_tree() {
  if ! wait "${pid[$1]}"; then
    echo "make-images.sh: the tree of $1 failed:" >&2
    cat "$work/$1/rootfs.log" >&2
    failed=1
  fi
}
make_tree mailbox-service fill
wait_tree mailbox-service
((failed == 0)) || exit 1
make_tree gateway use
make_tree mailbox-admin use
wait_tree gateway
wait_tree mailbox-admin
((failed == 0)) || exit 1
echo "make-images.sh: image trees made in ${SECONDS}s"

# busybox for the debug variants: one static binary and a link per command.
if ((debug)); then
  mkdir -p "$work/busybox/archives" "$work/busybox/tree/bin" "$work/busybox/tree/var/lib/dpkg/status.d"
  (cd "$work/busybox/archives" && apt-get -q=2 -o APT::Sandbox::User=root download busybox-static)
  deb=$(echo "$work"/busybox/archives/busybox-static_*.deb)
  dpkg-deb --extract "$deb" "$work/busybox/tree"
  dpkg-deb --field "$deb" >"$work/busybox/tree/var/lib/dpkg/status.d/busybox-static"
  rm -rf "$work/busybox/tree/usr/share/man"
  for command in $("$work/busybox/tree/bin/busybox" --list); do
    [[ -e "$work/busybox/tree/bin/$command" ]] || ln -s busybox "$work/busybox/tree/bin/$command"
  done
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime="@$epoch" \
    -C "$work/busybox/tree" -cf "$work/busybox/layer.tar" .
fi

: >"$out/images.txt"
export_image() {  # export_image NAME:TAG ARCHIVE
  rm -f "$2"
  skopeo copy --quiet "containers-storage:[vfs@$work/storage+$work/run]$1" "oci-archive:$2:$1"
  echo "$1 $2" >>"$out/images.txt"
}

for image in gateway mailbox-service mailbox-admin; do
  name="localhost/${title[$image]}"
  tree="$work/$image/rootfs"
  tar --numeric-owner --sort=name --mtime="@$epoch" -C "$tree" -cf "$work/$image/layer.tar" .
  container=$(buildah "${storage[@]}" from scratch)
  buildah "${storage[@]}" add "$container" "$work/$image/layer.tar" / >/dev/null

  config=(
    --os linux --arch amd64
    # Numeric, so that Kubernetes' runAsNonRoot can check it.
    --user 10001:10001
    --workingdir /var/lib/mailbox
    --entrypoint "[\"/usr/bin/${program[$image]}\"]"
    --cmd ""
    --stop-signal SIGTERM
    --created-by "deploy/container/make-images.sh"
    --label "org.opencontainers.image.title=${title[$image]}"
    --label "org.opencontainers.image.description=${description[$image]}"
    --label "org.opencontainers.image.version=$version"
    --label "org.opencontainers.image.revision=$revision"
    --label "org.opencontainers.image.source=$source_url"
    --label "org.opencontainers.image.created=$created"
  )
  case "$image" in
    gateway)
      # Unprivileged ports (the Service in front maps 993 and 143 to them); the
      # certificate and key are mounted (a Kubernetes TLS secret has these names).
      config+=(
        --env IMAPD_IMAPS_LISTEN=0.0.0.0:9993
        --env IMAPD_IMAP_LISTEN=0.0.0.0:9143
        --env IMAPD_HTTP_LISTEN=0.0.0.0:8143
        --env IMAPD_TLS_CERT_FILE=/etc/imapd/tls/tls.crt
        --env IMAPD_TLS_KEY_FILE=/etc/imapd/tls/tls.key
        --port 9993/tcp --port 9143/tcp --port 8143/tcp
      )
      ;;
    mailbox-service)
      config+=(
        --env MAILBOX_LISTEN=0.0.0.0:50051
        --env MAILBOX_HTTP_LISTEN=0.0.0.0:8151
        --env MAILBOX_DATA_DIR=/var/lib/mailbox
        --port 50051/tcp --port 8151/tcp
        --volume /var/lib/mailbox
      )
      ;;
    mailbox-admin)
      # Finds the admin token in /var/lib/mailbox/admin.token when the service's volume
      # is mounted there (or give MAILBOX_ADMIN_TOKEN / MAILBOX_ADMIN_TOKEN_FILE).
      config+=(
        --env MAILBOX_SERVER=127.0.0.1:50051
        --env MAILBOX_DATA_DIR=/var/lib/mailbox
      )
      ;;
  esac
  buildah "${storage[@]}" config "${config[@]}" "$container"
  buildah "${storage[@]}" commit --quiet --format oci --timestamp "$epoch" --rm \
    "$container" "$name:$version" >/dev/null
  export_image "$name:$version" "$out/${title[$image]}-$version.oci.tar"
  cp "$tree.packages" "$out/${title[$image]}-$version.packages"

  if ((debug)); then
    container=$(buildah "${storage[@]}" from --pull-never "$name:$version")
    buildah "${storage[@]}" add "$container" "$work/busybox/layer.tar" / >/dev/null
    buildah "${storage[@]}" config \
      --label "org.opencontainers.image.title=${title[$image]}-debug" \
      --label "org.opencontainers.image.description=${description[$image]} (debug variant: busybox in /bin)" \
      "$container"
    buildah "${storage[@]}" commit --quiet --format oci --timestamp "$epoch" --rm \
      "$container" "$name:$version-debug" >/dev/null
    export_image "$name:$version-debug" "$out/${title[$image]}-$version-debug.oci.tar"
  fi
done

echo "make-images.sh: images in $out (${SECONDS}s in all):"
while read -r name archive; do
  printf '  %-48s %s (%s)\n' "$name" "$archive" "$(du -h "$archive" | cut -f1)"
done <"$out/images.txt"
