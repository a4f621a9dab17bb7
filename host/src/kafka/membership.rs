//! What the consumer group says about the processes that hold this instance's id.
//!
//! Kafka's fencing is meant to make the newest holder of an instance id win. A fence is answered from
//! the group's member list. With static membership (the default) the group holds one slot per
//! `group.instance.id`, and the process that joined last holds it: if another member id holds the
//! slot, a newer process took over and this one must stop; if this process's own member id still
//! holds it, or nobody does, the fence was the broker expiring this process's own transaction or
//! session, and it may rejoin. (Member ids are compared, not client ids: when a static member is
//! replaced the coordinator keeps the first registrant's client id.) With dynamic membership every
//! process is its own member, and the [`Incarnation`] in each member's `client.id` says which is
//! newer. A process becomes a member (see [`wait_until_member`]) before its `init_transactions`
//! fences anyone, so an older process that is fenced always finds its successor in the list.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::ffi::CStr;

use rdkafka::bindings;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use super::incarnation::Incarnation;

/// How long one group description may take before it is asked again.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between descriptions while waiting.
const DESCRIBE_PAUSE: Duration = Duration::from_millis(50);
/// How often a wait that goes on is reported.
const REPORT_EVERY: Duration = Duration::from_secs(15);

/// One member of the group, as the coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "member {} from {}", self.member_id, self.host)
    }
}

/// Who this process is in the group.
pub struct Identity<'a> {
    pub transactional_id: &'a str,
    /// `group.instance.id` is the transactional id (static membership).
    pub is_static: bool,
    pub incarnation: Incarnation,
    /// This process's member id, as its consumer last knew it.
    pub member_id: Option<String>,
    /// Whether this process's producer still holds the transactional id's epoch.
    pub epoch: Epoch,
    /// The newest incarnation of this transactional id found in the group's committed offsets.
    pub newest_committer: Option<Incarnation>,
}

/// What this process knows of its producer epoch after a fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// A transactional request was accepted: no other producer initialised the id since.
    Held,
    /// The coordinator fenced the epoch (a newer `init_transactions`, or the broker's own time-out).
    Lost,
    /// No answer either way (e.g. the producer failed for another reason).
    Unknown,
}

/// What the group says after this process was fenced.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A newer process with the same id is a member: this one must step down.
    Superseded(String),
    /// No newer process holds the id: the fence was this process's own, and it may rejoin
    /// (fencing any older holder). Says why.
    Newest(String),
    /// Another member took this instance's static slot, but this process's producer still holds the
    /// epoch: either a newer process between joining and `init_transactions` (it fences this one in
    /// a moment), or an older process whose client rejoined by itself after its session expired
    /// (it never will). Ask again.
    Contested(String),
}

/// Decides between `Superseded` and `Newest` from the members of the group.
pub fn verdict(members: &[Member], me: &Identity<'_>) -> Verdict {
    let id = me.transactional_id;
    if let Some(newer) = me.newest_committer.filter(|c| *c > me.incarnation) {
        return Verdict::Superseded(format!(
            "{newer} has committed offsets of group members with transactional.id {id}"
        ));
    }
    if me.is_static {
        let holders: Vec<&Member> = members
            .iter()
            .filter(|m| holds_slot(&m.member_id, id))
            .collect();
        if let Some(mine) = holders
            .iter()
            .find(|m| Some(&m.member_id) == me.member_id.as_ref())
        {
            return Verdict::Newest(format!(
                "this process ({mine}) still holds group.instance.id {id}, so the broker expired this \
                 instance's own transaction or session"
            ));
        }
        return match holders.first() {
            Some(other) if me.epoch == Epoch::Held => Verdict::Contested(format!(
                "{other} holds group.instance.id {id}, but this process's producer still holds \
                 its epoch"
            )),
            Some(newer) => Verdict::Superseded(format!(
                "{newer} joined with group.instance.id {id} after this process"
            )),
            None => Verdict::Newest(format!(
                "no member holds group.instance.id {id}, so the broker expired this instance's own \
                 transaction or session"
            )),
        };
    }
    let newer = members
        .iter()
        .filter_map(|m| Some((Incarnation::parse(&m.client_id, id)?, m)))
        .filter(|(incarnation, _)| *incarnation > me.incarnation)
        .max_by_key(|(incarnation, _)| *incarnation);
    match newer {
        Some((incarnation, member)) => Verdict::Superseded(format!(
            "{member} ({incarnation}) is a newer process with transactional.id {id}"
        )),
        None => Verdict::Newest(format!(
            "no newer process with transactional.id {id} is a member, so the broker expired this \
             instance's own transaction or session"
        )),
    }
}

/// Kafka names a static member `<group.instance.id>-<uuid>`; the UUID's fixed shape keeps
/// instance ids that extend ours (`t-0` and `t-0-1`) apart.
fn holds_slot(member_id: &str, instance_id: &str) -> bool {
    member_id
        .strip_prefix(instance_id)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|uuid| uuid.len() == 36 && uuid.matches('-').count() == 4)
}

/// The members of `group`.
pub fn members<C: ClientContext>(client: &Client<C>, group: &str) -> KafkaResult<Vec<Member>> {
    let list = client.fetch_group_list(Some(group), DESCRIBE_TIMEOUT)?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| Member {
            member_id: m.id().to_string(),
            client_id: m.client_id().to_string(),
            host: m.client_host().trim_start_matches('/').to_string(),
        })
        .collect())
}

/// The newest incarnation of `transactional_id` in the metadata of the offsets `client`'s group
/// committed for `partitions` (every committer stamps its offsets, see `Batch::next_offsets`).
pub fn newest_committer<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    partitions: &TopicPartitionList,
    transactional_id: &str,
) -> KafkaResult<Option<Incarnation>> {
    let committed = client.committed_offsets(partitions.clone(), DESCRIBE_TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| Incarnation::parse(e.metadata(), transactional_id))
        .max())
}

/// Every partition of `topics`, for [`newest_committer`].
pub fn partitions_of<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topics: &[String],
) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), DESCRIBE_TIMEOUT)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    Ok(tpl)
}

/// The member id librdkafka holds for `consumer` (empty before the first join).
pub fn member_id<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<String> {
    let client = consumer.client();
    // SAFETY: the handle is valid for the consumer's lifetime; librdkafka returns a copy of the
    // member id (or NULL), which we copy again and free with rd_kafka_mem_free as documented.
    let id = unsafe {
        let raw = bindings::rd_kafka_memberid(client.native_ptr());
        if raw.is_null() {
            return None;
        }
        let id = CStr::from_ptr(raw).to_string_lossy().into_owned();
        bindings::rd_kafka_mem_free(client.native_ptr(), raw.cast());
        id
    };
    (!id.is_empty()).then_some(id)
}

/// Asks the group for its members until it answers, or until `stop` is set (then `None`).
pub fn ask<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    stop: &AtomicBool,
) -> Option<Vec<Member>> {
    let started = Instant::now();
    let mut reported = started;
    loop {
        match members(client, group) {
            Ok(members) => return Some(members),
            Err(error) if reported.elapsed() >= REPORT_EVERY => {
                reported = Instant::now();
                log::warn!(
                    "cannot describe consumer group {group} for {:.0?}: {error}; still trying",
                    started.elapsed()
                );
            }
            Err(_) => {}
        }
        if !pause(stop) {
            return None;
        }
    }
}

/// Refuses to start when the cluster will not let this principal use the group: a consumer
/// without Read on its group never joins, and librdkafka reports that only inside `poll`, which
/// start-up must not call on the pipeline's consumer (a rebalance or a record would be served
/// there), so the wait for membership would last for ever. The observer asks for the group's
/// committed offsets of one source partition instead (its coordinator lookup needs the same ACL)
/// and is polled for the refusal: it is subscribed to nothing, so only errors come. Any other
/// answer, including none, lets start-up go on.
pub fn check_group_access<C: ConsumerContext>(
    observer: &BaseConsumer<C>,
    group: &str,
    topic: &str,
) -> Result<(), String> {
    let mut partition = TopicPartitionList::new();
    partition.add_partition(topic, 0);
    if observer
        .committed_offsets(partition, DESCRIBE_TIMEOUT)
        .is_ok()
    {
        return Ok(());
    }
    while let Some(Err(error)) = observer.poll(Duration::ZERO) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed) {
            return Err(format!(
                "consumer group {group:?} (`source.group_id`) cannot be used: the cluster refuses \
                 it to this client ({error}); grant its principal Read on the group"
            ));
        }
    }
    Ok(())
}

/// Waits until the group lists `consumer` as a member, so that every older holder of the id that
/// this process fences next can see who fenced it. Returns the member id, or `None` if `stop` was
/// set first.
pub fn wait_until_member<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    group: &str,
    stop: &AtomicBool,
) -> Option<String> {
    let started = Instant::now();
    let mut reported = started;
    loop {
        if let Some(mine) = member_id(consumer) {
            let members = ask(consumer.client(), group, stop)?;
            if members.iter().any(|m| m.member_id == mine) {
                log::info!(
                    "joined consumer group {group} as {mine} in {:.0?}",
                    started.elapsed()
                );
                return Some(mine);
            }
        }
        if reported.elapsed() >= REPORT_EVERY {
            reported = Instant::now();
            log::warn!(
                "not yet a member of consumer group {group} after {:.0?}; still waiting",
                started.elapsed()
            );
        }
        if !pause(stop) {
            return None;
        }
    }
}

/// Sleeps between two descriptions; false if `stop` is set.
fn pause(stop: &AtomicBool) -> bool {
    std::thread::sleep(DESCRIBE_PAUSE);
    !stop.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(member_id: &str, client_id: &str) -> Member {
        Member {
            member_id: member_id.to_string(),
            client_id: client_id.to_string(),
            host: "127.0.0.1".to_string(),
        }
    }

    fn incarnation(started_ms: u64) -> Incarnation {
        Incarnation {
            started_ms,
            pid: 1,
            nonce: 0,
        }
    }

    fn me(is_static: bool, member_id: Option<&str>) -> Identity<'static> {
        Identity {
            transactional_id: "t-0",
            is_static,
            incarnation: incarnation(100),
            member_id: member_id.map(str::to_string),
            epoch: Epoch::Lost,
            newest_committer: Some(incarnation(100)),
        }
    }

    #[test]
    fn a_newer_committer_wins_and_a_slot_taken_while_holding_the_epoch_is_contested() {
        const A: &str = "t-0-0b5ec9a2-8f3e-4c7e-9a51-2d4f1e6b7c80";
        const B: &str = "t-0-4d7a1c9e-2b6f-4e8a-8c3d-9f0e1a2b3c4d";
        let mine = member(A, "t-0:100:1:0");
        // A zombie that rejoined by itself holds the slot, but a newer process has been committing.
        let mut zombie = me(true, Some(A));
        zombie.newest_committer = Some(incarnation(150));
        assert!(matches!(
            verdict(std::slice::from_ref(&mine), &zombie),
            Verdict::Superseded(_)
        ));
        // The successor, displaced by that zombie, still holds the epoch: not superseded yet.
        let mut displaced = me(true, Some(B));
        displaced.epoch = Epoch::Held;
        assert!(matches!(
            verdict(std::slice::from_ref(&mine), &displaced),
            Verdict::Contested(_)
        ));
        displaced.epoch = Epoch::Unknown;
        assert!(matches!(
            verdict(&[mine], &displaced),
            Verdict::Superseded(_)
        ));
    }

    #[test]
    fn a_static_slot_belongs_to_whoever_joined_last() {
        const A: &str = "t-0-0b5ec9a2-8f3e-4c7e-9a51-2d4f1e6b7c80";
        const B: &str = "t-0-4d7a1c9e-2b6f-4e8a-8c3d-9f0e1a2b3c4d";
        let other = member(B, "t-0:100:1:0");
        // Instance `t-0-1` of the same group is not in our slot.
        let unrelated = member("t-0-1-5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b", "t-0-1:1:1:0");
        let mine = member(A, "t-0:100:1:0");
        assert!(matches!(
            verdict(&[mine, unrelated.clone()], &me(true, Some(A))),
            Verdict::Newest(_)
        ));
        assert!(matches!(
            verdict(std::slice::from_ref(&unrelated), &me(true, Some(A))),
            Verdict::Newest(_)
        ));
        // The replacement keeps our client id: only the member id tells.
        assert!(matches!(
            verdict(&[other.clone(), unrelated], &me(true, Some(A))),
            Verdict::Superseded(_)
        ));
        assert!(matches!(
            verdict(&[other], &me(true, None)),
            Verdict::Superseded(_)
        ));
    }

    #[test]
    fn dynamic_members_are_ordered_by_incarnation() {
        let older = member("x-1", &incarnation(50).client_id("t-0"));
        let newer = member("x-2", &incarnation(150).client_id("t-0"));
        let mine = member("x-3", &incarnation(100).client_id("t-0"));
        assert!(matches!(
            verdict(&[older.clone(), mine.clone()], &me(false, Some("x-3"))),
            Verdict::Newest(_)
        ));
        assert!(matches!(
            verdict(&[older, mine, newer], &me(false, Some("x-3"))),
            Verdict::Superseded(_)
        ));
    }
}
