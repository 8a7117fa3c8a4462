//! `GET /models`: the catalog in OpenRouter's `ModelsListResponse` shape, rendered once at load.

use super::types::{Catalog, Model, ModelEndpoint};
use serde_json::{json, Value};

/// Renders the whole list (no pagination: `links.next` is null).
pub fn render(catalog: &Catalog) -> String {
    // Every model has an endpoint (validated at load), so none is left out.
    let data: Vec<Value> = catalog.models.iter().filter_map(render_model).collect();
    json!({
        "data": data,
        "total_count": catalog.models.len(),
        "links": { "next": null },
    })
    .to_string()
}

fn render_model(model: &Model) -> Option<Value> {
    // The price shown is the default first choice's: the cheapest endpoint.
    let top = cheapest(&model.endpoints)?;
    let p = &top.pricing;
    let mut pricing = serde_json::Map::new();
    pricing.insert("prompt".into(), per_token(p.prompt).into());
    pricing.insert("completion".into(), per_token(p.completion).into());
    pricing.insert("request".into(), per_request(p.request.unwrap_or(0.0)).into());
    pricing.insert("image".into(), per_request(p.image.unwrap_or(0.0)).into());
    if let Some(v) = p.cache_read {
        pricing.insert("input_cache_read".into(), per_token(v).into());
    }
    if let Some(v) = p.cache_write {
        pricing.insert("input_cache_write".into(), per_token(v).into());
    }
    let context_length =
        model.context_length.or_else(|| model.endpoints.iter().filter_map(|e| e.context_length).max());
    let mut params: Vec<&str> = Vec::new();
    for e in &model.endpoints {
        for s in &e.supported_parameters {
            if !params.contains(&s.as_str()) {
                params.push(s);
            }
        }
    }
    let modality = format!("{}->{}", model.input_modalities.join("+"), model.output_modalities.join("+"));
    Some(json!({
        "id": model.id,
        "canonical_slug": model.id,
        "name": model.name,
        "description": model.description,
        "created": model.created,
        "context_length": context_length,
        "architecture": {
            "modality": modality,
            "input_modalities": model.input_modalities,
            "output_modalities": model.output_modalities,
        },
        "pricing": pricing,
        "top_provider": {
            "context_length": top.context_length.or(context_length),
            "max_completion_tokens": top.max_completion_tokens,
            "is_moderated": false,
        },
        "per_request_limits": null,
        "supported_parameters": params,
        "default_parameters": null,
        "supported_voices": null,
        "links": { "details": format!("/api/v1/models/{}/endpoints", model.id) },
    }))
}

/// The cheapest endpoint (the first of equals).
fn cheapest(endpoints: &[ModelEndpoint]) -> Option<&ModelEndpoint> {
    endpoints
        .iter()
        .reduce(|best, e| if e.pricing.rank_price() < best.pricing.rank_price() { e } else { best })
}

/// USD per million tokens → USD per token as a decimal string ("0.00000023").
fn per_token(per_million: f64) -> String {
    decimal(per_million / 1_000_000.0)
}

fn per_request(usd: f64) -> String {
    decimal(usd)
}

fn decimal(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let s = format!("{v:.15}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn per_token_prices_are_exact_decimal_strings() {
        assert_eq!(per_token(0.23), "0.00000023");
        assert_eq!(per_token(0.0), "0");
        assert_eq!(per_token(15.0), "0.000015");
        assert_eq!(per_request(0.005), "0.005");
    }
}
