//! Output records, owned by the host once the call returns.
//!
//! [`OutRecord`], [`OutHeader`] and [`Rejection`] cross the boundary (one by one, through
//! [`crate::abi::Host`]) and are frozen; [`Output`] and [`Forward`] never cross it, so they may grow
//! freely.

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RString, RVec},
    StableAbi,
};

use crate::abi::{Host, HostRef, Host_TO};
use crate::record::Record;
use crate::state::CallHost;

/// Everything one transform call produced: outputs and per-record rejections.
///
/// A plugin fills its own `Output`; the export macro's guard hands its contents to the host after a
/// successful call, emitted and forwarded outputs in the order the plugin made them. The test
/// driver collects into one through [`Output::as_host`]; as a host it cannot forward, so forwarded
/// outputs arrive there as the copies the host would produce.
#[derive(Debug, Default)]
pub struct Output {
    records: RVec<OutRecord>,
    forwards: Vec<Forwarded>,
    rejections: RVec<Rejection>,
    /// The host of the call in progress, for state access (see `crate::state`).
    pub(crate) call_host: CallHost,
}

/// Where a forwarded input goes; unset fields fall back to the host's defaults, as in an
/// [`OutRecord`] (the pipeline's output topic, the producer's partitioner).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forward {
    pub topic: Option<String>,
    pub partition: Option<i32>,
}

/// One forwarded input of an [`Output`], made after its first `at` emitted records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Index of the forwarded input in the batch.
    pub input: u32,
    pub to: Forward,
    at: usize,
}

/// A record to produce. Unset fields fall back to the host's defaults: the pipeline's output topic, the
/// producer's partitioner and the producer's timestamp.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
pub struct OutRecord {
    /// Index, in the batch handed to the call, of the input this record came from.
    pub input: u32,
    pub topic: ROption<RString>,
    pub partition: ROption<i32>,
    pub timestamp: ROption<i64>,
    pub key: ROption<RVec<u8>>,
    pub value: ROption<RVec<u8>>,
    pub headers: RVec<OutHeader>,
}

/// One owned header of an output record.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct OutHeader {
    pub key: RString,
    pub value: ROption<RVec<u8>>,
}

/// A single input record the transform refuses, without failing the rest of the batch. The host's error
/// policy decides what happens to it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the rejected input in the batch handed to the call.
    pub input: u32,
    pub reason: RString,
}

impl Output {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `record` as an output of the input at `input` (its index in the batch).
    pub fn emit(&mut self, input: usize, mut record: OutRecord) {
        record.input = index_u32(input);
        self.records.push(record);
    }

    /// Produces the input at `input` (its index in the batch) unchanged: its key, value, headers and
    /// timestamp, to the host's default topic and partition. The host produces it from the fetched
    /// message itself, without the plugin copying its bytes (cheaper than emitting
    /// [`OutRecord::from_input`]); an older host gets that copy instead, so the outcome is the same.
    pub fn forward(&mut self, input: usize) {
        self.forward_to(input, Forward::default());
    }

    /// [`Output::forward`] to the topic and partition `to` names.
    pub fn forward_to(&mut self, input: usize, to: Forward) {
        self.forwards.push(Forwarded {
            input: index_u32(input),
            to,
            at: self.records.len(),
        });
    }

    /// Rejects the input at `input` (its index in the batch) with a reason.
    pub fn reject(&mut self, input: usize, reason: impl Into<String>) {
        self.rejections.push(Rejection {
            input: index_u32(input),
            reason: RString::from(reason.into()),
        });
    }

    /// The emitted records (forwarded inputs are in [`Output::forwards`]).
    pub fn records(&self) -> &[OutRecord] {
        &self.records
    }

    /// The forwarded inputs, in order.
    pub fn forwards(&self) -> &[Forwarded] {
        &self.forwards
    }

    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }

    /// Takes the emitted records and rejections, leaving `self` empty (forwarded inputs, which mean
    /// something only next to their batch, are dropped).
    pub fn take(&mut self) -> (RVec<OutRecord>, RVec<Rejection>) {
        self.forwards.clear();
        (
            std::mem::take(&mut self.records),
            std::mem::take(&mut self.rejections),
        )
    }

    /// Empties `self`, keeping the allocation of `records` (taken earlier with [`Output::take`]) for
    /// the next call, so a host does not grow a fresh vector for every batch.
    pub fn recycle(&mut self, mut records: RVec<OutRecord>) {
        records.clear();
        self.records = records;
        self.forwards.clear();
        self.rejections.clear();
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.forwards.clear();
        self.rejections.clear();
    }

    /// This output as the host object of a call: what the plugin emits is appended here.
    pub fn as_host(&mut self) -> HostRef<'_> {
        Host_TO::from_ptr(self, TD_Opaque)
    }

    /// Moves the outputs and rejections to `host`, leaving `self` empty (its allocations kept).
    /// Outputs keep their order; a forward the host cannot take (an older host answers false)
    /// becomes an emitted copy of its input in `batch`.
    pub(crate) fn hand_to(&mut self, batch: &[Record<'_>], host: &mut HostRef<'_>) {
        let mut records = self.records.drain(..);
        let mut handed = 0;
        for forwarded in self.forwards.drain(..) {
            for record in records.by_ref().take(forwarded.at - handed) {
                host.emit(record);
            }
            handed = forwarded.at;
            let Forwarded { input, to, .. } = forwarded;
            let (topic, partition) = (to.topic.clone(), to.partition);
            if !host.forward(input, topic.map(RString::from).into(), partition.into()) {
                host.emit(to.copy_of(batch, input));
            }
        }
        for record in records {
            host.emit(record);
        }
        for rejection in self.rejections.drain(..) {
            host.reject(rejection);
        }
    }
}

impl Forward {
    /// To `topic` instead of the pipeline's output topic.
    pub fn to_topic(topic: impl Into<String>) -> Self {
        Forward {
            topic: Some(topic.into()),
            partition: None,
        }
    }

    /// To partition `partition` instead of the producer's partitioner's choice.
    pub fn to_partition(partition: i32) -> Self {
        Forward {
            topic: None,
            partition: Some(partition),
        }
    }

    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// What forwarding the input at `input` of `batch` here produces, as an emitted record: a
    /// copy of it ([`OutRecord::from_input`]) with this route, attributed to `input`. An index
    /// past the batch gives an empty record attributed to it, which the host refuses as it
    /// refuses any output of an input that does not exist.
    pub fn copy_of(&self, batch: &[Record<'_>], input: u32) -> OutRecord {
        let mut copy = match batch.get(input as usize) {
            Some(record) => OutRecord::from_input(record),
            None => OutRecord::default(),
        };
        copy.input = input;
        copy.topic = self.topic.clone().map(RString::from).into();
        copy.partition = self.partition.into();
        copy
    }
}

impl Host for Output {
    fn emit(&mut self, record: OutRecord) {
        self.records.push(record);
    }

    fn reject(&mut self, rejection: Rejection) {
        self.rejections.push(rejection);
    }
}

/// Batches are bounded far below `u32::MAX` records by the host.
pub(crate) fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

impl OutRecord {
    /// A record with only a value.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        OutRecord {
            value: ROption::RSome(RVec::from(value.into())),
            ..Self::default()
        }
    }

    /// A copy of the input's key, value, headers and timestamp (not its topic or partition).
    pub fn from_input(input: &Record<'_>) -> Self {
        OutRecord {
            input: 0,
            topic: ROption::RNone,
            partition: ROption::RNone,
            timestamp: input.timestamp().into(),
            key: input.key().map(RVec::from_slice).into(),
            value: input.value().map(RVec::from_slice).into(),
            headers: input
                .headers()
                .iter()
                .map(|h| OutHeader {
                    key: RString::from(h.key()),
                    value: h.value().map(RVec::from_slice).into(),
                })
                .collect(),
        }
    }

    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = ROption::RSome(RString::from(topic.into()));
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = ROption::RSome(partition);
        self
    }

    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = ROption::RSome(timestamp_ms);
        self
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = ROption::RSome(RVec::from(key.into()));
        self
    }

    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = ROption::RSome(RVec::from(value.into()));
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.headers.push(OutHeader {
            key: RString::from(key.into()),
            value: value.map(RVec::from).into(),
        });
        self
    }
}
