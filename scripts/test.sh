#!/usr/bin/env bash
# Configure, build and test troupe in several configurations:
#
#   gcc    g++,     -O2 -g1, -Werror, tests + examples + bench
#   clang  clang++, -O2 -g1, -Werror, tests (+ the libFuzzer run); the examples are built by
#          clang++ in the two sanitizer builds already
#   tsan   ThreadSanitizer (clang++ by default), -O1 -g1, tests + examples
#   asan   AddressSanitizer + UndefinedBehaviorSanitizer (clang++ by default), -O1 -g1,
#          tests + examples
# The compile-failure tests run in the builds without a sanitizer (a diagnostic does not change
# under one), and Catch2's main is compiled at -O0 without sanitizers in every build.
#
# Why these flags: the suite is compile-bound (one header-heavy executable per test, four
# builds). -g1 (line tables: all a sanitizer report or a backtrace needs) compiles ~15 % faster
# than -g; the sanitizer builds use -O1 (what the sanitizers' documentation advises) and
# clang++, whose ASan+UBSan build of a test took 46 s of CPU against g++'s 110 s at -O2 -g.
# The bench is built (and smoke-run) once, by g++, the compiler scripts/bench.sh uses.
#
# Build trees: build/test-<name>. Environment:
#   TROUPE_TEST_BUILDS="gcc clang"   subset/order of builds (default: gcc clang tsan asan)
#   TROUPE_TSAN_CXX / TROUPE_ASAN_CXX  compiler of the sanitizer builds (clang++ / clang++)
#   TROUPE_TEST_FRESH=1               wipe the build trees first
#   TROUPE_TEST_JOBS=N                build/ctest parallelism (default: nproc)
#   TROUPE_CTEST_ARGS="-L unit"       extra ctest arguments
# Missing tools/packages are apt-get installed when run as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

BUILDS=${TROUPE_TEST_BUILDS:-gcc clang tsan asan}
TSAN_CXX=${TROUPE_TSAN_CXX:-clang++}
ASAN_CXX=${TROUPE_ASAN_CXX:-clang++}
JOBS=${TROUPE_TEST_JOBS:-$(troupe_nproc)}
read -r -a CTEST_EXTRA <<<"${TROUPE_CTEST_ARGS:-}"

build_cxx() {
  case $1 in
    gcc) echo g++ ;;
    clang) echo clang++ ;;
    tsan) echo "$TSAN_CXX" ;;
    asan) echo "$ASAN_CXX" ;;
    *) return 1 ;;
  esac
}

# ---- dependencies ---------------------------------------------------------
declare -a specs=(cmd:cmake:cmake cmd:python3:python3 cmd:pkg-config:pkgconf
                  "${TROUPE_LIBRARY_PACKAGES[@]}" pkg:catch2 "${TROUPE_TEST_TOOLS[@]}")
build_program=$(troupe_build_program_spec)
[[ -n $build_program ]] && specs+=("$build_program")
need_clang_rt=0
for b in $BUILDS; do
  cxx=$(build_cxx "$b") || { troupe_log "unknown build '$b' in TROUPE_TEST_BUILDS (known: gcc clang tsan asan)"; exit 2; }
  case $cxx in
    *clang++*) specs+=("cmd:$cxx:clang"); [[ $b == tsan || $b == asan ]] && need_clang_rt=1 ;;
    *g++*) specs+=("cmd:$cxx:g++") ;;
    *) specs+=("cmd:$cxx:$cxx") ;;
  esac
done
troupe_require "${specs[@]}" || exit 1
if [[ $need_clang_rt == 1 ]]; then
  # The sanitizer runtimes, and the symbolizer that names their frames (without it TSan's
  # reports are bare addresses and tests/tsan.supp, which matches names, suppresses nothing).
  symbolizer_spec=$(troupe_llvm_symbolizer_spec)
  troupe_require "pkg:$(troupe_clang_rt_package)" ${symbolizer_spec:+"$symbolizer_spec"} || exit 1
fi
GENERATOR=$(troupe_cmake_generator)
# Handed to the sanitizers explicitly: they look only for an unversioned llvm-symbolizer on PATH.
SYMBOLIZER=$(troupe_llvm_symbolizer)
SYMBOLIZER_OPTION=${SYMBOLIZER:+ external_symbolizer_path=$SYMBOLIZER}

# ---- one build ------------------------------------------------------------
run_build() {
  local name=$1
  local dir="build/test-$name" cxx
  cxx=$(build_cxx "$name")
  local -a cfg=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTROUPE_WERROR=ON
                -DTROUPE_BUILD_TESTS=ON -DTROUPE_BUILD_EXAMPLES=ON)
  local -a env=()
  case $name in
    gcc) cfg+=(-DTROUPE_BUILD_BENCH=ON -DTROUPE_SANITIZER= "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG") ;;
    clang) cfg+=(-DTROUPE_BUILD_BENCH=OFF -DTROUPE_BUILD_EXAMPLES=OFF -DTROUPE_SANITIZER= "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG") ;;
    tsan)
      cfg+=(-DTROUPE_BUILD_BENCH=OFF -DTROUPE_SANITIZER=thread "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
      env+=("TSAN_OPTIONS=halt_on_error=1 second_deadlock_stack=1 suppressions=$ROOT/tests/tsan.supp$SYMBOLIZER_OPTION")
      ;;
    asan)
      cfg+=(-DTROUPE_BUILD_BENCH=OFF -DTROUPE_SANITIZER=address "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
      env+=("ASAN_OPTIONS=detect_leaks=1${SYMBOLIZER:+:external_symbolizer_path=$SYMBOLIZER}"
            "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1${SYMBOLIZER:+:external_symbolizer_path=$SYMBOLIZER}")
      ;;
  esac
  if command -v ccache >/dev/null 2>&1; then
    cfg+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi

  [[ ${TROUPE_TEST_FRESH:-0} == 1 ]] && rm -rf "$dir"
  troupe_check_build_dir "$dir" "$GENERATOR"

  echo "--- [$name] configure ($cxx, $GENERATOR)"
  CXX=$cxx cmake -S . -B "$dir" -G "$GENERATOR" "${cfg[@]}" || return 1
  echo "--- [$name] build (-j$JOBS)"
  cmake --build "$dir" --parallel "$JOBS" || return 1
  echo "--- [$name] test${env[*]:+ (${env[*]})}"
  env "${env[@]}" ctest --test-dir "$dir" --output-on-failure --no-tests=error \
    -j "$JOBS" "${CTEST_EXTRA[@]}" || return 1
}

# ---- all builds -----------------------------------------------------------
declare -a results=()
failed=0
for b in $BUILDS; do
  echo
  echo "=========================================================================="
  echo "=== troupe: build '$b' ($(build_cxx "$b")) in build/test-$b"
  echo "=========================================================================="
  start=$SECONDS
  if run_build "$b"; then
    status=PASS
  else
    status=FAIL
    failed=$((failed + 1))
  fi
  took=$((SECONDS - start))
  results+=("$b: $status (${took}s)")
  echo "=== troupe: build '$b': $status in ${took}s"
done

echo
echo "=========================================================================="
for r in "${results[@]}"; do echo "  $r"; done
total=$(wc -w <<<"$BUILDS")
if [[ $failed -eq 0 ]]; then
  echo "SUMMARY: all $total builds passed [$BUILDS] (root: $ROOT)"
else
  echo "SUMMARY: $failed of $total builds FAILED [$BUILDS] (root: $ROOT)"
  exit 1
fi
