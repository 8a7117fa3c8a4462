//! The request's `provider` preferences (OpenRouter's `ProviderPreferences`), model variants (`:floor`,
//! `:nitro`, `:free`) and client-key policy floors, as validated data.
//!
//! Every field of OpenRouter's schema is known; `null` anywhere means unset. Anything outside the schema, a
//! wrong type or an unknown enum value is a 400 naming the field (`provider.sort: unknown value "fastest"`),
//! and so is a restriction the catalog cannot honour (`enforce_distillable_text: true`, `sort: "exacto"`,
//! `max_price.audio`, percentiles other than p50): it is refused, never silently ignored.
//!
//! Units: `max_price` is USD per million tokens (`request`: per request, `image`: per image), like the
//! catalog's `pricing`; throughput is tokens per second; latency is converted from OpenRouter's seconds to
//! milliseconds, like the catalog's `latency_ms`.
//!
//! An empty `only` or `quantizations` list, in a request or a key policy, means "no restriction" (SDKs send
//! empty lists, and the catalog contract's example policy has `"only": []`). After [`with_floor`], `Some` of
//! an empty list means that nothing is allowed (the request and the key's policy have nothing in common).

use crate::catalog::fields::{
    boolean, names, non_empty, non_negative_number, object_or_null, Checked, FieldError,
};
use crate::catalog::policy::{data_collection, eq_ci, max_price, names_provider, quantizations};
use crate::catalog::{KeyPolicy, MaxPrice, Provider};
use crate::wire::error::ApiError;
use serde_json::Value;

/// Every field of OpenRouter's `ProviderPreferences`.
const PREFERENCE_FIELDS: &[&str] = &[
    "order",
    "allow_fallbacks",
    "only",
    "ignore",
    "data_collection",
    "zdr",
    "quantizations",
    "require_parameters",
    "enforce_distillable_text",
    "sort",
    "max_price",
    "preferred_min_throughput",
    "preferred_max_latency",
];

/// How to order the candidates instead of the default weighting (`provider.sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Cheapest first.
    Price,
    /// Highest catalog `throughput` first.
    Throughput,
    /// Lowest catalog `latency_ms` first.
    Latency,
}

/// A model id suffix that changes routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `:floor`: sort by price.
    Floor,
    /// `:nitro`: sort by throughput.
    Nitro,
    /// `:free`: only endpoints that charge nothing.
    Free,
}

impl Variant {
    /// The suffix as written after the model id, e.g. `:nitro`.
    pub fn suffix(self) -> &'static str {
        match self {
            Variant::Floor => ":floor",
            Variant::Nitro => ":nitro",
            Variant::Free => ":free",
        }
    }
}

/// The validated `provider` preferences of one request (after [`with_floor`]: also the key's policy).
#[derive(Debug, Clone, PartialEq)]
pub struct Preferences {
    /// Providers to try first, in this order (names as the client wrote them).
    pub order: Vec<String>,
    /// Whether providers outside `order` may serve (default true).
    pub allow_fallbacks: bool,
    /// Only these providers may serve; `None` = no restriction, `Some(empty)` = none may (see the module doc).
    pub only: Option<Vec<String>>,
    /// These providers may not serve.
    pub ignore: Vec<String>,
    /// Explicit ordering (disables weighting).
    pub sort: Option<SortBy>,
    /// Price ceilings.
    pub max_price: MaxPrice,
    /// `data_collection: "deny"`: only providers that do not collect data.
    pub deny_data_collection: bool,
    /// Only zero-data-retention providers.
    pub zdr: bool,
    /// Only endpoints with one of these quantizations (an endpoint without one counts as `unknown`);
    /// `None` = no restriction, `Some(empty)` = none.
    pub quantizations: Option<Vec<String>>,
    /// Only endpoints supporting every parameter the request uses ([`used_parameters`]).
    pub require_parameters: bool,
    /// Prefer endpoints with at least this catalog `throughput` (tokens per second).
    pub preferred_min_throughput: Option<f64>,
    /// Prefer endpoints with at most this catalog `latency_ms` (converted from the request's seconds).
    pub preferred_max_latency_ms: Option<f64>,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            order: Vec::new(),
            allow_fallbacks: true,
            only: None,
            ignore: Vec::new(),
            sort: None,
            max_price: MaxPrice::default(),
            deny_data_collection: false,
            zdr: false,
            quantizations: None,
            require_parameters: false,
            preferred_min_throughput: None,
            preferred_max_latency_ms: None,
        }
    }
}

impl Preferences {
    /// Parses the raw JSON text of the body's `provider` member (`None` when absent). `null` and `{}` give
    /// the defaults. Errors are 400s naming the field, e.g. `provider.sort: unknown value "fastest"`.
    pub fn parse(raw: Option<&str>) -> Result<Preferences, ApiError> {
        let Some(raw) = raw else {
            return Ok(Preferences::default());
        };
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::InvalidRequest(format!("provider: invalid JSON: {e}")))?;
        parse_preferences(&value, "provider").map_err(|e| ApiError::InvalidRequest(e.to_string()))
    }

    /// Whether the default weighting may order the candidates: not when `order` or `sort` is set.
    pub fn weighting_allowed(&self) -> bool {
        self.order.is_empty() && self.sort.is_none()
    }

    /// Whether `only` and `ignore` let this provider serve.
    pub fn allows_provider(&self, provider: &Provider) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|n| names_provider(n, provider)))
            && !self.ignore.iter().any(|n| names_provider(n, provider))
    }

    /// Whether `quantizations` lets an endpoint with this quantization serve (`None` counts as `unknown`;
    /// compared case-insensitively).
    pub fn allows_quantization(&self, quantization: Option<&str>) -> bool {
        let q = quantization.unwrap_or("unknown");
        self.quantizations.as_ref().is_none_or(|list| list.iter().any(|x| x.eq_ignore_ascii_case(q)))
    }

    /// Applies a model variant: `:floor` sorts by price, `:nitro` by throughput, `:free` caps every price at
    /// zero. A `provider.sort` that contradicts the variant is a 400 rather than silently overridden.
    pub fn with_variant(mut self, variant: Variant) -> Result<Preferences, ApiError> {
        let sort = match variant {
            Variant::Floor => SortBy::Price,
            Variant::Nitro => SortBy::Throughput,
            Variant::Free => {
                let zero = MaxPrice {
                    prompt: Some(0.0),
                    completion: Some(0.0),
                    request: Some(0.0),
                    image: Some(0.0),
                };
                self.max_price = self.max_price.min(&zero);
                return Ok(self);
            }
        };
        match self.sort {
            Some(s) if s != sort => Err(ApiError::InvalidRequest(format!(
                "provider.sort: \"{}\" conflicts with the model's {} variant",
                s.name(),
                variant.suffix()
            ))),
            _ => {
                self.sort = Some(sort);
                Ok(self)
            }
        }
    }
}

impl SortBy {
    /// The name as requests spell it.
    pub fn name(self) -> &'static str {
        match self {
            SortBy::Price => "price",
            SortBy::Throughput => "throughput",
            SortBy::Latency => "latency",
        }
    }
}

/// Holds a request's preferences to a key's policy: the request may narrow, never loosen. Data collection
/// is denied if either denies; ZDR if either requires it; `only` is the intersection when both restrict
/// (case-insensitive; empty = nothing allowed), else whichever restricts; `ignore` is the union; each
/// `max_price` field is the minimum; `quantizations` as `only`.
pub fn with_floor(mut request: Preferences, policy: &KeyPolicy) -> Preferences {
    request.deny_data_collection |= policy.deny_data_collection;
    request.zdr |= policy.zdr;
    request.only = intersect(request.only.take(), policy.only.as_ref());
    for name in &policy.ignore {
        if !request.ignore.iter().any(|n| eq_ci(n, name)) {
            request.ignore.push(name.clone());
        }
    }
    request.max_price = request.max_price.min(&policy.max_price);
    request.quantizations = intersect(request.quantizations.take(), policy.quantizations.as_ref());
    request
}

fn intersect(mine: Option<Vec<String>>, floor: Option<&Vec<String>>) -> Option<Vec<String>> {
    match (mine, floor) {
        (Some(mine), Some(floor)) => {
            Some(mine.into_iter().filter(|n| floor.iter().any(|f| eq_ci(n, f))).collect())
        }
        (mine, None) => mine,
        (None, Some(floor)) => Some(floor.clone()),
    }
}

/// Splits a variant suffix (`:floor`, `:nitro`, `:free`, exactly) off a model id; any other suffix stays
/// part of the id, and so does a suffix with nothing before it. Catalog ids may themselves end in such a
/// suffix: look the whole id up first.
pub fn split_variant(model: &str) -> (&str, Option<Variant>) {
    if let Some((base, suffix)) = model.rsplit_once(':') {
        let variant = match suffix {
            "floor" => Variant::Floor,
            "nitro" => Variant::Nitro,
            "free" => Variant::Free,
            _ => return (model, None),
        };
        if !base.is_empty() {
            return (base, Some(variant));
        }
    }
    (model, None)
}

fn parse_preferences(value: &Value, path: &str) -> Checked<Preferences> {
    let mut p = Preferences::default();
    let Some(map) = object_or_null(value, path)? else {
        return Ok(p);
    };
    for (key, v) in map {
        let at = format!("{path}.{key}");
        if !PREFERENCE_FIELDS.contains(&key.as_str()) {
            return Err(FieldError::new(&at, "unknown field"));
        }
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "order" => p.order = names(v, &at)?,
            "allow_fallbacks" => p.allow_fallbacks = boolean(v, &at)?,
            "only" => p.only = non_empty(names(v, &at)?),
            "ignore" => p.ignore = names(v, &at)?,
            "data_collection" => p.deny_data_collection = data_collection(v, &at)?,
            "zdr" => p.zdr = boolean(v, &at)?,
            "quantizations" => p.quantizations = non_empty(quantizations(v, &at)?),
            "require_parameters" => p.require_parameters = boolean(v, &at)?,
            "enforce_distillable_text" => {
                if boolean(v, &at)? {
                    return Err(FieldError::unsupported(
                        &at,
                        "true",
                        "the catalog has no distillation permissions",
                    ));
                }
            }
            "sort" => p.sort = sort(v, &at)?,
            "max_price" => p.max_price = max_price(v, &at)?,
            "preferred_min_throughput" => p.preferred_min_throughput = cutoff(v, &at, "throughput")?,
            "preferred_max_latency" => {
                p.preferred_max_latency_ms = cutoff(v, &at, "latency")?.map(|seconds| seconds * 1000.0)
            }
            _ => return Err(FieldError::new(&at, "unknown field")),
        }
    }
    Ok(p)
}

/// `sort`: a strategy name or `{by, partition}`.
fn sort(v: &Value, path: &str) -> Checked<Option<SortBy>> {
    match v {
        Value::String(s) => sort_value(s, path).map(Some),
        Value::Object(map) => {
            let mut by = None;
            let mut partition_none = false;
            for (key, x) in map {
                let at = format!("{path}.{key}");
                match (key.as_str(), x) {
                    ("by" | "partition", Value::Null) => {}
                    ("by", Value::String(s)) => by = Some(sort_value(s, &at)?),
                    ("partition", Value::String(s)) if s == "model" => {}
                    ("partition", Value::String(s)) if s == "none" => partition_none = true,
                    ("partition", Value::String(s)) => {
                        return Err(FieldError::new(
                            &at,
                            format!("unknown value \"{s}\" (expected \"model\" or \"none\")"),
                        ))
                    }
                    ("by" | "partition", _) => return Err(FieldError::new(&at, "must be a string")),
                    _ => return Err(FieldError::new(&at, "unknown field")),
                }
            }
            if partition_none && by.is_some() {
                return Err(FieldError::unsupported(
                    &format!("{path}.partition"),
                    "\"none\"",
                    "each model's endpoints are sorted on their own; fallback models stay fallbacks",
                ));
            }
            Ok(by)
        }
        _ => Err(FieldError::new(path, "must be a string or an object {by, partition}")),
    }
}

fn sort_value(s: &str, path: &str) -> Checked<SortBy> {
    match s {
        "price" => Ok(SortBy::Price),
        "throughput" => Ok(SortBy::Throughput),
        "latency" => Ok(SortBy::Latency),
        "exacto" => {
            Err(FieldError::unsupported(path, "\"exacto\"", "the catalog has no tool-calling quality data"))
        }
        _ => Err(FieldError::new(
            path,
            format!("unknown value \"{s}\" (expected \"price\", \"throughput\" or \"latency\")"),
        )),
    }
}

/// `preferred_min_throughput` / `preferred_max_latency`: a number (p50) or `{p50, p75, p90, p99}`. The
/// catalog has one typical figure per endpoint, compared with p50; other percentiles are refused.
fn cutoff(v: &Value, path: &str, what: &str) -> Checked<Option<f64>> {
    match v {
        Value::Number(_) => non_negative_number(v, path).map(Some),
        Value::Object(map) => {
            let mut p50 = None;
            for (key, x) in map {
                let at = format!("{path}.{key}");
                match key.as_str() {
                    "p50" | "p75" | "p90" | "p99" if x.is_null() => {}
                    "p50" => p50 = Some(non_negative_number(x, &at)?),
                    "p75" | "p90" | "p99" => {
                        non_negative_number(x, &at)?;
                        return Err(FieldError::unsupported(
                            &at,
                            "a cutoff",
                            &format!(
                                "the catalog has one typical {what} figure per endpoint, compared with p50"
                            ),
                        ));
                    }
                    _ => return Err(FieldError::new(&at, "unknown field")),
                }
            }
            Ok(p50)
        }
        _ => Err(FieldError::new(path, "must be a number or an object {p50, p75, p90, p99}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::policy::parse_key_policy;
    use crate::catalog::Catalog;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const CATALOG: &str = r#"{
      "auth": "none",
      "providers": [
        {"name": "deepinfra", "display_name": "DeepInfra", "endpoint": "https://api.deepinfra.example/v1"},
        {"name": "anthropic-oai", "display_name": "Anthropic", "endpoint": "https://api.anthropic.example/v1"},
        {"name": "plain", "endpoint": "http://plain.local"}
      ],
      "models": [
        {"id": "a/m", "endpoints": [
          {"provider": "deepinfra", "model": "m", "pricing": {"prompt": 0.2, "completion": 0.4, "image": 0.01}}
        ]}
      ]
    }"#;

    fn catalog() -> Catalog {
        Catalog::parse(CATALOG.as_bytes(), None).unwrap()
    }

    fn prefs(json: &str) -> Preferences {
        Preferences::parse(Some(json)).unwrap_or_else(|e| panic!("{json}: {e:?}"))
    }

    fn prefs_err(json: &str) -> String {
        match Preferences::parse(Some(json)) {
            Err(e) => {
                assert_eq!(e.status(), 400, "{json}");
                e.message().to_string()
            }
            Ok(p) => panic!("{json} parsed: {p:?}"),
        }
    }

    fn policy(json: &str) -> KeyPolicy {
        let v: Value = serde_json::from_str(json).unwrap();
        parse_key_policy(&v, "keys[0].policy", &catalog().providers).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn absent_null_and_empty_are_defaults() {
        for raw in [None, Some("null"), Some("{}"), Some(" { } ")] {
            assert_eq!(Preferences::parse(raw).unwrap(), Preferences::default(), "{raw:?}");
        }
        let d = Preferences::default();
        assert!(d.allow_fallbacks && d.weighting_allowed() && d.max_price == MaxPrice::default());
    }

    #[test]
    fn null_in_every_field_is_unset() {
        let all_null =
            PREFERENCE_FIELDS.iter().map(|f| format!("\"{f}\":null")).collect::<Vec<_>>().join(",");
        assert_eq!(prefs(&format!("{{{all_null}}}")), Preferences::default());
        let nested = r#"{"max_price":{"prompt":null,"completion":null,"request":null,"image":null,"audio":null},
            "sort":{"by":null,"partition":null},
            "preferred_max_latency":{"p50":null,"p75":null,"p90":null,"p99":null}}"#;
        assert_eq!(prefs(nested), Preferences::default());
    }

    #[test]
    fn every_field_parses() {
        let p = prefs(
            r#"{"order":["DeepInfra","x"],"allow_fallbacks":false,"only":["deepinfra"],"ignore":["plain"],
            "data_collection":"deny","zdr":true,"quantizations":["fp8","bf16"],"require_parameters":true,
            "enforce_distillable_text":false,"sort":"latency","max_price":{"prompt":"0.6","completion":2,
            "request":"0","image":0.5},"preferred_min_throughput":100,"preferred_max_latency":1.5}"#,
        );
        assert_eq!(
            p,
            Preferences {
                order: vec!["DeepInfra".into(), "x".into()],
                allow_fallbacks: false,
                only: Some(vec!["deepinfra".into()]),
                ignore: vec!["plain".into()],
                sort: Some(SortBy::Latency),
                max_price: MaxPrice {
                    prompt: Some(0.6),
                    completion: Some(2.0),
                    request: Some(0.0),
                    image: Some(0.5)
                },
                deny_data_collection: true,
                zdr: true,
                quantizations: Some(vec!["fp8".into(), "bf16".into()]),
                require_parameters: true,
                preferred_min_throughput: Some(100.0),
                preferred_max_latency_ms: Some(1500.0),
            }
        );
        assert!(!p.weighting_allowed());
    }

    #[test]
    fn accepted_forms() {
        type Check = fn(&Preferences) -> bool;
        let cases: &[(&str, Check)] = &[
            (r#"{"data_collection":"allow"}"#, |p| !p.deny_data_collection),
            (r#"{"only":[]}"#, |p| p.only.is_none()),
            (r#"{"quantizations":[]}"#, |p| p.quantizations.is_none()),
            (r#"{"sort":"price"}"#, |p| p.sort == Some(SortBy::Price)),
            (r#"{"sort":"throughput"}"#, |p| p.sort == Some(SortBy::Throughput)),
            (r#"{"sort":{"by":"throughput","partition":"model"}}"#, |p| p.sort == Some(SortBy::Throughput)),
            (r#"{"sort":{"by":"price"}}"#, |p| p.sort == Some(SortBy::Price)),
            (r#"{"sort":{"partition":"none"}}"#, |p| p.sort.is_none()),
            (r#"{"sort":{}}"#, |p| p.sort.is_none() && p.weighting_allowed()),
            (r#"{"order":["a"]}"#, |p| !p.weighting_allowed()),
            (r#"{"order":[]}"#, |p| p.weighting_allowed()),
            (r#"{"max_price":{"prompt":" 1.25 "}}"#, |p| p.max_price.prompt == Some(1.25)),
            (r#"{"max_price":{"completion":"1e-1"}}"#, |p| p.max_price.completion == Some(0.1)),
            (r#"{"max_price":{}}"#, |p| p.max_price == MaxPrice::default()),
            (r#"{"preferred_max_latency":{"p50":2}}"#, |p| p.preferred_max_latency_ms == Some(2000.0)),
            (r#"{"preferred_max_latency":0.25}"#, |p| p.preferred_max_latency_ms == Some(250.0)),
            (r#"{"preferred_min_throughput":{"p50":50.5}}"#, |p| p.preferred_min_throughput == Some(50.5)),
            (r#"{"preferred_min_throughput":{}}"#, |p| p.preferred_min_throughput.is_none()),
        ];
        for (json, check) in cases {
            assert!(check(&prefs(json)), "{json}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"colour":"red"}"#, "provider.colour: unknown field"),
            (r#"{"colour":null}"#, "provider.colour: unknown field"),
            (r#"[]"#, "provider: must be an object"),
            (r#""price""#, "provider: must be an object"),
            (r#"{"sort":"fastest"}"#, "provider.sort: unknown value \"fastest\""),
            (r#"{"sort":"Price"}"#, "provider.sort: unknown value \"Price\""),
            (r#"{"sort":1}"#, "provider.sort: must be a string or an object"),
            (r#"{"sort":{"by":"fastest"}}"#, "provider.sort.by: unknown value \"fastest\""),
            (r#"{"sort":{"by":1}}"#, "provider.sort.by: must be a string"),
            (r#"{"sort":{"partition":"all"}}"#, "provider.sort.partition: unknown value \"all\""),
            (r#"{"sort":{"by":"price","order":"asc"}}"#, "provider.sort.order: unknown field"),
            (r#"{"zdr":"yes"}"#, "provider.zdr: must be a boolean"),
            (r#"{"allow_fallbacks":1}"#, "provider.allow_fallbacks: must be a boolean"),
            (r#"{"require_parameters":"true"}"#, "provider.require_parameters: must be a boolean"),
            (r#"{"enforce_distillable_text":0}"#, "provider.enforce_distillable_text: must be a boolean"),
            (r#"{"order":"deepinfra"}"#, "provider.order: must be an array"),
            (r#"{"only":["a",2]}"#, "provider.only[1]: must be a string"),
            (r#"{"ignore":[null]}"#, "provider.ignore[0]: must be a string"),
            (r#"{"data_collection":"maybe"}"#, "provider.data_collection: unknown value \"maybe\""),
            (r#"{"data_collection":true}"#, "provider.data_collection: must be \"allow\" or \"deny\""),
            (r#"{"quantizations":"fp8"}"#, "provider.quantizations: must be an array"),
            (r#"{"quantizations":["fp8","fp3"]}"#, "provider.quantizations[1]: unknown value \"fp3\""),
            (r#"{"quantizations":[8]}"#, "provider.quantizations[0]: must be a string"),
            (r#"{"max_price":"1"}"#, "provider.max_price: must be an object"),
            (r#"{"max_price":{"prompt":"-1"}}"#, "provider.max_price.prompt: must not be negative"),
            (r#"{"max_price":{"completion":-0.5}}"#, "provider.max_price.completion: must not be negative"),
            (r#"{"max_price":{"prompt":"cheap"}}"#, "provider.max_price.prompt: cannot parse \"cheap\""),
            (r#"{"max_price":{"prompt":""}}"#, "provider.max_price.prompt: cannot parse"),
            (r#"{"max_price":{"prompt":"NaN"}}"#, "provider.max_price.prompt: cannot parse"),
            (r#"{"max_price":{"request":"inf"}}"#, "provider.max_price.request: cannot parse"),
            (
                r#"{"max_price":{"image":true}}"#,
                "provider.max_price.image: must be a number or a decimal string",
            ),
            (r#"{"max_price":{"video":"1"}}"#, "provider.max_price.video: unknown field"),
            (
                r#"{"preferred_min_throughput":"100"}"#,
                "provider.preferred_min_throughput: must be a number or",
            ),
            (r#"{"preferred_min_throughput":-1}"#, "provider.preferred_min_throughput: must not be negative"),
            (
                r#"{"preferred_max_latency":{"p50":"5"}}"#,
                "provider.preferred_max_latency.p50: must be a number",
            ),
            (r#"{"preferred_max_latency":{"p95":5}}"#, "provider.preferred_max_latency.p95: unknown field"),
        ];
        for (json, want) in cases {
            let got = prefs_err(json);
            assert!(got.starts_with(want), "{json}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn unhonourable_restrictions_are_unsupported() {
        let cases = [
            (r#"{"enforce_distillable_text":true}"#, "provider.enforce_distillable_text:"),
            (r#"{"sort":"exacto"}"#, "provider.sort:"),
            (r#"{"sort":{"by":"exacto"}}"#, "provider.sort.by:"),
            (r#"{"sort":{"by":"price","partition":"none"}}"#, "provider.sort.partition:"),
            (r#"{"max_price":{"audio":"1"}}"#, "provider.max_price.audio:"),
            (r#"{"preferred_max_latency":{"p90":10}}"#, "provider.preferred_max_latency.p90:"),
            (r#"{"preferred_max_latency":{"p50":5,"p90":10}}"#, "provider.preferred_max_latency.p90:"),
            (r#"{"preferred_min_throughput":{"p99":10}}"#, "provider.preferred_min_throughput.p99:"),
            (r#"{"preferred_min_throughput":{"p75":10}}"#, "provider.preferred_min_throughput.p75:"),
        ];
        for (json, field) in cases {
            let got = prefs_err(json);
            assert!(got.starts_with(field) && got.contains("not supported"), "{json}: {got}");
        }
    }

    #[test]
    fn names_match_slug_or_display_name_case_insensitively() {
        let c = catalog();
        let [deepinfra, anthropic, plain] = [&c.providers[0], &c.providers[1], &c.providers[2]];
        let cases = [
            ("deepinfra", deepinfra, true),
            ("DeepInfra", deepinfra, true),
            ("DEEPINFRA", deepinfra, true),
            ("anthropic-oai", anthropic, true),
            ("Anthropic", anthropic, true),
            ("anthropic", anthropic, true),
            ("ANTHROPIC-OAI", anthropic, true),
            ("anthropic", deepinfra, false),
            ("plain", plain, true),
            ("Plain", plain, true),
            ("deep", deepinfra, false),
            ("", plain, false),
            ("nobody", plain, false),
        ];
        for (name, p, want) in cases {
            assert_eq!(names_provider(name, p), want, "{name} vs {}", p.name);
        }
        assert!(eq_ci("Ünïcode", "üNÏCODE") && !eq_ci("ü", "u"));
        // Unicode case folding applies as soon as one side is not ASCII (the Kelvin sign folds to k).
        assert!(eq_ci("K", "\u{212A}") && eq_ci("\u{212A}", "k"));
    }

    #[test]
    fn allows_provider_and_quantization() {
        let c = catalog();
        let p = prefs(r#"{"only":["DeepInfra","anthropic","ghost"],"ignore":["ANTHROPIC-OAI"]}"#);
        let allowed: Vec<bool> = c.providers.iter().map(|x| p.allows_provider(x)).collect();
        assert_eq!(allowed, [true, false, false]);
        assert!(c.providers.iter().all(|x| Preferences::default().allows_provider(x)));
        let nothing = Preferences { only: Some(Vec::new()), ..Preferences::default() };
        assert!(c.providers.iter().all(|x| !nothing.allows_provider(x)));

        let q = prefs(r#"{"quantizations":["fp8","unknown"]}"#);
        assert!(q.allows_quantization(Some("fp8")) && q.allows_quantization(Some("FP8")));
        assert!(q.allows_quantization(None) && !q.allows_quantization(Some("int4")));
        assert!(Preferences::default().allows_quantization(Some("int4")));
        assert!(!prefs(r#"{"quantizations":["fp8"]}"#).allows_quantization(None));
    }

    #[test]
    fn max_price_allows() {
        let pricing = catalog().models[0].endpoints[0].pricing;
        let cases = [
            (MaxPrice::default(), true),
            (MaxPrice { prompt: Some(0.2), completion: Some(0.4), ..MaxPrice::default() }, true),
            (MaxPrice { prompt: Some(0.19), ..MaxPrice::default() }, false),
            (MaxPrice { completion: Some(0.3), ..MaxPrice::default() }, false),
            (MaxPrice { request: Some(0.0), ..MaxPrice::default() }, true),
            (MaxPrice { image: Some(0.001), ..MaxPrice::default() }, false),
            (MaxPrice { image: Some(0.01), ..MaxPrice::default() }, true),
        ];
        for (max, want) in cases {
            assert_eq!(max.allows(&pricing), want, "{max:?}");
        }
    }

    #[test]
    fn variants() {
        let cases = [
            ("a/m:floor", "a/m", Some(Variant::Floor)),
            ("a/m:nitro", "a/m", Some(Variant::Nitro)),
            ("a/m:free", "a/m", Some(Variant::Free)),
            ("a/m:beta", "a/m:beta", None),
            ("a/m:Free", "a/m:Free", None),
            ("a/m", "a/m", None),
            (":free", ":free", None),
            ("a/m:free:nitro", "a/m:free", Some(Variant::Nitro)),
            ("a/m:", "a/m:", None),
        ];
        for (model, base, variant) in cases {
            assert_eq!(split_variant(model), (base, variant), "{model}");
        }
        assert_eq!(Variant::Nitro.suffix(), ":nitro");
    }

    #[test]
    fn with_variant_sets_sort_or_zero_prices() {
        let d = Preferences::default();
        assert_eq!(d.clone().with_variant(Variant::Floor).unwrap().sort, Some(SortBy::Price));
        let nitro = d.clone().with_variant(Variant::Nitro).unwrap();
        assert_eq!(nitro.sort, Some(SortBy::Throughput));
        assert!(!nitro.weighting_allowed());
        let free = prefs(r#"{"max_price":{"prompt":1}}"#).with_variant(Variant::Free).unwrap();
        assert_eq!(
            free.max_price,
            MaxPrice { prompt: Some(0.0), completion: Some(0.0), request: Some(0.0), image: Some(0.0) }
        );
        assert_eq!(free.sort, None);
        assert_eq!(
            prefs(r#"{"sort":"throughput"}"#).with_variant(Variant::Nitro).unwrap().sort,
            Some(SortBy::Throughput)
        );
        let e = prefs(r#"{"sort":"latency"}"#).with_variant(Variant::Floor).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.message().starts_with("provider.sort:") && e.message().contains(":floor"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn key_policy_parses() {
        assert_eq!(policy("null"), KeyPolicy::default());
        assert_eq!(policy("{}"), KeyPolicy::default());
        // The catalog contract's example.
        assert_eq!(
            policy(r#"{"data_collection":"deny","only":[],"ignore":[]}"#),
            KeyPolicy { deny_data_collection: true, ..KeyPolicy::default() }
        );
        let p = policy(
            r#"{"data_collection":"allow","zdr":true,"only":["anthropic","DEEPINFRA"],"ignore":["Plain"],
               "max_price":{"prompt":"0.5","image":1},"quantizations":["fp8"]}"#,
        );
        assert_eq!(
            p,
            KeyPolicy {
                deny_data_collection: false,
                zdr: true,
                only: Some(vec!["anthropic-oai".into(), "Anthropic".into(), "deepinfra".into()]),
                ignore: vec!["plain".into()],
                max_price: MaxPrice { prompt: Some(0.5), image: Some(1.0), ..MaxPrice::default() },
                quantizations: Some(vec!["fp8".into()]),
            }
        );
        assert_eq!(policy(r#"{"zdr":null,"max_price":null}"#), KeyPolicy::default());
    }

    #[test]
    fn key_policy_errors_name_the_field() {
        let providers = catalog().providers;
        let cases = [
            (r#"[]"#, "keys[0].policy", "must be an object"),
            (r#"{"order":["a"]}"#, "keys[0].policy.order", "unknown field"),
            (r#"{"sort":"price"}"#, "keys[0].policy.sort", "unknown field"),
            (
                r#"{"only":["deepinfra","deepinfar"]}"#,
                "keys[0].policy.only[1]",
                "unknown provider \"deepinfar\"",
            ),
            (r#"{"ignore":[1]}"#, "keys[0].policy.ignore[0]", "must be a string"),
            (r#"{"data_collection":"none"}"#, "keys[0].policy.data_collection", "unknown value \"none\""),
            (r#"{"zdr":1}"#, "keys[0].policy.zdr", "must be a boolean"),
            (r#"{"max_price":{"prompt":"x"}}"#, "keys[0].policy.max_price.prompt", "cannot parse"),
            (r#"{"max_price":{"audio":1}}"#, "keys[0].policy.max_price.audio", "a ceiling is not supported"),
            (r#"{"quantizations":["fp9"]}"#, "keys[0].policy.quantizations[0]", "unknown value \"fp9\""),
        ];
        for (json, path, message) in cases {
            let v: Value = serde_json::from_str(json).unwrap();
            let e = parse_key_policy(&v, "keys[0].policy", &providers).unwrap_err();
            assert_eq!(e.path, path, "{json}");
            assert!(e.message.starts_with(message), "{json}: {}", e.message);
        }
    }

    #[test]
    fn floor_narrows_never_loosens() {
        let c = catalog();
        let allowed = |p: &Preferences| c.providers.iter().map(|x| p.allows_provider(x)).collect::<Vec<_>>();

        // Deny and ZDR win from either side.
        let strict = policy(r#"{"data_collection":"deny","zdr":true}"#);
        let f = with_floor(prefs(r#"{"data_collection":"allow","zdr":false}"#), &strict);
        assert!(f.deny_data_collection && f.zdr);
        let f = with_floor(prefs(r#"{"data_collection":"deny","zdr":true}"#), &KeyPolicy::default());
        assert!(f.deny_data_collection && f.zdr);
        assert_eq!(with_floor(prefs("{}"), &KeyPolicy::default()), Preferences::default());

        // only: intersection, matching the request's display name against the policy's slug.
        let key = policy(r#"{"only":["anthropic-oai","plain"]}"#);
        let f = with_floor(prefs(r#"{"only":["Anthropic","DeepInfra"]}"#), &key);
        assert_eq!(f.only, Some(vec!["Anthropic".to_string()]));
        assert_eq!(allowed(&f), [false, true, false]);
        // Empty intersection: nothing allowed.
        let f = with_floor(prefs(r#"{"only":["deepinfra"]}"#), &key);
        assert_eq!(f.only, Some(Vec::new()));
        assert_eq!(allowed(&f), [false, false, false]);
        // Only one side restricts.
        assert_eq!(allowed(&with_floor(prefs("{}"), &key)), [false, true, true]);
        let f = with_floor(prefs(r#"{"only":["deepinfra"]}"#), &KeyPolicy::default());
        assert_eq!(allowed(&f), [true, false, false]);
        // A request's empty list does not widen the key's.
        assert_eq!(allowed(&with_floor(prefs(r#"{"only":[]}"#), &key)), [false, true, true]);

        // ignore: union (no duplicates).
        let key = policy(r#"{"ignore":["plain"]}"#);
        let f = with_floor(prefs(r#"{"ignore":["DeepInfra","PLAIN"]}"#), &key);
        assert_eq!(f.ignore, ["DeepInfra", "PLAIN"]);
        let f = with_floor(prefs(r#"{"ignore":["DeepInfra"]}"#), &key);
        assert_eq!(allowed(&f), [false, true, false]);

        // max_price: per-field minimum.
        let key = policy(r#"{"max_price":{"prompt":1,"completion":"2"}}"#);
        let f = with_floor(prefs(r#"{"max_price":{"prompt":"0.5","completion":5,"image":3}}"#), &key);
        assert_eq!(
            f.max_price,
            MaxPrice { prompt: Some(0.5), completion: Some(2.0), request: None, image: Some(3.0) }
        );

        // quantizations: intersection or either.
        let key = policy(r#"{"quantizations":["fp8","fp16"]}"#);
        let q = |json: &str| with_floor(prefs(json), &key).quantizations;
        assert_eq!(q(r#"{"quantizations":["fp16","int4"]}"#), Some(vec!["fp16".to_string()]));
        assert_eq!(q(r#"{"quantizations":["int4"]}"#), Some(Vec::new()));
        assert_eq!(q("{}"), Some(vec!["fp8".to_string(), "fp16".to_string()]));
        let f = with_floor(prefs(r#"{"quantizations":["int4"]}"#), &KeyPolicy::default());
        assert_eq!(f.quantizations, Some(vec!["int4".to_string()]));

        // Other request preferences pass through.
        let f = with_floor(prefs(r#"{"order":["plain"],"allow_fallbacks":false,"sort":"price"}"#), &strict);
        assert_eq!(
            (f.order.as_slice(), f.allow_fallbacks, f.sort),
            (&["plain".to_string()][..], false, Some(SortBy::Price))
        );
    }
}
