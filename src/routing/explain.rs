//! How a route was chosen, as data, and its one-line rendering (header `x-llm-route`, the account's
//! `route` in the access log): `<model>:<ordering>[; <model>:<ordering>]; session=<source>:<hash>;
//! plan=<provider>@<price>,…; excluded=<provider>:<reason>,…`. Header-safe ASCII.

use super::filters::Excluded;
use super::ranking::Ordering;
use super::session::Source;
use crate::catalog::{Catalog, EndpointRef, ModelId};
use crate::wire::text::push_fixed3;

/// Everything the explanation says.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Each requested model and how its endpoints were ordered, in request order.
    pub models: Vec<(ModelId, Ordering)>,
    /// The sticky session's short hash and where its key came from.
    pub session: Option<(String, Source)>,
    /// The attempts.
    pub plan: Vec<EndpointRef>,
    /// Every endpoint left out, and why.
    pub excluded: Vec<(EndpointRef, Excluded)>,
}

/// Longest model id an explanation prints (ids come from the catalog, but stay bounded in a header).
const MAX_ID: usize = 200;

impl Explanation {
    /// The one-line text.
    pub fn render(&self, catalog: &Catalog) -> String {
        let mut out = String::with_capacity(160);
        for (i, (model, ordering)) in self.models.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            push_ascii_safe(&mut out, &catalog.model(*model).id, MAX_ID);
            out.push(':');
            match ordering {
                Ordering::Sorted(sort) => {
                    out.push_str("sort=");
                    out.push_str(sort.name());
                }
                Ordering::Ordered => out.push_str("order"),
                Ordering::Empty => out.push_str("none"),
                Ordering::Weighted { sticky, shares } => {
                    out.push_str(if *sticky { "weighted(sticky)" } else { "weighted(random)" });
                    for (provider, share) in shares {
                        out.push(' ');
                        out.push_str(&catalog.provider(*provider).name);
                        out.push('=');
                        push_fixed3(&mut out, *share);
                    }
                }
            }
        }
        if let Some((short, source)) = &self.session {
            out.push_str("; session=");
            out.push_str(source.name());
            out.push(':');
            out.push_str(short);
        }
        out.push_str("; plan=");
        for (k, e) in self.plan.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            out.push_str(&catalog.endpoint(*e).plan_label);
        }
        if !self.excluded.is_empty() {
            out.push_str("; excluded=");
            for (k, (e, reason)) in self.excluded.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push_str(&catalog.provider_of(*e).name);
                out.push(':');
                out.push_str(reason.name());
            }
        }
        out
    }
}

/// Appends `s` as visible ASCII only (header-safe), at most `max` characters.
pub fn push_ascii_safe(out: &mut String, s: &str, max: usize) {
    out.extend(s.chars().take(max).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }));
}
