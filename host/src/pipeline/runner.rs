//! The life of one txform instance: start the Kafka clients, copy until stopped, and answer a fence
//! the way Kafka's protocol means it.
//!
//! ```text
//!            ┌──────────────────────── rejoin (group: no newer process with this id) ─┐
//!            ▼                                                                         │
//!   start: subscribe ─▶ member of the group ─▶ init_transactions ─▶ copy ──fenced──▶ ask the group
//!            │                                                       │                 │
//!            └─ stop ─▶ exit 0                  stop ─▶ exit 0 ◀─────┘                 └─ a newer process
//!                                                                                        holds the id ─▶ exit 3
//! ```
//!
//! A fence (producer epoch, static membership, or a transaction whose state is unknown) never
//! re-initialises blindly: the consumer group's member list says whether a newer process with the
//! same id exists (`kafka::membership`). If so this instance steps down without committing again;
//! if not, the fence was the broker expiring this process's own transaction or session, and new
//! clients resume from the committed offsets.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::producer::Producer as _;

use crate::config::{Guarantee, Pipeline};
use crate::kafka::membership::{self, Identity, Verdict};
use crate::kafka::{
    build_consumer, build_observer, build_producer, classify, fatal_hint, Consumer, ErrorClass,
    Incarnation, Observer, Producer,
};
use crate::metrics::{FenceAnswer, FenceLabel, Metrics};
use crate::plugin::Chain;

use super::copier::Copier;
use super::retry::until_done_or_stopped;
use super::stats::Stats;

/// Why an instance stopped before being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start: {0:#}")]
    Startup(anyhow::Error),
    #[error("giving up after {attempts} failed attempts at {offsets}: {failure}")]
    Exhausted {
        attempts: u32,
        offsets: String,
        failure: String,
    },
    #[error("{0}")]
    Superseded(String),
    #[error("fatal Kafka error, stopping: {0}")]
    Fatal(String),
}

impl RunError {
    /// Process exit code: 1 when the error policy gave up, 3 when a newer instance took over or
    /// Kafka refused the instance, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Exhausted { .. } => 1,
            RunError::Startup(_) => 2,
            RunError::Superseded(_) | RunError::Fatal(_) => 3,
        }
    }
}

/// How copying with one set of clients ended.
pub enum End {
    /// A stop was requested.
    Stopped,
    /// Kafka fenced this instance, or its clients' state is unknown: the group decides what next.
    Fenced(String),
    /// Like `Fenced`, with the member id the consumer held (known once it joined).
    FencedAs(String, Option<String>),
    Failed(RunError),
}

/// The two Kafka clients of an instance, ready to copy.
pub struct Clients {
    pub consumer: Consumer,
    pub producer: Producer,
    /// The member id the consumer joined the group with.
    joined_as: String,
}

impl Clients {
    /// The member id this process holds now (librdkafka may have rejoined since the start).
    fn member_id(&self) -> String {
        membership::member_id(&self.consumer).unwrap_or_else(|| self.joined_as.clone())
    }
}

impl Clients {
    /// Builds both clients, joins the group and, in exactly-once mode, initialises transactions
    /// (which fences any older holder of the transactional id and aborts its open transaction).
    /// Joining comes first so that whoever this fences finds this process in the group. Positions
    /// start from the group's committed offsets.
    fn start(pipeline: &Pipeline, stop: &AtomicBool) -> Result<Clients, End> {
        let me = Incarnation::current();
        let startup = |e: anyhow::Error| End::Failed(RunError::Startup(e));
        let consumer = build_consumer(pipeline, me).map_err(startup)?;
        let producer = build_producer(pipeline, me).map_err(startup)?;
        let topics: Vec<&str> = pipeline.source.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| startup(anyhow::anyhow!("subscribe to {topics:?}: {e}")))?;
        let group = &pipeline.source.group_id;
        let Some(joined_as) = membership::wait_until_member(&consumer, group, stop) else {
            return Err(End::Stopped);
        };
        if pipeline.transaction.guarantee == Guarantee::ExactlyOnce {
            let started = Instant::now();
            let initialised =
                until_done_or_stopped("init_transactions", stop, |t| producer.init_transactions(t));
            match initialised {
                Ok(true) => log::info!("transactions initialised in {:.0?}", started.elapsed()),
                Ok(false) => return Err(End::Stopped),
                Err(e) => {
                    return Err(match classify(&e) {
                        ErrorClass::Fenced => End::FencedAs(
                            format!("init_transactions: {e}"),
                            membership::member_id(&consumer).or(Some(joined_as)),
                        ),
                        ErrorClass::Fatal => {
                            let hint = match &e {
                                rdkafka::error::KafkaError::Transaction(t) => fatal_hint(t.code()),
                                _ => "",
                            };
                            End::Failed(RunError::Fatal(format!("init_transactions: {e}{hint}")))
                        }
                        _ => startup(anyhow::anyhow!("init_transactions: {e}")),
                    })
                }
            }
        }
        Ok(Clients {
            consumer,
            producer,
            joined_as,
        })
    }
}

/// At most this many rejoins within [`REJOIN_WINDOW`]. A fence with no newer process in the group
/// is normally rare (the broker expired this instance's session or transaction); a steady stream of
/// them means something outside the group holds the same transactional id.
const MAX_REJOINS: usize = 10;
const REJOIN_WINDOW: Duration = Duration::from_secs(600);

/// Runs the pipeline until `stop` is set (clean exit) or an error ends it.
pub fn run(
    pipeline: &Pipeline,
    mut chain: Chain,
    stop: &AtomicBool,
    metrics: Arc<Metrics>,
) -> Result<(), RunError> {
    let me = Incarnation::current();
    log::info!(
        "txform starting: {} -> {} | group {} | {} id {} ({me}) | batch {} records / {:?} | on failure: {} after {} retries | chain: {}",
        pipeline.source.topics.join(","),
        pipeline.sink.topic,
        pipeline.source.group_id,
        pipeline.transaction.guarantee,
        pipeline.transactional_id(),
        pipeline.batch.max_records,
        pipeline.batch.max_wait,
        pipeline.errors.on_failure.as_str(),
        pipeline.errors.max_retries,
        chain.describe().join(" -> ")
    );
    let observer = build_observer(pipeline).map_err(RunError::Startup)?;
    if !crate::kafka::check_topics_at_startup(pipeline, &observer, stop)
        .map_err(RunError::Startup)?
    {
        return Ok(());
    }
    let mut stats = Stats::new(pipeline.log.stats_interval, Arc::clone(&metrics));
    let fenced = |answer| {
        metrics
            .fence_answers
            .get_or_create(&FenceLabel { answer })
            .inc()
    };
    let mut rejoins: Vec<Instant> = Vec::new();
    let result = loop {
        let end = match Clients::start(pipeline, stop) {
            Ok(clients) => {
                log::info!("txform running as {}", pipeline.transactional_id());
                let end = Copier::new(pipeline, &clients, &mut chain, &mut stats, stop).run();
                metrics.health.copying(false);
                match end {
                    End::Fenced(reason) => End::FencedAs(reason, Some(clients.member_id())),
                    other => other,
                }
            }
            Err(end) => end,
        };
        let (reason, member_id) = match end {
            End::Stopped => break Ok(()),
            End::Failed(error) => break Err(error),
            End::Fenced(reason) => (reason, None),
            End::FencedAs(reason, member_id) => (reason, member_id),
        };
        let identity = Identity {
            transactional_id: &pipeline.transactional_id(),
            is_static: pipeline.transaction.static_membership,
            incarnation: me,
            member_id,
        };
        {
            match answer_fence(pipeline, &observer, &identity, &reason, stop) {
                Ok(None) => break Ok(()),
                Ok(Some(why)) => {
                    rejoins.retain(|at| at.elapsed() < REJOIN_WINDOW);
                    if rejoins.len() >= MAX_REJOINS {
                        break Err(RunError::Fatal(format!(
                            "{reason}: fenced {MAX_REJOINS} times within {REJOIN_WINDOW:?} although no \
                             newer process with transactional.id {} is a member of group {}; something \
                             outside this group (another pipeline?) uses the same transactional id",
                            pipeline.transactional_id(),
                            pipeline.source.group_id
                        )));
                    }
                    rejoins.push(Instant::now());
                    fenced(FenceAnswer::rejoined);
                    log::warn!(
                        "fenced ({reason}); {why}: rejoining with new Kafka clients, which resume from \
                         the committed offsets"
                    );
                }
                Err(error) => {
                    fenced(FenceAnswer::superseded);
                    break Err(error);
                }
            }
        }
    };
    if result.is_err() {
        metrics.health.fatal();
    }
    log::info!("stopping: {}", stats.summary());
    result
}

/// Asks the group who holds this instance's id after a fence. `Ok(Some(why))`: rejoin, because
/// `why`; `Ok(None)`: stopped while asking; `Err`: a newer process took over.
fn answer_fence(
    pipeline: &Pipeline,
    observer: &Observer,
    me: &Identity<'_>,
    reason: &str,
    stop: &AtomicBool,
) -> Result<Option<String>, RunError> {
    let group = &pipeline.source.group_id;
    let Some(members) = membership::ask(observer.client(), group, stop) else {
        return Ok(None);
    };
    match membership::verdict(&members, me) {
        Verdict::Superseded(newer) => Err(RunError::Superseded(format!(
            "a newer instance with the same id took over: {newer} (group {group}); this instance ({}) \
             stops without committing again ({reason})",
            me.incarnation
        ))),
        Verdict::Newest(why) => Ok(Some(why)),
    }
}
