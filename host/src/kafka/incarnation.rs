//! Which process is which among all processes ever started with one transactional id.
//!
//! Kafka fences by transactional id and `group.instance.id`, which every restart of an instance
//! shares, so a fence alone cannot tell "a newer process took over" from "the broker expired this
//! process's own session or transaction". Each process therefore carries an incarnation (start time,
//! pid, a random nonce) in its `client.id`, which the group coordinator reports for every member: the
//! group then says whether a newer process with the same id exists (see `membership`).

use std::cmp::Ordering;
use std::fmt;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// One process's identity; ordered by start time, so "newer" is well defined across hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Incarnation {
    /// Milliseconds since the Unix epoch when this process first built its Kafka clients.
    pub started_ms: u64,
    pub pid: u32,
    /// Breaks ties between processes started in the same millisecond with the same pid.
    pub nonce: u32,
}

impl Ord for Incarnation {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.started_ms, self.pid, self.nonce).cmp(&(other.started_ms, other.pid, other.nonce))
    }
}

impl PartialOrd for Incarnation {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Incarnation {
    /// This process's incarnation, the same for every client it builds.
    pub fn current() -> Incarnation {
        static CURRENT: OnceLock<Incarnation> = OnceLock::new();
        *CURRENT.get_or_init(|| Incarnation {
            started_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            pid: std::process::id(),
            nonce: rand::random(),
        })
    }

    /// The `client.id` of this incarnation's clients: `<transactional id>:<started_ms>:<pid>:<nonce>`.
    pub fn client_id(&self, transactional_id: &str) -> String {
        format!(
            "{transactional_id}:{}:{}:{}",
            self.started_ms, self.pid, self.nonce
        )
    }

    /// The incarnation encoded in `client_id`, if it is a client of `transactional_id`.
    pub fn parse(client_id: &str, transactional_id: &str) -> Option<Incarnation> {
        let rest = client_id
            .strip_prefix(transactional_id)?
            .strip_prefix(':')?;
        let mut fields = rest.split(':');
        let incarnation = Incarnation {
            started_ms: fields.next()?.parse().ok()?,
            pid: fields.next()?.parse().ok()?,
            nonce: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(incarnation)
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.started_ms / 1000;
        write!(
            f,
            "pid {} started at {} (+{} ms, Unix time)",
            self.pid,
            secs,
            self.started_ms % 1000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_round_trips_only_for_its_own_transactional_id() {
        let me = Incarnation {
            started_ms: 1_795_000_000_123,
            pid: 42,
            nonce: 7,
        };
        let id = me.client_id("p-g-0");
        assert_eq!(id, "p-g-0:1795000000123:42:7");
        assert_eq!(Incarnation::parse(&id, "p-g-0"), Some(me));
        // Another instance whose id starts with ours is not ours.
        assert_eq!(Incarnation::parse(&me.client_id("p-g-0-1"), "p-g-0"), None);
        assert_eq!(Incarnation::parse("p-g-0:1:2", "p-g-0"), None);
        assert_eq!(Incarnation::parse("p-g-0:1:2:3:4", "p-g-0"), None);
        assert_eq!(Incarnation::parse("rdkafka", "p-g-0"), None);
    }

    #[test]
    fn newer_means_started_later() {
        let old = Incarnation {
            started_ms: 10,
            pid: 99,
            nonce: 1,
        };
        let new = Incarnation {
            started_ms: 11,
            pid: 1,
            nonce: 0,
        };
        assert!(new > old);
        assert_eq!(Incarnation::current(), Incarnation::current());
    }
}
