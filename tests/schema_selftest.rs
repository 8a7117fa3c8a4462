//! Self-test of the schema validator in `tests/common/schema.rs`: it must accept bodies shaped the
//! way OpenRouter's OpenAPI document says, and reject ones that are not.

#[path = "common/schema.rs"]
mod schema;

use serde_json::{json, Value};

/// Every error-response schema the document names for POST /chat/completions and GET /models.
const ERROR_SCHEMAS: &[&str] = &[
    "BadRequestResponse",          // 400
    "UnauthorizedResponse",        // 401
    "PaymentRequiredResponse",     // 402
    "ForbiddenResponse",           // 403
    "NotFoundResponse",            // 404
    "RequestTimeoutResponse",      // 408
    "PayloadTooLargeResponse",     // 413
    "UnprocessableEntityResponse", // 422
    "TooManyRequestsResponse",     // 429
    "InternalServerResponse",      // 500
    "BadGatewayResponse",          // 502
    "ServiceUnavailableResponse",  // 503
    "EdgeNetworkTimeoutResponse",  // 524
    "ProviderOverloadedResponse",  // 529
];

fn assert_invalid(name: &str, value: &Value) -> String {
    match schema::validate(name, value) {
        Ok(()) => panic!("{name} unexpectedly accepted:\n{value:#}"),
        Err(errors) => errors,
    }
}

fn chat_result() -> Value {
    json!({
        "id": "gen-1700000000-abc",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "openai/gpt-4o-mini",
        "choices": [{
            "finish_reason": "stop",
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!"}
        }],
        "system_fingerprint": null
    })
}

fn model_entry() -> Value {
    json!({
        "id": "openai/gpt-4o-mini",
        "canonical_slug": "openai/gpt-4o-mini-2024-07-18",
        "name": "OpenAI: GPT-4o-mini",
        "created": 1_721_260_800,
        "description": "GPT-4o mini is OpenAI's small model.",
        "context_length": 128_000,
        "architecture": {
            "modality": "text+image->text",
            "input_modalities": ["text", "image"],
            "output_modalities": ["text"],
            "tokenizer": "GPT",
            "instruct_type": null
        },
        "pricing": {
            "prompt": "0.00000015",
            "completion": "0.0000006",
            "request": "0",
            "image": "0"
        },
        "top_provider": {
            "context_length": 128_000,
            "max_completion_tokens": 16_384,
            "is_moderated": true
        },
        "per_request_limits": null,
        "supported_parameters": ["max_tokens", "temperature", "top_p", "tools", "tool_choice"],
        "default_parameters": null,
        "supported_voices": null,
        "knowledge_cutoff": null,
        "expiration_date": null,
        "links": {"details": "/api/v1/models/openai/gpt-4o-mini/endpoints"}
    })
}

fn models_list() -> Value {
    json!({
        "data": [model_entry()],
        "total_count": 1,
        "links": {"next": null}
    })
}

fn stream_chunk() -> Value {
    json!({
        "id": "gen-1700000000-abc",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "openai/gpt-4o-mini",
        "choices": [{
            "index": 0,
            "delta": {"role": "assistant", "content": "Hel"},
            "finish_reason": null
        }]
    })
}

#[test]
fn every_vendored_schema_compiles() {
    let names = schema::names();
    for required in ["ChatResult", "ChatStreamChunk", "ModelsListResponse", "GetCurrentKeyResponse"]
        .iter()
        .chain(ERROR_SCHEMAS)
    {
        assert!(names.contains(required), "{required} is not vendored");
    }
    for name in names {
        // Compiles (or reports why); `true` is not a valid instance of any object schema here,
        // but the point is that compilation succeeds.
        let result = schema::validate(name, &json!(true));
        if let Err(e) = &result {
            assert!(!e.contains("does not compile"), "{e}");
        }
    }
}

#[test]
fn unknown_schema_name_is_an_error() {
    let err = schema::validate("NoSuchSchema", &json!({})).unwrap_err();
    assert!(err.contains("no schema named"), "{err}");
}

#[test]
fn minimal_chat_result_passes() {
    schema::assert_valid("ChatResult", &chat_result());
}

#[test]
fn chat_result_with_usage_passes() {
    let mut body = chat_result();
    body["system_fingerprint"] = json!("fp_44709d6fcb");
    body["usage"] = json!({
        "prompt_tokens": 25,
        "completion_tokens": 10,
        "total_tokens": 35,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost": 0.0000123,
        "cost_details": {
            "upstream_inference_cost": null,
            "upstream_inference_prompt_cost": 0.00001,
            "upstream_inference_completions_cost": 0.0000023
        },
        "is_byok": false
    });
    // OpenRouter's top-level `provider` is outside the schema; extra keys are allowed.
    body["provider"] = json!("OpenAI");
    schema::assert_valid("ChatResult", &body);
}

#[test]
fn chat_result_without_system_fingerprint_fails() {
    let mut body = chat_result();
    body.as_object_mut().unwrap().remove("system_fingerprint");
    let err = assert_invalid("ChatResult", &body);
    assert!(err.contains("system_fingerprint"), "{err}");
}

#[test]
fn chat_result_with_string_created_fails_and_names_the_path() {
    let mut body = chat_result();
    body["created"] = json!("1700000000");
    let err = assert_invalid("ChatResult", &body);
    assert!(err.contains("at /created"), "{err}");
}

#[test]
fn chat_result_reports_every_violation() {
    let mut body = chat_result();
    body["created"] = json!("now");
    body["object"] = json!("chat.completion.chunk");
    body["choices"][0]["finish_reason"] = json!("done");
    let err = assert_invalid("ChatResult", &body);
    eprintln!("{err}");
    for path in ["at /created", "at /object", "at /choices/0/finish_reason"] {
        assert!(err.contains(path), "missing {path} in:\n{err}");
    }
}

#[test]
fn models_list_passes() {
    schema::assert_valid("ModelsListResponse", &models_list());
}

#[test]
fn models_list_with_numeric_price_fails() {
    let mut body = models_list();
    body["data"][0]["pricing"]["prompt"] = json!(0.00000015);
    let err = assert_invalid("ModelsListResponse", &body);
    assert!(err.contains("at /data/0/pricing/prompt"), "{err}");
}

#[test]
fn models_list_missing_required_fields_fail() {
    for field in [
        "id",
        "canonical_slug",
        "name",
        "created",
        "pricing",
        "context_length",
        "architecture",
        "top_provider",
        "per_request_limits",
        "supported_parameters",
        "default_parameters",
        "supported_voices",
        "links",
    ] {
        let mut body = models_list();
        body["data"][0].as_object_mut().unwrap().remove(field);
        let err = assert_invalid("ModelsListResponse", &body);
        assert!(err.contains(field), "{field}: {err}");
    }
    for field in ["data", "total_count", "links"] {
        let mut body = models_list();
        body.as_object_mut().unwrap().remove(field);
        assert_invalid("ModelsListResponse", &body);
    }
}

#[test]
fn models_list_rejects_unknown_supported_parameter() {
    // `supported_parameters` items are the `Parameter` enum.
    let mut body = models_list();
    body["data"][0]["supported_parameters"] = json!(["temperature", "frobnicate"]);
    let err = assert_invalid("ModelsListResponse", &body);
    assert!(err.contains("at /data/0/supported_parameters/1"), "{err}");
}

#[test]
fn error_body_passes_every_error_schema() {
    let body = json!({"error": {"code": 404, "message": "x", "metadata": {"error_type": "model_not_found"}}});
    for name in ERROR_SCHEMAS {
        schema::assert_valid(name, &body);
    }
    // Without metadata, with null metadata, with the optional top-level fields.
    for body in [
        json!({"error": {"code": 404, "message": "x"}}),
        json!({"error": {"code": 404, "message": "x", "metadata": null}}),
        json!({"error": {"code": 429, "message": "x", "metadata": {"error_type": "rate_limit_exceeded"}},
               "user_id": null, "openrouter_metadata": null}),
    ] {
        schema::assert_valid("NotFoundResponse", &body);
    }
}

#[test]
fn malformed_error_bodies_fail() {
    for body in [
        json!({"error": {"code": "404", "message": "x"}}),
        json!({"error": {"code": 404}}),
        json!({"error": {"message": "x"}}),
        json!({"error": {"code": 404, "message": "x", "metadata": "model_not_found"}}),
        json!({"code": 404, "message": "x"}),
        json!({"error": "not found"}),
    ] {
        assert_invalid("NotFoundResponse", &body);
    }
}

#[test]
fn stream_chunk_passes() {
    schema::assert_valid("ChatStreamChunk", &stream_chunk());
    // The SSE wrapper schema of the document wraps a chunk under `data`.
    schema::assert_valid("ChatStreamingResponse", &json!({"data": stream_chunk()}));
}

#[test]
fn final_usage_chunk_passes() {
    let mut chunk = stream_chunk();
    chunk["choices"] = json!([]);
    chunk["usage"] = json!({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8});
    schema::assert_valid("ChatStreamChunk", &chunk);
}

#[test]
fn stream_chunk_requires_finish_reason_key_and_typed_fields() {
    let mut chunk = stream_chunk();
    chunk["choices"][0].as_object_mut().unwrap().remove("finish_reason");
    assert_invalid("ChatStreamChunk", &chunk);

    let mut chunk = stream_chunk();
    chunk["object"] = json!("chat.completion");
    assert_invalid("ChatStreamChunk", &chunk);

    // Unlike ChatResult, ChatStreamChunk's `system_fingerprint` is `type: string` only:
    // omit it rather than send null.
    let mut chunk = stream_chunk();
    chunk["system_fingerprint"] = json!(null);
    let err = assert_invalid("ChatStreamChunk", &chunk);
    assert!(err.contains("at /system_fingerprint"), "{err}");
}

#[test]
fn mid_stream_error_chunk_passes_and_error_type_is_an_enum() {
    let mut chunk = stream_chunk();
    chunk["choices"] = json!([{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]);
    chunk["error"] = json!({
        "code": 502,
        "message": "Provider returned error",
        "metadata": {"error_type": "provider_unavailable"}
    });
    schema::assert_valid("ChatStreamChunk", &chunk);

    // In a chunk, metadata.error_type is required and must be an ApiErrorType value.
    chunk["error"]["metadata"]["error_type"] = json!("model_not_found");
    let err = assert_invalid("ChatStreamChunk", &chunk);
    assert!(err.contains("at /error/metadata/error_type"), "{err}");
    chunk["error"]["metadata"] = json!({});
    assert_invalid("ChatStreamChunk", &chunk);
}

#[test]
fn key_response_passes() {
    let body = json!({"data": {
        "label": "sk-or-v1-au7...890",
        "limit": null,
        "limit_remaining": null,
        "limit_reset": null,
        "usage": 25.5,
        "usage_daily": 25.5,
        "usage_weekly": 25.5,
        "usage_monthly": 25.5,
        "byok_usage": 0,
        "byok_usage_daily": 0,
        "byok_usage_weekly": 0,
        "byok_usage_monthly": 0,
        "is_free_tier": false,
        "is_management_key": false,
        "is_provisioning_key": false,
        "include_byok_in_limit": false,
        "creator_user_id": null,
        "rate_limit": {"interval": "1h", "note": "This field is deprecated and safe to ignore.", "requests": -1}
    }});
    schema::assert_valid("GetCurrentKeyResponse", &body);
}
