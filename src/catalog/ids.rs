//! Typed ids for the catalog's providers, models, endpoints and client keys: minted only by the catalog,
//! from positions in its own vectors, and turned back into references only by `lookup`.

/// A provider of the catalog (an Envoy cluster pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub(super) u32);

/// A public model of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub(super) u32);

/// A client key of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub(super) u32);

/// One endpoint of one model: a candidate for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointRef {
    /// The model.
    pub model: ModelId,
    /// Its position in the model's endpoints.
    pub(super) index: u32,
}

/// Positions are `u32` in ids: catalogs are far smaller, and ids stay small and `Copy`.
pub(super) fn id(position: usize) -> u32 {
    u32::try_from(position).unwrap_or(u32::MAX)
}
