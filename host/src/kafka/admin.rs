//! Topic creation: the changelog topics of state stores (the only topics txform itself creates) and
//! the topics of the tools around txform (the integration tests, the benchmark). One place, so all
//! wait for the same thing: every partition led.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How long a created topic may take to have a leader for every partition.
const READY_DEADLINE: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("create topic {topic}: {error}")]
    Client {
        topic: String,
        #[source]
        error: KafkaError,
    },
    #[error("create topic {topic}: {code}")]
    Refused {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic {0} has no leader for every partition after 30 s")]
    NotReady(String),
}

/// Creates `name` with `partitions` partitions (replication 1) and topic-level `configs` through a
/// client configured by `config` (e.g. just `bootstrap.servers`), then waits until the metadata
/// lists every partition with a leader.
pub fn create_topic(
    config: &ClientConfig,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), AdminError> {
    create_replicated_topic(config, name, partitions, 1, configs)
}

/// [`create_topic`] with `replication` replicas; -1 is the broker's `default.replication.factor`.
pub fn create_replicated_topic(
    config: &ClientConfig,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> Result<(), AdminError> {
    let client_error = |error| AdminError::Client {
        topic: name.to_owned(),
        error,
    };
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(client_error)?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(READY_DEADLINE));
    let results = block_on(admin.create_topics([&topic], &options)).map_err(client_error)?;
    for result in results {
        if let Err((topic, code)) = result {
            return Err(AdminError::Refused { topic, code });
        }
    }
    let metadata: BaseConsumer = config.create().map_err(client_error)?;
    let deadline = Instant::now() + READY_DEADLINE;
    while !all_led(&metadata, name, partitions) {
        if Instant::now() >= deadline {
            return Err(AdminError::NotReady(name.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Whether the metadata lists `partitions` partitions of `name`, each with a leader and no error.
fn all_led(client: &BaseConsumer, name: &str, partitions: i32) -> bool {
    client
        .fetch_metadata(Some(name), METADATA_TIMEOUT)
        .ok()
        .and_then(|md| {
            md.topics().iter().find(|t| t.name() == name).map(|t| {
                t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions()
                        .iter()
                        .all(|p| p.leader() >= 0 && p.error().is_none())
            })
        })
        .unwrap_or(false)
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on the current thread: rdkafka's admin futures are plain oneshot
/// channels, no runtime needed.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}
