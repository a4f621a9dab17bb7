//! Opens plugin libraries and condenses abi_stable's load errors into one or two lines.
//!
//! `RootModule::load_from_file` caches one library per module type for the whole process, so a chain of
//! different plugins would silently get the first one N times. We open each file ourselves instead.
//! Libraries are never unloaded: abi_stable keeps `'static` references into each of them.

use std::path::{Path, PathBuf};

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError};
use abi_stable::StableAbi;
use txform_plugin_api::compat::{self, Refusal};
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
    #[error("plugin {} cannot run in this host: {refusal}", path.display())]
    Refused { path: PathBuf, refusal: Refusal },
}

/// Loads the plugin library at `path` and checks its ABI against this host's plugin-api: the
/// layouts (abi_stable), then what a newer plugin needs and how it was built ([`compat::check`]).
pub fn load_plugin(path: &Path) -> Result<PluginModRef, LoadError> {
    let module = open_plugin(path)?;
    refusal(path, module).map_or(Ok(module), Err)
}

/// Why this host refuses a plugin whose layouts it accepted, if it does.
pub fn refusal(path: &Path, module: PluginModRef) -> Option<LoadError> {
    compat::check(module)
        .err()
        .map(|refusal| LoadError::Refused {
            path: path.to_path_buf(),
            refusal,
        })
}

/// Opens the library and checks its version and layouts, so its root module can be read; whether
/// this host may run it is [`refusal`]'s answer.
pub fn open_plugin(path: &Path) -> Result<PluginModRef, LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let header = lib_header_from_path(path).map_err(|e| classify(path, e))?;
    let module = match header.init_root_module::<PluginModRef>() {
        Ok(module) => module,
        Err(LibraryError::AbiInstability(_)) if is_older_of_this_line(header) => {
            // SAFETY: the version was checked by `init_root_module` (it fails on the version before
            // it compares layouts), and the layouts by `is_older_of_this_line`.
            unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }
                .map_err(|e| classify(path, e))?
        }
        Err(error) => return Err(classify(path, error)),
    };
    Ok(module)
}

/// abi_stable checks the host's layouts as the interface and the plugin's as the implementation,
/// which lets a plugin's prefix types (root module, vtables) be *longer* than the host's: a newer
/// plugin of the line. An older plugin, whose prefix types are shorter, is checked with the roles
/// swapped: every field both have must still agree exactly, and the fields it lacks read as `None`
/// (its vtables carry their own length, which every accessor consults at run time).
fn is_older_of_this_line(header: &LibHeader) -> bool {
    header
        .layout()
        .is_some_and(|plugin| check_layout_compatibility(plugin, PluginModRef::LAYOUT).is_ok())
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
        LibraryError::AbiInstability(details) => {
            let report = details.to_string();
            log::debug!("abi_stable's full report for {}:\n{report}", path.display());
            LoadError::Incompatible {
                reason: layout_essence(&report),
                path,
            }
        }
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

/// abi_stable's layout-mismatch report runs to hundreds of lines of type dumps, ending with one block
/// per difference: `Error:<what>`, then `Expected:` and `Found:`, each followed by indented values.
/// The first line of each value is what a plugin author needs.
fn layout_essence(report: &str) -> String {
    let mut differences = Vec::new();
    let mut lines = report.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        let Some(what) = line.strip_prefix("Error:") else {
            continue;
        };
        let mut expected = None;
        let mut found = None;
        while let Some(next) = lines.peek().copied() {
            if next.starts_with("Error:") {
                break;
            }
            lines.next();
            let slot = match next {
                "Expected:" => &mut expected,
                "Found:" => &mut found,
                _ => continue,
            };
            *slot = lines.peek().map(|v| v.replace("field_name:", "field "));
        }
        differences.push(match (expected, found) {
            (Some(e), Some(f)) => format!("{}: expected {e}, found {f}", what.trim()),
            _ => what.trim().to_string(),
        });
    }
    if differences.is_empty() {
        let first = report.lines().map(str::trim).find(|l| !l.is_empty());
        return first.unwrap_or("layout mismatch").to_string();
    }
    // The most specific differences come last in the report.
    differences.reverse();
    truncate(differences.join("; "), 300)
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
    fn layout_essence_names_each_difference() {
        let report = "Error:lots of layout\n  field_name:a\n\
            Error:prefix-types have a different prefix\nExpected:\n    2\nFound:\n    3\n\n\
            Error:unexpected field\nExpected:\n    field_name:new_transform\n    type:AFunctionPointer\n\
            Found:\n    field_name:abi_flags\n    type:u64\n";
        assert_eq!(
            layout_essence(report),
            "unexpected field: expected field new_transform, found field abi_flags; \
             prefix-types have a different prefix: expected 2, found 3; lots of layout"
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
