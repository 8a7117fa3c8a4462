//! The downstream role's decisions on the client's request, as data: what its headers call for (a chat, a
//! `/models` reply, an error), and, once its body is complete, the plan and everything the first attempt
//! needs (the body edit, the slots for the route's matcher, the headers to set and remove).

use crate::catalog::{AuthMode, Catalog, EndpointRef, KeyId, ProviderId};
use crate::filter::attempt::provider_headers;
use crate::observe::account::app_of;
use crate::routing::budget::{worst_case, Spend};
use crate::routing::fleet;
use crate::routing::health::Status;
use crate::routing::plan::{slot_key, slot_value, PlanRecord};
use crate::routing::preferences::{split_variant, Variant};
use crate::routing::request_facts::CostFacts;
use crate::routing::{route, Inputs, Route};
use crate::wire::chat_request::{ChatRequest, Rewritten};
use crate::wire::error::ApiError;
use crate::wire::headers::{bearer_token, decimal, forwardable_request_header, header, media_type, Headers};
use crate::wire::text::decimal as decimal_text;

/// What to do after the request headers.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadVerdict {
    /// Answer now with this status, headers and body (errors, `GET /models`).
    Reply(Reply),
    /// A chat completion: wait for the body.
    Chat(ChatHead),
    /// `GET /key` by this key: answered with its ledger (which only the host can read).
    KeyInfo(KeyId),
}

/// A reply the filter sends itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// `error.metadata.error_type` of an error reply.
    pub error_type: Option<&'static str>,
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply { status: e.status(), headers: e.headers(), body: e.body(), error_type: Some(e.error_type()) }
    }
}

/// A chat request that passed the header checks.
#[derive(Debug, PartialEq, Eq)]
pub struct ChatHead {
    /// The authenticated client key (`None` with `auth: none`).
    pub caller: Option<KeyId>,
    /// Client headers that must not reach a provider or steer Envoy (dropped from the forwarded map).
    pub remove: Vec<String>,
    /// Header `x-session-id`.
    pub session_header: Option<Vec<u8>>,
    /// Header `x-request-id` (Envoy sets one when the client did not).
    pub request_id: Option<Vec<u8>>,
    /// `x-llm-router-debug: 1` or `x-openrouter-metadata: enabled` with a key that may debug: explain
    /// the route in the response.
    pub debug: bool,
    /// The key may debug: providers' `x-ratelimit-*` headers reach it.
    pub provider_limits: bool,
    /// The calling app (metric label), see `observe::account::app_of`.
    pub app: String,
}

/// Decides on the request headers: routes by method and path, checks content type, size and key.
pub fn on_request_headers(catalog: &Catalog, headers: &Headers, end_of_stream: bool) -> HeadVerdict {
    match check_head(catalog, headers, end_of_stream) {
        Ok(v) => v,
        Err(e) => HeadVerdict::Reply(e.into()),
    }
}

fn check_head(catalog: &Catalog, headers: &Headers, end_of_stream: bool) -> Result<HeadVerdict, ApiError> {
    let header = |name: &str| header(headers, name);
    let method = header(":method").unwrap_or_default();
    let path = header(":path").unwrap_or_default();
    let path = path.split(|b| *b == b'?').next().unwrap_or_default();
    let endpoint = path.strip_prefix(b"/api").unwrap_or(path);
    match endpoint {
        b"/v1/models" => {
            if method != b"GET" && method != b"HEAD" {
                return Err(ApiError::MethodNotAllowed("Use GET for /models".into()));
            }
            return Ok(HeadVerdict::Reply(Reply {
                status: 200,
                headers: vec![("content-type", "application/json".into())],
                body: catalog.models_json.clone(),
                error_type: None,
            }));
        }
        b"/v1/key" => {
            if method != b"GET" && method != b"HEAD" {
                return Err(ApiError::MethodNotAllowed("Use GET for /key".into()));
            }
            return match authenticate(catalog, header("authorization"))? {
                Some(key) => Ok(HeadVerdict::KeyInfo(key)),
                None => Err(ApiError::Unauthorized("No client keys: /key describes the calling key".into())),
            };
        }
        b"/v1/chat/completions" => {
            if method != b"POST" {
                return Err(ApiError::MethodNotAllowed("Use POST for /chat/completions".into()));
            }
        }
        _ => {
            return Err(ApiError::NotFound(
                "Not found: this router serves /v1/chat/completions, /v1/models and /v1/key".into(),
            ))
        }
    }
    let caller = authenticate(catalog, header("authorization"))?;
    if !media_type(header("content-type").unwrap_or_default()).eq_ignore_ascii_case(b"application/json") {
        return Err(ApiError::InvalidRequest("Content-Type must be application/json".into()));
    }
    if header("content-encoding").is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"identity")) {
        // The router must read the body it routes; compressed bytes would pass unread.
        return Err(ApiError::UnsupportedMediaType(
            "Content-Encoding is not supported: send the request body uncompressed".into(),
        ));
    }
    if let Some(len) = header("content-length") {
        match decimal(len) {
            Some(n) if n > catalog.routing.max_request_bytes => return Err(too_large(catalog)),
            Some(_) => {}
            None => return Err(ApiError::InvalidRequest("invalid Content-Length".into())),
        }
    }
    if end_of_stream {
        return Err(ApiError::InvalidRequest("the request has no body".into()));
    }
    let mut remove = Vec::new();
    for (name, value) in headers {
        if !forwardable_request_header(name) {
            remove.push(name.clone());
        } else if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            // Envoy 1.40's HTTP/1 codec lets a bare CR through; a provider's parser may read it as the
            // end of a line, so a header we forward must not carry one.
            return Err(ApiError::InvalidRequest(format!("header {name} has an invalid value")));
        }
    }
    // Only a key the catalog lets debug sees how routing went: the explanation and providers' quota
    // headers tell of other tenants' policies and failures and of the shared provider account.
    let may_debug = caller.is_some_and(|k| catalog.key(k).debug);
    let asked = header("x-llm-router-debug").is_some_and(|v| v.trim_ascii() == b"1")
        || header("x-openrouter-metadata").is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"enabled"));
    Ok(HeadVerdict::Chat(ChatHead {
        caller,
        remove,
        session_header: header("x-session-id").map(<[u8]>::to_vec),
        request_id: header("x-request-id").map(<[u8]>::to_vec),
        debug: asked && may_debug,
        provider_limits: may_debug,
        app: app_of(catalog, header("x-openrouter-title").or(header("x-title")), header("http-referer")),
    }))
}

/// The calling key, from `authorization: Bearer <key>` (no key is needed with `auth: none`).
fn authenticate(catalog: &Catalog, authorization: Option<&[u8]>) -> Result<Option<KeyId>, ApiError> {
    if catalog.auth == AuthMode::None {
        return Ok(None);
    }
    let token = authorization.and_then(bearer_token).ok_or_else(|| {
        ApiError::Unauthorized("Missing API key: send \"Authorization: Bearer <key>\"".to_string())
    })?;
    catalog
        .key_for_token(token)
        .map(Some)
        .ok_or_else(|| ApiError::Unauthorized("Invalid API key".to_string()))
}

/// The 413 for a body over `routing.max_request_bytes`.
pub fn too_large(catalog: &Catalog) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "Request body too large: the limit is {} bytes",
        catalog.routing.max_request_bytes
    ))
}

/// Everything the downstream role does once the body is complete.
#[derive(Debug, PartialEq)]
pub struct BodyDecision {
    /// The body the providers receive (slot 0's model name spliced in), as an edit of the client's.
    pub body: Rewritten,
    /// Filter-state values: one per slot for the route matcher, slot 0's carrying the plan record.
    pub filter_state: Vec<(String, String)>,
    /// Client request headers to remove: every one providers may not see (those `set` does not
    /// replace anyway; see `forwardable_request_header`).
    pub remove: Vec<String>,
    /// Headers the router sets (replacing the client's): slot 0's provider headers (host, path, key,
    /// content-length), the retry count and the per-try timeout. One host call per header: measured in
    /// Envoy, a few single writes cost less than rewriting the whole map.
    pub set: Vec<(String, Vec<u8>)>,
    /// What the response phase needs to know about the decision.
    pub routed: Routed,
    /// The client asked for a stream.
    pub stream: bool,
    /// How the route was chosen, rendered once: for the account always, for `x-llm-route` on request.
    pub route: String,
    /// The worst case to reserve against the key's token and dollar limits (`None`: it has none).
    pub reserve: Option<Spend>,
}

/// The longest `x-request-id` that becomes a generation id (Envoy's own are 36-byte UUIDs; a longer one
/// was chosen by someone else and is not echoed).
const MAX_REQUEST_ID: usize = 128;

/// The decision as the response phase sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routed {
    /// The plan: attempt k+1 was slot k.
    pub plan: Vec<EndpointRef>,
    /// The explanation, when the client asked for it (`x-llm-route`).
    pub explain: Option<String>,
    /// Providers' `x-ratelimit-*` headers go to the client (its key may debug).
    pub provider_limits: bool,
    /// The requested model is a `:free` variant (its quotas apply).
    pub free: bool,
    /// `x-generation-id`: ours, from the request id (response ids keep the provider's).
    pub generation_id: Option<String>,
    /// The model as the client asked for it.
    pub requested_model: String,
    /// The session key's short hash, for the account.
    pub session: Option<String>,
    /// The authenticated client key.
    pub caller: Option<KeyId>,
}

impl Routed {
    /// The slot that served, from Envoy's attempt count.
    pub fn served(&self, attempts: Option<u64>) -> Option<EndpointRef> {
        let k = usize::try_from(attempts?).ok()?.checked_sub(1)?;
        self.plan.get(k).copied()
    }
}

/// Parses the complete body and decides the plan (`health` is the health memory).
pub fn on_request_body(
    catalog: &Catalog,
    body: &[u8],
    head: &ChatHead,
    health: &dyn Fn(ProviderId) -> Status,
) -> Result<BodyDecision, ApiError> {
    if body.len() as u64 > catalog.routing.max_request_bytes {
        return Err(too_large(catalog));
    }
    let req = ChatRequest::parse(body)?;
    let inputs = Inputs {
        request: &req,
        caller: head.caller,
        session_header: head.session_header.as_deref(),
        request_id: head.request_id.as_deref(),
        health,
    };
    let Route { plan, explanation, session } = route(catalog, &inputs)?;
    // `route` never returns an empty plan (that is its 404).
    let first = *plan.first().ok_or_else(|| ApiError::Internal("empty plan".into()))?;
    let new_body = req.rewrite_prefix(&catalog.endpoint(first).model_json, req.stream);
    let record = PlanRecord::new(catalog, &plan, new_body.len, new_body.model_range.clone());
    let encoded = record.encode();
    let filter_state: Vec<(String, String)> = record
        .slots
        .iter()
        .enumerate()
        .map(|(k, slot)| {
            (slot_key(k).into_owned(), slot_value(&slot.provider, (k == 0).then_some(encoded.as_str())))
        })
        .collect();
    let timeout =
        if req.stream { catalog.routing.first_byte_timeout_ms } else { catalog.routing.response_timeout_ms };
    // Slot 0's provider headers go on now, so the first attempt needs no work in the upstream role.
    let mut set = provider_headers(catalog.provider_of(first), Some(new_body.len));
    let retries = plan.len().saturating_sub(1) as u64;
    set.push(("x-envoy-max-retries".into(), decimal_text(retries).into_bytes()));
    set.push(("x-envoy-upstream-rq-per-try-timeout-ms".into(), decimal_text(timeout).into_bytes()));
    if !req.stream {
        // The per-try timeout ends at a response's headers: a provider that then trickles its body a
        // byte at a time would hold the client for ever (measured by scripts/soak). A completion gets
        // every attempt's wait in all. (A stream's length is not ours to bound; its idle timeout is
        // Envoy's stream_idle_timeout.)
        let total = timeout.saturating_mul(plan.len() as u64);
        set.push(("x-envoy-upstream-rq-timeout-ms".into(), decimal_text(total).into_bytes()));
    }
    let free = split_variant(req.requested_model()).1 == Some(Variant::Free);
    set.extend(fleet::headers(catalog, head.caller.map(|k| catalog.key(k)), free));
    let remove = head.remove.iter().filter(|n| !set.iter().any(|(s, _)| s == *n)).cloned().collect();
    let route = explanation.render(catalog);
    let facts = CostFacts::of(&req)?;
    let reserve = head
        .caller
        .filter(|k| catalog.key(*k).limits.has_budget())
        .map(|_| worst_case(catalog, &plan, body.len() as u64, &facts));
    let routed = Routed {
        plan,
        explain: head.debug.then(|| route.clone()),
        provider_limits: head.provider_limits,
        free,
        generation_id: head
            .request_id
            .as_deref()
            .filter(|id| id.len() <= MAX_REQUEST_ID && id.iter().all(|b| b.is_ascii_graphic()))
            .map(|id| format!("gen-{}", String::from_utf8_lossy(id))),
        requested_model: req.requested_model().to_string(),
        session,
        caller: head.caller,
    };
    Ok(BodyDecision { body: new_body, filter_state, remove, set, routed, stream: req.stream, route, reserve })
}

/// The model a body asks for (`model`, else the first of `models`), for accounting requests that fail
/// before a plan exists; empty when the body does not say.
pub fn requested_model(body: &[u8]) -> String {
    ChatRequest::parse(body).map(|r| r.requested_model().to_string()).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests;
