#!/usr/bin/env bash
# Build one troupe example in Release mode (build/demo) and run it.
#
#   TROUPE_DEMO=<stem>   example to run: examples/<stem>.cpp (default: user_registration, the flagship;
#                        falls back to hello if it is missing)
#   extra arguments are passed to the example.
#
#   scripts/demo.sh --distributed   the flagship as separate processes over NATS
#                                   (examples/distributed/user_registration.cpp): starts a
#                                   nats-server on 127.0.0.1 (a free port), runs the driver, which
#                                   starts one process per service and stops them, then stops the
#                                   server; the exit status is the driver's.
#   scripts/demo.sh --distributed saga
#                                   the order saga as separate processes on durable JetStream
#                                   queues and topics (examples/distributed/order_saga.cpp), the
#                                   payments process killed (SIGKILL) mid-saga and restarted
#                                   (the server started and stopped as above).
# Missing tools/packages are apt-get installed when run as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

distributed=0
distributed_demo=user_registration
if [[ ${1:-} == --distributed ]]; then
  distributed=1
  shift
  if [[ ${1:-} == saga ]]; then
    distributed_demo=order_saga
    shift
  fi
fi

declare -a specs=(cmd:cmake:cmake cmd:g++:g++ "${TROUPE_LIBRARY_PACKAGES[@]}")
build_program=$(troupe_build_program_spec)
[[ -n $build_program ]] && specs+=("$build_program")
if ((distributed)); then specs+=(cmd:nats-server:nats-server cmd:python3:python3); fi
troupe_require "${specs[@]}" || exit 1

if ((distributed)); then
  dir=build/demo
  generator=$(troupe_cmake_generator)
  troupe_check_build_dir "$dir" "$generator"
  CXX=${CXX:-g++} cmake -S . -B "$dir" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DTROUPE_BUILD_EXAMPLES=ON -DTROUPE_BUILD_TESTS=OFF -DTROUPE_BUILD_BENCH=OFF \
    -DTROUPE_WERROR=OFF -DTROUPE_SANITIZER= >/dev/null
  cmake --build "$dir" --target "example_${distributed_demo}_distributed" --parallel "$(troupe_nproc)"
  state=$(mktemp -d)
  # Stop the server (and remove its store) however this script ends.
  trap 'bash tests/nats/nats_server.sh stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
  bash tests/nats/nats_server.sh start "$(command -v nats-server)" "$state"
  if [[ $distributed_demo == order_saga ]]; then
    cat <<BANNER

==========================================================================
 troupe demo: examples/distributed/order_saga.cpp
--------------------------------------------------------------------------
 The order saga as separate processes -- orders (the coordinator),
 inventory (with shipping) and payments -- on durable JetStream queues and
 topics over one nats-server ($(cat "$state/url")). The payments process
 is killed (SIGKILL) holding a charge and restarted: every saga completes
 or compensates, no order is lost, none is charged twice (idempotency by
 key, message-id de-duplication), with the accounting across processes.
==========================================================================

BANNER
  else
    cat <<BANNER

==========================================================================
 troupe demo: examples/distributed/user_registration.cpp
--------------------------------------------------------------------------
 The flagship's services as separate processes -- registration (with its
 cache), email (a NATS queue group), analytics, and a CRM added halfway --
 over one nats-server ($(cat "$state/url")). Same report as in one
 process: what each service saw, the accounting summed over the processes,
 latency per hop across processes.
==========================================================================

BANNER
  fi
  status=0
  "$dir/examples/example_${distributed_demo}_distributed" "$(cat "$state/url")" || status=$?
  exit "$status"
fi

demo=${TROUPE_DEMO:-user_registration}
if [[ ! -f examples/$demo.cpp ]]; then
  troupe_log "examples/$demo.cpp does not exist (no target example_$demo); falling back to example_hello"
  demo=hello
fi
if [[ ! -f examples/$demo.cpp ]]; then
  troupe_log "examples/$demo.cpp does not exist either; nothing to demo"
  exit 1
fi

dir=build/demo
generator=$(troupe_cmake_generator)
troupe_check_build_dir "$dir" "$generator"
# ${CXX:-g++}: honour a CXX from the environment.
CXX=${CXX:-g++} cmake -S . -B "$dir" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
  -DTROUPE_BUILD_EXAMPLES=ON -DTROUPE_BUILD_TESTS=OFF -DTROUPE_BUILD_BENCH=OFF \
  -DTROUPE_WERROR=OFF -DTROUPE_SANITIZER= >/dev/null
cmake --build "$dir" --target "example_$demo" --parallel "$(troupe_nproc)"

# The explanation: the example's leading // comment block, if it has one.
explanation=$(awk '/^[[:space:]]*\/\// { sub(/^[[:space:]]*\/\/ ?/, ""); print; next } { exit }' "examples/$demo.cpp")

cat <<BANNER

==========================================================================
 troupe demo: examples/$demo.cpp
--------------------------------------------------------------------------
 troupe is a header-only C++20 runtime in which coroutine actors exchange
 messages through lock-free mailboxes. Handlers are plain member functions
 or coroutines; every message is handled or dead-lettered, and counted.
BANNER
if [[ -n $explanation ]]; then
  echo "--------------------------------------------------------------------------"
  printf ' %s\n' "${explanation//$'\n'/$'\n' }"
fi
cat <<BANNER
--------------------------------------------------------------------------
 binary: $dir/examples/example_$demo   (Release build)
==========================================================================

BANNER

exec "$dir/examples/example_$demo" "$@"
