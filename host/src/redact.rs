//! Keeps the pipeline's secrets out of everything txform writes.
//!
//! The secrets ([`config::Secrets`]: passwords, key passphrases, whatever a `${env:...}` or
//! `${file:...}` reference produced) are registered once the file is read; from then on every log
//! line (txform's and librdkafka's, whatever `RUST_LOG` or librdkafka's `debug` says), the final
//! error line and the `txform.error` header of dead-letter records pass through [`text`], which
//! replaces each secret with `[redacted]`. A filter at the end, not care at every call site:
//! librdkafka's own messages and errors from plugins are text txform does not control.

use std::borrow::Cow;
use std::sync::RwLock;

use crate::config;

/// What a secret becomes.
pub const REDACTED: &str = "[redacted]";

/// The registered secrets, longest first ([`config::Secrets::new`]).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers `secrets`, in addition to any registered before.
pub fn hide(secrets: &config::Secrets) {
    let mut registered = match SECRETS.write() {
        Ok(registered) => registered,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut all: Vec<String> = registered.drain(..).collect();
    all.extend(secrets.values().iter().cloned());
    *registered = config::Secrets::new(all).values().to_vec();
}

/// `message` with every registered secret replaced by [`REDACTED`].
pub fn text(message: &str) -> Cow<'_, str> {
    let registered = match SECRETS.read() {
        Ok(registered) => registered,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut out = Cow::Borrowed(message);
    for secret in registered.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

/// A logger that redacts each message before `inner` formats and writes it.
pub struct Redacting<L>(pub L);

impl<L: log::Log> log::Log for Redacting<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let message = text(&message);
        self.0.log(
            &log::Record::builder()
                .metadata(record.metadata().clone())
                .args(format_args!("{message}"))
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_replaced_wherever_they_appear() {
        hide(&config::Secrets::new(vec![
            "redact-test-pw".to_owned(),
            "redact-test-pw-longer".to_owned(),
        ]));
        assert_eq!(
            text("SASL as bob with redact-test-pw-longer, then redact-test-pw"),
            "SASL as bob with [redacted], then [redacted]"
        );
        assert!(matches!(text("nothing secret"), Cow::Borrowed(_)));
    }
}
