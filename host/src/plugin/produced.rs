//! What a stage call hands the host: emitted records and forwarded inputs, in the order the plugin
//! made them, and rejections. A forwarded input is kept as "input i, with this route" and never
//! copied here: a forward of a source record is produced from its fetched message (see
//! `pipeline::sink`), a forward of an earlier stage's output is that output with the new route.

use abi_stable::std_types::{ROption, RString};
use txform_plugin_api::abi::Host;
use txform_plugin_api::{Forward, OutRecord, Record, Rejection};

/// One output of a stage (of the chain, once mapped back: then `input` is the source record's index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Produced {
    /// A record the plugin built.
    Record(OutRecord),
    /// The input at `input`, unchanged, routed by `to`.
    Forward { input: u32, to: Forward },
}

impl Produced {
    /// Index of the input this output came from.
    pub fn input(&self) -> u32 {
        match self {
            Produced::Record(record) => record.input,
            Produced::Forward { input, .. } => *input,
        }
    }

    /// The topic the plugin chose, if it chose one.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Produced::Record(record) => record.topic.as_ref().map(RString::as_str).into_option(),
            Produced::Forward { to, .. } => to.topic.as_deref(),
        }
    }

    /// The partition the plugin chose, if it chose one.
    pub fn partition(&self) -> Option<i32> {
        match self {
            Produced::Record(record) => record.partition.into_option(),
            Produced::Forward { to, .. } => to.partition,
        }
    }

    /// The record this output produces, given the inputs it indexes (for `txform test`, which shows
    /// a forward as what would be produced).
    pub fn to_record(&self, inputs: &[Record<'_>]) -> OutRecord {
        match self {
            Produced::Record(record) => record.clone(),
            Produced::Forward { input, to } => to.copy_of(inputs, *input),
        }
    }

    /// This output of a later stage, whose inputs were the earlier stage's `previous` outputs (its
    /// index already checked), attributed to what `previous` came from. A route the later stage
    /// leaves unset keeps the earlier one's; a forward of a built record is that record re-routed.
    pub fn through(self, previous: &[Produced]) -> Produced {
        let before = &previous[self.input() as usize];
        match (self, before) {
            (Produced::Record(mut record), _) => {
                if record.topic.is_none() {
                    record.topic = before.topic().map(RString::from).into();
                }
                if record.partition.is_none() {
                    record.partition = before.partition().into();
                }
                record.input = before.input();
                Produced::Record(record)
            }
            (Produced::Forward { to, .. }, Produced::Forward { input, to: earlier }) => {
                Produced::Forward {
                    input: *input,
                    to: Forward {
                        topic: to.topic.or_else(|| earlier.topic.clone()),
                        partition: to.partition.or(earlier.partition),
                    },
                }
            }
            (Produced::Forward { to, .. }, Produced::Record(earlier)) => {
                let mut record = earlier.clone();
                if let Some(topic) = to.topic {
                    record.topic = ROption::RSome(RString::from(topic));
                }
                if let Some(partition) = to.partition {
                    record.partition = ROption::RSome(partition);
                }
                Produced::Record(record)
            }
        }
    }
}

/// The host object of one stage call: collects what the plugin hands over. It forwards every
/// input it is asked to (an index past the batch is refused after the call, as for emitted records).
#[derive(Debug, Default)]
pub struct Collector {
    outputs: Vec<Produced>,
    rejections: Vec<Rejection>,
}

impl Collector {
    pub fn clear(&mut self) {
        self.outputs.clear();
        self.rejections.clear();
    }

    /// Takes the outputs and rejections, leaving `self` empty.
    pub fn take(&mut self) -> (Vec<Produced>, Vec<Rejection>) {
        (
            std::mem::take(&mut self.outputs),
            std::mem::take(&mut self.rejections),
        )
    }

    /// Empties `self`, keeping the allocation of `outputs` (taken earlier) for the next call.
    pub fn recycle(&mut self, mut outputs: Vec<Produced>) {
        outputs.clear();
        self.outputs = outputs;
        self.rejections.clear();
    }

    /// The first input index of an output or rejection that a batch of `len` records lacks.
    pub fn out_of_range(&self, len: usize) -> Option<u32> {
        let outputs = self.outputs.iter().map(Produced::input);
        let rejections = self.rejections.iter().map(|r| r.input);
        outputs.chain(rejections).find(|&i| i as usize >= len)
    }
}

impl Host for Collector {
    fn emit(&mut self, record: OutRecord) {
        self.outputs.push(Produced::Record(record));
    }

    fn reject(&mut self, rejection: Rejection) {
        self.rejections.push(rejection);
    }

    fn forward(&mut self, input: u32, topic: ROption<RString>, partition: ROption<i32>) -> bool {
        let to = Forward {
            topic: topic.map(RString::into_string).into_option(),
            partition: partition.into_option(),
        };
        self.outputs.push(Produced::Forward { input, to });
        true
    }
}
