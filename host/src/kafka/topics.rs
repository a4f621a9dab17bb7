//! Whether topics exist on the cluster, asked before they are needed.
//!
//! A missing or unauthorised topic is a configuration problem: producing to it fails every time,
//! and without this check such a failure looks like Kafka trouble and is retried for ever. So
//! start-up checks every configured topic ([`check_topics`]), and [`KnownTopics`] answers the same
//! question per record for the topics plugins choose, asking the cluster once per topic.
//!
//! Pass the consumer's client: a producer's metadata request may have the broker auto-create the
//! topic (librdkafka's producer default), which would hide the problem; a consumer's never does
//! unless the user sets `allow.auto.create.topics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::Consumer as _;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::config::{topic_name_problem, ConfiguredTopic, Pipeline};

use super::clients::Consumer;

/// Longest wait for one metadata answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the start-up check waits for the cluster in all.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// A topic reported missing at start-up is asked about again for this long before it is taken as
/// missing: a topic created just before may not be in every broker's metadata yet.
const MISSING_GRACE: Duration = Duration::from_secs(2);
/// Pause between two questions about the same topic.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// [`KnownTopics`] asks again about a refused topic (or one it got no answer for) after this long,
/// so a topic created while txform runs is found within it.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Why a topic cannot be used; shown after the key that names it (or "output topic").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicProblem {
    /// The text of [`topic_name_problem`] follows the name.
    #[error("{name:?} {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{0:?} does not exist on the cluster (auto-creation is not used: create it first)")]
    Missing(String),
    #[error(
        "{name:?} cannot be used: the cluster refuses to describe it to this client ({error}); \
         grant its principal access to the topic"
    )]
    Unauthorised { name: String, error: String },
}

/// What the cluster said about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    Exists,
    Refused(TopicProblem),
    /// No definite answer (cluster unreachable, leader election in progress); ask again later.
    Unknown(String),
}

/// Asks the cluster about `topic`, waiting at most `timeout`. An invalid name is refused without
/// asking.
pub fn describe<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> TopicState {
    if let Some(reason) = topic_name_problem(topic) {
        return TopicState::Refused(TopicProblem::InvalidName {
            name: topic.to_owned(),
            reason,
        });
    }
    let metadata = match client.fetch_metadata(Some(topic), timeout) {
        Ok(metadata) => metadata,
        Err(error) => return TopicState::Unknown(error.to_string()),
    };
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return TopicState::Unknown("the cluster's answer did not mention it".to_owned());
    };
    match found.error() {
        None => TopicState::Exists,
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
            TopicState::Refused(TopicProblem::Missing(topic.to_owned()))
        }
        Some(error @ RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) => {
            TopicState::Refused(TopicProblem::Unauthorised {
                name: topic.to_owned(),
                error: RDKafkaErrorCode::from(error).to_string(),
            })
        }
        Some(error) => TopicState::Unknown(RDKafkaErrorCode::from(error).to_string()),
    }
}

/// Why the configured topics cannot be used, or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicsError {
    /// One `file:line: key "topic" ...` line per refused topic.
    #[error("{}", .0.join("\n"))]
    Refused(Vec<String>),
    #[error("the cluster did not say within {deadline:?} whether {topic:?} exists: {why}")]
    Unreachable {
        topic: String,
        deadline: Duration,
        why: String,
    },
}

/// Checks that every topic of the pipeline file exists and may be described, asking `client` for
/// at most `deadline` in all. Every refused topic is reported; `Unreachable` when the cluster gave
/// no definite answer in time (refused topics found before that are still reported as refused).
pub fn check_topics<C: ClientContext>(
    pipeline: &Pipeline,
    client: &Client<C>,
    deadline: Duration,
) -> Result<(), TopicsError> {
    let end = Instant::now() + deadline;
    let mut refused = Vec::new();
    for topic in pipeline.configured_topics() {
        match settle(client, topic.name, end) {
            Ok(None) => {}
            Ok(Some(problem)) => refused.push(refusal(pipeline, &topic, &problem)),
            Err(why) if refused.is_empty() => {
                return Err(TopicsError::Unreachable {
                    topic: topic.name.to_owned(),
                    deadline,
                    why,
                })
            }
            Err(_) => break,
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(TopicsError::Refused(refused))
    }
}

/// The start-up check: a refused topic is an error (a configuration problem); a cluster that cannot
/// be reached within [`STARTUP_DEADLINE`] is only a warning, because the rest of start-up waits for
/// Kafka anyway and an outage is never a reason to stop. Returns `Ok(false)` if `stop` was set
/// while waiting for the cluster.
pub fn check_topics_at_startup(
    pipeline: &Pipeline,
    consumer: &Consumer,
    stop: &AtomicBool,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut reported = started;
    loop {
        match check_topics(pipeline, consumer.client(), STOP_CHECK_EVERY) {
            Ok(()) => return Ok(true),
            Err(error @ TopicsError::Refused(_)) => return Err(error.into()),
            Err(_) if stop.load(Ordering::SeqCst) => return Ok(false),
            Err(error @ TopicsError::Unreachable { .. })
                if started.elapsed() >= STARTUP_DEADLINE =>
            {
                log::warn!("topics not checked: {error}; starting anyway");
                return Ok(true);
            }
            Err(error @ TopicsError::Unreachable { .. }) => {
                // A consumer's error callback runs only inside `poll`: serve it, so a refusal of
                // this client's credentials or of the broker's certificate stops the instance
                // (`kafka::access`). The client is subscribed to nothing, so no record comes.
                let _ = consumer.poll(Duration::ZERO);
                if reported.elapsed() >= UNREACHABLE_REPORT_EVERY {
                    reported = Instant::now();
                    log::warn!(
                        "cannot reach the Kafka cluster for {:.0?}: {error}; still trying",
                        started.elapsed()
                    );
                }
            }
        }
    }
}

/// How often an unreachable cluster is reported while start-up waits for it.
const UNREACHABLE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// How long one round of the start-up check may wait for the cluster before a stop is looked at.
const STOP_CHECK_EVERY: Duration = Duration::from_secs(3);

/// `file:line: key "topic" problem`, and for a refused description the ACL the pipeline needs.
fn refusal(pipeline: &Pipeline, topic: &ConfiguredTopic<'_>, problem: &TopicProblem) -> String {
    let needed = match (problem, topic.key) {
        (TopicProblem::Unauthorised { .. }, "source.topics") => " (ACL: Read on the topic)",
        (TopicProblem::Unauthorised { .. }, _) => " (ACL: Write on the topic)",
        _ => "",
    };
    format!(
        "{}: `{}` {problem}{needed}",
        pipeline.location(topic.line),
        topic.key
    )
}

/// Asks about `topic` until the answer is definite or `end` passes: `Ok(None)` it exists,
/// `Ok(Some(_))` it is refused, `Err` the last reason there was no answer. "Missing" counts as
/// definite only once it has lasted [`MISSING_GRACE`].
fn settle<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    end: Instant,
) -> Result<Option<TopicProblem>, String> {
    let mut missing_since: Option<Instant> = None;
    let mut why = "no answer in time".to_owned();
    loop {
        let remaining = end.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(why);
        }
        match describe(client, topic, remaining.min(REQUEST_TIMEOUT)) {
            TopicState::Exists => return Ok(None),
            TopicState::Refused(problem @ TopicProblem::Missing(_)) => {
                let since = *missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= MISSING_GRACE {
                    return Ok(Some(problem));
                }
                why = "it was still reported missing".to_owned();
            }
            TopicState::Refused(problem) => return Ok(Some(problem)),
            TopicState::Unknown(reason) => why = reason,
        }
        sleep(RETRY_PAUSE.min(end.saturating_duration_since(Instant::now())));
    }
}

/// What [`KnownTopics`] remembers of one topic.
#[derive(Debug, Clone)]
enum Known {
    Exists,
    /// Refused when last asked, at that instant.
    Refused(TopicProblem, Instant),
    /// No answer when last asked, at that instant: taken to exist until asked again.
    Unknown(Instant),
}

/// Cached answers to "may records be produced to this topic?", for the topics plugins choose.
///
/// The cluster is asked about a topic the first time it is seen (a blocking metadata request of at
/// most a few seconds); a topic that exists is never asked about again, and one refused or not
/// answered for is asked again at most every [`RECHECK_INTERVAL`]. In between, answers cost a map
/// look-up, so the producer path can refuse a record cheaply.
#[derive(Debug, Clone)]
pub struct KnownTopics {
    topics: HashMap<String, Known>,
    timeout: Duration,
    recheck: Duration,
}

impl Default for KnownTopics {
    fn default() -> Self {
        KnownTopics::new()
    }
}

impl KnownTopics {
    pub fn new() -> Self {
        KnownTopics::with_intervals(REQUEST_TIMEOUT, RECHECK_INTERVAL)
    }

    /// With a different wait for one answer and interval between questions about a refused topic.
    pub fn with_intervals(timeout: Duration, recheck: Duration) -> Self {
        KnownTopics {
            topics: HashMap::new(),
            timeout,
            recheck,
        }
    }

    /// Also knows that `topics` exist, e.g. the configured ones once [`check_topics`] passed.
    pub fn knowing(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        for topic in topics {
            self.topics.insert(topic.into(), Known::Exists);
        }
        self
    }

    /// `Err` if records cannot be produced to `topic`: its name is invalid, or the cluster said it
    /// is missing or unauthorised. `Ok` if it exists, and also when the cluster gave no answer (the
    /// produce call then meets the same trouble, which is Kafka's, not the record's).
    pub fn check<C: ClientContext>(
        &mut self,
        client: &Client<C>,
        topic: &str,
    ) -> Result<(), TopicProblem> {
        let due = match self.topics.get(topic) {
            None => true,
            Some(Known::Exists) => false,
            Some(Known::Refused(_, at) | Known::Unknown(at)) => at.elapsed() >= self.recheck,
        };
        if due {
            let known = match describe(client, topic, self.timeout) {
                TopicState::Exists => Known::Exists,
                TopicState::Refused(problem) => Known::Refused(problem, Instant::now()),
                TopicState::Unknown(_) => Known::Unknown(Instant::now()),
            };
            self.topics.insert(topic.to_owned(), known);
        }
        match self.topics.get(topic) {
            Some(Known::Refused(problem, _)) => Err(problem.clone()),
            _ => Ok(()),
        }
    }
}
