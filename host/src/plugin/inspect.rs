//! `txform inspect PLUGIN`: what a plugin library is, and whether this host can run it.

use std::fmt::Write as _;
use std::path::Path;

use txform_plugin_api::{compat, API_VERSION};

use super::loader::{open_plugin, refusal};

/// The report `txform inspect` prints, and whether the plugin can run here (the exit code).
pub struct Inspection {
    pub report: String,
    pub loadable: bool,
}

/// Describes the plugin at `path`: name, version, the plugin-api it was built against, whether this
/// host can load it (or the one-line reason `run` would give), and its configuration documentation.
pub fn inspect(path: &Path) -> Inspection {
    let mut report = format!("plugin: {}\n", path.display());
    let module = match open_plugin(path) {
        Ok(module) => module,
        // Nothing of a library whose layouts differ can be read safely.
        Err(error) => {
            let _ = writeln!(report, "loadable: no: {error}");
            return Inspection {
                report,
                loadable: false,
            };
        }
    };
    let info = module.info();
    let _ = writeln!(report, "name: {}", info.name);
    let _ = writeln!(report, "version: {}", info.version);
    let _ = writeln!(
        report,
        "plugin-api: {} (this host: {API_VERSION})",
        info.api_version
    );
    let verdict = refusal(path, module);
    match &verdict {
        None => report.push_str("loadable: yes\n"),
        Some(error) => {
            let _ = writeln!(report, "loadable: no: {error}");
        }
    }
    match compat::config_doc(module) {
        Some(doc) => {
            report.push_str("config:\n");
            for line in doc.trim_end().lines() {
                let _ = writeln!(report, "  {line}");
            }
        }
        None => report.push_str("config: not documented by the plugin\n"),
    }
    Inspection {
        report,
        loadable: verdict.is_none(),
    }
}
