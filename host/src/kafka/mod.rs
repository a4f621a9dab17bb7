//! Everything that talks to Kafka: client construction, rebalance tracking, error classification.
//!
//! This is the only part of the host (with `pipeline`) that knows rdkafka; `plugin` never sees it.

mod client_log;
mod clients;
mod delivery;
mod errors;
mod incarnation;
pub mod membership;
mod rebalance;

pub use clients::{
    build_consumer, build_observer, build_producer, check_properties, Consumer, Producer,
};
pub use delivery::{is_record_refusal, Deliveries, DeliveryTracker};
pub use errors::{classify, fatal_hint, refine, ErrorClass};
pub use incarnation::Incarnation;
