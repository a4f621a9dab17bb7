//! A chain of transform instances run on one batch: each stage's output feeds the next.
//!
//! Invariants: every output and rejection is attributed to the index of the source record it came
//! from (a forwarded input too, see [`Produced`]); a source record has at most one rejection; a stage that panicked is re-created before the
//! chain runs again, and a panicked instance is never dropped.

use std::collections::HashMap;
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

use abi_stable::std_types::{ROption, RResult, RSlice, RVec};
use txform_plugin_api::{CallError, Header, PluginInfo, PluginModRef, Record, TransformBox};

use crate::config::TransformSpec;

use super::call_host::{CallState, NoState, StateAccess};
use super::loader::{load_plugin, LoadError};
use super::produced::{Collector, Produced};

/// One loaded transform with the means to re-create it.
struct Stage {
    name: String,
    info: PluginInfo,
    module: PluginModRef,
    config_json: String,
    instance: TransformBox,
    /// The state stores the instance declared.
    stores: Vec<String>,
    /// The instance panicked and could not be replaced yet.
    poisoned: bool,
    /// Observes each call's duration, once metrics are attached ([`Chain::time_calls`]).
    timer: Option<Histogram>,
}

/// The loaded transform chain of a pipeline.
pub struct Chain {
    stages: Vec<Stage>,
    /// Reused across batches (see [`Chain::recycle`]).
    output: Collector,
}

/// What the chain produced for a batch.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// Outputs of the last stage, in order; `input` is the index of the source record in the batch.
    pub records: Vec<Produced>,
    /// Source records a stage refused.
    pub rejected: Vec<Rejected>,
}

/// A source record refused by a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index of the source record in the batch.
    pub input: usize,
    pub stage: String,
    pub plugin: String,
    pub version: String,
    pub reason: String,
    /// Every later rejection of the same record, described as "transform, plugin and version: reason".
    pub also: Vec<String>,
}

/// A stage call that failed; the whole batch must be aborted.
#[derive(Debug, thiserror::Error)]
#[error("transform `{stage}` ({plugin} {version}) {error}")]
pub struct StageFailure {
    pub stage: String,
    pub plugin: String,
    pub version: String,
    pub error: CallError,
}

/// Why the chain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{location}: transform `{name}`: {source}")]
    Load {
        location: String,
        name: String,
        #[source]
        source: LoadError,
    },
    #[error("{location}: transform `{name}` ({plugin}) refused its configuration: {error}")]
    Create {
        location: String,
        name: String,
        plugin: String,
        error: CallError,
    },
}

impl Chain {
    /// Loads every plugin and creates one instance of each. `location` turns a line into "file:line".
    pub fn load(
        specs: &[TransformSpec],
        location: impl Fn(usize) -> String,
    ) -> Result<Chain, ChainError> {
        let mut stages = Vec::with_capacity(specs.len());
        for spec in specs {
            let module = load_plugin(&spec.plugin).map_err(|source| ChainError::Load {
                location: location(spec.line),
                name: spec.name.clone(),
                source,
            })?;
            let stage = Stage::new(&spec.name, module, &spec.config_json).map_err(|error| {
                ChainError::Create {
                    location: location(spec.line),
                    name: spec.name.clone(),
                    plugin: format!("{} {}", module.info().name, module.info().version),
                    error,
                }
            })?;
            stages.push(stage);
        }
        Ok(Chain {
            stages,
            output: Collector::default(),
        })
    }

    /// Hands the records of a [`ChainOutput`] back once produced, so their vector's allocation
    /// serves the next batch.
    pub fn recycle(&mut self, records: Vec<Produced>) {
        self.output.recycle(records);
    }

    /// `name (plugin version)` of every stage, for the start-up summary.
    pub fn describe(&self) -> Vec<String> {
        self.stages()
            .map(|(name, plugin, version)| format!("{name} ({plugin} {version})"))
            .collect()
    }

    /// `(name, plugin, version)` of every stage, in order.
    pub fn stages(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.stages.iter().map(|s| {
            (
                s.name.as_str(),
                s.info.name.as_str(),
                s.info.version.as_str(),
            )
        })
    }

    /// Times every call of each stage into `timer(stage name)`.
    pub fn time_calls(&mut self, timer: impl Fn(&str) -> Histogram) {
        for stage in &mut self.stages {
            stage.timer = Some(timer(&stage.name));
        }
    }

    /// `(stage index, stage name, store)` of every state store the stages declared, in order.
    pub fn stores(&self) -> impl Iterator<Item = (usize, &str, &str)> {
        self.stages.iter().enumerate().flat_map(|(index, stage)| {
            stage
                .stores
                .iter()
                .map(move |store| (index, stage.name.as_str(), store.as_str()))
        })
    }

    /// Runs the chain on `batch` without state stores (a stage that uses one fails its call).
    pub fn run(&mut self, batch: &[Record<'_>]) -> Result<ChainOutput, StageFailure> {
        self.run_with(batch, &mut NoState)
    }

    /// Runs the chain on `batch`, its state accesses going to `state`. On failure, a panicked stage
    /// has already been re-created.
    pub fn run_with(
        &mut self,
        batch: &[Record<'_>],
        state: &mut dyn StateAccess,
    ) -> Result<ChainOutput, StageFailure> {
        let mut rejected = Vec::new();
        let Chain { stages, output } = self;
        let (first, rest) = match stages.split_first_mut() {
            Some(split) => split,
            None => return Ok(ChainOutput::default()),
        };
        first.call(0, batch, batch, None, output, state)?;
        let (mut records, rejections) = output.take();
        collect_rejections(first, rejections.as_slice(), |i| i, &mut rejected);

        for (index, stage) in rest.iter_mut().enumerate() {
            // Intermediate records: views over the previous stage's outputs, attributed to the source
            // (a forwarded source record is its own view).
            let headers: Vec<Vec<Header<'_>>> = records
                .iter()
                .map(|r| match r {
                    Produced::Record(r) => r
                        .headers
                        .iter()
                        .map(|h| {
                            Header::new(
                                h.key.as_str(),
                                h.value.as_ref().map(|v| v.as_slice()).into_option(),
                            )
                        })
                        .collect(),
                    Produced::Forward { .. } => Vec::new(),
                })
                .collect();
            let views: Vec<Record<'_>> = records
                .iter()
                .zip(&headers)
                .map(|(r, hs)| {
                    let source = &batch[r.input() as usize];
                    match r {
                        Produced::Record(r) => Record::new(
                            source.topic(),
                            source.partition(),
                            source.offset(),
                            r.timestamp.into_option().or(source.timestamp()),
                            option_slice(&r.key),
                            option_slice(&r.value),
                            hs,
                        ),
                        Produced::Forward { .. } => *source,
                    }
                })
                .collect();
            stage.call(index + 1, &views, batch, Some(&records), output, state)?;
            let (next, rejections) = output.take();
            collect_rejections(
                stage,
                rejections.as_slice(),
                |i| records[i].input() as usize,
                &mut rejected,
            );
            let next = next.into_iter().map(|out| out.through(&records)).collect();
            drop(views);
            drop(headers);
            output.recycle(std::mem::replace(&mut records, next));
        }
        Ok(ChainOutput {
            records,
            rejected: first_per_source(rejected),
        })
    }
}

impl Drop for Chain {
    /// Healthy instances are dropped (their plugin-api guards a panicking `Drop`); a poisoned one
    /// is leaked, see [`Stage::recreate`].
    fn drop(&mut self) {
        for stage in std::mem::take(&mut self.stages) {
            if stage.poisoned {
                std::mem::forget(stage);
            }
        }
    }
}

impl Stage {
    /// Creates the first instance of `module` from its configuration.
    fn new(name: &str, module: PluginModRef, config_json: &str) -> Result<Stage, CallError> {
        let instance = create(module, config_json)?;
        Ok(Stage {
            name: name.to_string(),
            info: module.info(),
            module,
            config_json: config_json.to_string(),
            // Asked once: a re-created instance has the same configuration, hence the same stores.
            stores: declared_stores(&instance),
            instance,
            poisoned: false,
            timer: None,
        })
    }

    /// Calls the instance on `batch` (views of `source`, the chain's input, or of `inputs`, the
    /// previous stage's outputs); `stage` is this stage's index in the chain.
    fn call(
        &mut self,
        stage: usize,
        batch: &[Record<'_>],
        source: &[Record<'_>],
        inputs: Option<&[Produced]>,
        out: &mut Collector,
        state: &mut dyn StateAccess,
    ) -> Result<(), StageFailure> {
        out.clear();
        let started = Instant::now();
        let mut host = txform_plugin_api::StatefulHost {
            out,
            state: CallState {
                state,
                stage,
                stores: &self.stores,
                batch: source,
                inputs,
            },
        };
        let result = self.instance.transform(
            RSlice::from_slice(batch),
            txform_plugin_api::abi::Host_TO::from_ptr(&mut host, abi_stable::sabi_trait::TD_Opaque),
        );
        if let Some(timer) = &self.timer {
            timer.observe(started.elapsed().as_secs_f64());
        }
        let error = match result {
            RResult::ROk(()) => match out.out_of_range(batch.len()) {
                None => return Ok(()),
                Some(index) => CallError::failed(format!(
                    "attributed an output or rejection to input {index} of a batch of {}",
                    batch.len()
                )),
            },
            RResult::RErr(error) => error,
        };
        out.clear();
        if error.panicked {
            self.poisoned = true;
            self.recreate();
        }
        Err(StageFailure {
            stage: self.name.clone(),
            plugin: self.info.name.to_string(),
            version: self.info.version.to_string(),
            error,
        })
    }

    /// A panicked instance may hold broken state: replace it with a fresh one from the same config.
    ///
    /// The panicked instance is leaked, never dropped: its invariants are broken, so its `Drop` may
    /// panic again, and a panic in a plugin's drop function aborts the process (abi_stable's
    /// destructors are `extern "C"`; the host cannot catch it). The cost is the instance's memory,
    /// once per panic, and each panic is logged.
    fn recreate(&mut self) {
        match create(self.module, &self.config_json) {
            Ok(instance) => {
                log::warn!(
                    "transform `{}` panicked; re-created its instance",
                    self.name
                );
                std::mem::forget(std::mem::replace(&mut self.instance, instance));
                self.poisoned = false;
            }
            // The old instance stays; its next call will fail again and the error policy decides.
            Err(error) => log::error!(
                "transform `{}` panicked and could not be re-created: {error}",
                self.name
            ),
        }
    }
}

fn declared_stores(instance: &TransformBox) -> Vec<String> {
    instance
        .stores()
        .into_iter()
        .map(abi_stable::std_types::RString::into_string)
        .collect()
}

fn create(module: PluginModRef, config_json: &str) -> Result<TransformBox, CallError> {
    (module.new_transform())(config_json.into()).into_result()
}

fn collect_rejections(
    stage: &Stage,
    rejections: &[txform_plugin_api::Rejection],
    source_index: impl Fn(usize) -> usize,
    into: &mut Vec<Rejected>,
) {
    into.extend(rejections.iter().map(|r| Rejected {
        input: source_index(r.input as usize),
        stage: stage.name.clone(),
        plugin: stage.info.name.to_string(),
        version: stage.info.version.to_string(),
        reason: r.reason.to_string(),
        also: Vec::new(),
    }));
}

/// The first rejection of each source record, in order, the later ones of the same record listed in
/// its `also`: a record is set aside once, for the first reason.
fn first_per_source(rejected: Vec<Rejected>) -> Vec<Rejected> {
    let mut first: Vec<Rejected> = Vec::with_capacity(rejected.len());
    let mut by_input: HashMap<usize, usize> = HashMap::new();
    for r in rejected {
        match by_input.get(&r.input) {
            Some(&at) => first[at].also.push(format!(
                "transform `{}` ({} {}): {}",
                r.stage, r.plugin, r.version, r.reason
            )),
            None => {
                by_input.insert(r.input, first.len());
                first.push(r);
            }
        }
    }
    first
}

fn option_slice(bytes: &ROption<RVec<u8>>) -> Option<&[u8]> {
    bytes.as_ref().map(|b| b.as_slice()).into_option()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use txform_plugin_api::{Forward, OutRecord, Output, Transform, TransformError};

    /// An in-process test transform (built into a module the way `export_transform!` does, guard
    /// included) that does what its configuration lists: each `emit` is one output attributed to
    /// input `input`, its value the input's value (if that input exists) + "/tag@offset"; one with
    /// `forward` forwards that input with the route given instead.
    struct Script(ScriptConfig);

    #[derive(Deserialize)]
    struct ScriptConfig {
        #[serde(default)]
        emit: Vec<Emit>,
        #[serde(default)]
        reject: Vec<(usize, String)>,
    }

    #[derive(Deserialize)]
    struct Emit {
        input: usize,
        tag: String,
        topic: Option<String>,
        partition: Option<i32>,
        timestamp: Option<i64>,
        #[serde(default)]
        forward: bool,
    }

    impl Transform for Script {
        type Config = ScriptConfig;

        fn new(config: ScriptConfig) -> Result<Self, TransformError> {
            Ok(Script(config))
        }

        fn transform(
            &mut self,
            batch: &[Record<'_>],
            out: &mut Output,
        ) -> Result<(), TransformError> {
            for e in &self.0.emit {
                if e.forward {
                    let to = Forward {
                        topic: e.topic.clone(),
                        partition: e.partition,
                    };
                    out.forward_to(e.input, to);
                    continue;
                }
                let mut record = match batch.get(e.input) {
                    Some(r) => {
                        let value = String::from_utf8_lossy(r.value().unwrap_or_default());
                        let tagged = format!("{value}/{}@{}", e.tag, r.offset());
                        OutRecord::from_input(r).with_value(tagged)
                    }
                    None => OutRecord::new(e.tag.clone()),
                };
                if let Some(topic) = &e.topic {
                    record = record.with_topic(topic.clone());
                }
                if let Some(partition) = e.partition {
                    record = record.with_partition(partition);
                }
                if let Some(timestamp) = e.timestamp {
                    record = record.with_timestamp(timestamp);
                }
                out.emit(e.input, record);
            }
            for (input, reason) in &self.0.reject {
                out.reject(*input, reason.clone());
            }
            Ok(())
        }
    }

    fn chain(stages: &[(&str, serde_json::Value)]) -> Chain {
        let module = txform_plugin_api::__private::build_module::<Script>(PluginInfo::new(
            "script",
            "0.3.1",
            cfg!(panic = "unwind"),
        ));
        let stages = stages
            .iter()
            .map(|(name, config)| Stage::new(name, module, &config.to_string()))
            .collect::<Result<_, _>>()
            .unwrap();
        Chain {
            stages,
            output: Collector::default(),
        }
    }

    /// Source records at offsets 10, 11, 12 with values r0, r1, r2 and timestamps 1000 + i.
    fn run(chain: &mut Chain) -> Result<ChainOutput, StageFailure> {
        let values = [b"r0", b"r1", b"r2"];
        let batch: Vec<Record<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let i = i as i64;
                Record::new("in", 3, 10 + i, Some(1000 + i), None, Some(&v[..]), &[])
            })
            .collect();
        chain.run(&batch)
    }

    /// (source index, value, topic, partition, timestamp) of an output.
    type Routed = (u32, String, Option<String>, Option<i32>, Option<i64>);

    fn outputs(out: &ChainOutput) -> Vec<Routed> {
        out.records
            .iter()
            .map(|r| match r {
                Produced::Record(r) => r,
                forward => panic!("not a built record: {forward:?}"),
            })
            .map(|r| {
                (
                    r.input,
                    String::from_utf8_lossy(option_slice(&r.value).unwrap_or_default())
                        .into_owned(),
                    r.topic.as_ref().map(|t| t.to_string()).into_option(),
                    r.partition.into_option(),
                    r.timestamp.into_option(),
                )
            })
            .collect()
    }

    #[test]
    fn outputs_and_rejections_of_later_stages_are_attributed_to_source_records() {
        let mut chain = chain(&[
            (
                "one",
                json!({
                    "emit": [
                        { "input": 2, "tag": "a", "topic": "t1", "partition": 4, "timestamp": 77 },
                        { "input": 0, "tag": "b" },
                        { "input": 0, "tag": "c" },
                    ],
                    "reject": [[1, "one refuses r1"]],
                }),
            ),
            // Its inputs: 0 = r2/a, 1 = r0/b, 2 = r0/c.
            (
                "two",
                json!({
                    "emit": [
                        { "input": 2, "tag": "x" },
                        { "input": 0, "tag": "y", "partition": 5 },
                        { "input": 0, "tag": "z", "topic": "t2" },
                    ],
                    "reject": [[1, "two refuses r0/b"]],
                }),
            ),
            // Its inputs: 0 = r0/c/x, 1 = r2/a/y, 2 = r2/a/z.
            (
                "three",
                json!({
                    "emit": [{ "input": 1, "tag": "w" }, { "input": 2, "tag": "v" }],
                    "reject": [[0, "three refuses r0/c/x"]],
                }),
            ),
        ]);
        let out = run(&mut chain).unwrap();
        assert_eq!(
            outputs(&out),
            [
                // Route: a later stage's choice wins, an unset one inherits; the plugin-set
                // timestamp of stage one travels on, seen by later stages as the record's.
                (
                    2,
                    "r2/a@12/y@12/w@12".into(),
                    Some("t1".into()),
                    Some(5),
                    Some(77)
                ),
                (
                    2,
                    "r2/a@12/z@12/v@12".into(),
                    Some("t2".into()),
                    Some(4),
                    Some(77)
                ),
            ]
        );
        let rejected: Vec<(usize, &str, &str, &[String])> = out
            .rejected
            .iter()
            .map(|r| {
                (
                    r.input,
                    r.stage.as_str(),
                    r.reason.as_str(),
                    r.also.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            rejected,
            [
                (1, "one", "one refuses r1", &[][..]),
                (
                    0,
                    "two",
                    "two refuses r0/b",
                    &["transform `three` (script 0.3.1): three refuses r0/c/x".to_string()][..]
                ),
            ]
        );
        assert!(out
            .rejected
            .iter()
            .all(|r| (r.plugin.as_str(), r.version.as_str()) == ("script", "0.3.1")));
    }

    #[test]
    fn the_first_stage_keeps_source_timestamps_and_indices() {
        let mut chain = chain(&[(
            "only",
            json!({ "emit": [{ "input": 1, "tag": "p" }, { "input": 1, "tag": "q" }] }),
        )]);
        assert_eq!(
            outputs(&run(&mut chain).unwrap()),
            [
                (1, "r1/p@11".into(), None, None, Some(1001)),
                (1, "r1/q@11".into(), None, None, Some(1001)),
            ]
        );
    }

    #[test]
    fn an_index_past_the_stages_own_input_fails_the_call() {
        // Stage one has 3 inputs, stage two 2 (stage one's outputs): index 2 is out of range
        // there although the batch has 3 records.
        let two = json!({ "emit": [{ "input": 0, "tag": "a" }, { "input": 2, "tag": "b" }] });
        for (stage, config, index, len) in [
            ("one", json!({ "emit": [{ "input": 3, "tag": "a" }] }), 3, 3),
            ("one", json!({ "reject": [[7, "no"]] }), 7, 3),
            ("two", two, 2, 2),
            ("two", json!({ "reject": [[2, "no"]] }), 2, 2),
        ] {
            let first = json!({ "emit": [{ "input": 0, "tag": "a" }, { "input": 1, "tag": "b" }] });
            let stages = match stage {
                "one" => vec![("one", config)],
                _ => vec![("one", first), ("two", config)],
            };
            let mut chain = chain(&stages);
            let failure = run(&mut chain).unwrap_err();
            assert_eq!(
                failure.to_string(),
                format!(
                    "transform `{stage}` (script 0.3.1) attributed an output or \
                     rejection to input {index} of a batch of {len}"
                )
            );
            assert!(!failure.error.panicked);
        }
    }

    fn forwarded(input: u32, topic: Option<&str>, partition: Option<i32>) -> Produced {
        let topic = topic.map(str::to_string);
        Produced::Forward {
            input,
            to: Forward { topic, partition },
        }
    }

    #[test]
    fn forwards_map_back_to_source_records_or_to_the_records_they_pass_on() {
        let mut chain = chain(&[
            (
                "one",
                json!({ "emit": [
                    { "input": 2, "tag": "-", "forward": true, "topic": "t1" },
                    { "input": 0, "tag": "b" },
                    { "input": 1, "tag": "-", "forward": true, "partition": 4 },
                ]}),
            ),
            // Its inputs: 0 = r2 (the source record itself), 1 = r0/b, 2 = r1.
            (
                "two",
                json!({ "emit": [
                    { "input": 0, "tag": "x", "partition": 5 },
                    { "input": 1, "tag": "-", "forward": true, "topic": "t2" },
                    { "input": 2, "tag": "-", "forward": true },
                    { "input": 0, "tag": "-", "forward": true, "partition": 6 },
                ]}),
            ),
        ]);
        let out = run(&mut chain).unwrap();
        let mut x = OutRecord::new("r2/x@12")
            .with_timestamp(1002)
            .with_topic("t1")
            .with_partition(5);
        x.input = 2;
        let mut b = OutRecord::new("r0/b@10")
            .with_timestamp(1000)
            .with_topic("t2");
        b.input = 0;
        assert_eq!(
            out.records,
            [
                // A record built from a forwarded source record keeps the forward's route.
                Produced::Record(x),
                // A forward of a built record is that record, re-routed.
                Produced::Record(b),
                // Forwards of forwards stay forwards of the source record, routes merged.
                forwarded(1, None, Some(4)),
                forwarded(2, Some("t1"), Some(6)),
            ]
        );
        assert!(out.rejected.is_empty());
    }

    #[test]
    fn a_forward_past_the_stages_input_fails_the_call() {
        let mut chain = chain(&[(
            "one",
            json!({ "emit": [{ "input": 3, "tag": "-", "forward": true }] }),
        )]);
        assert_eq!(
            run(&mut chain).unwrap_err().to_string(),
            "transform `one` (script 0.3.1) attributed an output or rejection to input 3 of a \
             batch of 3"
        );
    }

    #[test]
    fn an_empty_chain_outputs_nothing() {
        let out = run(&mut chain(&[])).unwrap();
        assert_eq!((out.records.len(), out.rejected.len()), (0, 0));
    }

    fn rejected(input: usize, stage: &str, reason: &str) -> Rejected {
        Rejected {
            input,
            stage: stage.into(),
            plugin: "p".into(),
            version: "1.0".into(),
            reason: reason.into(),
            also: Vec::new(),
        }
    }

    #[test]
    fn a_record_keeps_its_first_rejection_and_lists_the_others() {
        let merged = first_per_source(vec![
            rejected(4, "a", "first"),
            rejected(2, "a", "other record"),
            rejected(4, "b", "second"),
            rejected(4, "b", "third"),
        ]);
        let mut expected = vec![rejected(4, "a", "first"), rejected(2, "a", "other record")];
        expected[0].also = vec![
            "transform `b` (p 1.0): second".to_string(),
            "transform `b` (p 1.0): third".to_string(),
        ];
        assert_eq!(merged, expected);
    }
}
