//! Asks librdkafka whether one property is valid, without creating a client or contacting a broker.
//!
//! Each property is set alone on a fresh librdkafka configuration, so a problem belongs to one key
//! (and so to one line of the file). librdkafka's reason is kept, with its name for the property
//! replaced by the key as written (it names `queue.buffering.max.ms` for `linger.ms`), and, where
//! the reason does not say what is allowed, the range or values from librdkafka's own property
//! table are added.

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::sync::OnceLock;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;

use super::types::KafkaProperties;

/// What librdkafka finds wrong with `key = value`, as text that follows the key; `None` if
/// librdkafka accepts it. The value of a secret-looking key ([`KafkaProperties::is_secret`]) is
/// never part of the text.
pub(super) fn property_problem(key: &str, value: &str) -> Option<String> {
    let error = ClientConfig::new()
        .set(key, value)
        .create_native_config()
        .err()?;
    let secret = KafkaProperties::is_secret(key);
    Some(match error {
        KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..) => format!(
            "is not a librdkafka property (librdkafka {} lists its properties in its CONFIGURATION.md)",
            rdkafka::util::get_rdkafka_version().1
        ),
        KafkaError::ClientConfig(_, reason, ..) => {
            let reason = reason.trim();
            // Checked before any rewriting, which could break up a secret's text.
            if secret && !value.is_empty() && reason.contains(value) {
                return Some(
                    "has a value librdkafka refuses (not shown, nor librdkafka's reason, which \
                     repeats it: the key holds a secret)"
                        .to_owned(),
                );
            }
            let reason = with_key(reason, key);
            let reason = match allowed(key).filter(|_| reason.starts_with("Invalid value")) {
                Some(allowed) => format!("{reason}; allowed: {allowed}"),
                None => reason,
            };
            if secret {
                format!(
                    "has a value librdkafka refuses (not shown: the key holds a secret): {reason}"
                )
            } else {
                format!("is refused by librdkafka: {reason}")
            }
        }
        KafkaError::Nul(_) if key.contains('\0') => "must not contain a NUL character".to_owned(),
        KafkaError::Nul(_) => "has a value with a NUL character, which librdkafka cannot take".to_owned(),
        other => format!("cannot be checked by librdkafka: {other}"),
    })
}

/// `reason` with librdkafka's name of the property, which differs for an alias, replaced by `key`.
///
/// librdkafka names the property as `property "NAME"` or `value for "NAME"` in every reason it
/// gives for a refused value (rdkafka_conf.c); any value it quotes comes elsewhere.
fn with_key(reason: &str, key: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(at) = name_start(rest) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match rest.find('"') {
            Some(end) => {
                out.push_str(key);
                rest = &rest[end..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Byte offset just past the first `property "` or `value for "` (any case) in `text`.
fn name_start(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    ["property \"", "value for \""]
        .iter()
        .filter_map(|marker| lower.find(marker).map(|at| at + marker.len()))
        .min()
}

/// The range or values librdkafka allows for `key`, with its type, e.g. `0 .. 900000 (float)`,
/// from librdkafka's own property table; `None` for properties without one (free strings).
fn allowed(key: &str) -> Option<&'static str> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| parse_table(&property_table().unwrap_or_default()))
        .get(key)
        .map(String::as_str)
}

/// Property name -> allowed range and type, from the Markdown table librdkafka prints (the one its
/// CONFIGURATION.md is made of): `name | C/P | range | default | importance | description`, the
/// description ending in `*Type: <type>*`. The first row of a name wins (global before topic).
fn parse_table(table: &str) -> HashMap<String, String> {
    let mut allowed = HashMap::new();
    for row in table.lines() {
        let columns: Vec<&str> = row.split('|').map(str::trim).collect();
        let [name, _, range, _, _, description] = columns[..] else {
            continue;
        };
        let kind = description
            .rsplit_once("*Type: ")
            .and_then(|(_, kind)| kind.strip_suffix('*'));
        let header = name == "Property" || name.starts_with('-');
        if header || range.is_empty() || name.is_empty() || name.contains(' ') {
            continue;
        }
        let text = match kind {
            Some(kind) => format!("{range} ({kind})"),
            None => range.to_owned(),
        };
        allowed.entry(name.to_owned()).or_insert(text);
    }
    allowed
}

/// librdkafka's property table as text (`rd_kafka_conf_properties_show`), printed into memory.
fn property_table() -> Option<String> {
    let mut buffer: *mut c_char = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: open_memstream writes the buffer pointer and size at fclose; the stream is only
    // written by librdkafka and closed once; the buffer is NUL-terminated, read, then freed.
    unsafe {
        let stream = libc::open_memstream(&mut buffer, &mut size);
        if stream.is_null() {
            return None;
        }
        rdkafka::bindings::rd_kafka_conf_properties_show(stream.cast());
        if libc::fclose(stream) != 0 || buffer.is_null() {
            libc::free(buffer.cast());
            return None;
        }
        let text = CStr::from_ptr(buffer).to_string_lossy().into_owned();
        libc::free(buffer.cast());
        Some(text)
    }
}
