#!/usr/bin/env bash
# Builds the container images of imapd from this checkout, for operators:
#
#   deploy/container/build-images.sh [--out DIR] [--version V] [--source URL] [--no-debug]
#
# 1. builds imap-gateway, mailbox-service and mailbox-admin with Bazel (optimized, as
#    .bazelrc says);
# 2. makes the images localhost/imapd-gateway, localhost/imapd-mailbox-service and
#    localhost/imapd-mailbox-admin, tagged with the version, and their -debug variants
#    (with busybox), from those binaries and Debian 12 packages (make-images.sh);
# 3. writes them as OCI archives to DIR (default bazel-images/VERSION, which git
#    ignores) and prints how to load or push them.
#
# The version is the first line of a VERSION file at the top of the checkout if there
# is one, else `git describe --tags --always --dirty`; the revision label is the commit,
# the source label the URL of the git remote "origin" (or --source). Run as root on
# Debian 12 with the packages of tools/install-deps.sh; the Debian archive (or the
# mirror in DEBIAN_MIRROR) must be reachable. No registry is needed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

out="" version="" source_url="" extra=()
while (($#)); do
  case "$1" in
    --out) out=${2:?}; shift 2 ;;
    --version) version=${2:?}; shift 2 ;;
    --source) source_url=${2:?}; shift 2 ;;
    --no-debug) extra+=(--no-debug); shift ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$version" ]]; then
  if [[ -s VERSION ]]; then
    version=$(head -n 1 VERSION | tr -d '[:space:]')
  else
    version=$(git describe --tags --always --dirty 2>/dev/null || echo unversioned)
  fi
fi
# A tag may not hold "+" or "/" (e.g. 1.2.0+local, feature/x): they become "-".
version=$(tr -c 'A-Za-z0-9_.\n-' '-' <<<"$version")
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ -z "$source_url" ]]; then
  source_url=$(git remote get-url origin 2>/dev/null || true)
  # Never put credentials of an https remote into a label.
  source_url=$(sed -E 's#^(https?://)[^/@]*@#\1#' <<<"$source_url")
fi
if [[ -z "$source_url" ]]; then
  echo "build-images.sh: no git remote \"origin\": the source label says \"unknown\" (give --source URL)" >&2
fi
out=${out:-bazel-images/$version}

targets=(//gateway:imap-gateway //mailbox-service/server:mailbox-service
         //mailbox-service/admin:mailbox-admin)
echo "build-images.sh: bazel build ${targets[*]}"
bazel build "${targets[@]}"
bin=$(bazel info bazel-bin 2>/dev/null)

"$repo/deploy/container/make-images.sh" --version "$version" --out "$out" \
  --revision "$revision" ${source_url:+--source "$source_url"} \
  --gateway "$bin/gateway/imap-gateway" \
  --mailbox-service "$bin/mailbox-service/server/mailbox-service" \
  --mailbox-admin "$bin/mailbox-service/admin/mailbox-admin" "${extra[@]}"

out=$(cd "$out" && pwd)
cat <<EOF

Load into podman (or docker load -i ARCHIVE):
$(while read -r name archive; do echo "  podman load -i $archive"; done <"$out/images.txt")

Push to a registry (REGISTRY e.g. registry.example.org/mail):
$(while read -r name archive; do
    echo "  skopeo copy oci-archive:$archive docker://REGISTRY/${name#localhost/}"
  done <"$out/images.txt")

The Debian packages in each image: $out/*.packages
Running them: docs/operations.md, section "Container images".
EOF
