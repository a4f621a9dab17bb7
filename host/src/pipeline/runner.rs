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

use std::cell::RefCell;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::producer::Producer as _;

use crate::config::{Guarantee, Pipeline};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::kafka::membership::{self, Epoch, Identity, Verdict};
use crate::kafka::{
    build_consumer, build_observer, build_producer, classify, errors, fatal_hint, Consumer,
    ErrorClass, Incarnation, Observer, Producer,
};
use crate::metrics::{FenceAnswer, FenceLabel, Metrics};
use crate::plugin::Chain;
use crate::state::State;

use super::copier::Copier;
use super::retry::{abort_until_done, sleep_unless_stopped, until_done_or_stopped};
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
    /// Shared with the revocation hook of a streamed batch (see `open`).
    pub producer: Arc<Producer>,
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
    fn start(pipeline: &Pipeline, stop: &AtomicBool, metrics: &Metrics) -> Result<Clients, End> {
        let me = Incarnation::current();
        let startup = |e: anyhow::Error| End::Failed(RunError::Startup(e));
        let consumer = build_consumer(pipeline, me).map_err(startup)?;
        let queue_full_waits = metrics.producer_queue_full_waits.clone();
        let producer = build_producer(pipeline, me, queue_full_waits).map_err(startup)?;
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
            producer: Arc::new(producer),
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
    chain: Chain,
    stop: &AtomicBool,
    metrics: Arc<Metrics>,
) -> Result<(), RunError> {
    let result = run_until_stopped(pipeline, chain, stop, Arc::clone(&metrics));
    // Refused credentials or certificates stop the instance like a signal; say so.
    match (result, crate::kafka::access::refused()) {
        (Ok(()), Some(why)) => {
            metrics.health.fatal();
            Err(RunError::Fatal(why.to_owned()))
        }
        (result, _) => result,
    }
}

fn run_until_stopped(
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
    if let Some(topic) = pipeline.source.topics.first() {
        membership::check_group_access(&observer, &pipeline.source.group_id, topic)
            .map_err(|e| RunError::Startup(anyhow::anyhow!(e)))?;
    }
    let state = State::open(pipeline, &chain, &observer)
        .map_err(RunError::Startup)?
        .map(RefCell::new);
    let mut stats = Stats::new(pipeline.log.stats_interval, Arc::clone(&metrics));
    let fenced = |answer| {
        metrics
            .fence_answers
            .get_or_create(&FenceLabel { answer })
            .inc()
    };
    let mut rejoins: Vec<Instant> = Vec::new();
    let result = loop {
        // The clients stay alive while a fence is answered: the producer is asked whether it
        // still holds the epoch.
        let (reason, clients, member_id) = match Clients::start(pipeline, stop, &metrics) {
            Ok(clients) => {
                log::info!("txform running as {}", pipeline.transactional_id());
                let end = Copier::new(
                    pipeline,
                    &clients,
                    &mut chain,
                    &mut stats,
                    stop,
                    state.as_ref(),
                )
                .run();
                metrics.health.copying(false);
                match end {
                    End::Fenced(reason) | End::FencedAs(reason, _) => {
                        let member_id = Some(clients.member_id());
                        (reason, Some(clients), member_id)
                    }
                    End::Stopped => break Ok(()),
                    End::Failed(error) => break Err(error),
                }
            }
            Err(End::Stopped) => break Ok(()),
            Err(End::Failed(error)) => break Err(error),
            Err(End::Fenced(reason)) => (reason, None, None),
            Err(End::FencedAs(reason, member_id)) => (reason, None, member_id),
        };
        let answer = answer_fence(
            pipeline,
            &observer,
            clients.as_ref(),
            member_id,
            &reason,
            stop,
        );
        drop(clients);
        match answer {
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
    };
    if result.is_err() {
        metrics.health.fatal();
    }
    log::info!("stopping: {}", stats.summary());
    result
}

/// How long a contested slot is asked about again before this process takes it back: a newer
/// process fences this one's producer right after it joined (its `init_transactions`), well within
/// this; an older one that rejoined by itself never does.
const CONTEST_WAIT: Duration = Duration::from_secs(10);
const CONTEST_PAUSE: Duration = Duration::from_millis(500);

/// Asks the group who holds this instance's id after a fence. `Ok(Some(why))`: rejoin, because
/// `why`; `Ok(None)`: stopped while asking; `Err`: a newer process took over.
fn answer_fence(
    pipeline: &Pipeline,
    observer: &Observer,
    clients: Option<&Clients>,
    member_id: Option<String>,
    reason: &str,
    stop: &AtomicBool,
) -> Result<Option<String>, RunError> {
    let group = &pipeline.source.group_id;
    let transactional_id = pipeline.transactional_id();
    let partitions = membership::partitions_of(observer, &pipeline.source.topics).ok();
    let contested_since = Instant::now();
    loop {
        let Some(members) = membership::ask(observer.client(), group, stop) else {
            return Ok(None);
        };
        let me = Identity {
            transactional_id: &transactional_id,
            is_static: pipeline.transaction.static_membership,
            incarnation: Incarnation::current(),
            member_id: member_id.clone(),
            epoch: clients.map_or(Epoch::Unknown, |c| probe_epoch(pipeline, c, observer)),
            newest_committer: partitions.as_ref().and_then(|p| {
                membership::newest_committer(observer, p, &transactional_id)
                    .ok()
                    .flatten()
            }),
        };
        match membership::verdict(&members, &me) {
            Verdict::Superseded(newer) => {
                return Err(RunError::Superseded(format!(
                    "a newer instance with the same id took over: {newer} (group {group}); this \
                     instance ({}) stops without committing again ({reason})",
                    me.incarnation
                )))
            }
            Verdict::Newest(why) => return Ok(Some(why)),
            Verdict::Contested(why) if contested_since.elapsed() >= CONTEST_WAIT => {
                return Ok(Some(format!(
                    "{why} after {CONTEST_WAIT:?}, so the holder never initialised transactions: an \
                     older process whose client rejoined by itself; taking the id back"
                )))
            }
            Verdict::Contested(why) => {
                log::info!("{why}: asking again");
                if !sleep_unless_stopped(CONTEST_PAUSE, stop) {
                    return Ok(None);
                }
            }
        }
    }
}

/// Whether this process's producer still holds the transactional id's epoch, asked with an empty
/// transaction: `send_offsets_to_transaction` (of offsets as they are committed, so nothing
/// changes) first registers with the transaction coordinator, which refuses a fenced epoch; what the
/// group then says of the offsets does not matter. The transaction is aborted.
fn probe_epoch(pipeline: &Pipeline, clients: &Clients, observer: &Observer) -> Epoch {
    let producer = &clients.producer;
    if let Some((code, _)) = producer.client().fatal_error() {
        return if errors::is_fencing(code) {
            Epoch::Lost
        } else {
            Epoch::Unknown
        };
    }
    if pipeline.transaction.guarantee != Guarantee::ExactlyOnce {
        return Epoch::Unknown;
    }
    let Some(offsets) = committed_sample(pipeline, observer) else {
        return Epoch::Unknown;
    };
    let Some(metadata) = clients.consumer.group_metadata() else {
        return Epoch::Unknown;
    };
    if producer.begin_transaction().is_err() {
        return Epoch::Unknown;
    }
    let epoch = match producer.send_offsets_to_transaction(&offsets, &metadata, PROBE_TIMEOUT) {
        Ok(()) => Epoch::Held,
        Err(e) => match e.rdkafka_error_code() {
            Some(code)
                if errors::is_fencing(code) && code != RDKafkaErrorCode::FencedInstanceId =>
            {
                Epoch::Lost
            }
            Some(
                RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress,
            ) => Epoch::Held,
            _ => Epoch::Unknown,
        },
    };
    let _ = abort_until_done(|t| producer.abort_transaction(t));
    epoch
}

/// How long one epoch probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One source partition with the offset the group committed for it, for [`probe_epoch`].
fn committed_sample(pipeline: &Pipeline, observer: &Observer) -> Option<TopicPartitionList> {
    let partitions = membership::partitions_of(observer, &pipeline.source.topics).ok()?;
    let committed = observer.committed_offsets(partitions, PROBE_TIMEOUT).ok()?;
    let element = committed
        .elements()
        .into_iter()
        .find(|e| matches!(e.offset(), rdkafka::Offset::Offset(_)))?;
    let mut sample = TopicPartitionList::new();
    let mut added = sample.add_partition(element.topic(), element.partition());
    added.set_offset(element.offset()).ok()?;
    added.set_metadata(element.metadata());
    Some(sample)
}
