//! The hostile request corpus (tests/corpus/requests.json): each case as the bytes a client sends.
//! Replayed by tests/hostile.rs and tests/fuzz_corpus.rs, and mixed into the soak's load (tools/bench).

use serde_json::Value;

/// The client secret that stands for `CANARY` in the corpus: no provider and no response may carry it.
pub const CANARY: &str = "sk-canary-client-secret-7f3a";

/// One case, ready to send.
pub struct Case {
    pub name: String,
    /// Extra or replacing headers (`authorization` and `content-type` replace the defaults).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// What the client gets.
    pub status: u16,
    /// Refused by Envoy's codec before the filter runs (not our JSON).
    pub envoy: bool,
}

/// The corpus file.
pub fn load() -> (u64, Vec<Case>) {
    let path = super::envoy::workspace_root().join("tests/corpus/requests.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let limit = doc["limit"].as_u64().expect("limit");
    let cases = doc["cases"].as_array().expect("cases").iter().map(|c| case(c, limit)).collect();
    (limit, cases)
}

/// A JSON string whose characters are all below U+0100, as those bytes; `CANARY` replaced.
fn latin1(s: &str) -> Vec<u8> {
    s.replace("CANARY", CANARY).chars().map(|c| u8::try_from(u32::from(c)).expect("below U+0100")).collect()
}

fn case(c: &Value, limit: u64) -> Case {
    let name = c["name"].as_str().expect("name").to_string();
    let headers = c["headers"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|p| (p[0].as_str().expect("name").to_string(), latin1(p[1].as_str().expect("value"))))
                .collect()
        })
        .unwrap_or_default();
    let body = if let Some(raw) = c["raw"].as_str() {
        raw.as_bytes().to_vec()
    } else if let Some(raw) = c["raw_latin1"].as_str() {
        latin1(raw)
    } else if let Some(body) = c.get("body") {
        body.to_string().replace("CANARY", CANARY).into_bytes()
    } else {
        generate(c["gen"].as_str().expect("body, raw or gen"), limit)
    };
    Case {
        name,
        headers,
        body,
        status: c["status"].as_u64().expect("status") as u16,
        envoy: c["envoy"] == true,
    }
}

/// A generated body: `nest:<depth>`, `members:<count>`, `size:<offset from the limit>`, `huge_model`,
/// `long_session`.
fn generate(spec: &str, limit: u64) -> Vec<u8> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    let n: i64 = arg.parse().unwrap_or(0);
    let body = match kind {
        "nest" => {
            let depth = n as usize;
            format!(r#"{{"model":"test/m","messages":{}{}}}"#, "[".repeat(depth), "]".repeat(depth))
        }
        "members" => {
            let extra: String = (0..n).map(|i| format!(r#","k{i}":0"#)).collect();
            format!(r#"{{"model":"test/m","messages":[]{extra}}}"#)
        }
        "size" => {
            let len = (limit as i64 + n) as usize;
            let base = r#"{"model":"test/m","messages":[{"role":"user","content":"Hi"}],"x":""}"#;
            let pad = "p".repeat(len - base.len());
            let body = base.replace(r#""x":"""#, &format!(r#""x":"{pad}""#));
            assert_eq!(body.len(), len);
            body
        }
        "huge_model" => format!(r#"{{"model":"{}","messages":[]}}"#, "m".repeat(1 << 20)),
        "long_session" => {
            format!(r#"{{"model":"test/m","session_id":"{}","messages":[]}}"#, "s".repeat(100_000))
        }
        other => panic!("unknown generator {other}"),
    };
    body.into_bytes()
}
