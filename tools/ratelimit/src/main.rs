//! `ratelimit-standin`: the stand-in rate limit service as a process, for manual runs next to Envoy.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use llm_router_ratelimit::{limiter::Settings, Options, RateLimitService};

/// Serves envoyproxy/ratelimit's ShouldRateLimit (gRPC over h2c) on 127.0.0.1, counting in Redis.
#[derive(Parser)]
struct Args {
    /// envoyproxy/ratelimit configuration file (one domain).
    #[arg(long)]
    config: PathBuf,
    /// Redis to count in, host:port.
    #[arg(long, default_value = "127.0.0.1:6379")]
    redis: SocketAddr,
    /// Port on 127.0.0.1 (0: any free port, printed on stdout).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The service's CACHE_KEY_PREFIX.
    #[arg(long, default_value = "")]
    key_prefix: String,
    /// The service's EXPIRATION_JITTER_MAX_SECONDS.
    #[arg(long, default_value_t = 300)]
    expiration_jitter_max_seconds: i64,
    /// Print every call to stderr.
    #[arg(long)]
    log_calls: bool,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let yaml =
        std::fs::read_to_string(&args.config).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let options = Options {
        settings: Settings {
            key_prefix: args.key_prefix,
            expiration_jitter_max_seconds: args.expiration_jitter_max_seconds,
        },
        port: args.port,
        clock: None,
        log_calls: args.log_calls,
    };
    let service = RateLimitService::start_with(&yaml, args.redis, options)?;
    println!("listening on {}", service.addr());
    // Serves until killed.
    loop {
        std::thread::park();
    }
}
