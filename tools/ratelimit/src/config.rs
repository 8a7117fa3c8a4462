//! envoyproxy/ratelimit's configuration file (one domain) and its descriptor matching.
//!
//! A port of `src/config/config_impl.go` (envoyproxy/ratelimit at f2fb157, after v1.4.0), keeping
//! what decides which limit applies and how it is counted; what only feeds statistics
//! (`detailed_metric`, `value_to_metric`) or the optional dynamic metadata (`metadata`) is accepted
//! and ignored.
//!
//! Matching walks the request descriptor's entries down the configured tree. At each level it
//! tries `key_value`, then the wildcard values of that level (`value: "foo*"`), then `key` alone
//! (a config descriptor without `value` is the default for any value). A limit applies only if
//! it sits on the node matched by the *last* entry: a request descriptor with more entries than
//! the matching config path, or one ending on a node without `rate_limit`, gets no limit.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Deserialize;

use crate::proto::{RateLimitDescriptor, Unit};

/// A configuration error, worded like envoyproxy/ratelimit's where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

// The YAML as written. `deny_unknown_fields` stands in for the service's check of every key
// against its list of known keys (it rejects a file with any other key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlRoot {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    descriptors: Vec<YamlDescriptor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlDescriptor {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    rate_limit: Option<YamlRateLimit>,
    #[serde(default)]
    descriptors: Vec<YamlDescriptor>,
    #[serde(default)]
    shadow_mode: bool,
    #[serde(default)]
    quota_mode: bool,
    #[serde(default)]
    share_threshold: bool,
    // Statistics and response metadata only.
    #[serde(default, rename = "detailed_metric")]
    _detailed_metric: bool,
    #[serde(default, rename = "value_to_metric")]
    _value_to_metric: bool,
    #[serde(default, rename = "metadata")]
    _metadata: Option<serde_norway::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlRateLimit {
    #[serde(default)]
    requests_per_unit: u32,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    name: String,
    #[serde(default)]
    replaces: Vec<YamlReplaces>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlReplaces {
    #[serde(default)]
    name: String,
}

/// A configured limit, as matched for one request descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub requests_per_unit: u32,
    pub unit: Unit,
    /// `rate_limit.name`: sent back in `current_limit.name`, and what `replaces` refers to.
    pub name: String,
    pub replaces: Vec<String>,
    /// Answers OK without counting in Redis.
    pub unlimited: bool,
    /// Counted as usual, but an over-limit answer is turned into OK.
    pub shadow_mode: bool,
    /// Over the limit only counts against the request if every quota-mode descriptor is over.
    pub quota_mode: bool,
    /// For `share_threshold` wildcards: per entry index, the pattern that replaces the entry's value
    /// in the Redis key, so that every value matching the wildcard shares one counter.
    pub shared_values: Vec<Option<String>>,
}

/// One level of the descriptor tree.
#[derive(Debug, Default)]
struct Node {
    /// Children by `key_value` or, for a default, `key`.
    children: HashMap<String, Node>,
    /// The children whose `key_value` contains `*`, in file order, split on `*`.
    wildcards: Vec<(String, Vec<String>)>,
    limit: Option<Limit>,
    share_threshold: bool,
}

/// A loaded configuration file: one domain and its descriptor tree.
#[derive(Debug)]
pub struct Config {
    domain: String,
    root: Node,
}

/// Parses the unit of a `rate_limit` block the way the service does (case-insensitive enum name).
pub fn parse_unit(s: &str) -> Option<Unit> {
    Unit::from_name(&s.to_ascii_uppercase()).filter(|u| *u != Unit::Unknown)
}

impl Config {
    /// Loads one domain's YAML file, with the checks envoyproxy/ratelimit makes at load time.
    pub fn parse(yaml: &str) -> Result<Config, ConfigError> {
        let root: YamlRoot = serde_norway::from_str(yaml)
            .map_err(|e| ConfigError(format!("error loading config file: {e}")))?;
        if root.domain.is_empty() {
            return err("config file cannot have empty domain");
        }
        let mut node = Node::default();
        load(&mut node, &format!("{}.", root.domain), root.descriptors)?;
        Ok(Config { domain: root.domain, root: node })
    }

    /// The domain this file configures.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The limit for one request descriptor, if any (`GetLimit` in config_impl.go). `None` for
    /// another domain, for no match, and for a match without `rate_limit`.
    pub fn limit_for(&self, domain: &str, descriptor: &RateLimitDescriptor) -> Option<Limit> {
        if domain != self.domain {
            return None;
        }
        // A limit sent by Envoy (route `limit` override) replaces the configured one; its key is the
        // descriptor's own entries, and it is never in shadow mode.
        if let Some(o) = &descriptor.limit {
            return Some(Limit {
                requests_per_unit: o.requests_per_unit,
                unit: Unit::try_from(o.unit).unwrap_or(Unit::Unknown),
                name: String::new(),
                replaces: Vec::new(),
                unlimited: false,
                shadow_mode: false,
                quota_mode: false,
                shared_values: Vec::new(),
            });
        }
        let mut level = &self.root;
        let mut found = None;
        let mut shared: Vec<Option<String>> = vec![None; descriptor.entries.len()];
        for (i, entry) in descriptor.entries.iter().enumerate() {
            let with_value = format!("{}_{}", entry.key, entry.value);
            let mut next = level.children.get(&with_value);
            if next.is_none() {
                if let Some((pattern, _)) =
                    level.wildcards.iter().find(|(_, parts)| wildcard_match(parts, &with_value))
                {
                    next = level.children.get(pattern);
                    if let (Some(n), Some(slot)) = (next, shared.get_mut(i)) {
                        if n.share_threshold {
                            // Like Go's TrimPrefix: a pattern on the key itself stays whole.
                            let value = pattern.strip_prefix(&format!("{}_", entry.key)).unwrap_or(pattern);
                            *slot = Some(value.to_string());
                        }
                    }
                }
            }
            if next.is_none() {
                next = level.children.get(&entry.key);
            }
            let Some(node) = next else { break };
            if i + 1 == descriptor.entries.len() {
                found = node.limit.clone();
            }
            if node.children.is_empty() {
                break;
            }
            level = node;
        }
        found.map(|mut l| {
            if shared.iter().any(Option::is_some) {
                l.shared_values = shared;
            }
            l
        })
    }

    /// The limits for every descriptor of a request, after `replaces`: a named limit that another
    /// matched limit replaces is dropped (`constructLimitsToCheck` in service/ratelimit.go).
    pub fn limits_for(&self, domain: &str, descriptors: &[RateLimitDescriptor]) -> Vec<Option<Limit>> {
        let mut limits: Vec<Option<Limit>> = descriptors.iter().map(|d| self.limit_for(domain, d)).collect();
        let replaced: HashSet<String> =
            limits.iter().flatten().flat_map(|l| l.replaces.iter().cloned()).collect();
        for slot in &mut limits {
            if slot.as_ref().is_some_and(|l| !l.name.is_empty() && replaced.contains(&l.name)) {
                *slot = None;
            }
        }
        limits
    }
}

fn load(parent: &mut Node, parent_key: &str, descriptors: Vec<YamlDescriptor>) -> Result<(), ConfigError> {
    for d in descriptors {
        if d.key.is_empty() {
            return err("descriptor has empty key");
        }
        let final_key = if d.value.is_empty() { d.key.clone() } else { format!("{}_{}", d.key, d.value) };
        let full_key = format!("{parent_key}{final_key}");
        if parent.children.contains_key(&final_key) {
            return err(format!("duplicate descriptor composite key '{full_key}'"));
        }
        let limit = match d.rate_limit {
            None => None,
            Some(rl) => Some(limit_of(rl, d.shadow_mode, d.quota_mode)?),
        };
        if d.share_threshold && !final_key.contains('*') {
            return err(format!(
                "share_threshold can only be used with wildcard values (containing '*'), but found key '{final_key}'"
            ));
        }
        if final_key.contains('*') {
            parent.wildcards.push((final_key.clone(), final_key.split('*').map(str::to_string).collect()));
        }
        let mut node = Node { limit, share_threshold: d.share_threshold, ..Node::default() };
        load(&mut node, &format!("{full_key}."), d.descriptors)?;
        parent.children.insert(final_key, node);
    }
    Ok(())
}

fn limit_of(rl: YamlRateLimit, shadow_mode: bool, quota_mode: bool) -> Result<Limit, ConfigError> {
    let unit = parse_unit(&rl.unit);
    if rl.unlimited {
        if unit.is_some() {
            return err("should not specify rate limit unit when unlimited");
        }
    } else if unit.is_none() {
        return err(format!("invalid rate limit unit '{}'", rl.unit));
    }
    let mut replaces = Vec::new();
    for r in rl.replaces {
        if r.name.is_empty() {
            return err("should not have an empty replaces entry");
        }
        if r.name == rl.name {
            return err("replaces should not contain name of same descriptor");
        }
        replaces.push(r.name);
    }
    Ok(Limit {
        requests_per_unit: rl.requests_per_unit,
        unit: unit.unwrap_or(Unit::Unknown),
        name: rl.name,
        replaces,
        unlimited: rl.unlimited,
        shadow_mode,
        quota_mode,
        shared_values: Vec::new(),
    })
}

/// Whether `value` matches a pattern split on `*` (each `*` matches any run of characters,
/// the empty one included).
fn wildcard_match(parts: &[String], value: &str) -> bool {
    let [first, middle @ .., last] = parts else {
        return parts.first().is_some_and(|p| p == value);
    };
    let fixed: usize = parts.iter().map(String::len).sum();
    if value.len() < fixed || !value.starts_with(first.as_str()) || !value.ends_with(last.as_str()) {
        return false;
    }
    // Middle parts must appear in order between the prefix and the suffix.
    let mut rest = value.get(first.len()..value.len() - last.len()).unwrap_or("");
    for part in middle {
        match rest.find(part.as_str()) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
domain: llm
descriptors:
  - key: client
    rate_limit: { unit: minute, requests_per_unit: 10 }
    descriptors:
      - key: model
        value: big
        rate_limit: { unit: hour, requests_per_unit: 2, name: big }
      - key: model
        rate_limit: { unit: Hour, requests_per_unit: 5 }
  - key: client
    value: vip
    rate_limit: { unlimited: true }
  - key: client
    value: shady
    shadow_mode: true
    rate_limit: { unit: second, requests_per_unit: 1 }
  - key: tier
    value: "free*"
    rate_limit: { unit: day, requests_per_unit: 50 }
  - key: path
    value: "/v1/*/chat"
    share_threshold: true
    rate_limit: { unit: week, requests_per_unit: 7 }
  - key: nolimit
    descriptors:
      - key: leaf
        rate_limit: { unit: year, requests_per_unit: 1, replaces: [{ name: big }] }
"#;

    fn limit(cfg: &Config, entries: &[(&str, &str)]) -> Option<(u32, Unit)> {
        cfg.limit_for("llm", &RateLimitDescriptor::new(entries)).map(|l| (l.requests_per_unit, l.unit))
    }

    #[test]
    fn key_without_value_is_the_default_and_a_value_overrides_it() {
        let cfg = Config::parse(YAML).unwrap();
        assert_eq!(limit(&cfg, &[("client", "alice")]), Some((10, Unit::Minute)));
        assert_eq!(limit(&cfg, &[("client", "alice"), ("model", "big")]), Some((2, Unit::Hour)));
        assert_eq!(limit(&cfg, &[("client", "alice"), ("model", "small")]), Some((5, Unit::Hour)));
        let vip = cfg.limit_for("llm", &RateLimitDescriptor::new(&[("client", "vip")])).unwrap();
        assert!(vip.unlimited);
        let shady = cfg.limit_for("llm", &RateLimitDescriptor::new(&[("client", "shady")])).unwrap();
        assert!(shady.shadow_mode);
    }

    #[test]
    fn only_the_last_entry_picks_the_limit() {
        let cfg = Config::parse(YAML).unwrap();
        // More entries than the config has levels: the walk stops, no limit.
        assert_eq!(limit(&cfg, &[("client", "alice"), ("model", "big"), ("x", "y")]), None);
        // `client_vip` has no children, so its nested lookup stops there.
        assert_eq!(limit(&cfg, &[("client", "vip"), ("model", "big")]), None);
        // A node without rate_limit gives nothing, even with a limited child.
        assert_eq!(limit(&cfg, &[("nolimit", "a")]), None);
        assert_eq!(limit(&cfg, &[("nolimit", "a"), ("leaf", "b")]), Some((1, Unit::Year)));
        // Unknown key, unknown domain.
        assert_eq!(limit(&cfg, &[("other", "a")]), None);
        assert_eq!(cfg.limit_for("elsewhere", &RateLimitDescriptor::new(&[("client", "a")])), None);
    }

    #[test]
    fn wildcards_and_share_threshold() {
        let cfg = Config::parse(YAML).unwrap();
        assert_eq!(limit(&cfg, &[("tier", "free")]), Some((50, Unit::Day)));
        assert_eq!(limit(&cfg, &[("tier", "free-trial")]), Some((50, Unit::Day)));
        assert_eq!(limit(&cfg, &[("tier", "paid")]), None);
        let l = cfg.limit_for("llm", &RateLimitDescriptor::new(&[("path", "/v1/abc/chat")])).unwrap();
        assert_eq!((l.requests_per_unit, l.unit), (7, Unit::Week));
        assert_eq!(l.shared_values, vec![Some("/v1/*/chat".to_string())]);
        assert_eq!(limit(&cfg, &[("path", "/v2/abc/chat")]), None);
        // Without share_threshold the real value stays in the key.
        let l = cfg.limit_for("llm", &RateLimitDescriptor::new(&[("tier", "free-x")])).unwrap();
        assert!(l.shared_values.is_empty());
    }

    #[test]
    fn wildcard_match_rules() {
        let parts = |p: &str| p.split('*').map(str::to_string).collect::<Vec<_>>();
        assert!(wildcard_match(&parts("a*"), "a"));
        assert!(wildcard_match(&parts("a*c"), "abc"));
        assert!(wildcard_match(&parts("a*b*c"), "aXbYc"));
        assert!(!wildcard_match(&parts("a*b*c"), "aXc"));
        assert!(!wildcard_match(&parts("ab*ba"), "aba"));
        assert!(wildcard_match(&parts("abc"), "abc"));
        assert!(!wildcard_match(&parts("abc"), "abd"));
    }

    #[test]
    fn override_and_replaces() {
        let cfg = Config::parse(YAML).unwrap();
        let mut d = RateLimitDescriptor::new(&[("anything", "x")]);
        d.limit = Some(crate::proto::RateLimitOverride { requests_per_unit: 3, unit: Unit::Minute as i32 });
        assert_eq!(cfg.limit_for("llm", &d).map(|l| l.requests_per_unit), Some(3));
        let both = [
            RateLimitDescriptor::new(&[("client", "a"), ("model", "big")]),
            RateLimitDescriptor::new(&[("nolimit", "a"), ("leaf", "b")]),
        ];
        let limits = cfg.limits_for("llm", &both);
        assert!(limits[0].is_none(), "the named limit `big` is replaced");
        assert!(limits[1].is_some());
    }

    #[test]
    fn load_time_errors() {
        let bad = |y: &str| Config::parse(y).unwrap_err().0;
        assert!(bad("descriptors: []").contains("empty domain"));
        assert!(bad("domain: d\ndescriptors: [{ value: v }]").contains("empty key"));
        assert!(bad("domain: d\ndescriptors: [{ key: k }, { key: k }]")
            .contains("duplicate descriptor composite key 'd.k'"));
        assert!(bad("domain: d\ndescriptors: [{ key: k, rate_limit: { unit: fortnight } }]")
            .contains("invalid rate limit unit"));
        assert!(bad("domain: d\ndescriptors: [{ key: k, rate_limit: { unlimited: true, unit: second } }]")
            .contains("unlimited"));
        assert!(bad("domain: d\ndescriptors: [{ key: k, colour: red }]").contains("unknown field"));
        assert!(
            bad("domain: d\ndescriptors: [{ key: k, value: v, share_threshold: true }]").contains("wildcard")
        );
        assert_eq!(parse_unit("unknown"), None);
        assert_eq!(parse_unit("wEeK"), Some(Unit::Week));
    }
}
