//! One request's account: who asked, who served, what it used and cost. Built once at the end of the
//! request; exported as one filter-state JSON value for Envoy's access log and as Envoy stats.

use crate::catalog::Catalog;
use crate::wire::text::{push_json_str, push_u64, truncated};
use crate::wire::usage::Usage;

/// Filter-state key of the account (`wasm.llm_account` in Envoy's access log).
pub const ACCOUNT_KEY: &str = "llm_account";

/// The longest requested model name the access log prints: the client chose it (a catalog's ids are
/// far shorter), and an 8 MiB one must not reach every log line whole.
pub const MAX_REQUESTED_MODEL: usize = 256;

/// What happened to one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Account {
    /// The client key's name (empty with `auth: none`).
    pub key_name: String,
    /// The calling application: a name from `routing.apps`, `other`, or empty when the client sent none.
    pub app: String,
    /// The model as the client asked for it (id, alias or variant).
    pub requested_model: String,
    /// The public id of the model that served.
    pub model: Option<String>,
    /// The provider slug that served.
    pub provider: Option<String>,
    /// Attempts made (1 = the first choice served).
    pub attempts: u64,
    /// The status the client got.
    pub status: u16,
    /// `error.metadata.error_type` when the client got an error.
    pub error_type: Option<String>,
    /// Whether the response was streamed.
    pub stream: bool,
    /// Token usage; `None` when unknown (never guessed as zero).
    pub usage: Option<Usage>,
    /// `usage` (and the cost) is our estimate, not the provider's count: the provider worked but its
    /// usage never reached us (see `wire::usage::estimate`).
    pub usage_estimated: bool,
    /// Cost in nano-USD; `None` when unknown.
    pub cost_nano: Option<u64>,
    /// The first 8 hex digits of the session key's hash (never the key).
    pub session: Option<String>,
    /// Milliseconds from the request to the response's first byte.
    pub ttfb_ms: Option<u64>,
    /// Milliseconds from the request to the end of the response.
    pub duration_ms: Option<u64>,
    /// How the route was chosen (the explanation `x-llm-route` shows on request).
    pub route: Option<String>,
}

impl Account {
    /// The single JSON object written to filter state (stable field names, in alphabetical order: the
    /// access log prints it). Written by hand: it is built for every request.
    pub fn to_json(&self) -> String {
        let u = self.usage;
        let mut out = String::with_capacity(320 + self.route.as_ref().map_or(0, String::len));
        let field = |out: &mut String, name: &str| {
            out.push(if out.is_empty() { '{' } else { ',' });
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
        };
        let num = |out: &mut String, n: Option<u64>| match n {
            Some(n) => push_u64(out, n),
            None => out.push_str("null"),
        };
        let text = |out: &mut String, s: Option<&str>| match s {
            Some(s) => push_json_str(out, s),
            None => out.push_str("null"),
        };
        field(&mut out, "app");
        push_json_str(&mut out, &self.app);
        field(&mut out, "attempts");
        push_u64(&mut out, self.attempts);
        field(&mut out, "cached_tokens");
        num(&mut out, u.map(|u| u.cached_tokens));
        field(&mut out, "completion_tokens");
        num(&mut out, u.map(|u| u.completion_tokens));
        field(&mut out, "cost_nano_usd");
        num(&mut out, self.cost_nano);
        field(&mut out, "duration_ms");
        num(&mut out, self.duration_ms);
        field(&mut out, "error_type");
        text(&mut out, self.error_type.as_deref());
        field(&mut out, "key");
        push_json_str(&mut out, &self.key_name);
        field(&mut out, "model");
        text(&mut out, self.model.as_deref());
        field(&mut out, "prompt_tokens");
        num(&mut out, u.map(|u| u.prompt_tokens));
        field(&mut out, "provider");
        text(&mut out, self.provider.as_deref());
        field(&mut out, "requested_model");
        push_json_str(&mut out, truncated(&self.requested_model, MAX_REQUESTED_MODEL));
        field(&mut out, "route");
        text(&mut out, self.route.as_deref());
        field(&mut out, "session");
        text(&mut out, self.session.as_deref());
        field(&mut out, "status");
        push_u64(&mut out, u64::from(self.status));
        field(&mut out, "stream");
        out.push_str(if self.stream { "true" } else { "false" });
        field(&mut out, "ttfb_ms");
        num(&mut out, self.ttfb_ms);
        field(&mut out, "usage_estimated");
        out.push_str(if self.usage_estimated { "true" } else { "false" });
        out.push('}');
        out
    }
}

/// The calling app, OpenRouter style: `X-OpenRouter-Title` (or the older `X-Title`), else the host of
/// `HTTP-Referer`; kept only when listed in `routing.apps` (bounded metric labels), else `other`; empty
/// when the client named none.
pub fn app_of(catalog: &Catalog, title: Option<&[u8]>, referer: Option<&[u8]>) -> String {
    let name = match (title, referer) {
        (Some(t), _) => String::from_utf8_lossy(t).trim().to_string(),
        (None, Some(r)) => referer_host(&String::from_utf8_lossy(r)),
        (None, None) => return String::new(),
    };
    if catalog.routing.apps.contains(&name) {
        name
    } else {
        "other".to_string()
    }
}

fn referer_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    host.split(':').next().unwrap_or("").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::demo_json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_huge_requested_model_is_cut_in_the_log() {
        let a = Account { requested_model: "m".repeat(8 << 20), ..Account::default() };
        let v: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(v["requested_model"].as_str().map(str::len), Some(MAX_REQUESTED_MODEL));
    }

    #[test]
    fn apps_are_kept_only_when_listed() {
        let json = demo_json()
            .replace(r#""max_attempts": 2"#, r#""max_attempts": 2, "apps": ["search-ui", "docs.example"]"#);
        let c = Catalog::parse(json.as_bytes(), None).unwrap();
        assert_eq!(app_of(&c, Some(b"search-ui"), None), "search-ui");
        assert_eq!(app_of(&c, Some(b"random tool"), None), "other");
        assert_eq!(app_of(&c, None, Some(b"https://user@Docs.Example:8443/page?q=1")), "docs.example");
        assert_eq!(app_of(&c, None, None), "");
    }

    #[test]
    fn the_account_json_is_what_serde_would_write() {
        let full = Account {
            key_name: "team \"a\"".into(),
            app: "search-ui".into(),
            requested_model: "llama".into(),
            model: Some("meta/llama".into()),
            provider: Some("alpha".into()),
            attempts: 2,
            status: 200,
            error_type: None,
            stream: true,
            usage: Some(Usage {
                prompt_tokens: 11,
                completion_tokens: 7,
                cached_tokens: 3,
                ..Usage::default()
            }),
            cost_nano: Some(5330),
            usage_estimated: true,
            session: Some("9f6b5258".into()),
            ttfb_ms: Some(3),
            duration_ms: Some(40),
            route: Some("m:weighted(sticky) a=0.750\tb".into()),
        };
        for a in [full, Account::default()] {
            let u = a.usage;
            let want = serde_json::json!({
                "key": a.key_name, "app": a.app, "requested_model": a.requested_model, "model": a.model,
                "provider": a.provider, "attempts": a.attempts, "status": a.status,
                "error_type": a.error_type, "stream": a.stream,
                "prompt_tokens": u.map(|u| u.prompt_tokens), "completion_tokens": u.map(|u| u.completion_tokens),
                "cached_tokens": u.map(|u| u.cached_tokens), "cost_nano_usd": a.cost_nano,
                "session": a.session, "ttfb_ms": a.ttfb_ms, "duration_ms": a.duration_ms, "route": a.route,
                "usage_estimated": a.usage_estimated,
            });
            // serde_json's map is sorted: byte-identical text, not just equal values.
            assert_eq!(a.to_json(), want.to_string());
        }
    }

    #[test]
    fn unknown_usage_is_null_not_zero() {
        let a = Account { requested_model: "m".into(), status: 502, ..Account::default() };
        let v: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert!(v["prompt_tokens"].is_null() && v["cost_nano_usd"].is_null());
        assert_eq!(v["status"], 502);
    }
}
