//! `mock-provider --port N --name NAME [--status CODE] [--chunks N] [--chunk-delay-ms MS]`: a mock
//! OpenAI-compatible provider on 127.0.0.1:N (0 = any free port) that runs until killed. Streams carry
//! `--chunks` content events (default: the mock's 3), each preceded by a pause of `--chunk-delay-ms`
//! (fractions allowed: 0.2 = 200 µs).
//! Requests are not recorded (nothing out of process could read them; a long run would only grow).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;
use std::time::Duration;

use llm_router_testkit::mock::{Behavior, MockProvider};

const USAGE: &str =
    "usage: mock-provider --port N --name NAME [--status CODE] [--chunks N] [--chunk-delay-ms MS]";

struct Args {
    port: u16,
    name: String,
    status: Option<u16>,
    chunks: usize,
    chunk_delay: Duration,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut port = None;
    let mut name = None;
    let mut status = None;
    let mut chunks = 0;
    let mut chunk_delay = Duration::ZERO;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let mut value =
            || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                port = Some(v.parse::<u16>().map_err(|_| format!("bad port {v:?}"))?);
            }
            "--name" => name = Some(value()?),
            "--status" => {
                let v = value()?;
                let code = v
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=999).contains(c))
                    .ok_or_else(|| format!("bad status {v:?}"))?;
                status = Some(code);
            }
            "--chunks" => {
                let v = value()?;
                chunks = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| format!("bad chunk count {v:?}"))?;
            }
            "--chunk-delay-ms" => {
                let v = value()?;
                let ms = v
                    .parse::<f64>()
                    .ok()
                    .filter(|n| (0.0..=60_000.0).contains(n))
                    .ok_or_else(|| format!("bad chunk delay {v:?}"))?;
                chunk_delay = Duration::from_secs_f64(ms / 1000.0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        port: port.ok_or("--port is required")?,
        name: name.ok_or("--name is required")?,
        status,
        chunks,
        chunk_delay,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mock-provider: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
    mock.set_stream_shape(args.chunks, args.chunk_delay);
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
