//! Everything that talks to Kafka: client construction, rebalance tracking, error classification.
//!
//! This is the only part of the host (with `pipeline`) that knows rdkafka; `plugin` never sees it.

mod clients;
mod delivery;
mod errors;
pub mod headers;
mod rebalance;
mod trouble;

pub use clients::{build_consumer, build_producer, check_properties, Consumer, Producer};
pub use delivery::{is_record_refusal, DeliveryTracker};
pub use errors::{classify, ErrorClass};
pub use trouble::Trouble;
