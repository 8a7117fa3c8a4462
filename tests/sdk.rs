//! The unmodified OpenAI Python SDK against the router, for each provider API (OpenAI, Anthropic's
//! Messages, Gemini's generateContent). tests/sdk/openai_sdk.py drives one router through the SDK
//! (pinned in scripts/lib/common.sh, installed by scripts/test into .venv/sdk) and prints what the SDK
//! parsed, one JSON line per case; the assertions are here.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use common::router::{three_apis, CLIENT_KEY};
use llm_router_testkit::mock::Behavior;
use serde_json::{json, Value};

const PROVIDERS: [&str; 3] = ["oai", "ant", "gem"];

/// `usage.cost` of the mocks' 11 prompt and 7 completion tokens at each endpoint's prices (as in
/// tests/native_providers.rs).
fn cost(p: &str) -> f64 {
    match p {
        "oai" => 0.000025, // 11 × 1 + 7 × 2
        "ant" => 0.000138, // 11 × 3 + 7 × 15
        _ => 0.0000335,    // 11 × 0.5 + 7 × 4
    }
}

/// The pinned SDK version: `OPENAI_SDK_VERSION=` in scripts/lib/common.sh.
fn pinned_version(root: &Path) -> String {
    let common = std::fs::read_to_string(root.join("scripts/lib/common.sh")).unwrap();
    common
        .lines()
        .find_map(|l| l.strip_prefix("OPENAI_SDK_VERSION="))
        .expect("OPENAI_SDK_VERSION= in scripts/lib/common.sh")
        .trim()
        .to_string()
}

/// The venv's python with the SDK: `$LLM_ROUTER_SDK_PYTHON`, else `<repo>/.venv/sdk/bin/python`. Panics
/// (the test fails, it never skips) if neither imports `openai`.
fn sdk_python(root: &Path) -> PathBuf {
    let hint = "run the tests through scripts/test, which installs the OpenAI Python SDK into .venv/sdk \
                and sets LLM_ROUTER_SDK_PYTHON (ensure_openai_sdk in scripts/lib/common.sh)";
    let python = match std::env::var_os("LLM_ROUTER_SDK_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => root.join(".venv/sdk/bin/python"),
    };
    match Command::new(&python).args(["-c", "import openai"]).output() {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} cannot import openai ({}): {hint}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("{}: {e}: {hint}", python.display()),
    }
}

/// The script, running: phases go to its stdin, its JSON lines come back.
struct Sdk {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
}

impl Sdk {
    fn start(port: u16) -> Sdk {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = sdk_python(&root);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/openai_sdk.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--port", &port.to_string()])
            .env("LLM_ROUTER_SDK_KEY", CLIENT_KEY)
            // Loopback only, whatever proxy the environment names; and no OpenAI settings of the user's.
            .env("NO_PROXY", "127.0.0.1")
            .env("no_proxy", "127.0.0.1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_ORG_ID")
            .env_remove("OPENAI_PROJECT_ID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} {}: {e}", python.display(), script.display()));
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut sdk = Sdk { child, stdin, stdout, stderr: Some(stderr) };
        let hello = sdk.line();
        let Some(version) = hello["sdk"].as_str() else { sdk.fail(&format!("not a hello: {hello}")) };
        assert_eq!(version, pinned_version(&root), "the SDK in {} is not the pinned one", python.display());
        sdk
    }

    /// The script's next line, parsed.
    fn line(&mut self) -> Value {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => self.fail("the script ended early"),
            Ok(_) => serde_json::from_str(&line).unwrap_or_else(|e| self.fail(&format!("{e}: {line}"))),
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// Panics with `why` and the script's stderr (after ending it).
    fn fail(&mut self, why: &str) -> ! {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        panic!("tests/sdk/openai_sdk.py: {why}\n--- its stderr:\n{stderr}");
    }

    /// Runs `phase`: its cases by (case, provider).
    fn phase(&mut self, phase: &str) -> Cases {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{phase}").and_then(|()| stdin.flush()).unwrap();
        let mut cases = BTreeMap::new();
        loop {
            let line = self.line();
            if line["done"] == true {
                assert_eq!(line["phase"], phase);
                return Cases { phase: phase.into(), cases, seen: RefCell::default() };
            }
            assert_eq!(line["phase"], phase, "{line}");
            let key =
                (line["case"].as_str().unwrap().to_string(), line["provider"].as_str().map(String::from));
            assert!(cases.insert(key, line).is_none(), "{phase}: a case twice");
        }
    }
}

impl Drop for Sdk {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the script ends, once its phase is over
        if std::thread::panicking() {
            let _ = self.child.kill(); // mid-phase: nobody reads its lines any more
        }
        let _ = self.child.wait();
    }
}

type Case = (String, Option<String>);

/// A phase's lines, by (case, provider); those an assertion looked at.
struct Cases {
    phase: String,
    cases: BTreeMap<Case, Value>,
    seen: RefCell<BTreeSet<Case>>,
}

impl Cases {
    /// A case the SDK got through: what it parsed.
    fn ok(&self, case: &str, p: Option<&str>) -> &Value {
        let v = self.any(case, p);
        assert_eq!(v["ok"], true, "{}/{case}/{p:?}: the SDK raised:\n{:#}", self.phase, v);
        v
    }

    /// A case the SDK raised on: the exception.
    fn raised(&self, case: &str, p: Option<&str>) -> &Value {
        let v = self.any(case, p);
        assert_eq!(
            v["ok"], false,
            "{}/{case}/{p:?}: expected an exception, the SDK parsed:\n{:#}",
            self.phase, v
        );
        &v["exception"]
    }

    fn any(&self, case: &str, p: Option<&str>) -> &Value {
        let key = (case.to_string(), p.map(String::from));
        self.seen.borrow_mut().insert(key.clone());
        self.cases
            .get(&key)
            .unwrap_or_else(|| panic!("{}: no case {case}/{p:?} in {:#?}", self.phase, self.cases.keys()))
    }

    /// Runs the phase's assertions, then checks that they looked at every case the script ran.
    fn check(self, assertions: fn(&Cases)) {
        assertions(&self);
        let unchecked: Vec<&Case> = self.cases.keys().filter(|k| !self.seen.borrow().contains(*k)).collect();
        assert!(unchecked.is_empty(), "{}: cases nothing asserted on: {unchecked:?}", self.phase);
    }
}

/// `Provider OAI` etc.: the catalog's display name, which the router puts in `provider`.
fn display(p: &str) -> String {
    format!("Provider {}", p.to_uppercase())
}

/// The usage every answer carries: the mocks' tokens and the endpoint's cost.
fn usage(p: &str) -> Value {
    json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "cost": cost(p)})
}

/// The tool calls expected: with `tools`, the native mocks call the first (the OpenAI mock answers text
/// only, tools or not). `call` is the first call parsed, for its id (the provider's or the router's).
fn tool_calls(p: &str, tools: bool, call: &Value) -> Value {
    if !tools || p == "oai" {
        return json!([]);
    }
    let id = call["id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "{p}: a tool call without an id: {call}");
    json!([{"id": id, "type": "function", "name": "lookup", "arguments": r#"{"x":1}"#}])
}

fn finish(p: &str, tools: bool) -> &'static str {
    if tools && p != "oai" {
        "tool_calls"
    } else {
        "stop"
    }
}

/// A completion as the SDK parsed it: a `ChatCompletion` with OpenRouter's `provider` and `usage.cost`
/// among its extra fields.
fn assert_completion(p: &str, v: &Value, tools: bool) {
    let native_finish = match (p, tools) {
        ("oai", _) => Value::Null,
        ("ant", false) => json!("end_turn"),
        ("ant", true) => json!("tool_use"),
        _ => json!("STOP"),
    };
    assert_eq!(
        (&v["type"], &v["object"], &v["model"], &v["created_is_int"], &v["choices"], &v["role"]),
        (
            &json!("ChatCompletion"),
            &json!("chat.completion"),
            &json!("test/m"),
            &json!(true),
            &json!(1),
            &json!("assistant")
        ),
        "{p}: {v:#}"
    );
    assert_eq!(v["content"], format!("Hello from {p}"), "{p}: {v:#}");
    assert_eq!(v["tool_calls"], tool_calls(p, tools, &v["tool_calls"][0]), "{p}: {v:#}");
    assert_eq!(v["finish_reason"], finish(p, tools), "{p}: {v:#}");
    assert_eq!(v["native_finish_reason"], native_finish, "{p}: {v:#}");
    assert_eq!(v["provider_name"], display(p), "{p}: {v:#}");
    assert_eq!(v["usage"], usage(p), "{p}: {v:#}");
}

/// A stream as the SDK parsed it, chunk by chunk: the text and tool calls rebuilt, one finish reason,
/// usage on the last chunk only (no choices), the iterator ended by `[DONE]` and the response closed.
fn assert_stream(p: &str, v: &Value, tools: bool) {
    assert_eq!(v["text"], format!("Hello from {p}"), "{p}: {v:#}");
    assert_eq!(v["tool_calls"], tool_calls(p, tools, &v["tool_calls"][0]), "{p}: {v:#}");
    assert_eq!(v["finish_reasons"], json!([finish(p, tools)]), "{p}: {v:#}");
    let mut last_usage = usage(p);
    last_usage["choices"] = json!(0);
    last_usage["chunk"] = v["chunks"].clone();
    assert_eq!(v["usages"], json!([last_usage]), "{p}: one usage chunk, the last: {v:#}");
    assert_eq!((&v["ids"], &v["models"]), (&json!(1), &json!(["test/m"])), "{p}: {v:#}");
    assert_eq!((&v["done_last"], &v["closed"]), (&json!(true), &json!(true)), "{p}: {v:#}");
}

/// `chat.completions.stream()`: the SDK's accumulated final completion, the strict tool's arguments
/// parsed by the SDK.
fn assert_stream_helper(p: &str, v: &Value) {
    assert_eq!(v["content"], format!("Hello from {p}"), "{p}: {v:#}");
    assert_eq!(v["tool_calls"], tool_calls(p, true, &v["tool_calls"][0]), "{p}: {v:#}");
    let parsed = if p == "oai" { json!([]) } else { json!([{"x": 1}]) };
    assert_eq!(v["parsed_arguments"], parsed, "{p}: {v:#}");
    assert_eq!(v["finish_reason"], finish(p, true), "{p}: {v:#}");
    assert_eq!(v["usage"], usage(p), "{p}: {v:#}");
    let events: Vec<&str> = v["events"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(events.contains(&"content.done"), "{p}: {v:#}");
    assert_eq!(events.contains(&"tool_calls.function.arguments.done"), p != "oai", "{p}: {v:#}");
}

/// An HTTP error status as the SDK raised it: `class` (an `APIStatusError`) with the router's status and
/// OpenRouter's error body (`code`, `message`, `metadata.error_type`), its message in the exception's.
fn assert_status_error(e: &Value, class: &str, status: u16, message: &str, error_type: &str) {
    assert_eq!(
        (&e["type"], &e["module"], &e["status_error"], &e["status"]),
        (&json!(class), &json!("openai"), &json!(true), &json!(status)),
        "{e:#}"
    );
    assert_eq!(
        e["body"],
        json!({"code": status, "message": message, "metadata": {"error_type": error_type}}),
        "{e:#}"
    );
    assert_eq!(e["message"], format!("Error code: {status} - {message}"), "{e:#}");
    assert_eq!(e["code"], status.to_string(), "{e:#}");
}

/// An error event in a 200 stream as the SDK raised it: a plain `openai.APIError` (not a status error)
/// whose message is the event's `error.message` and whose body is its `error` object.
fn assert_stream_error(e: &Value, body: Value) {
    assert_eq!(
        (&e["type"], &e["module"], &e["api_error"], &e["status_error"]),
        (&json!("APIError"), &json!("openai"), &json!(true), &json!(false)),
        "{e:#}"
    );
    assert_eq!(e["message"], body["message"], "{e:#}");
    assert_eq!(e["body"], body, "{e:#}");
}

/// Healthy providers: every answer parsed, streamed or not, with tools, through `.stream()`; the
/// router's refusals as the SDK's typed errors.
fn healthy(c: &Cases) {
    for p in PROVIDERS {
        assert_completion(p, c.ok("completion", Some(p)), false);
        assert_completion(p, c.ok("tools", Some(p)), true);
        assert_stream(p, c.ok("stream", Some(p)), false);
        assert_stream(p, c.ok("tools_stream", Some(p)), true);
        assert_stream_helper(p, c.ok("stream_helper", Some(p)));
    }
    // `n: 2` with only Anthropic allowed: refused before any provider, before the stream too.
    for case in ["refused", "refused_stream"] {
        let message = "\"n\" greater than 1 is not supported by this provider";
        assert_status_error(c.raised(case, Some("ant")), "BadRequestError", 400, message, "invalid_request");
    }
    assert_status_error(
        c.raised("wrong_key", Some("oai")),
        "AuthenticationError",
        401,
        "Invalid API key",
        "authentication",
    );

    // /v1/models is OpenRouter's list: the default client reads it, ids and all...
    let models = c.ok("models", None);
    assert_eq!(models["ids"], json!(["test/m"]), "{models:#}");
    // ...but it has neither OpenAI's `object` ("list", and "model" on each) nor `owned_by`, required in
    // the SDK's `SyncPage[Model]`: the strict client rejects it for exactly those three fields. (A known
    // difference, as OpenRouter's own list; when the router adds them, this case parses.)
    let strict = c.raised("models_strict", None);
    assert_eq!(strict["type"], "APIResponseValidationError", "{strict:#}");
    let cause = strict["cause"].as_str().unwrap();
    assert!(cause.starts_with("ValidationError: 3 validation errors for SyncPage[Model]"), "{cause}");
    for field in ["\ndata.0.object\n", "\ndata.0.owned_by\n", "\nobject\n"] {
        assert!(cause.contains(field), "{field:?} in {cause}");
    }
}

/// Streams that fail after their first text: the SDK yields the text, then raises `openai.APIError` on
/// the error chunk (`_streaming.py`: a chunk with an `error` key raises, whatever else it holds).
fn mid_stream_error(c: &Cases) {
    for p in PROVIDERS {
        let e = c.raised("stream", Some(p));
        let line = c.any("stream", Some(p));
        assert_eq!(line["partial"]["text"], "Hello ", "{p}: the text before the error: {line:#}");
        if p == "oai" {
            // The OpenAI provider's own error event, passed on (with the router's model): the SDK raises
            // on it and never reads the typed error chunk the router sends after it.
            assert_stream_error(e, json!({"message": "Overloaded", "code": 502}));
            continue;
        }
        // Anthropic's and Gemini's error events, as OpenRouter's typed error chunk, the stream's last.
        let (code, native, error_type) = match p {
            "ant" => (529, "overloaded_error", "provider_overloaded"),
            _ => (503, "UNAVAILABLE", "provider_unavailable"),
        };
        let message = format!("The provider failed mid-stream ({native})");
        assert_stream_error(
            e,
            json!({"code": code, "message": message, "metadata": {"error_type": error_type}}),
        );
        let raw = line["raw"].as_str().unwrap();
        assert!(raw.trim_end().ends_with(r#""finish_reason":"error"}]}"#), "{p}: {raw}");
    }
}

/// Streams that fail before any content: Anthropic and Gemini are failed attempts (no fallback allowed:
/// the router's 502), an OpenAI provider's error event is passed on in its 200 stream.
fn early_stream_error(c: &Cases) {
    let e = c.raised("stream", Some("oai"));
    let line = c.any("stream", Some("oai"));
    assert_eq!(line["partial"], json!({}), "no chunk before the error: {line:#}");
    assert_stream_error(e, json!({"message": "Overloaded", "code": 502}));
    for (p, status) in [("ant", 529), ("gem", 503)] {
        let message = format!("{} failed (status {status}) and no other provider could serve", display(p));
        let e = c.raised("stream", Some(p));
        assert_status_error(e, "InternalServerError", 502, &message, "provider_unavailable");
    }
}

/// Providers answering an error status: the SDK's class for the router's status, streamed or not.
fn provider_status(c: &Cases) {
    for case in ["completion", "stream"] {
        let e = c.raised(case, Some("oai"));
        assert_status_error(
            e,
            "RateLimitError",
            429,
            "Provider OAI is rate limited; retry later",
            "rate_limit_exceeded",
        );
        let e = c.raised(case, Some("ant"));
        assert_status_error(
            e,
            "BadRequestError",
            400,
            "Provider ANT: max_tokens: too large",
            "invalid_request",
        );
        let e = c.raised(case, Some("gem"));
        let message = "Provider GEM failed (status 503) and no other provider could serve";
        assert_status_error(e, "InternalServerError", 502, message, "provider_unavailable");
    }
}

fn status(code: u16, body: &str) -> Behavior {
    Behavior::Status { code, headers: vec![], body: body.into() }
}

/// One router, one run of the script; the mocks' behaviour changes between its phases.
#[test]
fn the_openai_python_sdk_parses_every_answer_of_the_three_apis() {
    let r = three_apis();
    let mut sdk = Sdk::start(r.envoy.port);
    let set = |oai: Behavior, ant: Behavior, gem: Behavior| {
        r.mock("oai").set_behavior(oai);
        r.mock("ant").set_behavior(ant);
        r.mock("gem").set_behavior(gem);
    };
    sdk.phase("ok").check(healthy);

    // After the first text chunk (Anthropic's 4th event is its first text delta).
    let after = |n| Behavior::StreamError { after_events: n };
    set(after(1), after(4), after(1));
    sdk.phase("mid_stream_error").check(mid_stream_error);
    // Before any content (Anthropic's after `message_start`).
    set(after(0), after(1), after(0));
    sdk.phase("early_stream_error").check(early_stream_error);

    set(
        status(429, r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}"#),
        status(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#,
        ),
        status(503, r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#),
    );
    sdk.phase("provider_status").check(provider_status);
}
