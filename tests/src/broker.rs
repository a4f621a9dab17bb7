//! The Kafka broker under test: its address, a reachability check and base client settings.

use std::cell::RefCell;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Environment variable naming the broker; `scripts/test.sh` sets it from `scripts/kafka.sh bootstrap`.
pub const BOOTSTRAP_ENV: &str = "TXFORM_BOOTSTRAP";
const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Another broker for the current test's thread: its address and the settings (credentials) of
/// the clients the test helpers create (see `crate::secure`).
#[derive(Clone)]
pub struct ThreadBroker {
    pub bootstrap: String,
    pub client: Vec<(String, String)>,
}

thread_local! {
    static THREAD_BROKER: RefCell<Option<ThreadBroker>> = const { RefCell::new(None) };
}

/// Points this thread's helpers at `broker` (`None`: back to [`BOOTSTRAP_ENV`]'s broker).
pub fn set_thread_broker(broker: Option<ThreadBroker>) {
    THREAD_BROKER.with(|current| *current.borrow_mut() = broker);
}

fn thread_broker() -> Option<ThreadBroker> {
    THREAD_BROKER.with(|current| current.borrow().clone())
}

/// `host:port` of the broker (`$TXFORM_BOOTSTRAP`, default `127.0.0.1:9092`, or this thread's
/// [`ThreadBroker`]).
pub fn bootstrap() -> String {
    if let Some(broker) = thread_broker() {
        return broker.bootstrap;
    }
    std::env::var(BOOTSTRAP_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string())
}

/// Panics with instructions unless a Kafka broker answers at [`bootstrap`]. Checked once per process:
/// a TCP connection, then a metadata request (a port that accepts connections is not yet a broker).
pub fn ensure_broker() {
    if thread_broker().is_some() {
        // Checked when it was set.
        return;
    }
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(message) = CHECKED.get_or_init(check_broker) {
        panic!("{message}");
    }
}

fn check_broker() -> Result<(), String> {
    let address = bootstrap();
    let no_broker = |why: String| {
        format!(
            "no Kafka broker at {address} ({why}); run scripts/kafka.sh start \
             (or set {BOOTSTRAP_ENV} to the broker's host:port)"
        )
    };
    let socket = address
        .to_socket_addrs()
        .map_err(|e| no_broker(format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| no_broker("address resolves to nothing".to_string()))?;
    TcpStream::connect_timeout(&socket, Duration::from_secs(3))
        .map_err(|e| no_broker(format!("cannot connect: {e}")))?;
    let consumer: BaseConsumer = client_config()
        .create()
        .map_err(|e| no_broker(format!("cannot create a client: {e}")))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|e| no_broker(format!("no metadata answer: {e}")))?;
    if metadata.brokers().is_empty() {
        return Err(no_broker("metadata lists no brokers".to_string()));
    }
    Ok(())
}

/// Base settings of every client the tests create: the broker, and quiet librdkafka logs.
pub fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap())
        .set("socket.connection.setup.timeout.ms", "10000")
        .set("log_level", "3");
    for (key, value) in thread_broker().map(|b| b.client).unwrap_or_default() {
        config.set(key, value);
    }
    config
}
