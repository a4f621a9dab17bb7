//! A transform's `config` table, converted to the JSON text plugins receive.
//!
//! Plugins are configured in JSON so that they need no TOML parser and the ABI carries one string;
//! the conversion is lossless except where JSON has no form (non-finite floats), which is refused.

use super::error::Problems;
use super::secrets::{resolve, System};

/// The `config` table as compact JSON, which is what plugins receive. Datetimes become their
/// RFC 3339 text; non-finite floats, which JSON has no form for, are problems. `${...}` references
/// in strings are resolved (toml gives values inside a free-form table no location, so their
/// problems point at the transform's line) and what they produced is added to `secrets`.
pub(super) fn config_json(
    table: toml::Table,
    name: &str,
    line: usize,
    problems: &mut Problems<'_>,
    secrets: &mut Vec<String>,
) -> String {
    let mut found = Found {
        unrepresentable: Vec::new(),
        references: Vec::new(),
        secrets,
    };
    let json = to_json(toml::Value::Table(table), "config", &mut found);
    for path in found.unrepresentable {
        problems.at_line(
            line,
            format!("`{path}` of transform `{name}` is not a finite number, which JSON cannot represent"),
        );
    }
    for (path, problem) in found.references {
        problems.at_line(line, format!("`{path}` of transform `{name}` {problem}"));
    }
    json.to_string()
}

/// What the conversion finds on its way, by key path.
struct Found<'a> {
    /// Non-finite floats (they become `null`).
    unrepresentable: Vec<String>,
    /// References that cannot be resolved, with why.
    references: Vec<(String, String)>,
    secrets: &'a mut Vec<String>,
}

/// Converts one TOML value.
fn to_json(value: toml::Value, path: &str, found: &mut Found<'_>) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        toml::Value::String(text) => match resolve(&text, &System) {
            Ok(resolved) => {
                found.secrets.extend(resolved.secrets);
                Json::String(resolved.value)
            }
            Err(problem) => {
                found.references.push((path.to_owned(), problem));
                Json::Null
            }
        },
        toml::Value::Integer(number) => Json::from(number),
        toml::Value::Float(number) => match serde_json::Number::from_f64(number) {
            Some(number) => Json::Number(number),
            None => {
                found.unrepresentable.push(path.to_owned());
                Json::Null
            }
        },
        toml::Value::Boolean(flag) => Json::Bool(flag),
        toml::Value::Datetime(datetime) => Json::String(datetime.to_string()),
        toml::Value::Array(items) => Json::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| to_json(item, &format!("{path}[{index}]"), found))
                .collect(),
        ),
        toml::Value::Table(table) => Json::Object(
            table
                .into_iter()
                .map(|(key, item)| {
                    let item_path = format!("{path}.{}", toml_key(&key));
                    (key, to_json(item, &item_path, found))
                })
                .collect(),
        ),
    }
}

/// `key` as it would be written in a TOML dotted path: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}
