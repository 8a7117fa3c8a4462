//! A throwaway `redis-server` for tests: a free loopback port, no persistence, killed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh redis-server gets to answer PING.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// A running `redis-server` on 127.0.0.1, killed when dropped.
pub struct Redis {
    child: Child,
    addr: SocketAddr,
}

/// The `redis-server` binary: `REDIS_SERVER` if set, else the first on PATH, else Debian's.
pub fn redis_server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
}

impl Redis {
    /// Starts `redis-server` on a free port of 127.0.0.1 and waits until it answers PING.
    ///
    /// The port is found by binding port 0 and releasing it, so another process may take it in
    /// between: then redis-server exits, and another port is tried.
    pub fn start() -> Result<Redis, String> {
        let binary = redis_server_binary().ok_or(
            "redis-server not found (PATH, /usr/bin; scripts/lib/redis.sh's ensure_redis installs it)",
        )?;
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            match Self::start_on(&binary, port) {
                Ok(redis) => return Ok(redis),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn start_on(binary: &PathBuf, port: u16) -> Result<Redis, String> {
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            // No dump file is written with --save '', but keep redis out of the test's directory anyway.
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        // From here on, dropping `redis` kills the process, whatever goes wrong.
        let mut redis = Redis { child, addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)) };
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if redis.ping().is_ok() {
                return Ok(redis);
            }
            if let Ok(Some(status)) = redis.child.try_wait() {
                let mut out = String::new();
                if let Some(mut o) = redis.child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = redis.child.stderr.take() {
                    let _ = e.read_to_string(&mut out);
                }
                return Err(format!("redis-server on port {port} exited ({status}): {}", out.trim()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer PING within {READY_DEADLINE:?}"
                ));
            }
            // Poll, bounded by the deadline above: a fresh redis takes a few milliseconds.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `redis://` URL for clients.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// PING over a raw connection: Ok once the server answers `+PONG`.
    fn ping(&self) -> std::io::Result<()> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        if &buf == b"+PONG\r\n" {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("unexpected PING answer {:?}", String::from_utf8_lossy(&buf))))
        }
    }

    fn connection(&self) -> Result<redis::Connection, String> {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .map_err(|e| format!("redis {}: {e}", self.addr))
    }

    /// The integer a counter key holds (`GET`), `None` if the key does not exist.
    pub fn counter(&self, key: &str) -> Result<Option<u64>, String> {
        redis::cmd("GET").arg(key).query(&mut self.connection()?).map_err(|e| format!("GET {key}: {e}"))
    }

    /// Seconds a key has left to live (`TTL`): -1 without expiry, -2 if absent.
    pub fn ttl(&self, key: &str) -> Result<i64, String> {
        redis::cmd("TTL").arg(key).query(&mut self.connection()?).map_err(|e| format!("TTL {key}: {e}"))
    }

    /// Every key matching a glob pattern (`KEYS`, fine for a test's small Redis), sorted.
    pub fn keys(&self, pattern: &str) -> Result<Vec<String>, String> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.connection()?)
            .map_err(|e| format!("KEYS {pattern}: {e}"))?;
        keys.sort();
        Ok(keys)
    }

    /// Deletes every key (`FLUSHALL`), to reuse one server across test cases.
    pub fn flush(&self) -> Result<(), String> {
        redis::cmd("FLUSHALL").query(&mut self.connection()?).map_err(|e| format!("FLUSHALL: {e}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
