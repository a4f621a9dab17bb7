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

    /// Creates an instance. An error here stops the host at start-up with the message.
    fn new(config: Self::Config) -> Result<Self, TransformError>;

    /// Transforms `batch`: call [`Output::emit`] with the input's index for each output (0..n per
    /// input), or [`Output::reject`] to refuse a single input without failing the batch.
    fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError>;

    /// Documentation of [`Transform::Config`] for `txform inspect`: a table of keys, types,
    /// defaults and meanings, or a JSON schema. Empty when the plugin documents nothing.
    fn config_doc() -> String {
        String::new()
    }
}
