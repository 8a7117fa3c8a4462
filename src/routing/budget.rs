//! A client key's spending, as data: its tokens this minute and its nano-USD this day, week and month
//! (UTC; weeks from Monday), plus all it spent since the proxy started. One value per key, so a request
//! is admitted against every budget at once with one compare-and-swap.
//!
//! Admission **reserves** a request's worst case ([`worst_case`]) in every window; when the request ends
//! the reservation **settles** to what was actually spent. A request whose reservation does not fit in
//! one of its key's limits is refused and counts nothing.

use super::calendar::Period;
use super::rate_limit::{admit as admit_window, settle as settle_window, Admission, Window};
use super::request_facts::CostFacts;
use crate::catalog::{Catalog, EndpointRef, KeyLimits};
use crate::wire::error::ApiError;
use crate::wire::usage::{cost, usd_json_u64, Usage};

/// The completion bound of an endpoint that states neither `max_completion_tokens` nor a context length,
/// and of a request that sets no `max_tokens`: pessimistic on purpose (a budget must not be passed).
pub const UNKNOWN_COMPLETION_TOKENS: u64 = 1_000_000;

/// A request's tokens and cost: what admission reserves, or what was spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spend {
    /// Prompt and completion tokens.
    pub tokens: u64,
    /// Nano-USD.
    pub nano: u64,
}

/// The windows a key's spending is counted in, in [`Ledger`] order.
const PERIODS: [Period; 4] = [Period::Minute, Period::Day, Period::Week, Period::Month];

/// One key's spending windows (an unwritten window is number 0: 1970, never current).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ledger {
    /// Tokens per minute, then nano-USD per day, week and month ([`PERIODS`]).
    pub windows: [Window; 4],
    /// Nano-USD since the proxy started (shared data lives as long as the process).
    pub total_nano: u64,
}

impl Ledger {
    /// Nine decimal numbers: each window's number and count, then the total.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(96);
        for w in &self.windows {
            w.push(&mut out);
            out.push(' ');
        }
        crate::wire::text::push_u64(&mut out, self.total_nano);
        out.into_bytes()
    }

    /// Reads [`Ledger::encode`]'s text; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Ledger> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut numbers = text.split(' ').map(|n| n.parse::<u64>().ok());
        let mut ledger = Ledger::default();
        for w in &mut ledger.windows {
            *w = Window { number: numbers.next()??, count: numbers.next()?? };
        }
        ledger.total_nano = numbers.next()??;
        numbers.next().is_none().then_some(ledger)
    }

    /// What the key spent in the windows `now_ms` falls in: tokens this minute, nano-USD this day, week
    /// and month.
    pub fn current(stored: Option<&Ledger>, now_ms: u64) -> [u64; 4] {
        let mut out = [0; 4];
        for ((o, w), period) in out.iter_mut().zip(stored.map(|l| l.windows).unwrap_or_default()).zip(PERIODS)
        {
            *o = Window::used_in(Some(w), period.number(now_ms));
        }
        out
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `tokens_per_minute` (a rate: 429).
    TokensPerMinute,
    /// `usd_per_day`, `usd_per_week` or `usd_per_month` (a budget: 402).
    Usd(Period),
}

/// A reservation that did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that refused it (of several, the one that resets last: the request fits no sooner).
    pub limit: Limit,
    /// Its size (tokens or nano-USD).
    pub of: u64,
    /// What was left of it.
    pub remaining: u64,
    /// When it resets, ms since the epoch.
    pub reset_ms: u64,
    /// Seconds until then.
    pub retry_after: u64,
}

impl Refusal {
    /// The client's error for a request whose worst case was `worst`: 429 for the token rate, 402 for a
    /// dollar budget, with what was left and when it resets.
    pub fn error(&self, worst: Spend) -> ApiError {
        let Refusal { limit, of, remaining, reset_ms, retry_after } = *self;
        // A worst case larger than the whole limit never fits, however long the client waits.
        let never = |worst: u64| {
            if worst > of {
                "; it can never fit: lower max_tokens"
            } else {
                ""
            }
        };
        match limit {
            Limit::TokensPerMinute => ApiError::KeyLimitReached {
                message: format!(
                    "Rate limit exceeded: {of} tokens per minute for this key ({remaining} left; this \
                     request may use up to {}{})",
                    worst.tokens,
                    never(worst.tokens)
                ),
                limit: of,
                remaining,
                reset_ms,
                retry_after,
            },
            Limit::Usd(period) => {
                let usd = usd_json_u64;
                ApiError::BudgetExceeded {
                    message: format!(
                        "Key budget exceeded: {} USD {} ({} USD left; this request may cost up to {} USD{})",
                        usd(of),
                        period.reset_name(),
                        usd(remaining),
                        usd(worst.nano),
                        never(worst.nano)
                    ),
                    limit_nano: of,
                    remaining_nano: remaining,
                    reset_ms,
                    retry_after,
                }
            }
        }
    }
}

/// What admission reserved, to settle when the request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The reservation.
    pub reserved: Spend,
    /// The windows it was counted in ([`PERIODS`] order).
    pub numbers: [u64; 4],
}

/// The outcome of admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It fits: write `ledger`; settle `charge` when the request ends.
    Admit { ledger: Ledger, charge: Charge },
    /// It does not.
    Refuse(Refusal),
}

/// The numbers of the windows `now_ms` falls in ([`Ledger`] order): where a key without a budget, which
/// reserves nothing, settles what it spent.
pub fn windows_at(now_ms: u64) -> [u64; 4] {
    PERIODS.map(|p| p.number(now_ms))
}

/// What a request that reserved `reserved` spent, as its account tells it (`status` is the one the
/// client got, 0 when none):
/// - the provider's usage, at its cost, when the provider reported it;
/// - the reservation when what the provider billed is unknown: usage estimated (a stream cut, a
///   completion without usage, Envoy's timeout), a 2xx whose usage could not be read (a body passed
///   through), or no answer at all (the client left first); at least the estimate, for keys that
///   reserved nothing;
/// - nothing when the request ended in an error: no provider served it.
pub fn spent(reserved: Spend, usage: Option<&Usage>, estimated: bool, cost_nano: u64, status: u16) -> Spend {
    match usage {
        Some(u) => {
            let known =
                Spend { tokens: u.prompt_tokens.saturating_add(u.completion_tokens), nano: cost_nano };
            if estimated {
                Spend { tokens: known.tokens.max(reserved.tokens), nano: known.nano.max(reserved.nano) }
            } else {
                known
            }
        }
        None if status == 0 || (200..300).contains(&status) => reserved,
        None => Spend::default(),
    }
}

/// Reserves `reserved` at `now_ms` in every window of the stored ledger, or refuses it if it does not
/// fit one of `limits`. Windows without a limit count too (for `/key`).
pub fn admit(stored: Option<&Ledger>, limits: &KeyLimits, reserved: Spend, now_ms: u64) -> Verdict {
    let mut ledger = stored.copied().unwrap_or_default();
    let caps = [limits.tokens_per_minute, limits.usd_per_day, limits.usd_per_week, limits.usd_per_month];
    let mut refusal: Option<Refusal> = None;
    let mut numbers = [0; 4];
    for (i, ((w, cap), period)) in ledger.windows.iter_mut().zip(caps).zip(PERIODS).enumerate() {
        let amount = if i == 0 { reserved.tokens } else { reserved.nano };
        match admit_window(Some(*w), cap.unwrap_or(u64::MAX), amount, period, now_ms) {
            Admission::Admit { window, .. } => {
                *w = window;
                if let Some(n) = numbers.get_mut(i) {
                    *n = window.number;
                }
            }
            Admission::Refuse { remaining, reset_ms, retry_after } => {
                if refusal.is_none_or(|r| reset_ms > r.reset_ms) {
                    let limit = if i == 0 { Limit::TokensPerMinute } else { Limit::Usd(period) };
                    let of = cap.unwrap_or(u64::MAX);
                    refusal = Some(Refusal { limit, of, remaining, reset_ms, retry_after });
                }
            }
        }
    }
    match refusal {
        Some(r) => Verdict::Refuse(r),
        None => {
            ledger.total_nano = ledger.total_nano.saturating_add(reserved.nano);
            Verdict::Admit { ledger, charge: Charge { reserved, numbers } }
        }
    }
}

/// The stored ledger with `charge`'s reservation replaced by `actual` (0 takes it back); `None` when
/// nothing changes.
pub fn settle(stored: Option<&Ledger>, charge: &Charge, actual: Spend) -> Option<Ledger> {
    let mut ledger = stored.copied().unwrap_or_default();
    let mut changed = false;
    for (i, (w, number)) in ledger.windows.iter_mut().zip(charge.numbers).enumerate() {
        let (reserved, spent) = if i == 0 {
            (charge.reserved.tokens, actual.tokens)
        } else {
            (charge.reserved.nano, actual.nano)
        };
        if let Some(next) = settle_window(Some(*w), number, reserved, spent) {
            *w = next;
            changed = true;
        }
    }
    if charge.reserved.nano != actual.nano {
        ledger.total_nano =
            ledger.total_nano.saturating_sub(charge.reserved.nano).saturating_add(actual.nano);
        changed = true;
    }
    changed.then_some(ledger)
}

/// Prompt tokens a provider may add of its own when a request has tools or a response format (it
/// renders them into a system prompt: a few hundred tokens for Anthropic's tool use).
pub const PROVIDER_PROMPT_TOKENS: u64 = 1024;

/// The most a request may spend, whichever endpoint of its plan serves it (a fallback may land on the
/// most expensive).
///
/// Prompt tokens are bounded by the body's byte count: a tokenizer's tokens each cover at least one
/// byte of the text they encode, and the JSON around every message (`{"role":"user","content":""}`,
/// 28 bytes and more) is longer than the few tokens a chat template adds per message; a request with
/// tools or a response format gets [`PROVIDER_PROMPT_TOKENS`] more. (Images are the exception: one given
/// by URL costs the provider's image tokens, which its bytes do not bound; README.)
/// Completion tokens are the larger of the request's `max_tokens` and `max_completion_tokens`, else the
/// endpoint's `max_completion_tokens`, else its context length, else the model's, else
/// [`UNKNOWN_COMPLETION_TOKENS`], times `n`; every prompt token is priced at the dearest of the prompt
/// and cache prices, plus the request price.
pub fn worst_case(catalog: &Catalog, plan: &[EndpointRef], body_bytes: u64, facts: &CostFacts) -> Spend {
    let prompt = body_bytes.saturating_add(if facts.provider_prompt { PROVIDER_PROMPT_TOKENS } else { 0 });
    let mut out = Spend::default();
    for e in plan {
        let endpoint = catalog.endpoint(*e);
        let cap = endpoint
            .max_completion_tokens
            .or(endpoint.context_length)
            .or(catalog.model(e.model).context_length)
            .unwrap_or(UNKNOWN_COMPLETION_TOKENS);
        let completion = facts.max_tokens.map_or(cap, |asked| asked.min(cap)).saturating_mul(facts.choices);
        let mut pricing = endpoint.pricing;
        pricing.prompt =
            [pricing.prompt, pricing.cache_read.unwrap_or(0.0), pricing.cache_write.unwrap_or(0.0)]
                .into_iter()
                .fold(0.0, f64::max);
        (pricing.cache_read, pricing.cache_write) = (None, None);
        let usage = Usage { prompt_tokens: prompt, completion_tokens: completion, ..Usage::default() };
        out.tokens = out.tokens.max(prompt.saturating_add(completion));
        out.nano = out.nano.max(cost(&usage, &pricing).total_nano);
    }
    out
}

#[cfg(test)]
mod tests;
