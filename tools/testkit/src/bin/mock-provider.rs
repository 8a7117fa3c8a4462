//! `mock-provider --port N --name NAME [--status CODE] [--chunks N] [--chunk-delay-ms MS]`: a mock
//! provider on 127.0.0.1:N (0 = any free port) that runs until killed: OpenAI-compatible
//! (`.../chat/completions`), Anthropic (`.../v1/messages`) and Gemini (`.../models/M:generateContent`,
//! `...:streamGenerateContent?alt=sse`), by path. It prints
//! `mock-provider NAME listening on 127.0.0.1:PORT` once it listens (scripts/bench reads the port there).
//! Requests are not recorded (nothing out of process could read them; a long run would only grow).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use llm_router_testkit::mock::{Behavior, MockProvider};

#[derive(Parser, Debug)]
#[command(
    name = "mock-provider",
    about = "A mock LLM provider on 127.0.0.1, until killed",
    long_about = "A mock LLM provider on 127.0.0.1, until killed. It answers by path: \
                  POST .../chat/completions (OpenAI-compatible), POST .../v1/messages (Anthropic), \
                  POST .../models/MODEL:generateContent and \
                  .../models/MODEL:streamGenerateContent?alt=sse (Gemini); GET of any path answers 200."
)]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long)]
    port: u16,
    /// The provider's name (it answers "Hello from NAME").
    #[arg(long)]
    name: String,
    /// Answer every POST with this status and a JSON error body (OpenAI's shape, whatever the path).
    #[arg(long, value_parser = clap::value_parser!(u16).range(100..=999))]
    status: Option<u16>,
    /// Content events per stream (default: the mock's 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    chunks: Option<u32>,
    /// Pause before each stream event, in milliseconds (fractions allowed: 0.2 = 200 µs).
    #[arg(long, value_name = "MS", default_value = "0", value_parser = parse_delay)]
    chunk_delay_ms: Duration,
}

fn parse_delay(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|ms| (0.0..=60_000.0).contains(ms))
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .ok_or_else(|| format!("bad chunk delay {v:?} (milliseconds, 0 to 60000)"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mock = match MockProvider::start_on(&args.name, args.port) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            eprintln!("port {} is in use", args.port);
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("mock-provider: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::from(1);
        }
    };
    mock.set_recording(false);
    mock.set_stream_shape(args.chunks.unwrap_or(0) as usize, args.chunk_delay_ms);
    if let Some(code) = args.status {
        let body = serde_json::json!({
            "error": {"message": format!("mock status {code}"), "type": "mock_error", "code": code}
        })
        .to_string();
        mock.set_behavior(Behavior::Status { code, headers: Vec::new(), body });
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "mock-provider {} listening on 127.0.0.1:{}", mock.name(), mock.port());
    let _ = out.flush();
    // Serve until killed (SIGTERM/SIGINT default action).
    loop {
        std::thread::park();
    }
}
