//! Everything that talks to Kafka: client construction, rebalance tracking, error classification,
//! whether topics exist.
//!
//! This is the only part of the host (with `pipeline`) that knows rdkafka; `plugin` never sees it.

mod clients;
mod delivery;
mod errors;
mod rebalance;
mod topics;
mod trouble;

pub use clients::{build_consumer, build_producer, check_properties, Consumer, Producer};
pub use delivery::{is_record_refusal, DeliveryTracker};
pub use errors::{classify, ErrorClass};
pub use topics::{
    check_topics, check_topics_at_startup, describe, KnownTopics, TopicProblem, TopicState,
    TopicsError, RECHECK_INTERVAL, STARTUP_DEADLINE,
};
pub use trouble::Trouble;
