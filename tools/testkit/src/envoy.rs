//! Running Envoy for integration tests.
//!
//! Envoy comes from `$ENVOY_BIN` (scripts/test provides it); the filter from
//! `$LLM_ROUTER_WASM` or the release wasm build in target/.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http;

/// How long Envoy may take to become ready (or to fail, when failure is expected).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// The Envoy binary from `$ENVOY_BIN`. Panics (tests fail, they don't skip) if it
/// is unset or not executable.
pub fn envoy_bin() -> PathBuf {
    let hint = "run the tests through scripts/test, which obtains Envoy and sets ENVOY_BIN \
                (or export ENVOY_BIN=/path/to/envoy)";
    let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) else {
        panic!("ENVOY_BIN is not set: {hint}");
    };
    let bin = PathBuf::from(bin);
    match fs::metadata(&bin) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => bin,
        Ok(_) => panic!("ENVOY_BIN={} is not an executable file: {hint}", bin.display()),
        Err(e) => panic!("ENVOY_BIN={}: {e}: {hint}", bin.display()),
    }
}

/// The filter: `$LLM_ROUTER_WASM`, else target/wasm32-wasip1/release/llm_router.wasm.
/// Panics if the file is missing.
pub fn wasm_path() -> PathBuf {
    let path = match std::env::var_os("LLM_ROUTER_WASM").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/wasm32-wasip1/release/llm_router.wasm"),
    };
    if !path.is_file() {
        panic!(
            "wasm filter not found at {}: build it with \
             `cargo build --release --target wasm32-wasip1 -p llm-router --lib` \
             (scripts/test does this) or set LLM_ROUTER_WASM",
            path.display()
        );
    }
    path
}

/// The repository's root (this crate is tools/testkit).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh, empty directory under the system temp dir.
fn fresh_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    loop {
        let dir = std::env::temp_dir().join(format!(
            "llm-router-envoy-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// Envoy's log file plus whatever it wrote to stdout/stderr.
fn logs_in(dir: &Path) -> String {
    let mut out = read_lossy(&dir.join("envoy.log"));
    for f in ["stderr.txt", "stdout.txt"] {
        let s = read_lossy(&dir.join(f));
        if !s.trim().is_empty() {
            out.push_str(&format!("\n--- envoy {f} ---\n{s}"));
        }
    }
    out
}

/// SIGKILL Envoy's process group (Envoy was spawned as its leader) and reap it.
fn kill_group(child: &mut Child) {
    // Only while the leader is unreaped: then its pid (= the group id) cannot
    // have been reused.
    if let Ok(None) = child.try_wait() {
        let pgid = child.id();
        if pgid > 1 {
            // NB: `kill -KILL -<pgid>` is misparsed by procps-ng kill (it sends
            // to a different pid, e.g. -1 = everything); `-s KILL -- -<pgid>` is not.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pgid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Write the config and spawn Envoy (`--concurrency` workers) in its own process group.
fn spawn(config_yaml: &str, env: &[(&str, &str)], dir: &Path, concurrency: u32) -> Result<Child, String> {
    let bin = envoy_bin();
    let config = dir.join("envoy.yaml");
    fs::write(&config, config_yaml).map_err(|e| format!("write {}: {e}", config.display()))?;
    let file = |name: &str| {
        fs::File::create(dir.join(name)).map_err(|e| format!("create {name} in {}: {e}", dir.display()))
    };
    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(&config)
        .args(["--disable-hot-restart", "--concurrency", &concurrency.to_string(), "-l", "warning"])
        // Envoy writes its log file on this timer (default 10 s): without it, a failing test's printed log
        // misses the last seconds, which are the ones that matter.
        .args(["--file-flush-interval-msec", "100"])
        .arg("--log-path")
        .arg(dir.join("envoy.log"))
        .arg("--admin-address-path")
        .arg(dir.join("admin.txt"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file("stdout.txt")?)
        .stderr(file("stderr.txt")?)
        .process_group(0);
    cmd.spawn().map_err(|e| format!("cannot run {}: {e}", bin.display()))
}

/// The admin port once Envoy has written its admin address file.
fn admin_port(dir: &Path) -> Option<u16> {
    let s = fs::read_to_string(dir.join("admin.txt")).ok()?;
    s.trim().rsplit(':').next()?.parse().ok().filter(|p| *p != 0)
}

fn is_live(admin_port: u16) -> bool {
    matches!(
        http::try_request(admin_port, "GET", "/ready", &[], b""),
        Ok(r) if r.status == 200 && r.text().trim() == "LIVE"
    )
}

/// A running Envoy. Dropping it kills it (and prints its log if the test is panicking).
pub struct Envoy {
    /// The first listener's port.
    pub port: u16,
    pub admin_port: u16,
    child: Child,
    dir: PathBuf,
}

impl Envoy {
    /// Start Envoy with this bootstrap YAML (listener/admin ports may be 0) and
    /// extra environment variables; wait (≤ 30 s) until it is ready (`/ready` = LIVE)
    /// and find the first listener's port. `Err` carries Envoy's log.
    pub fn start(config_yaml: &str, env: &[(&str, &str)]) -> Result<Envoy, String> {
        Envoy::start_with(config_yaml, env, 1)
    }

    /// [`Envoy::start`] with `concurrency` worker threads (each with its own wasm VM; shared data is
    /// process-wide).
    pub fn start_with(config_yaml: &str, env: &[(&str, &str)], concurrency: u32) -> Result<Envoy, String> {
        let dir = fresh_dir();
        let child = match spawn(config_yaml, env, &dir, concurrency) {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // From here on, Drop cleans up.
        let mut envoy = Envoy { port: 0, admin_port: 0, child, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(format!("envoy exited during startup ({status}); log:\n{}", envoy.log()));
            }
            if envoy.admin_port == 0 {
                envoy.admin_port = admin_port(&envoy.dir).unwrap_or(0);
            }
            if envoy.admin_port != 0 && is_live(envoy.admin_port) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("envoy not ready within {START_TIMEOUT:?}; log:\n{}", envoy.log()));
            }
            std::thread::sleep(POLL);
        }
        envoy.port = envoy.listener_port()?;
        Ok(envoy)
    }

    fn listener_port(&self) -> Result<u16, String> {
        let r = http::try_request(self.admin_port, "GET", "/listeners?format=json", &[], b"")?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("/listeners is not JSON ({e}): {}", r.text()))?;
        v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("no listener port in /listeners: {}", r.text()))
    }

    /// Envoy's log so far (plus anything on its stdout/stderr).
    pub fn log(&self) -> String {
        logs_in(&self.dir)
    }

    /// The temp directory holding the config and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// GET a path on the admin interface.
    pub fn admin_get(&self, path: &str) -> http::Response {
        http::request(self.admin_port, "GET", path, &[], b"")
    }

    /// The value of the counter or gauge with exactly this name, if present.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let mut re = String::from("%5E");
        for c in regex_escape(name).bytes() {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                re.push(c as char);
            } else {
                re.push_str(&format!("%{c:02X}"));
            }
        }
        re.push_str("%24");
        let r = self.admin_get(&format!("/stats?filter={re}&format=json"));
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body) {
            if let Some(stats) = v["stats"].as_array() {
                return stats
                    .iter()
                    .find(|s| s["name"].as_str() == Some(name))
                    .and_then(|s| s["value"].as_u64());
            }
        }
        // Plain text: `name: value` per line.
        r.text().lines().find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// Envoy's process id (for /proc: its memory, its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the Envoy process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Drop for Envoy {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "===== envoy log ({}) =====\n{}\n===== end of envoy log =====",
                self.dir.display(),
                self.log()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Start Envoy expecting it to exit non-zero within 30 s; returns its log and
/// stderr. Panics if it exits 0, or is still running after 30 s (or is still
/// running 3 s after becoming ready).
pub fn start_expect_failure(config_yaml: &str, env: &[(&str, &str)]) -> String {
    let dir = fresh_dir();
    let mut child = match spawn(config_yaml, env, &dir, 1) {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            panic!("{e}");
        }
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let mut live_since: Option<Instant> = None;
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                break Err("envoy exited 0 but a startup failure was expected".to_string())
            }
            Ok(Some(_)) => break Ok(()),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for envoy: {e}")),
        }
        let now = Instant::now();
        if now > deadline {
            break Err(format!(
                "envoy still running after {START_TIMEOUT:?}; a startup failure was expected"
            ));
        }
        match live_since {
            Some(t) if now - t > Duration::from_secs(3) => {
                break Err(
                    "envoy started (admin /ready is LIVE) but a startup failure was expected".to_string()
                )
            }
            Some(_) => {}
            None => {
                if admin_port(&dir).is_some_and(is_live) {
                    live_since = Some(now);
                }
            }
        }
        std::thread::sleep(POLL);
    };
    kill_group(&mut child);
    let log = logs_in(&dir);
    let _ = fs::remove_dir_all(&dir);
    match outcome {
        Ok(()) => log,
        Err(e) => panic!("{e}; log:\n{log}"),
    }
}

/// A second Envoy that terminates TLS on a free 127.0.0.1 port (with the given
/// PEM cert/key) and forwards plain HTTP/1.1 to 127.0.0.1:`backend_port`.
pub struct TlsFront {
    pub port: u16,
    pub envoy: Envoy,
}

/// The bootstrap YAML for a [`TlsFront`].
pub fn tls_front_yaml(backend_port: u16, cert_pem: &Path, key_pem: &Path) -> String {
    let cert = cert_pem.display();
    let key = key_pem.display();
    format!(
        r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: 0 }}
static_resources:
  listeners:
  - name: tls_front
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: {{ filename: "{cert}" }}
              private_key: {{ filename: "{key}" }}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls_front
          codec_type: AUTO
          stream_idle_timeout: 0s
          route_config:
            name: tls_front
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend, timeout: 0s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {backend_port} }}
"#
    )
}

/// The bootstrap YAML of a plain proxy: one listener (free port) routing everything to
/// 127.0.0.1:`backend_port` with Envoy's defaults, no wasm, no retries ([`tls_front_yaml`] without TLS).
/// "Bare Envoy", the baseline the router is measured against.
pub fn plain_proxy_yaml(backend_port: u16) -> String {
    let yaml = tls_front_yaml(backend_port, "/c".as_ref(), "/k".as_ref());
    match (yaml.find("    - transport_socket:"), yaml.find("      filters:")) {
        (Some(start), Some(end)) => {
            format!("{}    - filters:{}", &yaml[..start], &yaml[end + "      filters:".len()..])
        }
        _ => unreachable!("tls_front_yaml has a transport socket and filters"),
    }
}

impl TlsFront {
    /// Start it; panics (with Envoy's log) if it cannot start.
    pub fn start(backend_port: u16, cert_pem: &Path, key_pem: &Path) -> TlsFront {
        let yaml = tls_front_yaml(backend_port, cert_pem, key_pem);
        match Envoy::start(&yaml, &[]) {
            Ok(envoy) => TlsFront { port: envoy.port, envoy },
            Err(e) => panic!("TLS front Envoy failed to start: {e}"),
        }
    }
}

/// The directory of the committed test certificates (tests/certs).
pub fn certs_dir() -> PathBuf {
    workspace_root().join("tests/certs")
}
