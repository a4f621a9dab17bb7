//! The secured test broker of `scripts/kafka-secure.sh`: SASL_SSL (SCRAM, PLAIN) and mutual TLS,
//! ACLs per principal. The credentials are the script's throw-away fixtures, repeated here.
//!
//! A secured test calls [`SecureEnv::new`], which points the current thread's helpers (topic
//! creation, producing, reading) at this broker as its super-user, and names every topic, group and
//! transactional id inside one principal's ACL prefixes.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use crate::broker::{set_thread_broker, ThreadBroker};
use crate::pipeline::table;
use crate::process::workspace_dir;
use crate::topics::{create_topic, delete_topic_quietly, Topic};
use crate::TestEnv;

pub const SASL_BOOTSTRAP: &str = "127.0.0.1:9392";
pub const MTLS_BOOTSTRAP: &str = "127.0.0.1:9394";
pub const ADMIN_PASSWORD: &str = "admin-secret-0f6b";
/// Every test principal's SCRAM and PLAIN password.
pub const APP_PASSWORD: &str = "app-scram-secret-7d41";
/// The passphrase of the mTLS client's private key.
pub const CLIENT_KEY_PASSWORD: &str = "client-key-secret-3e88";

/// Where the script keeps its certificates (`TXFORM_KAFKA_SECURE_DIR`, default `.kafka-secure`).
pub fn tls_dir() -> PathBuf {
    std::env::var_os("TXFORM_KAFKA_SECURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join(".kafka-secure"))
        .join("tls")
}

/// A file of [`tls_dir`] as a string for a property.
pub fn tls_file(name: &str) -> String {
    tls_dir().join(name).display().to_string()
}

/// `[kafka.common]` for SCRAM-SHA-512 over SASL_SSL as `user`.
pub fn scram(user: &str, password: &str) -> Table {
    table(&[
        ("security.protocol", Value::String("SASL_SSL".into())),
        ("sasl.mechanism", Value::String("SCRAM-SHA-512".into())),
        ("sasl.username", Value::String(user.into())),
        ("sasl.password", Value::String(password.into())),
        ("ssl.ca.location", Value::String(tls_file("ca.pem"))),
    ])
}

/// `[kafka.common]` for mutual TLS with the `mtls-app` client certificate (its key encrypted).
pub fn mutual_tls() -> Table {
    table(&[
        ("bootstrap.servers", Value::String(MTLS_BOOTSTRAP.into())),
        ("security.protocol", Value::String("SSL".into())),
        ("ssl.ca.location", Value::String(tls_file("ca.pem"))),
        (
            "ssl.certificate.location",
            Value::String(tls_file("client.pem")),
        ),
        ("ssl.key.location", Value::String(tls_file("client.key"))),
        (
            "ssl.key.password",
            Value::String(CLIENT_KEY_PASSWORD.into()),
        ),
    ])
}

/// One secured test: the plain [`TestEnv`] (scratch directory, spawning `txform`) with its
/// helpers on the secured broker as `admin`, and names inside `principal`'s ACL prefixes
/// (`sec-<principal>-...`, see scripts/kafka/SecureSetup.java).
pub struct SecureEnv {
    pub env: TestEnv,
    principal: String,
    topics: Vec<String>,
}

impl SecureEnv {
    pub fn new(label: &str, principal: &str) -> SecureEnv {
        if TcpStream::connect_timeout(
            &SASL_BOOTSTRAP.parse().expect("an address"),
            Duration::from_secs(3),
        )
        .is_err()
        {
            panic!(
                "no secured Kafka broker at {SASL_BOOTSTRAP}; run scripts/kafka-secure.sh start"
            );
        }
        let admin = scram("admin", ADMIN_PASSWORD);
        set_thread_broker(Some(ThreadBroker {
            bootstrap: SASL_BOOTSTRAP.into(),
            client: admin
                .into_iter()
                .map(|(key, value)| (key, value.as_str().unwrap_or_default().to_owned()))
                .collect(),
        }));
        SecureEnv {
            env: TestEnv::offline(label),
            principal: principal.to_owned(),
            topics: Vec::new(),
        }
    }

    /// `sec-<principal>-<kind>-<unique base>`: inside the principal's prefix for `kind`.
    pub fn name(&self, kind: &str) -> String {
        format!("sec-{}-{kind}-{}", self.principal, self.env.base())
    }

    /// Creates topic [`SecureEnv::name`]`(kind)` as the super-user.
    pub fn create_topic(&mut self, kind: &str, partitions: i32) -> Topic {
        let topic = create_topic(&self.name(kind), partitions, &[]);
        self.topics.push(topic.name.clone());
        topic
    }

    /// A pipeline from `input` to `output` whose group and transactional id are the principal's.
    pub fn pipeline(&self, input: &Topic, output: &Topic) -> crate::PipelineConfig {
        crate::PipelineConfig::new(
            vec![input.name.clone()],
            output.name.clone(),
            self.name("group"),
            format!("sec-{}", self.principal),
        )
    }
}

impl Drop for SecureEnv {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            for topic in &self.topics {
                delete_topic_quietly(topic);
            }
        }
        set_thread_broker(None);
    }
}
