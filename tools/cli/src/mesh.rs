//! What the mesh targets (`istio.rs`, `envoy_gateway.rs`) build alike: the configurations of the roles
//! a mesh loads beside the downstream role, which carry the catalog (they may run in a VM of their own),
//! and the protocol options that put the upstream role on a provider's cluster.

use crate::envoy_config::{http1, typed, wasm_filter_in};
use crate::yaml::{list, map, render, s, Value, With};
use llm_router::catalog::FieldError as ConfigError;
use llm_router::filter::UPSTREAM_ROOT_ID;

/// The upstream role's configuration (`provider`) or the logger's (`None`), carrying the catalog.
pub fn with_catalog(catalog: &serde_json::Value, provider: Option<&str>) -> String {
    let mut config = serde_json::Map::new();
    if let Some(p) = provider {
        config.insert("provider".into(), p.into());
    }
    config.insert("catalog".into(), catalog.clone());
    serde_json::Value::Object(config).to_string()
}

/// A provider cluster's whole `HttpProtocolOptions`: HTTP/1.1 with trailers, as the plain config speaks
/// to providers, and the upstream role for `provider` (in VM `vm`) before the codec. Whole, because the
/// options are one map entry: a mesh's merge or JSON patch replaces its own.
pub fn upstream_protocol_options(catalog: &serde_json::Value, provider: &str, vm: Value) -> Value {
    let configuration = with_catalog(catalog, Some(provider));
    typed("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
        .with("explicit_http_config", map([("http_protocol_options", http1())]))
        .with(
            "http_filters",
            list([
                wasm_filter_in("llm_router_upstream", UPSTREAM_ROOT_ID, &configuration, vm),
                map([
                    ("name", s("envoy.filters.http.upstream_codec")),
                    ("typed_config", typed("envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec")),
                ]),
            ]),
        )
}

/// Names on `resource` the image the proxies must mount at `wasm_path`: the module its roles were
/// generated for.
pub fn annotate_module(mut resource: Value, image: &str, wasm_path: &str) -> Value {
    if let Some(Value::Mapping(m)) = resource.get_mut("metadata") {
        m.insert(
            s("annotations"),
            map([("llm-router.io/image", s(image)), ("llm-router.io/module-path", s(wasm_path))]),
        );
    }
    resource
}

/// The largest resource a mesh target writes: Kubernetes stores an object in etcd, whose limit is
/// 1.5 MiB, and the roles' configurations carry the catalog (the EnvoyFilter or EnvoyPatchPolicy holds it
/// once per provider).
pub const MAX_RESOURCE_BYTES: usize = 1 << 20;

/// One resource as YAML, refused when past [`MAX_RESOURCE_BYTES`] (naming it: `kubectl apply` would fail
/// on it).
pub fn render_resource(doc: &Value) -> Result<String, ConfigError> {
    let text = render(doc).map_err(|message| ConfigError::new("", message))?;
    if text.len() > MAX_RESOURCE_BYTES {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("resource");
        return Err(ConfigError::new(
            "",
            format!(
                "the generated {kind} is {} bytes, over the {MAX_RESOURCE_BYTES} a Kubernetes object may hold: the catalog is embedded in it once per provider (fewer providers or a smaller catalog)",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// `header` then every resource of `docs`, as one multi-document YAML.
pub fn documents(header: String, docs: Vec<Value>) -> Result<String, ConfigError> {
    let mut out = header;
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&render_resource(&doc)?);
    }
    Ok(out)
}
