//! Nothing: the integration tests are this package's `[[test]]` targets (one file each, sharing
//! `common/`), run by `cargo test --workspace`.
