//! The metrics endpoint and the probes against the real broker: the counters equal what was copied,
//! exactly; readiness follows start-up, assignment and stop; liveness ignores Kafka but not a
//! transform that hangs.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use txform_tests::scrape::{get, metrics_address, Metrics};
use txform_tests::{
    assert_output_without_aborts, bootstrap, committed_totals, passthrough_config, produce,
    standard_inputs, table, wait_for_committed, Plugin, TestEnv,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

/// How long a test waits for a probe or counter to reach the state it asserts (a hang guard).
const SETTLE: Duration = Duration::from_secs(15);

/// Polls `probe` until its answer satisfies `done`, returning that answer.
fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    done: impl Fn(&T) -> bool,
) -> T {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < SETTLE {
        if let Some(answer) = probe() {
            if done(&answer) {
                return answer;
            }
            last = Some(answer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} not reached within {SETTLE:?}; last answer: {last:?}")
}

#[test]
fn counters_equal_the_records_copied_exactly() {
    const N: u64 = 3000;
    let env = TestEnv::new("metrics");
    let input = env.create_topic("in", 2);
    let output = env.create_topic("out", 2);
    produce(&input, &standard_inputs(N, 2));
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(400, 100)
        .transform("copy", Plugin::passthrough(), passthrough_config())
        .metrics(60);
    let mut txform = env.spawn(&pipeline, "0");
    let address = metrics_address(&mut txform, PROCESS_TIMEOUT);
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    // The counters move right after the commit returns; the lag needs a statistics report (5 s).
    let lag = |p: i32| {
        format!(
            "txform_consumer_lag{{partition=\"{p}\",topic=\"{}\"}}",
            input.name
        )
    };
    let started = Instant::now();
    let m = loop {
        let m = Metrics::scrape(address);
        let settled = m.get("txform_records_consumed_total") == N as f64
            && m.try_get(&lag(0)) == Some(0.0)
            && m.try_get(&lag(1)) == Some(0.0);
        if settled || started.elapsed() > SETTLE {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let transactions = committed_totals(&txform.log()).transactions as f64;
    assert!(
        transactions >= (N / 400) as f64,
        "{transactions} transactions"
    );
    let exact = [
        ("txform_records_consumed_total", N as f64),
        ("txform_records_produced_total", N as f64),
        ("txform_transactions_committed_total", transactions),
        ("txform_retries_total", 0.0),
        ("txform_producer_queue_full_waits_total", 0.0),
        ("txform_records_dead_lettered_total", 0.0),
        ("txform_records_skipped_total", 0.0),
        ("txform_batch_records_count", transactions),
        ("txform_batch_records_sum", N as f64),
        (
            "txform_transaction_duration_seconds_count{outcome=\"committed\"}",
            transactions,
        ),
        (
            "txform_plugin_call_duration_seconds_count{stage=\"copy\"}",
            transactions,
        ),
        ("txform_assigned_partitions", 2.0),
        (&lag(0), 0.0),
        (&lag(1), 0.0),
        ("txform_fences_total{answer=\"rejoined\"}", 0.0),
        (
            &format!(
                "txform_build_info{{version=\"{}\"}}",
                txform::metrics::VERSION
            ),
            1.0,
        ),
    ];
    for (key, expected) in exact {
        assert_eq!(m.get(key), expected, "{key}");
    }
    for cause in [
        "plugin_error",
        "panic",
        "rejection",
        "refused_record",
        "kafka",
        "rebalance",
        "fenced",
        "fatal",
    ] {
        let key = format!("txform_transactions_aborted_total{{cause=\"{cause}\"}}");
        assert_eq!(m.get(&key), 0.0, "{key}");
    }
    let plugin_info: Vec<&String> =
        m.0.keys()
            .filter(|k| k.starts_with("txform_plugin_info{"))
            .collect();
    assert_eq!(plugin_info.len(), 1, "{plugin_info:?}");
    assert!(
        plugin_info[0].contains("stage=\"copy\"")
            && plugin_info[0].contains("plugin=\"txform-passthrough\""),
        "{plugin_info:?}"
    );

    // OpenMetrics on request; the same numbers.
    let open = get(
        address,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    )
    .expect("scrape with OpenMetrics");
    assert_eq!(open.status, 200);
    assert!(
        open.content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        open.content_type
    );
    assert_eq!(open.body.lines().last(), Some("# EOF"));
    assert_eq!(
        Metrics::parse(&open.body).get("txform_records_consumed_total"),
        N as f64
    );
    let plain = get(address, "/metrics", "*/*").expect("scrape");
    assert!(
        plain.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        plain.content_type
    );

    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
}

/// A producer queue of 10 messages fills on every chunk: producing waits for room (counted), and
/// every record is still copied exactly once, in order, with no failed attempt.
#[test]
fn a_full_producer_queue_waits_for_room_and_loses_nothing() {
    const N: u64 = 3000;
    let env = TestEnv::new("queue-full");
    let input = env.create_topic("in", 2);
    let output = env.create_topic("out", 2);
    let produced = produce(&input, &standard_inputs(N, 2));
    let pipeline = env
        .pipeline(&[&input], &output)
        .transform("copy", Plugin::passthrough(), passthrough_config())
        .producer_property("queue.buffering.max.messages", 10)
        .metrics(60);
    let mut txform = env.spawn(&pipeline, "0");
    let address = metrics_address(&mut txform, PROCESS_TIMEOUT);
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    let m = eventually(
        "every record counted",
        || Some(Metrics::scrape(address)),
        |m| m.get("txform_records_consumed_total") == N as f64,
    );
    let waits = m.get("txform_producer_queue_full_waits_total");
    assert!(waits >= 1.0, "producing never waited for room: {waits}");
    for key in ["txform_retries_total", "txform_records_dead_lettered_total"] {
        assert_eq!(m.get(key), 0.0, "{key}");
    }
    assert_eq!(m.get("txform_records_produced_total"), N as f64);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
    assert_output_without_aborts(&produced, &output);
    let totals = committed_totals(&txform.log());
    assert_eq!((totals.records_in, totals.records_out), (N, N));
}

/// Forwards connections to the broker once opened: until then the address refuses them, as a
/// cluster that is down does. Only bootstrap goes through it; the broker then advertises itself.
struct Gate {
    address: SocketAddr,
    open: Arc<AtomicBool>,
}

impl Gate {
    fn new() -> Gate {
        // A free port, released until the gate opens.
        let address = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        Gate {
            address,
            open: Arc::new(AtomicBool::new(false)),
        }
    }

    fn open(&self) {
        let listener = TcpListener::bind(self.address).expect("bind the gate's port again");
        self.open.store(true, Ordering::SeqCst);
        let broker = bootstrap();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(&broker) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone(), upstream.try_clone()),
                    (upstream.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
    }
}

#[test]
fn ready_only_after_start_up_alive_while_kafka_is_away_not_ready_while_stopping() {
    let env = TestEnv::new("readyz");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    produce(&input, &standard_inputs(20, 1));
    let gate = Gate::new();
    // One record per batch, each transform call 2 s: a stop always finds a batch in progress.
    let mut pipeline = env
        .pipeline(&[&input], &output)
        .batch(1, 100)
        .transform(
            "slow",
            Plugin::fault(),
            table(&[("delay_ms", toml::Value::Integer(2000))]),
        )
        .metrics(60);
    pipeline.common = table(&[("reconnect.backoff.max.ms", toml::Value::Integer(200))]);
    let mut text = pipeline.to_toml();
    text = text.replace(
        &format!("\"{}\"", bootstrap()),
        &format!("\"{}\"", gate.address),
    );
    let file = env.path("gated.toml");
    std::fs::write(&file, text).expect("write the pipeline");
    let mut txform = env.spawn_file(&file, "0");
    let address = metrics_address(&mut txform, PROCESS_TIMEOUT);

    // Kafka cannot be reached: not ready, but alive (an outage must not restart the instance).
    std::thread::sleep(Duration::from_secs(2));
    let ready = get(address, "/readyz", "*/*").expect("readyz");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.starts_with("not started"), "{ready:?}");
    assert!(!txform.log().contains("transactions initialised"));
    let live = get(address, "/livez", "*/*").expect("livez");
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"), "{live:?}");

    gate.open();
    eventually(
        "ready",
        || get(address, "/readyz", "*/*").ok(),
        |a| a.status == 200,
    );
    assert!(txform.log().contains("transactions initialised"));
    txform.wait_for_log_count("] committed ", 1, PROCESS_TIMEOUT);
    assert_eq!(get(address, "/livez", "*/*").expect("livez").status, 200);

    // A stop lets the batch in progress finish (up to 2 s): meanwhile not ready.
    txform.terminate();
    // The signal handler sets the stop flag on its own thread: poll until it did. The instance
    // still answers, so it has not exited.
    eventually(
        "not ready while stopping",
        || get(address, "/readyz", "*/*").ok(),
        |a| (a.status, a.body.as_str()) == (503, "stopping\n"),
    );
    assert!(txform.try_exit().is_none(), "still stopping");
    txform.expect_exit_code(0, EXIT_TIMEOUT);
}

#[test]
fn a_transform_that_hangs_fails_liveness() {
    let env = TestEnv::new("livez");
    let input = env.create_topic("in", 1);
    let output = env.create_topic("out", 1);
    produce(&input, &standard_inputs(3, 1));
    // Each call takes 4 s, the liveness time-out is 1 s.
    let pipeline = env
        .pipeline(&[&input], &output)
        .batch(1, 100)
        .transform(
            "hangs",
            Plugin::fault(),
            table(&[("delay_ms", toml::Value::Integer(4000))]),
        )
        .metrics(1);
    let mut txform = env.spawn(&pipeline, "0");
    let address = metrics_address(&mut txform, PROCESS_TIMEOUT);
    let wedged = eventually(
        "not alive",
        || get(address, "/livez", "*/*").ok(),
        |a| a.status == 503,
    );
    assert!(
        wedged
            .body
            .starts_with("the copy loop has not come round for"),
        "{wedged:?}"
    );
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
}
