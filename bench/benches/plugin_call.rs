//! What calling a transform through the plugin ABI costs per record, against the same code called
//! inline.
//!
//! Three ways to run the passthrough transform on one batch (keep_partition = true). Passthrough
//! forwards every input (`Output::forward_to`), so what a record costs depends on the host object:
//! - `inline`: `txform_passthrough::Passthrough` (the plugin crate is also an rlib) called directly
//!   into an `Output`, which records each forward (no copy);
//! - `abi`: the cdylib `target/release/libtxform_passthrough.so` loaded with
//!   `txform::plugin::load_plugin`, its instance called through the `TransformObj` trait object
//!   (vtable call, `catch_unwind` guard, `RResult`, one `Host` vtable call per output) into an
//!   `Output` as the host object, which cannot forward: the guard emits a copy of every input into
//!   an owned `OutRecord`, what every record cost before plugin-api 0.2.1 (and still costs in an
//!   older host);
//! - `chain`: the same library through `txform::plugin::Chain::run`, what the host does per batch:
//!   the host object takes each forward as "input i, routed", nothing copied; plus output index
//!   validation.
//!
//! Each iteration also clears (frees) the outputs, as the host does. Throughput is in records, so
//! criterion reports time per record.
//!
//! Run: `cargo build --release -p txform-passthrough && cargo bench -p txform-bench --bench plugin_call`

use std::hint::black_box;
use std::path::{Path, PathBuf};

use abi_stable::std_types::RSlice;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use txform::plugin::{load_plugin, Chain};
use txform_passthrough::{Config, Passthrough};
use txform_plugin_api::{Header, Output, Record, Transform, TransformBox};

const BATCH_SIZES: [usize; 2] = [1, 1000];
const RECORD_SIZES: [usize; 2] = [100, 1024];
const CONFIG_JSON: &str = r#"{"keep_partition":true}"#;

/// The release build of the passthrough plugin: the library the benchmark binary loads.
fn plugin_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("release/libtxform_passthrough.so")
}

/// The owned bytes behind a batch of record views: one header per record, like a traced input.
struct Inputs {
    values: Vec<Vec<u8>>,
    keys: Vec<Vec<u8>>,
}

impl Inputs {
    fn new(batch: usize, size: usize) -> Inputs {
        Inputs {
            values: (0..batch)
                .map(|i| vec![b'a' + (i % 26) as u8; size])
                .collect(),
            keys: (0..batch)
                .map(|i| format!("key-{i}").into_bytes())
                .collect(),
        }
    }

    fn records<'a>(&'a self, headers: &'a [Header<'a>]) -> Vec<Record<'a>> {
        self.values
            .iter()
            .zip(&self.keys)
            .enumerate()
            .map(|(i, (value, key))| {
                Record::new(
                    "bench-input",
                    (i % 6) as i32,
                    i as i64,
                    Some(1_700_000_000_000 + i as i64),
                    Some(key),
                    Some(value),
                    headers,
                )
            })
            .collect()
    }
}

/// A chain of one passthrough stage, built the way the host builds it: from a pipeline file.
fn chain(plugin: &Path) -> Chain {
    let text = format!(
        r#"[kafka.common]
"bootstrap.servers" = "127.0.0.1:9092"
[source]
topics = ["in"]
group_id = "bench"
[sink]
topic = "out"
[transaction]
id_prefix = "bench"
[[transform]]
name = "copy"
plugin = {plugin}
[transform.config]
keep_partition = true
"#,
        plugin = toml::Value::String(plugin.to_string_lossy().into_owned())
    );
    let pipeline = txform::config::parse(&text, Path::new("bench.toml"), Path::new("."))
        .unwrap_or_else(|e| panic!("benchmark pipeline: {e}"));
    Chain::load(&pipeline.transforms, |line| format!("bench.toml:{line}"))
        .unwrap_or_else(|e| panic!("load the chain: {e}"))
}

fn plugin_call(c: &mut Criterion) {
    let path = plugin_path();
    assert!(
        path.exists(),
        "{} is missing: cargo build --release -p txform-passthrough",
        path.display()
    );
    let module = load_plugin(&path).unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    let mut via_abi: TransformBox = (module.new_transform())(CONFIG_JSON.into())
        .into_result()
        .unwrap_or_else(|e| panic!("create the plugin's transform: {e}"));
    let mut via_chain = chain(&path);
    let mut inline = Passthrough::new(Config {
        keep_partition: true,
        topic: None,
    })
    .unwrap_or_else(|e| panic!("create the inline transform: {e}"));

    let header_value = b"trace-0001".to_vec();
    let headers = [Header::new("trace", Some(&header_value))];
    for size in RECORD_SIZES {
        let mut group = c.benchmark_group(format!("plugin_call/{size}B"));
        for batch in BATCH_SIZES {
            let inputs = Inputs::new(batch, size);
            let records = inputs.records(&headers);
            group.throughput(Throughput::Elements(batch as u64));
            let mut out = Output::new();
            group.bench_with_input(BenchmarkId::new("inline", batch), &records, |b, records| {
                b.iter(|| {
                    out.clear();
                    inline
                        .transform(black_box(records), &mut out)
                        .unwrap_or_else(|e| panic!("inline transform: {e}"));
                    black_box(out.records().len())
                })
            });
            group.bench_with_input(BenchmarkId::new("abi", batch), &records, |b, records| {
                b.iter(|| {
                    out.clear();
                    via_abi
                        .transform(RSlice::from_slice(black_box(records)), out.as_host())
                        .into_result()
                        .unwrap_or_else(|e| panic!("plugin transform: {e}"));
                    black_box(out.records().len())
                })
            });
            group.bench_with_input(BenchmarkId::new("chain", batch), &records, |b, records| {
                b.iter(|| {
                    let output = via_chain
                        .run(black_box(records))
                        .unwrap_or_else(|e| panic!("chain: {e}"));
                    black_box(output.records.len())
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
