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

# Library packages every configure needs (tests additionally need catch2).
# shellcheck disable=SC2034  # used by the scripts that source this file
TROUPE_LIBRARY_PACKAGES=(pkg:libasio-dev pkg:libconcurrentqueue-dev)

# Ninja when available, Makefiles otherwise.
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
