//! The routing decision as data: the ordered candidates of a request, and the compact record the
//! downstream role writes to filter state for the upstream role of each attempt.

use crate::catalog::{Catalog, EndpointRef};
use std::ops::Range;

/// Filter-state key of slot `k` (read by the route's matcher: attempt k+1 goes to that provider's cluster).
pub fn slot_key(k: usize) -> std::borrow::Cow<'static, str> {
    // The first slots, written for every request, without formatting.
    const KEYS: [&str; 4] = ["llm_try_0", "llm_try_1", "llm_try_2", "llm_try_3"];
    match KEYS.get(k) {
        Some(key) => (*key).into(),
        None => format!("llm_try_{k}").into(),
    }
}

/// Ends the provider slug at the start of a slot's value. The matcher matches slot values by prefix
/// (`<slug>|`), so slot 0 can carry the plan record after it: one filter-state write fewer per request.
/// A slug never holds `|`, so exactly one provider's key is a prefix of a value.
pub const SLOT_END: char = '|';

/// The filter-state value of a slot: the provider slug, [`SLOT_END`], then (slot 0) the plan record.
pub fn slot_value(provider: &str, record: Option<&str>) -> String {
    let record = record.unwrap_or("");
    let mut v = String::with_capacity(provider.len() + 1 + record.len());
    v.push_str(provider);
    v.push(SLOT_END);
    v.push_str(record);
    v
}

/// The plan record carried by slot 0's value (`None` when the value has no [`SLOT_END`]).
pub fn record_of_slot(value: &str) -> Option<&str> {
    value.split_once(SLOT_END).map(|(_, record)| record)
}

/// What the upstream role of every attempt needs: where the model value sits in the body the router
/// replays, and each slot's provider and native model name (as a JSON string literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    /// Length of the body as forwarded by the downstream role.
    pub body_len: usize,
    /// Byte range of the `model` value (slot 0's native name) in that body.
    pub model_range: Range<usize>,
    /// Per slot, in attempt order.
    pub slots: Vec<Slot>,
}

/// One attempt's endpoint, as the upstream role needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The provider's slug.
    pub provider: String,
    /// The native model name as a JSON string literal.
    pub model_json: String,
    /// The endpoint's `max_completion_tokens`, for a native provider's slot (a translated request's
    /// default `max_tokens`).
    pub max_completion_tokens: Option<u64>,
}

impl PlanRecord {
    /// Builds the record of a plan.
    pub fn new(
        catalog: &Catalog,
        plan: &[EndpointRef],
        body_len: usize,
        model_range: Range<usize>,
    ) -> PlanRecord {
        let slots = plan
            .iter()
            .map(|c| {
                let (e, p) = (catalog.endpoint(*c), catalog.provider_of(*c));
                Slot {
                    provider: p.name.clone(),
                    model_json: e.model_json.clone(),
                    // Only a translated body needs it: OpenAI slots stay as short as before.
                    max_completion_tokens: e.max_completion_tokens.filter(|_| p.api.is_native()),
                }
            })
            .collect();
        PlanRecord { body_len, model_range, slots }
    }

    /// `body_len start len\n` then `provider\tmodel_json\n` per slot, or `provider\tmodel_json\tmax\n` when
    /// the endpoint has a `max_completion_tokens` (JSON strings hold no raw tab or newline).
    pub fn encode(&self) -> String {
        let mut out = format!("{} {} {}\n", self.body_len, self.model_range.start, self.model_range.len());
        for slot in &self.slots {
            out.push_str(&slot.provider);
            out.push('\t');
            out.push_str(&slot.model_json);
            if let Some(max) = slot.max_completion_tokens {
                out.push('\t');
                crate::wire::text::push_u64(&mut out, max);
            }
            out.push('\n');
        }
        out
    }

    /// Parses `encode`'s output; `None` when malformed.
    pub fn decode(text: &str) -> Option<PlanRecord> {
        let mut lines = text.lines();
        let mut head = lines.next()?.split(' ').map(|n| n.parse::<usize>().ok());
        let (body_len, start, len) = (head.next()??, head.next()??, head.next()??);
        if start.checked_add(len)? > body_len {
            return None;
        }
        let slots = lines
            .map(|l| {
                let mut fields = l.split('\t');
                let (provider, model_json) = (fields.next()?, fields.next()?);
                let max_completion_tokens = match fields.next() {
                    Some(n) => Some(n.parse::<u64>().ok()?),
                    None => None,
                };
                Some(Slot { provider: provider.into(), model_json: model_json.into(), max_completion_tokens })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(PlanRecord { body_len, model_range: start..start + len, slots })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn slot_values_start_with_the_matcher_key() {
        let v = slot_value("alpha", Some("10 2 3\nalpha\t\"x\"\n"));
        assert!(v.starts_with("alpha|"));
        assert_eq!(record_of_slot(&v), Some("10 2 3\nalpha\t\"x\"\n"));
        assert_eq!(slot_value("beta", None), "beta|");
        assert_eq!(record_of_slot("beta"), None);
    }

    #[test]
    fn record_round_trips() {
        let r = PlanRecord {
            body_len: 40,
            model_range: 10..20,
            slots: vec![
                Slot { provider: "a".into(), model_json: "\"x\\ty\"".into(), max_completion_tokens: None },
                Slot { provider: "b".into(), model_json: "\"z\"".into(), max_completion_tokens: Some(8192) },
            ],
        };
        assert_eq!(PlanRecord::decode(&r.encode()), Some(r));
        assert_eq!(PlanRecord::decode("5 3 4\n"), None);
        // A model value may end exactly where the body does (a range past it is refused above).
        assert!(PlanRecord::decode("7 3 4\nalpha\t\"x\"\n").is_some());
        assert_eq!(PlanRecord::decode("garbage"), None);
    }
}
