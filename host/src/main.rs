//! `txform`: runs Kafka's exactly-once consume-transform-produce loop over transforms loaded from
//! plugins. See ARCHITECTURE.md for the map of the crate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use txform::log_format::{self, LogFormat};
use txform::metrics::{self, Metrics};
use txform::{allocator, config, instance_id, pipeline, plugin, shutdown};

/// Exit code for a configuration or plugin problem found before any record was read.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "txform",
    version,
    about = "Exactly-once Kafka transforms from stable-ABI plugins"
)]
struct Cli {
    /// Log line format on stderr: `text`, or `json` (one object per line, for log shippers).
    #[arg(long, value_enum, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline described by a pipeline.toml until SIGINT/SIGTERM.
    Run {
        /// Path of the pipeline configuration.
        config: PathBuf,
        /// Instance id (overrides transaction.instance_id and TXFORM_INSTANCE_ID); the transactional
        /// id is "<id_prefix>-<group_id>-<instance id>".
        #[arg(long)]
        instance_id: Option<String>,
        /// Take the instance id from a StatefulSet pod's host name: `txform-3` -> `3`.
        #[arg(long, conflicts_with = "instance_id")]
        instance_id_from_hostname: bool,
    },
    /// Check a configuration (librdkafka checks each Kafka property) and load its plugins, without
    /// contacting Kafka.
    Validate {
        /// Path of the pipeline configuration.
        config: PathBuf,
    },
    /// Describe a plugin library: name, version, the plugin-api it was built against, whether this
    /// txform can load it (and if not, why), and its configuration documentation. Exit code 2 when
    /// it cannot be loaded.
    Inspect {
        /// Path of the plugin library (`.so`).
        plugin: PathBuf,
    },
    /// Plugin development: `txform plugin new NAME` writes a ready plugin crate.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Run a pipeline's chain, or one plugin, offline (no broker) on records from a JSONL file, through
    /// the same chain code as `run`; print outputs, rejections or the call's error as JSONL. With
    /// `--expect`, print a diff and exit 1 on a mismatch.
    Test {
        /// A pipeline file (`.toml`) or a plugin library.
        target: PathBuf,
        /// Input records, one JSON object per line; `-` reads standard input.
        #[arg(long)]
        input: PathBuf,
        /// Expected output lines; compared as JSON values, line by line.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// The plugin's configuration as JSON, when TARGET is a plugin library.
        #[arg(long, default_value = "{}")]
        config: String,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Write a plugin crate NAME in the current directory (or --dir): Cargo.toml, a commented
    /// transform with its config and a test, sample records with their expected output, a pipeline.
    New {
        name: String,
        #[arg(long, value_enum, default_value = "map")]
        template: txform::scaffold::Template,
        /// Where to create the crate's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    // First, before librdkafka's threads create their malloc arenas.
    let tuning = allocator::tune();
    let cli = Cli::parse();
    log_format::init(cli.log_format);
    log::debug!("{tuning}");
    let format = cli.log_format;
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            log_format::final_error(format, &message);
            ExitCode::from(code)
        }
    }
}

/// Dispatches on the sub-command; errors carry the process exit code.
fn run(command: Command) -> Result<(), (u8, String)> {
    match command {
        Command::Validate { config } => {
            // Loading checks every Kafka property too, each at its own line.
            let pipeline = load(&config, None)?;
            let chain = plugin::Chain::load(&pipeline.transforms, |line| pipeline.location(line))
                .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
            println!(
                "{}: ok; chain: {}",
                config.display(),
                chain.describe().join(" -> ")
            );
            Ok(())
        }
        Command::Inspect { plugin } => {
            let inspection = plugin::inspect(&plugin);
            print!("{}", inspection.report);
            if inspection.loadable {
                Ok(())
            } else {
                Err((
                    EXIT_CONFIG,
                    format!("{} cannot be loaded", plugin.display()),
                ))
            }
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    template,
                    dir,
                },
        } => {
            let root = txform::scaffold::new_plugin(&dir, &name, template)
                .map_err(|e| (EXIT_CONFIG, format!("{e:#}")))?;
            println!(
                "created {}: `cargo build --release && cargo test`, then \
                 `txform test sample/pipeline.toml --input sample/records.jsonl --expect sample/expected.jsonl`",
                root.display()
            );
            Ok(())
        }
        Command::Test {
            target,
            input,
            expect,
            config,
        } => offline_test(&target, &input, expect.as_deref(), config),
        Command::Run {
            config,
            instance_id,
            instance_id_from_hostname,
        } => {
            let request = instance_id::Request {
                flag: instance_id,
                from_hostname: instance_id_from_hostname,
            };
            let id = instance_id::resolve(
                &request,
                std::env::var(instance_id::ENV).ok(),
                instance_id::hostname,
            )
            .map_err(|e| (EXIT_CONFIG, e))?;
            let pipeline = load(&config, id)?;
            let stop = shutdown::install()
                .map_err(|e| (EXIT_CONFIG, format!("cannot install signal handlers: {e}")))?;
            let mut chain =
                plugin::Chain::load(&pipeline.transforms, |line| pipeline.location(line))
                    .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
            let metrics = Metrics::for_chain(&mut chain, pipeline.metrics.liveness_timeout);
            if let Some(listen) = pipeline.metrics.listen {
                metrics::server::start(listen, Arc::clone(&metrics), Arc::clone(&stop))
                    .map_err(|e| (EXIT_CONFIG, format!("{}: {e}", config.display())))?;
            }
            txform::kafka::access::stop_on_refusal(&stop);
            pipeline::run(&pipeline, chain, &stop, metrics)
                .map_err(|e| (e.exit_code(), e.to_string()))
        }
    }
}

/// `txform test`: exit 0 when the run matched (or nothing was expected), 1 on a mismatch, 2 when the
/// chain, the input or the expectation cannot be read.
fn offline_test(
    target: &std::path::Path,
    input: &std::path::Path,
    expect: Option<&std::path::Path>,
    config_json: String,
) -> Result<(), (u8, String)> {
    use txform::offline::{self, jsonl, Target};
    let config_error = |e: String| (EXIT_CONFIG, e);
    let target = if target.extension().is_some_and(|e| e == "toml") {
        Target::Pipeline(target)
    } else {
        Target::Plugin {
            path: target,
            config_json,
        }
    };
    let mut chain = offline::load_chain(&target).map_err(|e| config_error(format!("{e:#}")))?;
    let text = read_input(input).map_err(config_error)?;
    let records = jsonl::parse_records(&text, &input.display().to_string())
        .map_err(|e| config_error(e.to_string()))?;
    let lines = offline::run(&mut chain, &records);
    let Some(expect) = expect else {
        for line in &lines {
            println!("{line}");
        }
        return Ok(());
    };
    let text = read_input(expect).map_err(config_error)?;
    let expected = offline::parse_expected(&text, &expect.display().to_string())
        .map_err(|e| config_error(e.to_string()))?;
    match offline::diff(&expected, &lines) {
        None => {
            println!("ok: {} lines as expected", lines.len());
            Ok(())
        }
        Some(diff) => {
            print!("{diff}");
            Err((1, format!("the output differs from {}", expect.display())))
        }
    }
}

/// A file's text, or standard input's for `-`.
fn read_input(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut text = String::new();
    if path == std::path::Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    Ok(text)
}

fn load(
    path: &std::path::Path,
    instance_id: Option<String>,
) -> Result<config::Pipeline, (u8, String)> {
    let pipeline = config::load(path).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    txform::redact::hide(&pipeline.secrets);
    Ok(match instance_id {
        Some(id) => pipeline.with_instance_id(id),
        None => pipeline,
    })
}
