//! `--log-format json`: one JSON object per line for log shippers, with the same content as the
//! text format (time, level, target, message).

use std::io::Write;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL target] message` (env_logger's format).
    Text,
    /// `{"time":…,"level":…,"target":…,"message":…}`.
    Json,
}

/// Installs the logger: `RUST_LOG` filters (default `info`), `format` shapes the lines, and every
/// message passes through `redact` first.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = json_line(
                &buf.timestamp().to_string(),
                record.level(),
                record.target(),
                &record.args().to_string(),
            );
            writeln!(buf, "{line}")
        });
    }
    let logger = builder.build();
    log::set_max_level(logger.filter());
    // Only fails when a logger is installed already, which then keeps logging.
    let _ = log::set_boxed_logger(Box::new(crate::redact::Redacting(logger)));
}

/// The message a failed command exits with. Not through `log`: it must reach stderr whatever
/// `RUST_LOG` says. Text: `txform: ` before each line; JSON: one object (no time, like the text).
pub fn final_error(format: LogFormat, message: &str) {
    let message = &*crate::redact::text(message);
    match format {
        LogFormat::Text => {
            for line in message.lines() {
                eprintln!("txform: {line}");
            }
        }
        LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({ "level": "ERROR", "target": "txform", "message": message })
        ),
    }
}

fn json_line(time: &str, level: log::Level, target: &str, message: &str) -> String {
    serde_json::json!({
        "time": time,
        "level": level.as_str(),
        "target": target,
        "message": message,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_with_the_text_fields() {
        let line = json_line(
            "2026-01-01T00:00:00Z",
            log::Level::Warn,
            "txform::pipeline::copier",
            "aborted batch at \"t\"/0\nsecond line",
        );
        assert!(!line.contains('\n'), "one line: {line}");
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(value["time"], "2026-01-01T00:00:00Z");
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["target"], "txform::pipeline::copier");
        assert_eq!(value["message"], "aborted batch at \"t\"/0\nsecond line");
    }
}
