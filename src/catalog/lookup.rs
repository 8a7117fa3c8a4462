//! The lookups that turn typed ids into references.
//!
//! Ids are minted only by the catalog, from positions in its own vectors, and the catalog is immutable
//! once parsed; every request holds the one `Rc<Catalog>` its ids came from. So a lookup by id cannot
//! miss, and these lookups are the one place in the brain where indexing is allowed (the filter is built
//! with `panic = "abort"`: an index out of bounds would abort the VM, which is why it is denied elsewhere).
#![allow(clippy::indexing_slicing)]

use super::ids::{id, EndpointRef, KeyId, ModelId, ProviderId};
use super::types::{Catalog, ClientKey, Model, ModelEndpoint, Provider};

impl Catalog {
    /// `text` with every provider key (and every whole `Authorization` value built from one) replaced by
    /// `[redacted]`. For what a provider sends back that a client will read: a provider may quote the
    /// key it was sent in its error message.
    pub fn without_keys(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.providers.iter().filter_map(|p| p.auth_value.as_ref()) {
            let value = secret.expose();
            let key = value.rsplit_once(' ').map_or(value, |(_, k)| k);
            for needle in [value, key] {
                if !needle.is_empty() && out.contains(needle) {
                    out = out.replace(needle, "[redacted]");
                }
            }
        }
        out
    }

    /// The provider `id` names.
    pub fn provider(&self, id: ProviderId) -> &Provider {
        &self.providers[id.0 as usize]
    }

    /// The model `id` names.
    pub fn model(&self, id: ModelId) -> &Model {
        &self.models[id.0 as usize]
    }

    /// The endpoint `e` names.
    pub fn endpoint(&self, e: EndpointRef) -> &ModelEndpoint {
        &self.model(e.model).endpoints[e.index as usize]
    }

    /// The provider serving endpoint `e`.
    pub fn provider_of(&self, e: EndpointRef) -> &Provider {
        self.provider(self.endpoint(e).provider)
    }

    /// The client key `id` names.
    pub fn key(&self, id: KeyId) -> &ClientKey {
        &self.keys[id.0 as usize]
    }

    /// Every provider's id, in catalog order.
    pub fn provider_ids(&self) -> impl Iterator<Item = ProviderId> {
        (0..self.providers.len()).map(|i| ProviderId(id(i)))
    }

    /// Every client key's id, in catalog order.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> {
        (0..self.keys.len()).map(|i| KeyId(id(i)))
    }

    /// The endpoints of model `m`, in catalog order.
    pub fn endpoints_of(&self, m: ModelId) -> impl Iterator<Item = EndpointRef> {
        (0..self.model(m).endpoints.len()).map(move |i| EndpointRef { model: m, index: id(i) })
    }
}
