//! llm-router's command line: generate the Envoy config from a catalog, check a catalog, hash a client key.

use llm_router::catalog::Catalog;
use llm_router_cli::envoy_config::{generate, Options};
use std::process::ExitCode;

const USAGE: &str = "usage:
  llm-router generate --catalog FILE [--port N] [--admin-port N] [--address A] [--wasm PATH] [--ca-bundle PEM]
                      [--access-log PATH] [--out FILE]
  llm-router check --catalog FILE      validate a catalog, reading provider keys from the environment
  llm-router route --catalog FILE --request BODY.json [--key NAME] [--session-id ID]
                                       explain offline how a request would be routed (all providers healthy)
  llm-router hash-key TOKEN            print the sha256 to put in keys[].sha256";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llm-router: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (cmd, rest) = args.split_first().ok_or(USAGE)?;
    let flag = |name: &str| -> Option<&str> {
        rest.iter().position(|a| a == name).and_then(|i| rest.get(i + 1)).map(String::as_str)
    };
    let read_catalog = || -> Result<(String, String), String> {
        let path = flag("--catalog").ok_or("--catalog FILE is required")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Ok((path.to_string(), text))
    };
    match cmd.as_str() {
        "generate" => {
            let (path, text) = read_catalog()?;
            let mut opts = Options { source: path.clone(), ..Options::default() };
            if let Some(p) = flag("--port") {
                opts.port = p.parse().map_err(|_| format!("--port: invalid port {p}"))?;
            }
            if let Some(p) = flag("--admin-port") {
                opts.admin_port = p.parse().map_err(|_| format!("--admin-port: invalid port {p}"))?;
            }
            if let Some(a) = flag("--address") {
                opts.address = a.to_string();
            }
            if let Some(b) = flag("--ca-bundle") {
                opts.ca_bundle = b.to_string();
            }
            if let Some(w) = flag("--wasm") {
                opts.wasm_path = w.to_string();
            }
            if let Some(l) = flag("--access-log") {
                opts.access_log_path = l.to_string();
            }
            let yaml = generate(&text, &opts).map_err(|e| format!("{path}: {e}"))?;
            match flag("--out") {
                Some(out) => std::fs::write(out, yaml).map_err(|e| format!("{out}: {e}")),
                None => {
                    print!("{yaml}");
                    Ok(())
                }
            }
        }
        "check" => {
            let (path, text) = read_catalog()?;
            let env = |name: &str| std::env::var(name).ok();
            let c = Catalog::parse(text.as_bytes(), Some(&env)).map_err(|e| format!("{path}: {e}"))?;
            println!(
                "{path}: ok ({} providers, {} models, {} keys)",
                c.providers.len(),
                c.models.len(),
                c.keys.len()
            );
            Ok(())
        }
        "route" => {
            let (path, text) = read_catalog()?;
            let catalog = Catalog::parse(text.as_bytes(), None).map_err(|e| format!("{path}: {e}"))?;
            let request_path = flag("--request").ok_or("--request BODY.json is required")?;
            let body = std::fs::read(request_path).map_err(|e| format!("{request_path}: {e}"))?;
            let caller = match flag("--key") {
                Some(name) => Some(
                    catalog
                        .key_ids()
                        .find(|k| catalog.key(*k).name == name)
                        .ok_or(format!("no key named {name}"))?,
                ),
                None => catalog.key_ids().next(),
            };
            print!("{}", explain_route(&catalog, &body, caller, flag("--session-id")));
            Ok(())
        }
        "hash-key" => {
            let token = rest.first().ok_or("hash-key TOKEN")?;
            println!("{}", llm_router::catalog::hash_token(token));
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    }
}

/// The decision for one request body, as text: the plan, the explanation, or the error the client gets.
fn explain_route(
    catalog: &Catalog,
    body: &[u8],
    caller: Option<llm_router::catalog::KeyId>,
    session: Option<&str>,
) -> String {
    use llm_router::routing::health::Status;
    use llm_router::routing::{route, Inputs};
    use llm_router::wire::chat_request::ChatRequest;
    let healthy = |_| Status::default();
    let result = ChatRequest::parse(body).and_then(|req| {
        let inputs = Inputs {
            request: &req,
            caller,
            session_header: session.map(str::as_bytes),
            request_id: None,
            health: &healthy,
        };
        route(catalog, &inputs)
    });
    match result {
        Err(e) => format!("the client gets {}:\n{}\n", e.status(), e.body()),
        Ok(r) => {
            let mut out = String::from("attempts:\n");
            for (k, c) in r.plan.iter().enumerate() {
                let m = catalog.model(c.model);
                let e = catalog.endpoint(*c);
                let p = catalog.provider_of(*c);
                out += &format!(
                    "  {}. {} via {} as {:?} (${}/M prompt, ${}/M completion)\n",
                    k + 1,
                    m.id,
                    p.name,
                    e.model,
                    e.pricing.prompt,
                    e.pricing.completion
                );
            }
            out + &format!("decision: {}\n", r.explanation.render(catalog))
        }
    }
}
