//! Opens plugin libraries and condenses abi_stable's load errors into one or two lines.
//!
//! `RootModule::load_from_file` caches one library per module type for the whole process, so a chain of
//! different plugins would silently get the first one N times. We open each file ourselves instead.
//! Libraries are never unloaded: abi_stable keeps `'static` references into each of them.

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use txform_plugin_api::{PluginModRef, ROOT_MODULE_SYMBOL};

/// Why a plugin file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin file not found: {}", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot open plugin {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("{} is a shared library but not a txform plugin (it does not export the txform root module; build it with txform_plugin_api::export_transform!)", path.display())]
    NotAPlugin { path: PathBuf },
    #[error("plugin {} was built against an incompatible txform-plugin-api: {reason}; rebuild it against this host's plugin-api", path.display())]
    Incompatible { path: PathBuf, reason: String },
}

/// Loads the plugin library at `path` and checks its ABI against this host's plugin-api.
pub fn load_plugin(path: &Path) -> Result<PluginModRef, LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let header = lib_header_from_path(path).map_err(|e| classify(path, e))?;
    header
        .init_root_module::<PluginModRef>()
        .map_err(|e| classify(path, e))
}

fn classify(path: &Path, error: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            reason: open_reason(&err.to_string()),
            path,
        },
        LibraryError::GetSymbolError { symbol, .. }
            if symbol.starts_with(ROOT_MODULE_SYMBOL.as_bytes()) =>
        {
            LoadError::NotAPlugin { path }
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::Incompatible {
            reason: format!(
                "it was built against plugin-api {actual_version}, this host needs {expected_version} (same minor version)"
            ),
            path,
        },
        LibraryError::AbiInstability(details) => LoadError::Incompatible {
            reason: layout_essence(&details.to_string()),
            path,
        },
        other => LoadError::Incompatible {
            reason: layout_essence(&other.to_string()),
            path,
        },
    }
}

/// dlopen's message repeats the path; keep what follows it ("invalid ELF header", ...).
fn open_reason(message: &str) -> String {
    let last = message.rsplit(": ").next().unwrap_or(message).trim();
    if last.is_empty() {
        message.trim().to_string()
    } else {
        last.to_string()
    }
}

/// abi_stable's layout-mismatch report runs to about a thousand lines of type dumps; the lines that
/// say what differs ("incompatible type size ... Expected: 120 Found: 112", "too many fields") are
/// what a plugin author needs.
fn layout_essence(report: &str) -> String {
    const MARKERS: [&str; 6] = [
        "Expected",
        "Found",
        "too many",
        "too few",
        "incompatible",
        "mismatch",
    ];
    let mut kept: Vec<String> = Vec::new();
    for line in report.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if MARKERS.iter().any(|m| line.contains(m)) && !kept.iter().any(|k| k == line) {
            kept.push(line.to_string());
        }
    }
    // The most specific differences come last in the report.
    let start = kept.len().saturating_sub(3);
    let essence = kept[start..].join("; ");
    if essence.is_empty() {
        report
            .lines()
            .next()
            .unwrap_or("layout mismatch")
            .trim()
            .to_string()
    } else {
        truncate(essence, 300)
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_reason_keeps_the_cause() {
        assert_eq!(
            open_reason("/tmp/x.so: invalid ELF header"),
            "invalid ELF header"
        );
    }

    #[test]
    fn layout_essence_keeps_the_last_differences() {
        let report = "Error:\n  lots of layout\n  field a\n incompatible type size\n Expected: 120\n Found: 112\n";
        assert_eq!(
            layout_essence(report),
            "incompatible type size; Expected: 120; Found: 112"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let err = load_plugin(Path::new("/nonexistent/libnothing.so")).err();
        assert_eq!(
            err.map(|e| e.to_string()).unwrap_or_default(),
            "plugin file not found: /nonexistent/libnothing.so"
        );
    }
}
