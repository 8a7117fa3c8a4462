//! The downstream role's decisions, as data: what to do with a client's request headers, its body, and
//! the final response. The shell only carries these out.

use crate::auth::{authenticate, Caller};
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::plan::{slot_key, slot_value, Candidate, PlanRecord};
use crate::request::{ChatRequest, Rewritten};
use crate::response::Served;
use crate::select::{route, Inputs, ProviderHealth, Route};
use crate::upstream::provider_headers;

/// Request headers as the host gives them: lowercase names, raw byte values.
pub type Headers = [(String, Vec<u8>)];

/// What to do after the request headers.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadVerdict {
    /// Answer now with this status, headers and body (errors, `GET /models`).
    Reply(Reply),
    /// A chat completion: wait for the body.
    Chat(ChatHead),
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
    /// The authenticated client key.
    pub caller: Caller,
    /// Client headers that must not reach a provider or steer Envoy (dropped from the forwarded map).
    pub remove: Vec<String>,
    /// Header `x-session-id`.
    pub session_header: Option<Vec<u8>>,
    /// Header `x-request-id` (Envoy sets one when the client did not).
    pub request_id: Option<Vec<u8>>,
    /// `x-llm-router-debug: 1` or `x-openrouter-metadata: enabled`: explain the route in the response.
    pub debug: bool,
    /// The calling app (metric label), see `accounting::app_of`.
    pub app: String,
}

/// Client headers carrying the client's own credentials: never forwarded.
const CLIENT_CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// Decides on the request headers: routes by method and path, checks content type, size and key.
pub fn on_request_headers(catalog: &Catalog, headers: &Headers, end_of_stream: bool) -> HeadVerdict {
    match check_head(catalog, headers, end_of_stream) {
        Ok(v) => v,
        Err(e) => HeadVerdict::Reply(e.into()),
    }
}

fn check_head(catalog: &Catalog, headers: &Headers, end_of_stream: bool) -> Result<HeadVerdict, ApiError> {
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
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
        b"/v1/chat/completions" => {
            if method != b"POST" {
                return Err(ApiError::MethodNotAllowed("Use POST for /chat/completions".into()));
            }
        }
        _ => {
            return Err(ApiError::NotFound(
                "Not found: this router serves /v1/chat/completions and /v1/models".into(),
            ))
        }
    }
    let caller = authenticate(catalog, header("authorization"))?;
    let content_type = header("content-type").unwrap_or_default();
    let media_type = content_type.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
    if !media_type.eq_ignore_ascii_case(b"application/json") {
        return Err(ApiError::InvalidRequest("Content-Type must be application/json".into()));
    }
    if let Some(len) = header("content-length") {
        let len = std::str::from_utf8(len).ok().and_then(|s| s.trim().parse::<u64>().ok());
        match len {
            Some(n) if n > catalog.routing.max_request_bytes => return Err(too_large(catalog)),
            Some(_) => {}
            None => return Err(ApiError::InvalidRequest("invalid Content-Length".into())),
        }
    }
    if end_of_stream {
        return Err(ApiError::InvalidRequest("the request has no body".into()));
    }
    let remove = headers
        .iter()
        .map(|(n, _)| n)
        .filter(|n| CLIENT_CREDENTIAL_HEADERS.contains(&n.as_str()) || is_routing_header(n))
        .cloned()
        .collect();
    let debug = header("x-llm-router-debug").is_some_and(|v| v.trim_ascii() == b"1")
        || header("x-openrouter-metadata").is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"enabled"));
    Ok(HeadVerdict::Chat(ChatHead {
        caller,
        remove,
        session_header: header("x-session-id").map(<[u8]>::to_vec),
        request_id: header("x-request-id").map(<[u8]>::to_vec),
        debug,
        app: crate::accounting::app_of(
            catalog,
            header("x-openrouter-title").or(header("x-title")),
            header("http-referer"),
        ),
    }))
}

/// Headers that steer Envoy or our filter: a client must never set them.
pub fn is_routing_header(name: &str) -> bool {
    name.starts_with("x-envoy-") || name.starts_with("x-llm-")
}

/// The 413 for a body over `routing.max_request_bytes`.
pub fn too_large(catalog: &Catalog) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "Request body too large: the limit is {} bytes",
        catalog.routing.max_request_bytes
    ))
}

/// Everything the shell does once the body is complete.
#[derive(Debug, PartialEq)]
pub struct BodyDecision {
    /// The body the providers receive (slot 0's model name spliced in), as an edit of the client's.
    pub body: Rewritten,
    /// Filter-state values: one per slot for the route matcher, slot 0's carrying the plan record.
    pub filter_state: Vec<(String, String)>,
    /// Client request headers to remove: its credentials and routing headers (those `set` does not
    /// replace anyway).
    pub remove: Vec<String>,
    /// Headers the router sets (replacing the client's): slot 0's provider headers (host, path, key,
    /// content-length), the retry count and the per-try timeout. One host call per header: measured in
    /// Envoy, a few single writes cost less than rewriting the whole map.
    pub set: Vec<(String, Vec<u8>)>,
    /// What the response phase needs to know about the decision.
    pub routed: Routed,
    /// The client asked for a stream.
    pub stream: bool,
    /// How the route was chosen, for the account (always; `routed.explain` only on request).
    pub route: String,
}

/// The decision as the response phase sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routed {
    /// The plan: attempt k+1 was slot k.
    pub plan: Vec<Candidate>,
    /// The explanation, when the client asked for it (`x-llm-route`).
    pub explain: Option<String>,
    /// `x-generation-id`: ours, from the request id (response ids keep the provider's).
    pub generation_id: Option<String>,
    /// The model as the client asked for it.
    pub requested_model: String,
    /// The session key's short hash, for the account.
    pub session: Option<String>,
}

impl Routed {
    /// The slot that served, from Envoy's attempt count.
    pub fn served(&self, attempts: Option<u64>) -> Option<Candidate> {
        let k = (attempts? as usize).checked_sub(1)?;
        self.plan.get(k).copied()
    }
}

/// How the shell treats a forwarded response's body.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyMode {
    /// Leave it alone (errors we pass, local replies, unknown content).
    Pass,
    /// A chat completion: buffered, rewritten, and its cost put in `x-llm-cost-usd`.
    Completion(Served),
    /// An SSE stream: rewritten event by event.
    Stream(Served),
}

/// Decides what happens to the body of a response that is forwarded.
pub fn body_mode(
    catalog: &Catalog,
    status: u16,
    content_type: &[u8],
    origin: &Origin,
    routed: &Routed,
) -> BodyMode {
    let Some(c) =
        routed.served(origin.attempts).filter(|_| origin.via_upstream && (200..300).contains(&status))
    else {
        return BodyMode::Pass;
    };
    let model = &catalog.models[c.model];
    let endpoint = &model.endpoints[c.endpoint];
    let served = Served {
        model_json: model.id_json.clone(),
        provider_json: catalog.providers[endpoint.provider].display_json.clone(),
        pricing: endpoint.pricing,
    };
    let media = content_type.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
    if media.eq_ignore_ascii_case(b"text/event-stream") {
        BodyMode::Stream(served)
    } else if media.eq_ignore_ascii_case(b"application/json") {
        BodyMode::Completion(served)
    } else {
        BodyMode::Pass
    }
}

/// Parses the complete body and decides the plan (`health` is the health memory, by provider slug).
pub fn on_request_body(
    catalog: &Catalog,
    body: &[u8],
    head: &ChatHead,
    health: &dyn Fn(&str) -> ProviderHealth,
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
    let Route { plan, explain, session } = route(catalog, &inputs)?;
    let first = plan[0];
    let first_model = &catalog.models[first.model].endpoints[first.endpoint].model_json;
    let new_body = req.rewrite_prefix(first_model, req.stream);
    let record = PlanRecord::new(catalog, &plan, new_body.len, new_body.model_range.clone());
    let encoded = record.encode();
    let filter_state: Vec<(String, String)> = record
        .slots
        .iter()
        .enumerate()
        .map(|(k, (provider, _))| {
            (slot_key(k).into_owned(), slot_value(provider, (k == 0).then_some(encoded.as_str())))
        })
        .collect();
    let timeout =
        if req.stream { catalog.routing.first_byte_timeout_ms } else { catalog.routing.response_timeout_ms };
    // Slot 0's provider headers go on now, so the first attempt needs no work in the upstream role.
    let first_provider = &catalog.providers[catalog.models[first.model].endpoints[first.endpoint].provider];
    let mut set = provider_headers(first_provider, new_body.len);
    set.push(("x-envoy-max-retries".into(), (plan.len() - 1).to_string().into_bytes()));
    set.push(("x-envoy-upstream-rq-per-try-timeout-ms".into(), timeout.to_string().into_bytes()));
    let remove = head.remove.iter().filter(|n| !set.iter().any(|(s, _)| s == *n)).cloned().collect();
    let routed = Routed {
        plan,
        explain: head.debug.then(|| explain.clone()),
        generation_id: head
            .request_id
            .as_deref()
            .filter(|id| id.iter().all(|b| b.is_ascii_graphic()))
            .map(|id| format!("gen-{}", String::from_utf8_lossy(id))),
        requested_model: req.requested_model().to_string(),
        session,
    };
    Ok(BodyDecision { body: new_body, filter_state, remove, set, routed, stream: req.stream, route: explain })
}

/// The model a body asks for (`model`, else the first of `models`), for accounting requests that fail
/// before a plan exists; empty when the body does not say.
pub fn requested_model(body: &[u8]) -> String {
    ChatRequest::parse(body).map(|r| r.requested_model().to_string()).unwrap_or_default()
}

/// Where a response came from, as far as the shell could tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The response came from a provider (`response.code_details` is `via_upstream`).
    pub via_upstream: bool,
    /// Attempts made: the response's `x-envoy-attempt-count` ([`attempts_of`]), else
    /// `upstream.request_attempt_count`. The plan says which provider the last one went to.
    pub attempts: Option<u64>,
    /// `upstream.transport_failure_reason` (local replies after a failed connection).
    pub transport_failure: Option<String>,
}

/// What to do with the final response's headers.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseVerdict {
    /// Send on with exactly these headers (the provider's, allowlisted, plus ours).
    Forward(Vec<(String, Vec<u8>)>),
    /// Replace the response with this error once the provider's body is complete (`error_reply`).
    Replace { provider: String, status: u16, retry_after: Option<u64> },
}

/// Decides on the final response headers.
pub fn on_response_headers(
    catalog: &Catalog,
    headers: &Headers,
    origin: &Origin,
    routed: &Routed,
) -> ResponseVerdict {
    let status = response_status(headers);
    let provider = routed
        .served(origin.attempts)
        .map(|c| &catalog.providers[catalog.models[c.model].endpoints[c.endpoint].provider]);
    let provider_name = provider.map_or_else(|| "the provider".to_string(), |p| p.display_name.clone());
    let tls_failure = origin
        .transport_failure
        .as_deref()
        .is_some_and(|r| r.contains("TLS") || r.contains("CERTIFICATE") || r.contains("SSL"));
    if (origin.via_upstream && (status == 429 || status >= 400))
        || (!origin.via_upstream && status == 503 && tls_failure)
    {
        let retry_after = headers
            .iter()
            .find(|(n, _)| n == "retry-after")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        return ResponseVerdict::Replace {
            provider: provider_name,
            status: if origin.via_upstream { status } else { 0 },
            retry_after,
        };
    }
    let mut out: Vec<(String, Vec<u8>)> =
        headers.iter().filter(|(n, _)| forwardable(n, origin.via_upstream)).cloned().collect();
    if let Some(p) = provider {
        out.push(("x-llm-provider".into(), p.name.clone().into_bytes()));
    }
    if let Some(n) = origin.attempts {
        out.push(("x-llm-attempts".into(), n.to_string().into_bytes()));
        if let Some(c) = routed.served(Some(n)) {
            out.push(("x-llm-model".into(), catalog.models[c.model].id.clone().into_bytes()));
        }
    }
    if let Some(explain) = &routed.explain {
        out.push(("x-llm-route".into(), explain.clone().into_bytes()));
    }
    if let Some(id) = &routed.generation_id {
        out.push(("x-generation-id".into(), id.clone().into_bytes()));
    }
    ResponseVerdict::Forward(out)
}

/// The `error_type` of a reply Envoy generated itself (as our local_reply_config words it).
pub fn envoy_error_type(status: u16) -> &'static str {
    match status {
        408 | 504 => "timeout",
        413 => "payload_too_large",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request",
        _ => "provider_unavailable",
    }
}

/// The provider a response proves healthy: it answered 2xx itself. Its health record, if any, is cleared
/// (the logger, filtered to failed attempts, never sees a clean success).
pub fn recovered_provider<'c>(
    catalog: &'c Catalog,
    status: u16,
    origin: &Origin,
    routed: &Routed,
) -> Option<&'c str> {
    let c = routed.served(origin.attempts).filter(|_| origin.via_upstream && (200..300).contains(&status))?;
    Some(&catalog.providers[catalog.models[c.model].endpoints[c.endpoint].provider].name)
}

/// The attempt count Envoy puts on the response (`include_attempt_count_in_response`); `None` when absent.
pub fn attempts_of(headers: &Headers) -> Option<u64> {
    headers
        .iter()
        .find(|(n, _)| n == ATTEMPT_COUNT)
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
}

/// Envoy's attempt-count header, on requests to providers and on responses: never shown to clients.
const ATTEMPT_COUNT: &str = "x-envoy-attempt-count";

/// The `:status` of a response header map (0 when absent or malformed).
pub fn response_status(headers: &Headers) -> u16 {
    headers
        .iter()
        .find(|(n, _)| n == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The error that replaces a failed provider response. `status` 0 means no response (TLS failure).
/// `body` is the provider's body, used only for a 4xx the client caused.
pub fn error_reply(provider: &str, status: u16, retry_after: Option<u64>, body: &[u8]) -> ApiError {
    match status {
        0 => ApiError::BadGateway(format!("Could not verify the TLS certificate of {provider}")),
        429 => ApiError::RateLimited {
            message: format!("{provider} is rate limited; retry later"),
            retry_after: retry_after.unwrap_or(1).clamp(1, 3600),
        },
        401 | 403 => {
            ApiError::BadGateway(format!("{provider} refused the router's credentials (status {status})"))
        }
        408 => ApiError::BadGateway(format!("{provider} timed out (status 408)")),
        400..=499 => ApiError::ProviderRejected { status, message: provider_message(provider, status, body) },
        _ => ApiError::BadGateway(format!(
            "{provider} failed (status {status}) and no other provider could serve"
        )),
    }
}

/// The message of a provider's OpenAI-style error body, bounded; a generic one when there is none.
fn provider_message(provider: &str, status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) if !b.error.message.is_empty() => {
            format!("{provider}: {}", truncate(&b.error.message, 1000))
        }
        _ => format!("{provider} rejected the request (status {status})"),
    }
}

fn forwardable(name: &str, via_upstream: bool) -> bool {
    if name == ATTEMPT_COUNT {
        return false;
    }
    if !via_upstream {
        return true; // our own or Envoy's local reply
    }
    name.starts_with(':')
        || matches!(name, "content-type" | "content-length" | "retry-after")
        || name.starts_with("x-ratelimit-")
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
pub(crate) mod tests;
