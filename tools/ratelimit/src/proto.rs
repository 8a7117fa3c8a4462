//! The few messages of Envoy's rate limit service API, written by hand for prost (no protoc, no
//! build script).
//!
//! Field numbers and enum values come from Envoy's API as mirrored in go-control-plane at Envoy
//! commit 86c5227 (after v1.39, the API Envoy 1.40 speaks; the descriptor-level `hits_addend` has
//! been there since Envoy 1.33):
//! - `envoy/service/ratelimit/v3/rls.proto`: `RateLimitRequest`, `RateLimitResponse` and its nested
//!   `Code`, `RateLimit` (with `Unit`) and `DescriptorStatus`;
//! - `envoy/extensions/common/ratelimit/v3/ratelimit.proto`: `RateLimitDescriptor` and its nested
//!   `Entry` and `RateLimitOverride`;
//! - `envoy/type/v3/ratelimit_unit.proto`: the override's unit (same numbering as `Unit`).
//!
//! Fields the stand-in never reads or writes (response headers, raw body, dynamic metadata,
//! quotas) are left out: prost skips unknown fields when decoding.

/// `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: the only method served.
pub const SHOULD_RATE_LIMIT_PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// 0 (unset) means 1 for every descriptor that has no `hits_addend` of its own.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// `google.protobuf.UInt64Value`: when present (even 0) it replaces the request's `hits_addend`.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
    /// Newer than envoyproxy/ratelimit, which ignores it; decoded only so that tests can see it.
    #[prost(bool, tag = "4")]
    pub is_negative_hits: bool,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// An `envoy.type.v3.RateLimitUnit`, numbered like [`Unit`].
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

/// `google.protobuf.UInt64Value`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit`. WEEK was added after YEAR, hence 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

impl Unit {
    /// The enum value named `name` in the proto (upper case), as Go's `Unit_value` map has it.
    pub fn from_name(name: &str) -> Option<Unit> {
        Some(match name {
            "UNKNOWN" => Unit::Unknown,
            "SECOND" => Unit::Second,
            "MINUTE" => Unit::Minute,
            "HOUR" => Unit::Hour,
            "DAY" => Unit::Day,
            "MONTH" => Unit::Month,
            "YEAR" => Unit::Year,
            "WEEK" => Unit::Week,
            _ => return None,
        })
    }
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    /// One per request descriptor, in the request's order.
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RateLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

impl RateLimitDescriptor {
    /// A descriptor of `(key, value)` entries, with no override and no hits of its own.
    pub fn new(entries: &[(&str, &str)]) -> Self {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry { key: k.to_string(), value: v.to_string() })
                .collect(),
            ..Default::default()
        }
    }

    /// The same descriptor with its own `hits_addend` (0 included: a check that counts nothing).
    pub fn with_hits(mut self, hits: u64) -> Self {
        self.hits_addend = Some(UInt64Value { value: hits });
        self
    }
}
