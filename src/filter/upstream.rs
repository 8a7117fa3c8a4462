//! The upstream role (inside a provider's cluster, once per attempt) as a state machine: it applies that
//! attempt's headers ([`super::attempt::prepare`]) and either splices the provider's model name into the
//! body the router replays (OpenAI providers, fallback attempts: first attempts there were prepared by the
//! downstream role and never come here) or, for a native provider (every attempt), translates the whole
//! body for its API and holds a streamed answer until it shows content or a failure
//! ([`StreamGate`]), so that a provider failing at the start of a 200 stream is retried like one failing
//! with a status.

use super::attempt::{needs_rewrite, prepare, Translation};
use super::host::{Flow, Host};
use crate::catalog::{Api, Catalog, Provider};
use crate::routing::plan::{record_of_slot, slot_key};
use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use crate::wire::headers::{media_type, status, ATTEMPT_COUNT};
use crate::wire::native::{request_path, translate_request, Gate, ProviderError, StreamGate};
use crate::wire::text::decimal;
use std::ops::Range;
use std::rc::Rc;

/// One attempt's upstream role.
pub struct Upstream {
    /// The VM's catalog (`None` if the downstream role's configuration never arrived).
    catalog: Option<Rc<Catalog>>,
    /// The provider this cluster serves.
    provider: Rc<str>,
    /// Replace this byte range of the replayed body with this model name.
    splice: Option<(Range<usize>, String)>,
    /// Translate the body for this API, once it is complete.
    translate: Option<Translation>,
    /// The body was translated for this API: its answer is the API's.
    translated: Option<Api>,
    /// A streamed answer held until it shows content or a failure.
    gate: Option<StreamGate>,
    /// The answer was replaced by the failure the gate found: what follows of it is dropped.
    failed: bool,
}

impl Upstream {
    /// The role for one attempt to `provider`.
    pub fn new(catalog: Option<Rc<Catalog>>, provider: Rc<str>) -> Self {
        Upstream {
            catalog,
            provider,
            splice: None,
            translate: None,
            translated: None,
            gate: None,
            failed: false,
        }
    }

    /// The catalog's entry of the provider this cluster serves.
    fn cluster_provider(&self) -> Option<&Provider> {
        let c = self.catalog.as_deref()?;
        c.provider_named(&self.provider).map(|p| c.provider(p))
    }

    /// The attempt's request headers: this provider's, or a 500 if the attempt cannot be prepared (it
    /// would go without the right key or model). Held for a native provider: the body's length is known
    /// once it is translated.
    pub fn on_request_headers(&mut self, host: &mut dyn Host) -> Flow {
        let api = self.cluster_provider().map_or(Api::OpenAi, |p| p.api);
        if !needs_rewrite(api, host.request_header(ATTEMPT_COUNT).as_deref()) {
            return Flow::Continue;
        }
        let slot0 = host.filter_state(&slot_key(0)).unwrap_or_default();
        let plan = std::str::from_utf8(&slot0).ok().and_then(record_of_slot).unwrap_or("");
        let headers = host.request_headers();
        let attempt = self.catalog.as_ref().and_then(|c| prepare(c, &self.provider, plan, &headers).ok());
        let Some(a) = attempt else {
            host.warn(&format!("no routing plan for provider {}", self.provider));
            reply(host, ApiError::Internal("Router misconfigured: no routing plan for this request".into()));
            return Flow::Pause;
        };
        for name in &a.remove {
            host.remove_request_header(name);
        }
        for (name, value) in &a.set {
            host.set_request_header(name, value);
        }
        self.splice = a.splice;
        self.translate = a.translate;
        if self.translate.is_some() {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    /// The replayed body: the model splice or the translation, once it is all there (here, or on the
    /// trailers).
    pub fn on_request_body(&mut self, host: &mut dyn Host, size: usize, end_of_stream: bool) -> Flow {
        if self.splice.is_none() && self.translate.is_none() {
            return Flow::Continue;
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        self.rewrite(host, Some(size))
    }

    /// Trailers end a replayed body whose last chunk did not: Envoy re-sends a body that the client ended
    /// with trailers without end-of-stream on its data, so the rewrite happens here.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Flow {
        self.rewrite(host, None)
    }

    /// The attempt's response headers: a native provider's 200 stream is held until the gate decides.
    pub fn on_response_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Flow {
        let Some(api) = self.translated else {
            return Flow::Continue;
        };
        let headers = host.response_headers();
        let content_type = crate::wire::headers::header(&headers, "content-type").unwrap_or_default();
        let streamed = (200..300).contains(&status(&headers))
            && media_type(content_type).eq_ignore_ascii_case(b"text/event-stream");
        if !streamed {
            return Flow::Continue;
        }
        if end_of_stream {
            // A stream that ends before it began: no content, so a failed attempt (retried), not an empty
            // 200 the client would be billed for.
            let e = ProviderError {
                status: 502,
                native_type: String::new(),
                message: "The provider ended the stream before it was complete".into(),
            };
            set_failure_headers(host, &e, 0);
            return Flow::Continue;
        }
        self.gate = StreamGate::new(api);
        if self.gate.is_some() {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    /// A chunk of the attempt's response: fed to the gate while it holds.
    pub fn on_response_body(&mut self, host: &mut dyn Host, size: usize, end_of_stream: bool) -> Flow {
        if self.failed {
            // The router has our error status and may already be trying the next provider: the rest of
            // the failed stream is nobody's.
            host.replace_response_body(size, b"");
            return Flow::Continue;
        }
        let Some(gate) = self.gate.as_mut() else {
            return Flow::Continue;
        };
        // Only what came since the last callback: the held body is not copied again each time.
        let seen = gate.seen();
        let new = host.response_body_from(seen, size.saturating_sub(seen));
        match gate.check(&new, end_of_stream) {
            Gate::Hold => Flow::Pause,
            Gate::Release => {
                self.gate = None;
                Flow::Continue
            }
            Gate::Fail(e) => {
                self.gate = None;
                self.failed = true;
                let body = e.body();
                set_failure_headers(host, &e, body.len());
                host.replace_response_body(size, body.as_bytes());
                Flow::Continue
            }
        }
    }

    /// Trailers end a held stream whose last chunk did not.
    pub fn on_response_trailers(&mut self, host: &mut dyn Host) -> Flow {
        if let Some(seen) = self.gate.as_ref().map(StreamGate::seen) {
            let rest = host.response_body_from(seen, usize::MAX);
            return self.on_response_body(host, seen.saturating_add(rest.len()), true);
        }
        Flow::Continue
    }

    /// Splices the model name into the buffered body or translates it (`size` when the host told it),
    /// once.
    fn rewrite(&mut self, host: &mut dyn Host, size: Option<usize>) -> Flow {
        if let Some(t) = self.translate.take() {
            return self.translate_body(host, size, t);
        }
        let Some((range, model)) = self.splice.take() else {
            return Flow::Continue;
        };
        // Envoy replaces only from offset 0: rewrite the prefix up to the end of the model value.
        let mut prefix = host.request_body(range.end);
        if size.unwrap_or(prefix.len()) < range.end || prefix.len() < range.end {
            // Shorter than the plan says: not the body the plan was made for; leave it alone.
            return Flow::Continue;
        }
        prefix.truncate(range.start);
        prefix.extend_from_slice(model.as_bytes());
        host.replace_request_body_prefix(range.end, &prefix);
        Flow::Continue
    }

    /// Replaces the whole body with its translation for the provider's API, sized exactly (the headers
    /// are still held), and, for Gemini, names the model and method in the path.
    fn translate_body(&mut self, host: &mut dyn Host, size: Option<usize>, t: Translation) -> Flow {
        let body = host.request_body(size.unwrap_or(usize::MAX));
        let translated = ChatRequest::parse(&body).and_then(|req| {
            let out = translate_request(t.api, &req, &t.model, t.max_completion_tokens)?;
            Ok((out, req.stream))
        });
        let (out, stream) = match translated {
            Ok(done) => done,
            Err(e) => {
                // The downstream role checked that the request translates for every API of its plan:
                // only a body changed since then comes here.
                reply(host, e);
                return Flow::Pause;
            }
        };
        host.replace_request_body_prefix(body.len(), &out);
        host.set_request_header("content-length", decimal(out.len() as u64).as_bytes());
        if let Some(p) = self.cluster_provider().filter(|_| t.api == Api::Gemini) {
            host.set_request_header(":path", request_path(p, &t.model, stream).as_bytes());
        }
        self.translated = Some(t.api);
        Flow::Continue
    }
}

/// The held response's headers for a failure the gate found: the error's status (what Envoy's retry
/// policy reads), a JSON body of `length` bytes.
fn set_failure_headers(host: &mut dyn Host, e: &ProviderError, length: usize) {
    let code = decimal(u64::from(e.status));
    let length = decimal(length as u64);
    host.set_response_headers(&[
        (":status", code.as_bytes()),
        ("content-type", b"application/json"),
        ("content-length", length.as_bytes()),
    ]);
}

/// Answers the attempt with our error.
fn reply(host: &mut dyn Host, e: ApiError) {
    let headers = e.headers();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    host.send_reply(e.status(), &headers, e.body().as_bytes());
}
