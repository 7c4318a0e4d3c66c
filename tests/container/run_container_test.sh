#!/usr/bin/env bash
# The container images, built and run: deploy/container/make-images.sh makes the images
# from the Bazel-built binaries, podman loads their OCI archives into a private store
# and runs the mailbox service and the gateway in one pod, read-only and without
# capabilities. mailbox-admin (its own image) creates a user; Python's imaplib logs in
# over IMAPS to the gateway, which talks gRPC over mutual TLS to the service, and
# appends and fetches a message. Also checked: the images' user (10001), labels and
# contents (no shell, no compiler, one program), the processes' uid, the debug
# variant's shell, and a clean exit 0 on SIGTERM.
#
# Everything runs without a network: the pod has only a loopback (--network=none), and
# the client runs in the pod's network namespace (nsenter). Podman keeps its images,
# containers and state in a temporary directory (vfs storage, runc, cgroupfs), removed
# at the end with everything in it, so the test clashes with nothing and leaves nothing.
# Needs root and the Debian packages podman, runc, catatonit, buildah, skopeo,
# mmdebstrap (tools/install-deps.sh), and the Debian archive for the image packages.
#
# Under Bazel: bazel test //tests/container:container_test. By hand, after
# `bazel build //gateway:imap-gateway //mailbox-service/server:mailbox-service
#  //mailbox-service/admin:mailbox-admin`: bash tests/container/run_container_test.sh
set -uo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  root="$TEST_SRCDIR/imapd"
  bin="$root"
else
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  bin="$root/bazel-bin"
fi
gateway_bin="$bin/gateway/imap-gateway"
service_bin="$bin/mailbox-service/server/mailbox-service"
admin_bin="$bin/mailbox-service/admin/mailbox-admin"
check_py="$root/tests/container/imap_check.py"
export PYTHONDONTWRITEBYTECODE=1

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
# check NAME COMMAND...: passes when the command succeeds.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; return 1; fi
}
finish() {
  echo "$passed passed, $failed failed"
  ((failed == 0)) && exit 0
  exit 1
}

if [[ $(id -u) != 0 ]]; then
  echo "error: the container test runs as root (podman and buildah with a private store)"
  fail "running as root"
  finish
fi
for tool in podman runc buildah skopeo mmdebstrap nsenter openssl python3 timeout; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool not found: run tools/install-deps.sh"
    fail "tool $tool present"
  fi
done
if [[ ! -x /usr/libexec/podman/catatonit ]]; then
  echo "error: catatonit (podman --init) not found: run tools/install-deps.sh"
  fail "catatonit present"
fi
((failed == 0)) || finish

# A short path: podman's runtime directory holds unix sockets (at most 107 bytes).
work=$(mktemp -d /tmp/imapd-container-test.XXXXXX)
tag="test-$$"
pod="imapd-test-$$"
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
# As in production: nothing written outside the data volume, no capabilities at all.
hardened=(--read-only --cap-drop=all --security-opt=no-new-privileges)
# The pod's infra container takes its limits from here (podman's default, 1048576 open
# files, is above this machine's hard limit); runc, since crun cannot set up cgroups here.
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
EOF
export CONTAINERS_CONF="$work/containers.conf"
podman=(podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs
        --tmpdir "$work/libpod" --cgroup-manager cgroupfs --events-backend none
        --runtime runc)
# Bounded: a hung podman call fails the step instead of the whole test's timeout.
pm() { timeout 120 "${podman[@]}" "$@"; }

cleanup() {
  timeout 60 "${podman[@]}" pod rm --force --ignore "$pod" >/dev/null 2>&1
  timeout 60 "${podman[@]}" rm --all --force >/dev/null 2>&1
  timeout 60 "${podman[@]}" image unmount --all --force >/dev/null 2>&1
  timeout 120 "${podman[@]}" system reset --force >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# --- Build the images (as an operator would, from the binaries) ---
started=$SECONDS
if timeout 900 "$root/deploy/container/make-images.sh" --version "$tag" --out "$work/images" \
     --revision "0000000000000000000000000000000000000000" --source "https://example.org/imapd" \
     --gateway "$gateway_bin" --mailbox-service "$service_bin" --mailbox-admin "$admin_bin" \
     >"$work/make-images.log" 2>&1; then
  pass "make-images.sh built the images in $((SECONDS - started)) s"
  cat "$work/make-images.log"
else
  cat "$work/make-images.log"
  fail "make-images.sh"
  finish
fi

images=(imapd-gateway imapd-mailbox-service imapd-mailbox-admin)
for image in "${images[@]}" imapd-gateway-debug; do
  archive="$work/images/${image%-debug}-$tag${image#"${image%-debug}"}.oci.tar"
  check "podman load $(basename "$archive")" pm load --quiet --input "$archive"
done
gateway_image="localhost/imapd-gateway:$tag"
service_image="localhost/imapd-mailbox-service:$tag"
admin_image="localhost/imapd-mailbox-admin:$tag"
debug_image="localhost/imapd-gateway:$tag-debug"

# --- What is in the images ---
for image in "${images[@]}"; do
  ref="localhost/$image:$tag"
  user=$(pm image inspect --format '{{.Config.User}}' "$ref")
  check "$image runs as 10001:10001 (got $user)" test "$user" = "10001:10001"
  for label in version source revision title description; do
    value=$(pm image inspect --format "{{index .Config.Labels \"org.opencontainers.image.$label\"}}" "$ref")
    check "$image label org.opencontainers.image.$label=${value:0:40}" test -n "$value"
  done
  value=$(pm image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}}' "$ref")
  check "$image version label is the tag" test "$value" = "$tag"

  mount=$(pm image mount "$ref")
  if [[ -z "$mount" || ! -d "$mount" ]]; then
    fail "$image mounts"
    continue
  fi
  shells=$(cd "$mount" && ls -d bin/sh usr/bin/sh bin/bash usr/bin/bash bin/busybox 2>/dev/null)
  check "$image has no shell${shells:+ (found: $shells)}" test -z "$shells"
  # Executables: the program alone (shared libraries are mapped, not run).
  programs=$(cd "$mount" && find . -type f -perm /111 ! -name '*.so' ! -name '*.so.*' \
               ! -name 'ld-linux-x86-64.so.2' | sort | tr '\n' ' ')
  case "$image" in
    imapd-gateway) want="./usr/bin/imap-gateway " ;;
    imapd-mailbox-service) want="./usr/bin/mailbox-service " ;;
    imapd-mailbox-admin) want="./usr/bin/mailbox-admin " ;;
  esac
  check "$image holds one program (found: $programs)" test "$programs" = "$want"
  compilers=$(cd "$mount" && ls usr/bin/*gcc* usr/bin/*g++* usr/bin/cc usr/bin/c++ usr/bin/clang* \
                usr/lib/gcc 2>/dev/null)
  check "$image has no compiler" test -z "$compilers"
  owner=$(stat -c '%u:%g %a' "$mount/var/lib/mailbox")
  check "$image /var/lib/mailbox is 10001:10001 0700 (got $owner)" test "$owner" = "10001:10001 700"
  pm image unmount "$ref" >/dev/null
done
if pm run --rm --network=none --init "${limits[@]}" --entrypoint /bin/sh "$gateway_image" -c true \
     >"$work/sh.log" 2>&1; then
  fail "running /bin/sh in the gateway image fails"
else
  check "running /bin/sh in the gateway image fails (no such file)" \
    grep -qi 'no such file\|not found' "$work/sh.log"
fi
debug_uid=$(pm run --rm --network=none --init "${limits[@]}" --entrypoint /bin/sh "$debug_image" \
              -c 'id -u; test -x /usr/bin/imap-gateway && echo program' 2>&1 | tr '\n' ' ')
check "debug variant has a shell, runs as 10001, has the program (got: $debug_uid)" \
  test "$debug_uid" = "10001 program "

# --- Run them: service and gateway in one pod (one loopback), no network ---
mkdir -p "$work/data" "$work/tls"
chown 10001:10001 "$work/data"
chmod 0700 "$work/data"
# A CA made here; from it the gateway's IMAPS certificate (for 127.0.0.1 and imap.test)
# and the link's: the service's server certificate and the client certificates of the
# gateway and mailbox-admin (mutual TLS, as between pods or machines).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=imapd container test CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
issue() {  # issue DIR NAME SUBJECT-ALT-NAMES EXTENDED-KEY-USAGE
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$1/$2.key" -out "$work/$2.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$3" "$4" >"$work/$2.ext"
  openssl x509 -req -in "$work/$2.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -extfile "$work/$2.ext" -out "$1/$2.crt" 2>/dev/null
}
mkdir -p "$work/link"
issue "$work/tls" tls "DNS:imap.test,IP:127.0.0.1" serverAuth
issue "$work/link" service "DNS:mailbox-service,IP:127.0.0.1" serverAuth
issue "$work/link" gateway "DNS:imap-gateway" clientAuth
issue "$work/link" admin "DNS:mailbox-admin" clientAuth
cp "$work/ca.crt" "$work/link/ca.crt"
# Keys readable by the containers' user alone, as a mounted secret would be.
chown -R 10001:10001 "$work/tls" "$work/link"
chmod 0600 "$work/tls"/*.key "$work/link"/*.key
link_service=(--volume "$work/link:/etc/imapd/link:ro"
  --env MAILBOX_TLS_CERT_FILE=/etc/imapd/link/service.crt
  --env MAILBOX_TLS_KEY_FILE=/etc/imapd/link/service.key
  --env MAILBOX_TLS_CLIENT_CA_FILE=/etc/imapd/link/ca.crt)
link_admin=(--volume "$work/link:/etc/imapd/link:ro"
  --env MAILBOX_CA_FILE=/etc/imapd/link/ca.crt
  --env MAILBOX_CERT_FILE=/etc/imapd/link/admin.crt
  --env MAILBOX_KEY_FILE=/etc/imapd/link/admin.key)
link_gateway=(--volume "$work/link:/etc/imapd/link:ro"
  --env IMAPD_STORE_CA_FILE=/etc/imapd/link/ca.crt
  --env IMAPD_STORE_CERT_FILE=/etc/imapd/link/gateway.crt
  --env IMAPD_STORE_KEY_FILE=/etc/imapd/link/gateway.key)
logs_and_finish() {
  for name in "$pod-service" "$pod-gateway"; do
    echo "--- logs of $name"
    pm logs "$name" 2>&1 | tail -40
  done
  finish
}

check "pod created (--network=none)" pm pod create --name "$pod" --network=none
# The image's default listener (0.0.0.0:50051) with mutual TLS. Fast password hashing:
# the test is about the containers, not Argon2's cost.
check "service container started" pm run --detach --pod "$pod" --name "$pod-service" --init \
  "${limits[@]}" "${hardened[@]}" "${link_service[@]}" --volume "$work/data:/var/lib/mailbox" \
  "$service_image" \
  --argon2-memory=64KiB --argon2-time-cost=1
netns_pid=$(pm inspect --format '{{.State.Pid}}' "$pod-service")
in_pod() { timeout 90 nsenter --target "$netns_pid" --net -- "$@"; }
check "service listens on 50051 in the pod" in_pod python3 "$check_py" wait 50051 \
  || logs_and_finish
check "service made its tokens in the volume" test -s "$work/data/gateway.token" -a -s "$work/data/admin.token"
token_owner=$(stat -c '%u' "$work/data/admin.token" 2>/dev/null)
check "the service wrote as uid 10001 (admin.token owner $token_owner)" test "$token_owner" = 10001

admin_out=$(pm run --rm --pod "$pod" --init "${limits[@]}" "${hardened[@]}" "${link_admin[@]}" \
  --volume "$work/data:/var/lib/mailbox:ro" "$admin_image" user add alice --password s3cret-pw 2>&1)
check "mailbox-admin created a user (got: $admin_out)" grep -Eq '^created user alice \(id [0-9]+\)$' <<<"$admin_out"

check "gateway container started" pm run --detach --pod "$pod" --name "$pod-gateway" --init \
  "${limits[@]}" "${hardened[@]}" "${link_gateway[@]}" --volume "$work/tls:/etc/imapd/tls:ro" \
  --volume "$work/data/gateway.token:/etc/imapd/gateway.token:ro" \
  --env IMAPD_STORE_TOKEN_FILE=/etc/imapd/gateway.token "$gateway_image"
check "gateway listens on 9993, 9143 and 8143 in the pod" \
  in_pod python3 "$check_py" wait 9993 9143 8143 || logs_and_finish
status=$(in_pod python3 "$check_py" http 8143 /healthz)
check "gateway /healthz is 200 (got $status)" test "$status" = 200
imap_out=$(in_pod python3 "$check_py" imap 9993 "$work/ca.crt" alice s3cret-pw 2>&1)
echo "$imap_out"
check "IMAPS login, APPEND and FETCH through the gateway container" grep -q '^imap ok ' <<<"$imap_out"
listing=$(pm run --rm --pod "$pod" --init "${limits[@]}" "${link_admin[@]}" \
  --volume "$work/data:/var/lib/mailbox:ro" "$admin_image" mailbox list alice 2>&1)
check "mailbox-admin sees the appended message (INBOX: 1 message)" \
  grep -Eq $'^INBOX\t[^\t]*\t1\t' <<<"$listing"

for name in "$pod-service" "$pod-gateway"; do
  # Every process of the container (catatonit and the program) under uid 10001.
  uids=$(pm top "$name" huser 2>/dev/null | tail -n +2 | sort -u | tr '\n' ' ')
  check "$name runs as uid 10001 (got: $uids)" test "$uids" = "10001 "
done

# SIGTERM (podman stop): the gateway and then the service drain and exit 0.
for name in "$pod-gateway" "$pod-service"; do
  pm stop --time 60 "$name" >/dev/null
  code=$(pm inspect --format '{{.State.ExitCode}}' "$name")
  check "$name exits 0 on SIGTERM (got $code)" test "$code" = 0
done
((failed == 0)) || logs_and_finish
finish
