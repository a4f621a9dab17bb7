//! The JSONL record format of `txform test`: one JSON object per line.
//!
//! Input: `{"key": BYTES, "value": BYTES, "headers": [{"key": "name", "value": BYTES}],
//! "timestamp": ms, "topic": "t", "partition": 0, "offset": 0}`, every field optional. BYTES is a
//! JSON string (its UTF-8 bytes), `{"base64": "..."}` for any bytes, or `null`. Outputs are written
//! in the same form (a string when the bytes are UTF-8, base64 otherwise).

use abi_stable::std_types::{ROption, RVec};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use txform_plugin_api::{OutRecord, TestRecord};

/// A line that is not a record, named by its line number and key.
#[derive(Debug, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct LineError {
    pub origin: String,
    pub line: usize,
    pub message: String,
}

/// Parses every non-blank line of `text` into a record; `offset` defaults to the record's position.
pub fn parse_records(text: &str, origin: &str) -> Result<Vec<TestRecord>, LineError> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let error = |message: String| LineError {
            origin: origin.to_string(),
            line: index + 1,
            message,
        };
        let value: Value =
            serde_json::from_str(line).map_err(|e| error(format!("not JSON: {e}")))?;
        let position = records.len() as i64;
        records.push(record(&value, position).map_err(error)?);
    }
    Ok(records)
}

fn record(value: &Value, position: i64) -> Result<TestRecord, String> {
    let object = value.as_object().ok_or("a record must be a JSON object")?;
    let mut record = TestRecord::default().at("input", 0, position);
    for (key, field) in object {
        match key.as_str() {
            "key" => record.key = bytes(field).map_err(|e| format!("key `key`: {e}"))?,
            "value" => record.value = bytes(field).map_err(|e| format!("key `value`: {e}"))?,
            "topic" => {
                record.topic = field
                    .as_str()
                    .ok_or("key `topic`: expected a string")?
                    .to_string()
            }
            "partition" => {
                record.partition = field
                    .as_i64()
                    .and_then(|p| i32::try_from(p).ok())
                    .ok_or("key `partition`: expected a 32-bit integer")?
            }
            "offset" => {
                record.offset = field.as_i64().ok_or("key `offset`: expected an integer")?
            }
            "timestamp" => {
                record.timestamp = match field {
                    Value::Null => None,
                    _ => Some(
                        field
                            .as_i64()
                            .ok_or("key `timestamp`: expected milliseconds")?,
                    ),
                }
            }
            "headers" => record.headers = headers(field)?,
            other => return Err(format!("unknown key `{other}`")),
        }
    }
    Ok(record)
}

/// A record's headers as [`TestRecord`] holds them.
type Headers = Vec<(String, Option<Vec<u8>>)>;

fn headers(field: &Value) -> Result<Headers, String> {
    let list = field
        .as_array()
        .ok_or("key `headers`: expected an array of {\"key\", \"value\"} objects")?;
    list.iter()
        .enumerate()
        .map(|(i, header)| {
            let name = header
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("key `headers[{i}].key`: expected a string"))?;
            let value = match header.get("value") {
                None => None,
                Some(v) => bytes(v).map_err(|e| format!("key `headers[{i}].value`: {e}"))?,
            };
            Ok((name.to_string(), value))
        })
        .collect()
}

fn bytes(field: &Value) -> Result<Option<Vec<u8>>, String> {
    match field {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone().into_bytes())),
        Value::Object(object) => match (object.get("base64"), object.len()) {
            (Some(Value::String(encoded)), 1) => STANDARD
                .decode(encoded)
                .map(Some)
                .map_err(|e| format!("invalid base64: {e}")),
            _ => Err("expected a string, {\"base64\": \"...\"} or null".to_string()),
        },
        _ => Err("expected a string, {\"base64\": \"...\"} or null".to_string()),
    }
}

fn slice(bytes: &ROption<RVec<u8>>) -> Option<&[u8]> {
    bytes.as_ref().map(|v| v.as_slice()).into_option()
}

/// Bytes as a JSON string when they are UTF-8, `{"base64": ...}` otherwise.
fn bytes_value(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => Value::String(text.to_string()),
            Err(_) => json!({ "base64": STANDARD.encode(b) }),
        },
    }
}

/// One output as a JSON line: `{"output": {"input": n, ...fields that are set}}`.
pub fn output_line(record: &OutRecord) -> Value {
    let mut fields = Map::new();
    fields.insert("input".into(), json!(record.input));
    if let Some(topic) = record.topic.as_ref().into_option() {
        fields.insert("topic".into(), json!(topic.as_str()));
    }
    if let Some(partition) = record.partition.into_option() {
        fields.insert("partition".into(), json!(partition));
    }
    if let Some(timestamp) = record.timestamp.into_option() {
        fields.insert("timestamp".into(), json!(timestamp));
    }
    fields.insert("key".into(), bytes_value(slice(&record.key)));
    fields.insert("value".into(), bytes_value(slice(&record.value)));
    let headers: Vec<Value> = record
        .headers
        .iter()
        .map(|h| json!({ "key": h.key.as_str(), "value": bytes_value(slice(&h.value)) }))
        .collect();
    fields.insert("headers".into(), Value::Array(headers));
    json!({ "output": fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_base64_and_null_bytes() {
        let text = "{\"key\": \"k\", \"value\": {\"base64\": \"/wA=\"}, \"headers\": [{\"key\": \"h\", \"value\": null}], \"timestamp\": 5}\n\n{\"partition\": 2, \"offset\": 9}\n";
        let records = parse_records(text, "in.jsonl").unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&[0xff, 0][..]));
        assert_eq!(records[0].headers, vec![("h".to_string(), None)]);
        assert_eq!((records[0].offset, records[0].timestamp), (0, Some(5)));
        assert_eq!(
            (
                records[1].partition,
                records[1].offset,
                records[1].value.clone()
            ),
            (2, 9, None)
        );
    }

    #[test]
    fn bad_lines_are_named_with_line_and_key() {
        let err = parse_records("{}\n{\"value\": 3}\n", "in.jsonl").unwrap_err();
        assert_eq!(
            err.to_string(),
            "in.jsonl:2: key `value`: expected a string, {\"base64\": \"...\"} or null"
        );
        let err = parse_records("{\"vlaue\": \"x\"}", "in.jsonl").unwrap_err();
        assert_eq!(err.to_string(), "in.jsonl:1: unknown key `vlaue`");
        let err = parse_records("nope", "-").unwrap_err();
        assert!(err.to_string().starts_with("-:1: not JSON: "), "{err}");
    }

    #[test]
    fn outputs_use_strings_or_base64() {
        let mut out = OutRecord::new(vec![0xffu8])
            .with_key("k")
            .with_header("h", None);
        out.input = 3;
        assert_eq!(
            output_line(&out),
            json!({"output": {"input": 3, "key": "k", "value": {"base64": "/w=="}, "headers": [{"key": "h", "value": null}]}})
        );
    }
}
