//! Usage and cost: the token counts a provider reports, what they cost at the serving endpoint's prices, and
//! their JSON in OpenRouter's `usage` shape.
//!
//! Counts come from the `usage` member of a chat completion or of a stream chunk ([`usage_in`]); streams
//! are cut into events by [`crate::wire::sse::SseParser`]. Costs are integer nano-USD (10⁻⁹ USD), so they add up exactly
//! and render as exact decimals ([`usd_json`]).

use crate::catalog::Pricing;
use crate::wire::json::Member;
use crate::wire::text::{push_u64, push_u64_padded};
use serde::Deserialize;

/// Token counts of one response, in OpenAI's convention: `prompt_tokens` includes the cached and
/// cache-write tokens, `completion_tokens` includes the reasoning tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Every prompt token (cached and cache-write ones included).
    pub prompt_tokens: u64,
    /// Every completion token (reasoning included).
    pub completion_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// Completion tokens spent reasoning (informational: already inside `completion_tokens`).
    pub reasoning_tokens: u64,
}

/// `usage` as providers send it; only the members we use are read, every other one is skipped.
#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
    /// Anthropic-style cache writes next to OpenAI-style counts, as LiteLLM-style gateways report them.
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    /// Anthropic-style cache reads, likewise.
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    /// DeepSeek's cache hits (`prompt_tokens` = hits + misses).
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// The usage among the top-level members of a chat completion or stream chunk (split by [`crate::wire::json::top_level`],
/// which the response rewrite does anyway), if present and well-formed: `prompt_tokens` and `completion_tokens` non-negative integers, plus
/// `prompt_tokens_details.cached_tokens` / `.cache_write_tokens` and
/// `completion_tokens_details.reasoning_tokens` when present (null or absent details count 0).
///
/// Other spellings are read when the OpenAI one is absent: cache writes from `cache_creation_input_tokens`
/// and cache reads from `cache_read_input_tokens` (LiteLLM-style gateways put Anthropic's counts next to
/// OpenAI's) or `prompt_cache_hit_tokens` (DeepSeek). `prompt_tokens` is always taken as including them.
///
/// `usage: null`, no `usage`, or anything malformed (not JSON, not an object, a count that is not a
/// non-negative integer) is `None`: missing usage is unknown, not zero. Nothing but `usage` is
/// materialised.
pub fn usage_in(members: &[Member<'_>]) -> Option<Usage> {
    let raw = members.iter().find(|m| m.key == "usage")?.value;
    from_wire(serde_json::from_str::<Option<WireUsage>>(raw).ok()??)
}

fn from_wire(wire: WireUsage) -> Option<Usage> {
    let prompt = wire.prompt_tokens_details.as_ref();
    let cached = prompt
        .and_then(|d| d.cached_tokens)
        .or(wire.cache_read_input_tokens)
        .or(wire.prompt_cache_hit_tokens)
        .unwrap_or(0);
    let cache_write =
        prompt.and_then(|d| d.cache_write_tokens).or(wire.cache_creation_input_tokens).unwrap_or(0);
    let reasoning = wire.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0);
    Some(Usage {
        prompt_tokens: wire.prompt_tokens,
        completion_tokens: wire.completion_tokens,
        cached_tokens: cached,
        cache_write_tokens: cache_write,
        reasoning_tokens: reasoning,
    })
}

/// What one request cost, in integer nano-USD (10⁻⁹ USD).
///
/// `total_nano` is the exact cost (each part computed in f64, summed, and rounded once). The parts are
/// rounded for display so that they add up to `total_nano` exactly (largest remainder: each part is its
/// exact value rounded down or up, never off by a whole nano-USD): `prompt_nano + completion_nano +
/// cache_read_nano + cache_write_nano + request_nano == total_nano`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Everything: the sum of the parts below.
    pub total_nano: u64,
    /// Uncached prompt tokens at the `prompt` price.
    pub prompt_nano: u64,
    /// Completion tokens (reasoning included) at the `completion` price.
    pub completion_nano: u64,
    /// Cached prompt tokens at the `cache_read` price (the `prompt` price when the endpoint has none).
    pub cache_read_nano: u64,
    /// Cache-write prompt tokens at the `cache_write` price (the `prompt` price when the endpoint has none).
    pub cache_write_nano: u64,
    /// The endpoint's per-request price.
    pub request_nano: u64,
    /// What cached reads saved against the `prompt` price, minus what cache writes cost above it (negative
    /// when the writes cost more than the reads saved); rounded once.
    pub cache_discount_nano: i64,
}

/// Nano-USD per token at a price in USD per million tokens.
const NANO_PER_TOKEN_PER_USD_PER_M: f64 = 1_000.0;
/// Nano-USD per USD.
const NANO_PER_USD: u64 = 1_000_000_000;

/// The cost of `usage` at the serving endpoint's `pricing` (USD per million tokens; `request` USD per
/// request):
///
/// - uncached prompt tokens (`prompt_tokens − cached_tokens − cache_write_tokens`, at least 0) at `prompt`;
/// - `cached_tokens` at `cache_read`, `cache_write_tokens` at `cache_write` (each at `prompt` when the
///   endpoint has no such price);
/// - `completion_tokens` at `completion` (reasoning tokens are inside them: not counted again);
/// - `request` once.
///
/// Never negative: a part that would be (a negative or non-finite price, which the catalog rejects anyway)
/// Bytes per token in [`estimate`]: English text averages about four bytes per token in the tokenizers
/// providers use, and the context filter bounds a prompt the same way.
pub const BYTES_PER_TOKEN: u64 = 4;

/// Usage to account when the provider's own never arrived (the client left a stream early, a completion
/// could not be read, an attempt timed out) but the provider worked, and bills: the prompt from the
/// request body's size, the completion from what was seen of it (`completion_tokens`, e.g. one per
/// streamed content chunk). Flagged as an estimate wherever it is reported.
pub fn estimate(request_bytes: u64, completion_tokens: u64) -> Usage {
    Usage { prompt_tokens: request_bytes.div_ceil(BYTES_PER_TOKEN), completion_tokens, ..Usage::default() }
}

/// counts 0.
pub fn cost(usage: &Usage, pricing: &Pricing) -> Cost {
    let uncached =
        usage.prompt_tokens.saturating_sub(usage.cached_tokens).saturating_sub(usage.cache_write_tokens);
    let read_price = pricing.cache_read.unwrap_or(pricing.prompt);
    let write_price = pricing.cache_write.unwrap_or(pricing.prompt);
    let tokens = |n: u64, price: f64| n as f64 * price * NANO_PER_TOKEN_PER_USD_PER_M;
    // Order: prompt, completion, cache read, cache write, request.
    let exact = [
        tokens(uncached, pricing.prompt),
        tokens(usage.completion_tokens, pricing.completion),
        tokens(usage.cached_tokens, read_price),
        tokens(usage.cache_write_tokens, write_price),
        pricing.request.unwrap_or(0.0) * NANO_PER_USD as f64,
    ]
    .map(|x| if x.is_finite() && x > 0.0 { x } else { 0.0 });
    let total = exact.iter().sum::<f64>().round() as u64;
    let parts = apportion(total, exact);
    let discount = tokens(usage.cached_tokens, pricing.prompt - read_price)
        - tokens(usage.cache_write_tokens, write_price - pricing.prompt);
    let [prompt_nano, completion_nano, cache_read_nano, cache_write_nano, request_nano] = parts;
    Cost {
        total_nano: total,
        prompt_nano,
        completion_nano,
        cache_read_nano,
        cache_write_nano,
        request_nano,
        // `as` saturates (and maps NaN to 0).
        cache_discount_nano: if discount.is_finite() { discount.round() as i64 } else { 0 },
    }
}

/// Splits `total` into integer parts close to `exact` (non-negative, summing to `total` when the float
/// sum rounds to it): each part is its floor, and the units left go to the largest fractional parts
/// (earlier part first on a tie).
fn apportion<const N: usize>(total: u64, exact: [f64; N]) -> [u64; N] {
    let mut parts = exact.map(|x| x.floor() as u64);
    let mut left = total.saturating_sub(parts.iter().fold(0u64, |a, &p| a.saturating_add(p)));
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    let frac = |i: usize| exact.get(i).map_or(0.0, |x| x - x.floor());
    order.sort_unstable_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        if let Some(p) = parts.get_mut(i) {
            *p = p.saturating_add(1);
            left -= 1;
        }
    }
    parts
}

/// Nano-USD as a JSON number of USD, exact decimal text with no exponent and no trailing zeros:
/// 0 → `0`, 1234 → `0.000001234`, 10⁹ → `1`, −5·10⁸ → `-0.5`.
pub fn usd_json(nano: i64) -> String {
    let mut out = String::with_capacity(16);
    push_usd(&mut out, nano);
    out
}

/// [`usd_json`] of an unsigned amount (saturating at `i64::MAX` nano-USD, 9.2 billion USD).
pub fn usd_json_u64(nano: u64) -> String {
    usd_json(i64::try_from(nano).unwrap_or(i64::MAX))
}

/// [`push_usd`] of an unsigned amount, as [`usd_json_u64`].
pub fn push_usd_u64(out: &mut String, nano: u64) {
    push_usd(out, i64::try_from(nano).unwrap_or(i64::MAX));
}

/// Appends [`usd_json`]`(nano)` (no allocation of its own: the response rewrite calls it per request).
pub fn push_usd(out: &mut String, nano: i64) {
    let abs = nano.unsigned_abs();
    let whole = abs / NANO_PER_USD;
    let frac = abs % NANO_PER_USD;
    if nano < 0 {
        out.push('-');
    }
    push_u64(out, whole);
    if frac != 0 {
        out.push('.');
        let start = out.len();
        push_u64_padded(out, frac, 9);
        let kept = out.get(start..).unwrap_or_default().trim_end_matches('0').len();
        out.truncate(start + kept);
    }
}

/// Appends the members OpenRouter adds to a usage object, without a leading comma: `cost`,
/// `cost_details` ([`push_cost_details`]), `cache_discount` and `is_byok`.
pub fn push_cost_members(out: &mut String, cost: &Cost) {
    out.push_str("\"cost\":");
    push_usd_u64(out, cost.total_nano);
    out.push_str(",\"cost_details\":");
    push_cost_details(out, cost);
    out.push_str(",\"cache_discount\":");
    push_usd(out, cost.cache_discount_nano);
    out.push_str(",\"is_byok\":false");
}

/// Appends `cost` as JSON: `upstream_inference_cost` (everything the provider charges: `total_nano`),
/// `upstream_inference_prompt_cost` (uncached, cached and cache-write prompt tokens) and
/// `upstream_inference_completions_cost` (completion tokens), USD numbers via [`usd_json`]: OpenRouter's
/// `CostDetails` (which requires the two parts). A per-request price is only in the total. The provider's
/// own prices are what we charge, so the upstream cost is the request's `cost`.
pub fn push_cost_details(out: &mut String, cost: &Cost) {
    let usd = push_usd_u64;
    let prompt = cost.prompt_nano.saturating_add(cost.cache_read_nano).saturating_add(cost.cache_write_nano);
    out.push_str("{\"upstream_inference_cost\":");
    usd(out, cost.total_nano);
    out.push_str(",\"upstream_inference_prompt_cost\":");
    usd(out, prompt);
    out.push_str(",\"upstream_inference_completions_cost\":");
    usd(out, cost.completion_nano);
    out.push('}');
}

#[cfg(test)]
mod tests;
