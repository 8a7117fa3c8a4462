//! llm-router's command line: generate the Envoy config from a catalog, check a catalog, explain a routing
//! decision offline, hash a client key.

use clap::{Args, Parser, Subcommand};
// The brain's API this binary uses, in one place.
use llm_router::{
    catalog::{hash_token, Catalog, KeyId},
    routing::{health::Status, route, Inputs},
    wire::chat_request::ChatRequest,
};
use llm_router_cli::envoy_config::{generate, Options};
use llm_router_cli::envoy_gateway::{generate_envoy_gateway, EnvoyGatewayOptions, XdsNameScheme};
use llm_router_cli::istio::{generate_istio, IstioOptions};
use llm_router_cli::rate_limit_service::service_config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// llm-router's command line.
#[derive(Debug, Parser)]
#[command(name = "llm-router", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print (or write) the Envoy config for a catalog.
    Generate(Box<GenerateArgs>),
    /// Print (or write) envoyproxy/ratelimit's configuration for the catalog's `routing.rate_limit_service`.
    RatelimitConfig {
        /// The catalog (JSON).
        #[arg(long, value_name = "FILE")]
        catalog: PathBuf,
        /// Write the YAML to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Validate a catalog, reading provider keys from the environment.
    Check {
        /// The catalog (JSON).
        #[arg(long, value_name = "FILE")]
        catalog: PathBuf,
    },
    /// Explain offline how a request would be routed (all providers healthy).
    Route {
        /// The catalog (JSON).
        #[arg(long, value_name = "FILE")]
        catalog: PathBuf,
        /// The request body, as a client would send it.
        #[arg(long, value_name = "BODY.json")]
        request: PathBuf,
        /// The client key (by name) the request comes with; default: the catalog's first key.
        #[arg(long, value_name = "NAME")]
        key: Option<String>,
        /// The `x-session-id` header the request comes with.
        #[arg(long, value_name = "ID")]
        session_id: Option<String>,
    },
    /// Print the sha256 to put in keys[].sha256.
    HashKey {
        /// The client key; it may start with `-`.
        #[arg(allow_hyphen_values = true)]
        token: String,
    },
}

/// `generate`'s flags; the defaults are [`Options::default`]'s.
#[derive(Debug, Args)]
struct GenerateArgs {
    /// The catalog (JSON).
    #[arg(long, value_name = "FILE")]
    catalog: PathBuf,
    /// Listener port (0 = any free port).
    #[arg(long, value_name = "N", default_value_t = Options::default().port)]
    port: u16,
    /// Admin port on 127.0.0.1 (0 = any free port).
    #[arg(long, value_name = "N", default_value_t = Options::default().admin_port)]
    admin_port: u16,
    /// Listener address.
    #[arg(long, value_name = "A", default_value_t = Options::default().address)]
    address: String,
    /// Path of llm_router.wasm as Envoy should open it.
    #[arg(long, value_name = "PATH", default_value_t = Options::default().wasm_path)]
    wasm: String,
    /// CA bundle for providers without `ca_file`.
    #[arg(long, value_name = "PEM", default_value_t = Options::default().ca_bundle)]
    ca_bundle: String,
    /// Where Envoy writes the access log.
    #[arg(long, value_name = "PATH", default_value_t = Options::default().access_log_path)]
    access_log: String,
    /// The heap Envoy's overload manager protects, in MiB: set it below the container's memory limit.
    #[arg(long, value_name = "MIB", default_value_t = Options::default().max_heap_bytes >> 20,
          value_parser = clap::value_parser!(u64).range(64..=1 << 24))]
    max_heap_mb: u64,
    /// Write the config to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// What to generate: a plain Envoy's config, Istio resources for an egress gateway, or Envoy Gateway
    /// resources.
    #[arg(long, value_enum, default_value_t = Target::Envoy)]
    target: Target,
    /// Istio, Envoy Gateway: the filter's OCI image by digest, oci://<registry>/<repository>@sha256:<digest>.
    #[arg(long, value_name = "REF", required_if_eq_any([("target", "istio"), ("target", "envoy-gateway")]))]
    image: Option<String>,
    /// Istio: the egress gateway's namespace (default istio-system); Envoy Gateway: the namespace of the
    /// router's Gateway and of every resource (default llm-router).
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Istio, Envoy Gateway: the host clients call the router at, on the gateway's router port.
    #[arg(long, value_name = "HOST", default_value_t = IstioOptions::default().router_host)]
    router_host: String,
    /// Istio, Envoy Gateway: the module as a file in the gateway's pods (an image volume of the same image).
    #[arg(long, value_name = "PATH", default_value_t = IstioOptions::default().wasm_path)]
    mesh_wasm_path: String,
    /// Envoy Gateway: the router's Gateway (generated, with one HTTP listener).
    #[arg(long, value_name = "NAME", default_value_t = EnvoyGatewayOptions::default().gateway_name)]
    gateway_name: String,
    /// Envoy Gateway: the GatewayClass of Envoy Gateway's controller.
    #[arg(long, value_name = "NAME", default_value_t = EnvoyGatewayOptions::default().gateway_class)]
    gateway_class: String,
    /// Envoy Gateway: the EnvoyProxy the Gateway is parameterised by (provider keys, the module's volume).
    #[arg(long, value_name = "NAME", default_value_t = EnvoyGatewayOptions::default().envoy_proxy)]
    envoy_proxy: String,
    /// Envoy Gateway: its xDS naming, v2 where its `XDSNameSchemeV2` runtime flag is on.
    #[arg(long, value_enum, default_value_t = XdsNames::V1)]
    xds_name_scheme: XdsNames,
}

/// `generate --xds-name-scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum XdsNames {
    /// Envoy Gateway's default naming.
    V1,
    /// The `XDSNameSchemeV2` runtime flag's.
    V2,
}

/// `generate --target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    /// A plain Envoy's bootstrap config.
    Envoy,
    /// Istio resources (WasmPlugin, ServiceEntry, DestinationRule, Gateway, VirtualService, EnvoyFilter).
    Istio,
    /// Envoy Gateway resources (Gateway, Backend, HTTPRoute, EnvoyExtensionPolicy, BackendTrafficPolicy,
    /// EnvoyPatchPolicy).
    EnvoyGateway,
}

fn main() -> ExitCode {
    // A usage error (unknown flag, missing or malformed value) exits here, with clap's message and status 2.
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llm-router: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Generate(args) => {
            let (path, text) = read_catalog(&args.catalog)?;
            if args.target == Target::Istio {
                let opts = IstioOptions {
                    image: args.image.unwrap_or_default(),
                    namespace: args.namespace.unwrap_or_else(|| IstioOptions::default().namespace),
                    router_host: args.router_host,
                    wasm_path: args.mesh_wasm_path,
                    source: path.clone(),
                    ..IstioOptions::default()
                };
                let yaml = generate_istio(&text, &opts).map_err(|e| format!("{path}: {e}"))?;
                return write_out(args.out, &yaml);
            }
            if args.target == Target::EnvoyGateway {
                let opts = EnvoyGatewayOptions {
                    image: args.image.unwrap_or_default(),
                    namespace: args.namespace.unwrap_or_else(|| EnvoyGatewayOptions::default().namespace),
                    gateway_name: args.gateway_name,
                    gateway_class: args.gateway_class,
                    envoy_proxy: args.envoy_proxy,
                    router_host: args.router_host,
                    wasm_path: args.mesh_wasm_path,
                    xds_names: match args.xds_name_scheme {
                        XdsNames::V1 => XdsNameScheme::V1,
                        XdsNames::V2 => XdsNameScheme::V2,
                    },
                    source: path.clone(),
                    ..EnvoyGatewayOptions::default()
                };
                let yaml = generate_envoy_gateway(&text, &opts).map_err(|e| format!("{path}: {e}"))?;
                return write_out(args.out, &yaml);
            }
            let opts = Options {
                source: path.clone(),
                port: args.port,
                admin_port: args.admin_port,
                address: args.address,
                wasm_path: args.wasm,
                ca_bundle: args.ca_bundle,
                access_log_path: args.access_log,
                max_heap_bytes: args.max_heap_mb << 20,
                ..Options::default()
            };
            let yaml = generate(&text, &opts).map_err(|e| format!("{path}: {e}"))?;
            write_out(args.out, &yaml)
        }
        Command::RatelimitConfig { catalog, out } => {
            let (path, text) = read_catalog(&catalog)?;
            let c = Catalog::parse(text.as_bytes(), None).map_err(|e| format!("{path}: {e}"))?;
            let service = c
                .routing
                .rate_limit_service
                .as_ref()
                .ok_or(format!("{path}: routing.rate_limit_service is not set"))?;
            let yaml = service_config(&c, service, &path)?;
            write_out(out, &yaml)
        }
        Command::Check { catalog } => {
            let (path, text) = read_catalog(&catalog)?;
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
        Command::Route { catalog, request, key, session_id } => {
            let (path, text) = read_catalog(&catalog)?;
            let catalog = Catalog::parse(text.as_bytes(), None).map_err(|e| format!("{path}: {e}"))?;
            let body = std::fs::read(&request).map_err(|e| format!("{}: {e}", request.display()))?;
            let caller = match key {
                Some(name) => Some(
                    catalog
                        .key_ids()
                        .find(|k| catalog.key(*k).name == name)
                        .ok_or(format!("no key named {name}"))?,
                ),
                None => catalog.key_ids().next(),
            };
            print!("{}", explain_route(&catalog, &body, caller, session_id.as_deref()));
            Ok(())
        }
        Command::HashKey { token } => {
            println!("{}", hash_token(&token));
            Ok(())
        }
    }
}

/// Writes `text` to `out`, or to stdout.
fn write_out(out: Option<PathBuf>, text: &str) -> Result<(), String> {
    match out {
        Some(out) => std::fs::write(&out, text).map_err(|e| format!("{}: {e}", out.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// The catalog file's path as given (errors name it) and its text.
fn read_catalog(path: &Path) -> Result<(String, String), String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    Ok((name, text))
}

/// The decision for one request body, as text: the plan, the explanation, or the error the client gets.
fn explain_route(catalog: &Catalog, body: &[u8], caller: Option<KeyId>, session: Option<&str>) -> String {
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
