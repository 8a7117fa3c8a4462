//! One request's account: who asked, who served, what it used and cost. Built once at the end of the
//! request; exported as one filter-state JSON value for Envoy's access log and as Envoy stats.

use crate::catalog::Catalog;
use crate::usage::Usage;
use serde_json::json;

/// Filter-state key of the account (`wasm.llm_account` in Envoy's access log).
pub const ACCOUNT_KEY: &str = "llm_account";

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
    /// The single JSON object written to filter state (stable field names: the access log prints it).
    pub fn to_json(&self) -> String {
        let u = self.usage;
        json!({
            "key": self.key_name,
            "app": self.app,
            "requested_model": self.requested_model,
            "model": self.model,
            "provider": self.provider,
            "attempts": self.attempts,
            "status": self.status,
            "error_type": self.error_type,
            "stream": self.stream,
            "prompt_tokens": u.map(|u| u.prompt_tokens),
            "completion_tokens": u.map(|u| u.completion_tokens),
            "cached_tokens": u.map(|u| u.cached_tokens),
            "cost_nano_usd": self.cost_nano,
            "session": self.session,
            "ttfb_ms": self.ttfb_ms,
            "duration_ms": self.duration_ms,
            "route": self.route,
        })
        .to_string()
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
    fn unknown_usage_is_null_not_zero() {
        let a = Account { requested_model: "m".into(), status: 502, ..Account::default() };
        let v: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert!(v["prompt_tokens"].is_null() && v["cost_nano_usd"].is_null());
        assert_eq!(v["status"], 502);
    }
}
