//! The error a configuration turns into, and the collector that builds it.
//!
//! Every problem is rendered as `origin:line: message` (the form editors and terminals turn into a
//! link) when it is created, so callers only print; the byte offsets toml reports are converted to
//! lines here and nowhere else.

use std::ops::Range;
use std::path::Path;

/// Everything wrong with one pipeline file, one problem per line of the `Display` output.
///
/// Validation keeps going after the first semantic problem so that one run of `txform validate`
/// shows all of them; a TOML syntax or type error stops at the first one because serde cannot
/// continue past it.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    /// The problems, each already formatted as `origin:line: message` (or `origin: message` for
    /// a file that could not be read at all, which has no line to point at).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// A file that cannot be read has no line to blame.
    pub(super) fn unreadable(origin: &Path, error: &std::io::Error) -> Self {
        ConfigError {
            problems: vec![format!(
                "{}: cannot read the file: {error}",
                origin.display()
            )],
        }
    }
}

/// Collects problems against the text they were found in, so that spans become line numbers.
pub(super) struct Problems<'a> {
    origin: &'a Path,
    text: &'a str,
    found: Vec<(usize, String)>,
}

impl<'a> Problems<'a> {
    pub(super) fn new(origin: &'a Path, text: &'a str) -> Self {
        Problems {
            origin,
            text,
            found: Vec::new(),
        }
    }

    /// The 1-based line a byte offset falls on. Offsets past the end (toml points one past the
    /// last byte for errors at end of input) count as the last line instead of panicking.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    /// Records a problem at the start of `span`.
    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = self.line_of(span.start);
        self.at_line(line, message);
    }

    /// Records a problem at a line already computed (for example a [`super::TransformSpec::line`]).
    pub(super) fn at_line(&mut self, line: usize, message: impl Into<String>) {
        self.found.push((line, message.into()));
    }

    /// Whether nothing has been recorded.
    pub(super) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Every problem recorded, in file order (problems on the same line keep the order they were
    /// found in).
    pub(super) fn into_error(mut self) -> ConfigError {
        self.found.sort_by_key(|(line, _)| *line);
        let origin = self.origin.display();
        ConfigError {
            problems: self
                .found
                .into_iter()
                .map(|(line, message)| format!("{origin}:{line}: {message}"))
                .collect(),
        }
    }
}
