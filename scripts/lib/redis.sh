# shellcheck shell=bash
# Redis for the rate limit tests (tools/ratelimit). Source it; do not run it.
#
# The tests start their own redis-server on a free loopback port and kill it when done, so all
# this file does is make the binary available. A Debian package install also starts and enables
# a system redis on 6379; that one is stopped and disabled, since nothing here uses it and it
# would outlive the tests.

# ensure_redis: makes `redis-server` available on PATH (Debian's package), quietly.
ensure_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    return 0
  fi
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
      printf 'error: redis-server is missing and installing it needs root (no sudo)\n' >&2
      return 1
    }
    sudo=(sudo)
  fi
  printf '==> installing redis-server (apt-get)\n' >&2
  # The package list may be absent or stale on a fresh machine: update once, then install.
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    redis-server >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
      redis-server >/dev/null || {
      printf 'error: apt-get install redis-server failed\n' >&2
      return 1
    }
  fi
  stop_system_redis "${sudo[@]}"
  command -v redis-server >/dev/null 2>&1 || {
    printf 'error: redis-server is still not on PATH after the install\n' >&2
    return 1
  }
}

# stop_system_redis [sudo]: stops and disables the service the package may have started.
# Without systemd (a container) the package's postinst may still have launched the daemon through
# its init script, so that is tried too; a redis-server process we did not start is left alone
# if neither knows about it.
stop_system_redis() {
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    "$@" systemctl disable --now redis-server.service >/dev/null 2>&1 || true
  fi
  if [[ -x /etc/init.d/redis-server ]]; then
    "$@" /etc/init.d/redis-server stop >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1; then
    "$@" update-rc.d redis-server disable >/dev/null 2>&1 || true
  fi
}
