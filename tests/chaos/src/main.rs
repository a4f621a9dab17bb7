//! `txform-chaos`: Kafka's transactions system test, replayed against txform.
//!
//! Seeds a known input, runs several txform instances in one consumer group copying it (keeping
//! partitions) through plugins that fail and panic in a share of batches, crashes and restarts
//! instances and the broker, makes instances leave and join, and checks with read_committed readers
//! that every input record came out exactly once, in order, in its partition. The stateful profile
//! (and the full one's second pass) counts per key instead and checks every count. See README.md.
//!
//! ```text
//! cargo run -p txform-chaos -- --profile ci                 # a few minutes; part of scripts/test.sh
//! cargo run -p txform-chaos -- --profile stateful           # the ci faults on a count per key
//! cargo run --release -p txform-chaos -- --profile full     # 100,000 records, every fault; then stateful
//! ```

mod broker;
mod counts;
mod faults;
mod fleet;
mod pipeline;
mod plan;
mod profile;
mod progress;
mod reader;
mod recovery;
mod report;
mod run;
mod seed;
mod verify;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use profile::{Profile, ProfileName};
use run::Setup;

/// Set by SIGINT/SIGTERM/SIGHUP: the run stops at its next check and cleans up (instances, broker).
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Parser, Debug)]
#[command(
    name = "txform-chaos",
    about = "Exactly-once under crashes, rebalances and broker restarts"
)]
struct Cli {
    /// `ci`: 30,000 records, a few minutes. `stateful`: the ci faults on a count per key. `full`:
    /// 100,000 records and every fault, then the stateful pass.
    #[arg(long, value_enum, default_value = "ci")]
    profile: ProfileName,
    /// The txform binary. Default: `txform` next to this binary (built first unless --no-build).
    #[arg(long)]
    txform_bin: Option<PathBuf>,
    /// Directory of the plugin libraries. Default: the txform binary's directory.
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Do not run `cargo build` for txform and the plugins first.
    #[arg(long)]
    no_build: bool,
    /// State directory of the harness's own broker (reset at the start of every run).
    #[arg(long)]
    kafka_dir: Option<PathBuf>,
    /// Port of the harness's own broker (the controller uses the next one). Never the shared 9092.
    #[arg(long, default_value_t = 19092)]
    kafka_port: u16,
    /// Override the profile's number of input records.
    #[arg(long)]
    records: Option<u64>,
    /// Override the profile's records per transaction (`batch.max_records`).
    #[arg(long)]
    max_records: Option<i64>,
    /// Also fail when an instance misbehaved without breaking exactly-once: ended by itself (it is
    /// restarted, like an orchestrator would), or did not stop with exit code 0 after SIGTERM.
    #[arg(long)]
    strict: bool,
    /// Where the pipeline file and every log go. Default: target/chaos/<profile>-<time>.
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,librdkafka=off,rdkafka=off"),
    )
    .init();
    let cli = Cli::parse();
    match main_inner(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("txform-chaos: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the profile; Ok(passed).
fn main_inner(cli: Cli) -> Result<bool> {
    let workspace = workspace_dir()?;
    let mut passes = cli.profile.passes();
    for (_, profile) in &mut passes {
        override_scale(&cli, profile)?;
    }
    if cli.kafka_port == 9092 {
        bail!("--kafka-port 9092 is the shared broker's port; the harness kills its broker");
    }
    let (bin, plugin_dir) = binaries(&cli, &workspace)?;
    // The integration-test harness reads these: set before any thread or client exists.
    std::env::set_var("TXFORM_BOOTSTRAP", format!("127.0.0.1:{}", cli.kafka_port));
    std::env::set_var("TXFORM_BIN", &bin);
    std::env::set_var("TXFORM_PLUGIN_DIR", &plugin_dir);
    // One debug line per committed transaction: progress and recovery are read from them.
    std::env::set_var("TXFORM_TEST_RUST_LOG", "info,txform=debug");
    // Injected panics are expected by the hundred: one line each in the logs, not a backtrace.
    std::env::set_var("RUST_BACKTRACE", "0");
    install_signal_handlers();

    let kafka_dir = cli
        .kafka_dir
        .clone()
        .unwrap_or_else(|| workspace.join(".kafka-chaos"));
    let mut passed = true;
    for (name, profile) in &passes {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted before the {name} pass");
        }
        let setup = Setup {
            kafka_dir: kafka_dir.clone(),
            kafka_port: cli.kafka_port,
            run_dir: match &cli.run_dir {
                Some(dir) if passes.len() > 1 => dir.join(name),
                Some(dir) => dir.clone(),
                None => run::default_run_dir(&workspace, name),
            },
            workspace: workspace.clone(),
        };
        println!(
            "txform-chaos: profile {name}: {} records, {} partitions, {} instances, {} faults planned; \
             txform {}",
            profile.records,
            profile.partitions,
            profile.instances,
            profile.plan.len(),
            bin.display()
        );
        let report = run::run(profile, &setup);
        passed &= report::print(name, &report, cli.strict);
    }
    Ok(passed)
}

/// Applies `--records` and `--max-records` to a pass.
fn override_scale(cli: &Cli, profile: &mut Profile) -> Result<()> {
    if let Some(records) = cli.records {
        if records < 1_000 {
            bail!("--records {records}: at least 1000, or the faults have nothing to hit");
        }
        profile.records = records;
    }
    if let Some(max_records) = cli.max_records {
        if !(1..=100_000).contains(&max_records) {
            bail!("--max-records {max_records}: must be 1..=100000");
        }
        profile.max_records = max_records;
    }
    Ok(())
}

/// The workspace root: two levels above this crate.
fn workspace_dir() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("the crate is not inside the workspace")
}

/// The txform binary and plugin directory, building them first unless told not to.
fn binaries(cli: &Cli, workspace: &Path) -> Result<(PathBuf, PathBuf)> {
    // This binary lives in target/<profile>/; txform and the plugins are built next to it.
    let exe = std::env::current_exe().context("locate this binary")?;
    let profile_dir = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target").join("debug"));
    if cli.txform_bin.is_none() && !cli.no_build {
        build(
            workspace,
            profile_dir.file_name().is_some_and(|n| n == "release"),
        )?;
    }
    let bin = cli
        .txform_bin
        .clone()
        .unwrap_or_else(|| profile_dir.join("txform"));
    let bin = bin
        .canonicalize()
        .with_context(|| format!("txform binary {}", bin.display()))?;
    let plugin_dir = match &cli.plugin_dir {
        Some(dir) => dir.clone(),
        None => bin
            .parent()
            .map(Path::to_path_buf)
            .context("the txform binary has no directory")?,
    };
    for plugin in PLUGINS {
        if !plugin_dir.join(plugin).is_file() {
            bail!("plugin {plugin} not found in {}", plugin_dir.display());
        }
    }
    Ok((bin, plugin_dir))
}

/// The plugins a run loads (see pipeline.rs).
const PLUGINS: [&str; 3] = [
    "libtxform_passthrough.so",
    "libtxform_count.so",
    "libtxform_fault.so",
];

/// `cargo build [--release] -p txform -p txform-passthrough -p txform-count -p txform-fault`, so a
/// `cargo run` of this harness always tests the current code.
fn build(workspace: &Path, release: bool) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace).args([
        "build",
        "-p",
        "txform",
        "-p",
        "txform-passthrough",
        "-p",
        "txform-count",
        "-p",
        "txform-fault",
    ]);
    if release {
        command.arg("--release");
    }
    let status = command.status().context("run cargo build")?;
    if !status.success() {
        bail!("cargo build of txform and the plugins failed ({status})");
    }
    Ok(())
}

/// Runs `f`, turning a panic of the integration-test harness (its helpers assert) into an error.
pub fn catch<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|payload| anyhow!("{what}: {}", panic_text(&*payload)))
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".to_string())
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP set [`INTERRUPTED`] instead of killing the harness, so the guards stop
/// the instances and the broker (the broker runs in a session of its own and would outlive us).
fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}
