//! `txform plugin new NAME`: writes a ready plugin crate (Cargo.toml, a commented transform with its
//! config struct and a unit test, sample records with their expected output, a sample pipeline).
//!
//! Where plugin-api comes from: when this txform binary runs from a source checkout that still has
//! `plugin-api/` (as in this repository), the crate gets a path dependency on it, pinned to the same
//! version, and a copy of the checkout's `Cargo.lock` (so it builds offline with the same versions);
//! otherwise a registry dependency on exactly this host's plugin-api version.

mod templates;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
pub use templates::Template;

/// Writes the crate `name` into `dir/name`; returns the crate's directory.
pub fn new_plugin(dir: &Path, name: &str, template: Template) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!("plugin name `{name}`: use lowercase ASCII letters, digits, `-` and `_`, starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let checkout = source_checkout();
    let dependency = match &checkout {
        Some(checkout) => format!(
            "{{ path = {:?}, version = \"={}\" }}",
            checkout.join("plugin-api").display().to_string(),
            txform_plugin_api::API_VERSION
        ),
        None => format!("\"={}\"", txform_plugin_api::API_VERSION),
    };
    let lib_name = name.replace('-', "_");
    let files = [
        ("Cargo.toml", templates::cargo_toml(name, &dependency)),
        ("src/lib.rs", templates::lib_rs(template)),
        ("sample/records.jsonl", templates::RECORDS.to_string()),
        ("sample/expected.jsonl", templates::expected(template)),
        ("sample/pipeline.toml", templates::pipeline(&lib_name)),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, text) in files {
        let path = root.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(checkout) = checkout {
        let lock = checkout.join("Cargo.lock");
        if lock.is_file() {
            std::fs::copy(&lock, root.join("Cargo.lock"))
                .with_context(|| format!("cannot copy {}", lock.display()))?;
        }
    }
    Ok(root)
}

/// The source checkout this binary was built from, when it is still there.
fn source_checkout() -> Option<PathBuf> {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    checkout
        .join("plugin-api/Cargo.toml")
        .is_file()
        .then_some(checkout)
}
