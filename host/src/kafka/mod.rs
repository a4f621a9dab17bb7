//! Everything that talks to Kafka: client construction, rebalance tracking, error classification,
//! whether topics exist.
//!
//! This is the only part of the host (with `pipeline`) that knows rdkafka; `plugin` never sees it.

pub mod access;
pub mod admin;
mod client_log;
mod clients;
mod commit;
mod delivery;
pub mod errors;
pub mod headers;
mod incarnation;
pub mod membership;
mod rebalance;
mod topics;

pub use clients::{
    admin_config, build_consumer, build_observer, build_producer, build_restorer, Consumer,
    Observer, Producer,
};
pub use commit::commit_delivered;
pub use delivery::{is_record_refusal, Deliveries, DeliveryTracker};
pub use errors::{classify, fatal_hint, refine, CallError, ErrorClass, TxnCallError};
pub use incarnation::Incarnation;
pub use rebalance::RevokeHook;
pub use topics::{
    check_topics, check_topics_at_startup, describe, KnownTopics, TopicProblem, TopicState,
    TopicsError, RECHECK_INTERVAL, STARTUP_DEADLINE,
};
