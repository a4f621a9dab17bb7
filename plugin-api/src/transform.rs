//! The plain Rust trait a plugin author implements.

use serde::de::DeserializeOwned;

use crate::output::Output;
use crate::record::Record;

/// Any error a transform returns; its `Display` (and chain of sources) reaches the host's log and, under
/// the dead-letter policy, the dead-letter record's headers.
pub type TransformError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A batch transform.
///
/// The host creates one instance per pipeline instance (and a fresh one after a panic), then calls
/// [`Transform::transform`] once per batch, inside the Kafka transaction. Returning an error (or
/// panicking) aborts the transaction; nothing of the batch becomes visible.
pub trait Transform: Send + Sized + 'static {
    /// The table under this transform in `pipeline.toml`, deserialized from JSON. Use
    /// `#[serde(deny_unknown_fields)]` so typos are reported at start-up.
    type Config: DeserializeOwned;

    /// Host features this plugin cannot run without (see [`crate::HOST_FEATURES`]), e.g.
    /// `&["state-stores"]` for a transform that uses [`Output::state_get`]; a host that lacks one
    /// refuses the plugin at load time instead of failing its calls.
    const REQUIRES: &'static [&'static str] = &[];

    /// Creates an instance. An error here stops the host at start-up with the message.
    fn new(config: Self::Config) -> Result<Self, TransformError>;

    /// Transforms `batch`: call [`Output::emit`] with the input's index for each output (0..n per
    /// input), or [`Output::reject`] to refuse a single input without failing the batch.
    fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError>;

    /// Names of the state stores this instance uses through [`Output::state_get`],
    /// [`Output::state_put`] and [`Output::state_delete`]. The host creates (or checks) one
    /// changelog topic per name and restores each store before the instance sees a record of its
    /// partition; a store not listed here is refused. Asked once, after [`Transform::new`].
    fn stores(&self) -> Vec<String> {
        Vec::new()
    }

    /// Documentation of [`Transform::Config`] for `txform inspect`: a table of keys, types,
    /// defaults and meanings, or a JSON schema. Empty when the plugin documents nothing.
    fn config_doc() -> String {
        String::new()
    }
}
