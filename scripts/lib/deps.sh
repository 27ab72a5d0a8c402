# shellcheck shell=bash
# Dependency checks shared by scripts/test.sh and scripts/demo.sh (source it).
#
#   troupe_require SPEC...      SPEC = cmd:<command>:<debian package>
#                                    | pkg:<debian package>
#
# Missing commands/packages are installed with apt-get when running as root
# on Debian/Ubuntu; otherwise what to install is printed and it returns 1.
# (Package checks need dpkg; without it only commands are checked and CMake's
# FetchContent fallback is relied upon for the libraries.)

troupe_log() { printf '[troupe] %s\n' "$*" >&2; }

troupe_pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

troupe_require() {
  local spec cmd pkg p seen
  local -a missing=()
  for spec in "$@"; do
    case "$spec" in
      cmd:*)
        cmd=${spec#cmd:}; pkg=${cmd#*:}; cmd=${cmd%%:*}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
        ;;
      pkg:*)
        pkg=${spec#pkg:}
        if command -v dpkg-query >/dev/null 2>&1 && ! troupe_pkg_installed "$pkg"; then
          missing+=("$pkg")
        fi
        ;;
      *) troupe_log "internal error: bad dependency spec '$spec'"; return 1 ;;
    esac
  done
  # de-duplicate, keep order
  local -a todo=()
  for p in "${missing[@]}"; do
    seen=0
    for pkg in "${todo[@]}"; do [[ $pkg == "$p" ]] && seen=1; done
    [[ $seen == 1 ]] || todo+=("$p")
  done
  [[ ${#todo[@]} -eq 0 ]] && return 0

  if [[ $(id -u) -ne 0 ]]; then
    troupe_log "missing: ${todo[*]}"
    troupe_log "install them with:  sudo apt-get install --no-install-recommends ${todo[*]}"
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    troupe_log "missing: ${todo[*]} (and no apt-get to install them with) -- please install them"
    return 1
  fi
  troupe_log "installing: ${todo[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${todo[@]}"; then
    troupe_log "apt-get install failed; running apt-get update and retrying"
    apt-get update || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${todo[@]}" || return 1
  fi
}

# The compiler-rt package matching the installed clang++ (sanitizer runtimes),
# e.g. libclang-rt-14-dev for clang 14.
troupe_clang_rt_package() {
  local major
  major=$(clang++ -dumpversion 2>/dev/null | cut -d. -f1)
  printf 'libclang-rt-%s-dev\n' "${major:-14}"
}

# The llvm-symbolizer of the installed clang (a sanitizer runtime of clang cannot name a frame
# without it, and tests/tsan.supp matches frames by name): llvm-<major> ships
# /usr/bin/llvm-symbolizer-<major> (the unversioned one comes from the `llvm` package). Prints a
# spec for troupe_require, or nothing when a symbolizer is there already.
troupe_llvm_symbolizer_spec() {
  local major
  major=$(clang++ -dumpversion 2>/dev/null | cut -d. -f1)
  if ! command -v "llvm-symbolizer-${major:-14}" >/dev/null 2>&1 &&
     ! command -v llvm-symbolizer >/dev/null 2>&1; then
    printf 'cmd:llvm-symbolizer-%s:llvm-%s\n' "${major:-14}" "${major:-14}"
  fi
}
# Its path once installed (empty when there is none).
troupe_llvm_symbolizer() {
  local major
  major=$(clang++ -dumpversion 2>/dev/null | cut -d. -f1)
  command -v "llvm-symbolizer-${major:-14}" 2>/dev/null || command -v llvm-symbolizer 2>/dev/null || true
}

# Library packages every configure needs (tests additionally need catch2). libnats-dev and
# libmsgpack-cxx-dev are for the NATS bridge and the codec.
# shellcheck disable=SC2034  # used by the scripts that source this file
TROUPE_LIBRARY_PACKAGES=(pkg:libasio-dev pkg:libconcurrentqueue-dev pkg:libnats-dev pkg:libmsgpack-cxx-dev)

# Programs the tests run: a NATS server, a Prometheus server that scrapes the exporters, an HTTP
# client and an HTTP load generator.
# shellcheck disable=SC2034  # used by the scripts that source this file
TROUPE_TEST_TOOLS=(cmd:nats-server:nats-server cmd:prometheus:prometheus cmd:curl:curl cmd:wrk:wrk)

# The build program CMake needs: none to install when ninja or make is there, ninja otherwise
# (a minimal Debian has neither). Prints a spec for troupe_require, or nothing.
troupe_build_program_spec() {
  if ! command -v ninja >/dev/null 2>&1 && ! command -v make >/dev/null 2>&1; then
    echo cmd:ninja:ninja-build
  fi
}

# Ninja when available, Makefiles otherwise (call it after troupe_build_program_spec's install).
troupe_cmake_generator() {
  if command -v ninja >/dev/null 2>&1; then echo Ninja; else echo "Unix Makefiles"; fi
}

troupe_nproc() {
  nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2
}

# Remove a build dir configured with another generator (CMake refuses to switch).
troupe_check_build_dir() {
  local dir=$1 generator=$2 cached
  [[ -f $dir/CMakeCache.txt ]] || return 0
  cached=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$dir/CMakeCache.txt")
  if [[ -n $cached && $cached != "$generator" ]]; then
    troupe_log "$dir was configured with '$cached', not '$generator': removing it"
    rm -rf "$dir"
  fi
}
