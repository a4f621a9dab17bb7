//! Reshapes JSON object records: keeps, renames, filters and sets top-level fields. It demonstrates a
//! plugin with a validated configuration, records filtered out (zero outputs for an input) and the three
//! ways of handling bad input: failing the batch, rejecting the record ([`Output::reject`]) or skipping it.
//!
//! Each record's value goes through these steps; its key, headers and timestamp are copied unchanged:
//!
//! ```text
//! value ─▶ parse ─▶ filter ─▶ select ─▶ rename ─▶ set ─▶ serialize ─▶ output value
//!            │         │                   │
//!            │         └─ a condition fails: no output (not an error)
//!            └─────────────────────────────┴─ not a JSON object, or a rename collides: `on_invalid`
//! ```
//!
//! - **parse**: the value must be a JSON object (a missing value, invalid JSON or any other JSON value is
//!   invalid input);
//! - **filter**: every condition must hold, evaluated on the fields of the *input* object (before
//!   `select` and `rename`);
//! - **select**: keeps only the listed fields, in their input order;
//! - **rename**: renames fields in place (all renames at once, so `a → b` and `b → a` swap two fields); a
//!   renamed field colliding with a field of the record that keeps its name is invalid input;
//! - **set**: overwrites fields in place, or appends them in the order of the `set` table as the plugin
//!   receives it (the host's TOML reader hands tables over sorted by key);
//! - **serialize**: compact JSON, fields in order; numbers in canonical form (`1e0` becomes `1.0`, and
//!   integers beyond 64 bits become floats).
//!
//! A record whose serialized value is byte for byte its input value (a filter on compact JSON, say) is
//! forwarded ([`Output::forward_to`]): the host produces the fetched message itself instead of a copy
//! the plugin made. What is produced is the same either way.
//!
//! # Configuration
//! The `[transform.config]` table in `pipeline.toml`; every field is optional:
//!
//! ```toml
//! [transform.config]
//! select = ["id", "status", "amount", "customer"]   # keep only these fields
//! rename = { customer = "customer_id" }             # old name = new name
//! filter = [                                        # all must hold, else no output
//!     { field = "status", equals = "paid" },        # any TOML value; numbers compare by value (1 == 1.0)
//!     { field = "amount", exists = true },          # present (even if null) / absent
//! ]
//! set = { source = "orders", version = 2 }          # added or overwritten after rename
//! on_invalid = "reject"                             # "fail" (default) | "reject" | "skip"
//! keep_partition = true                             # produce to the input's partition number
//! topic = "orders-paid"                             # default: the pipeline's sink topic
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use txform_plugin_api::{
    export_transform, Forward, OutRecord, Output, Record, Transform, TransformError,
};

/// `[transform.config]` of the JSON transform.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Top-level fields to keep, in their input order; all fields when unset. Must not be empty.
    pub select: Option<Vec<String>>,
    /// Fields to rename, `old = "new"`, applied after `select` (so `old` must be selected). Two fields
    /// cannot get the same new name, nor a new name that a selected field or `set` already uses.
    pub rename: BTreeMap<String, String>,
    /// Conditions that must all hold for the record to be emitted; records failing one produce no
    /// output. They name fields of the input object, before `select` and `rename`.
    pub filter: Vec<Condition>,
    /// Fields to add, or to overwrite in place, after `rename`.
    pub set: Map<String, Value>,
    /// What to do with a value that is not a JSON object (or whose renames collide).
    pub on_invalid: OnInvalid,
    /// Produce each record to the partition number it was read from.
    pub keep_partition: bool,
    /// Output topic; the pipeline's `sink.topic` when unset.
    pub topic: Option<String>,
}

/// One `filter` condition: `{ field = "status", equals = "paid" }` or `{ field = "x", exists = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The top-level field of the input object to test.
    pub field: String,
    /// Holds when the field is present and equal to this JSON value (numbers compare by value).
    #[serde(default, deserialize_with = "some_value")]
    pub equals: Option<Value>,
    /// Holds when the field is present (`true`, even if `null`) or absent (`false`).
    pub exists: Option<bool>,
}

/// What to do with an input that is not a JSON object.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInvalid {
    /// Fail the whole batch with an error naming the record (the transaction is aborted).
    #[default]
    Fail,
    /// Reject the record with [`Output::reject`]; the host's error policy decides its fate.
    Reject,
    /// Drop the record silently.
    Skip,
}

/// Makes `equals = null` (possible in JSON, not in TOML) a condition rather than a missing one.
fn some_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// A validated [`Condition`].
#[derive(Debug)]
enum Test {
    Equals(Value),
    Exists(bool),
}

pub struct JsonTransform {
    select: Option<HashSet<String>>,
    rename: BTreeMap<String, String>,
    /// `rename` reversed: new name → old name, to explain collisions.
    renamed_from: BTreeMap<String, String>,
    filter: Vec<(String, Test)>,
    set: Map<String, Value>,
    on_invalid: OnInvalid,
    keep_partition: bool,
    topic: Option<String>,
}

impl Transform for JsonTransform {
    type Config = Config;

    fn new(config: Config) -> Result<Self, TransformError> {
        let select = match config.select {
            None => None,
            Some(fields) => Some(validate_select(fields)?),
        };
        let renamed_from = validate_rename(&config.rename, select.as_ref(), &config.set)?;
        let filter = config
            .filter
            .into_iter()
            .enumerate()
            .map(|(i, condition)| validate_condition(i, condition))
            .collect::<Result<Vec<_>, _>>()?;
        if config.set.keys().any(String::is_empty) {
            return Err("set: a field name is empty".into());
        }
        if config.topic.as_deref() == Some("") {
            return Err("topic is empty: remove it to use the pipeline's sink topic".into());
        }
        Ok(JsonTransform {
            select,
            rename: config.rename,
            renamed_from,
            filter,
            set: config.set,
            on_invalid: config.on_invalid,
            keep_partition: config.keep_partition,
            topic: config.topic,
        })
    }

    fn transform(&mut self, batch: &[Record<'_>], out: &mut Output) -> Result<(), TransformError> {
        for (index, record) in batch.iter().enumerate() {
            match self.apply(record.value()) {
                // Unchanged bytes (a filter on compact JSON): forwarded, so nothing is copied.
                Ok(Some(value)) if Some(value.as_slice()) == record.value() => {
                    out.forward_to(index, self.route(record));
                }
                Ok(Some(value)) => {
                    let Forward { topic, partition } = self.route(record);
                    let mut output = OutRecord {
                        topic: topic.map(Into::into).into(),
                        partition: partition.into(),
                        ..OutRecord::from_input(record)
                    };
                    output.value = Some(value.into()).into();
                    out.emit(index, output);
                }
                Ok(None) => {}
                Err(reason) => match self.on_invalid {
                    OnInvalid::Fail => {
                        return Err(format!(
                            "invalid record at topic/partition/offset {}/{}/{}: {reason}",
                            record.topic(),
                            record.partition(),
                            record.offset()
                        )
                        .into())
                    }
                    OnInvalid::Reject => out.reject(index, reason),
                    OnInvalid::Skip => {}
                },
            }
        }
        Ok(())
    }
}

impl JsonTransform {
    /// Where the output of `record` goes: `keep_partition` and `topic`.
    fn route(&self, record: &Record<'_>) -> Forward {
        Forward {
            topic: self.topic.clone(),
            partition: self.keep_partition.then(|| record.partition()),
        }
    }

    /// The new value of a record, `None` when the filter drops it, or why the input is invalid.
    fn apply(&self, value: Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
        let value = value.ok_or("the record has no value")?;
        let object = match serde_json::from_slice(value) {
            Ok(Value::Object(object)) => object,
            Ok(other) => return Err(format!("the value is {}, not a JSON object", kind(&other))),
            Err(e) => return Err(format!("the value is not valid JSON: {e}")),
        };
        if !self
            .filter
            .iter()
            .all(|(field, test)| holds(&object, field, test))
        {
            return Ok(None);
        }
        let mut object = self.select_and_rename(object)?;
        for (field, value) in &self.set {
            object.insert(field.clone(), value.clone());
        }
        serde_json::to_vec(&Value::Object(object))
            .map(Some)
            .map_err(|e| format!("cannot serialize the result: {e}"))
    }

    fn select_and_rename(&self, object: Map<String, Value>) -> Result<Map<String, Value>, String> {
        if self.select.is_none() && self.rename.is_empty() {
            return Ok(object);
        }
        let mut shaped = Map::with_capacity(object.len());
        for (field, value) in object {
            if self
                .select
                .as_ref()
                .is_some_and(|keep| !keep.contains(&field))
            {
                continue;
            }
            let field = self.rename.get(&field).cloned().unwrap_or(field);
            if shaped.contains_key(&field) {
                // Targets are unique and never a source's own name, so `field` is a rename target.
                let source = self.renamed_from.get(&field).map_or("?", String::as_str);
                return Err(format!(
                    "cannot rename field {source:?} to {field:?}: the record also has a field {field:?}"
                ));
            }
            shaped.insert(field, value);
        }
        Ok(shaped)
    }
}

fn validate_select(fields: Vec<String>) -> Result<HashSet<String>, TransformError> {
    if fields.is_empty() {
        return Err(
            "select is empty, which would drop every field: remove it to keep all fields".into(),
        );
    }
    let mut keep = HashSet::with_capacity(fields.len());
    for field in fields {
        if field.is_empty() {
            return Err("select: a field name is empty".into());
        }
        if keep.contains(&field) {
            return Err(format!("select lists {field:?} twice").into());
        }
        keep.insert(field);
    }
    Ok(keep)
}

/// Checks `rename` against itself, `select` and `set`; returns it reversed (new name → old name).
fn validate_rename(
    rename: &BTreeMap<String, String>,
    select: Option<&HashSet<String>>,
    set: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, TransformError> {
    let mut renamed_from = BTreeMap::new();
    for (old, new) in rename {
        if old.is_empty() || new.is_empty() {
            return Err(format!("rename {old:?} = {new:?}: a field name is empty").into());
        }
        if old == new {
            return Err(format!("rename maps {old:?} to itself").into());
        }
        if let Some(first) = renamed_from.insert(new.clone(), old.clone()) {
            return Err(format!("rename maps both {first:?} and {old:?} to {new:?}").into());
        }
        if let Some(select) = select {
            if !select.contains(old) {
                return Err(format!(
                    "rename source {old:?} is not in select, so it would never be renamed"
                )
                .into());
            }
            if select.contains(new) && !rename.contains_key(new) {
                return Err(format!(
                    "rename {old:?} = {new:?} clashes with the selected field {new:?}"
                )
                .into());
            }
        }
        if set.contains_key(new) {
            return Err(format!(
                "rename {old:?} = {new:?} is pointless: set overwrites {new:?} afterwards"
            )
            .into());
        }
    }
    Ok(renamed_from)
}

fn validate_condition(
    index: usize,
    condition: Condition,
) -> Result<(String, Test), TransformError> {
    if condition.field.is_empty() {
        return Err(format!("filter[{index}]: the field name is empty").into());
    }
    let test = match (condition.equals, condition.exists) {
        (Some(value), None) => Test::Equals(value),
        (None, Some(exists)) => Test::Exists(exists),
        _ => {
            return Err(format!(
                "filter[{index}] (field {:?}): give exactly one of `equals` or `exists`",
                condition.field
            )
            .into())
        }
    };
    Ok((condition.field, test))
}

fn holds(object: &Map<String, Value>, field: &str, test: &Test) -> bool {
    match test {
        Test::Equals(expected) => object.get(field).is_some_and(|v| json_eq(v, expected)),
        Test::Exists(exists) => object.contains_key(field) == *exists,
    }
}

/// JSON equality where numbers compare by value, so `1`, `1.0` and `1e0` are equal.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y)
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(field, x)| y.get(field).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

export_transform!(JsonTransform);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use txform_plugin_api::{Header, OutHeader, Rejection, TestDriver};

    /// Through the test driver, which shows forwards as the records the host produces.
    fn transform(config: Value) -> TestDriver<JsonTransform> {
        TestDriver::new(&config.to_string()).unwrap()
    }

    fn config_error(config: Value) -> String {
        match JsonTransform::new(serde_json::from_value(config).unwrap()) {
            Ok(_) => panic!("config accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn record(offset: i64, value: &str) -> Record<'_> {
        Record::new("in-0", 3, offset, None, None, Some(value.as_bytes()), &[])
    }

    /// Runs one batch of values, returning the output values (with their input index) and rejections.
    /// Values or rejection reasons, each with the index of its input.
    type Indexed = Vec<(u32, String)>;

    fn run(t: &mut TestDriver<JsonTransform>, values: &[&str]) -> (Indexed, Indexed) {
        let batch: Vec<Record<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| record(40 + i as i64, v))
            .collect();
        let out = t.run_views(&batch).unwrap();
        let records = out
            .records()
            .iter()
            .map(|r| {
                let value = r.value.as_ref().map(|v| v.to_vec()).into_option().unwrap();
                (r.input, String::from_utf8(value).unwrap())
            })
            .collect();
        let rejections = out
            .rejections()
            .iter()
            .map(|r| (r.input, r.reason.to_string()))
            .collect();
        (records, rejections)
    }

    fn outputs(t: &mut TestDriver<JsonTransform>, values: &[&str]) -> Vec<String> {
        let (records, rejections) = run(t, values);
        assert_eq!(rejections, []);
        records.into_iter().map(|(_, v)| v).collect()
    }

    fn batch_error(t: &mut TestDriver<JsonTransform>, values: &[&str]) -> String {
        let batch: Vec<Record<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| record(40 + i as i64, v))
            .collect();
        t.run_views(&batch).unwrap_err().message.into_string()
    }

    #[test]
    fn default_config_reserializes_compactly_in_field_order() {
        let mut t = transform(json!({}));
        assert_eq!(
            outputs(
                &mut t,
                &[r#"{ "z": 1, "a": [1, 2.5, "x"], "m": {"y": null, "b": true} }"#]
            ),
            [r#"{"z":1,"a":[1,2.5,"x"],"m":{"y":null,"b":true}}"#]
        );
    }

    #[test]
    fn key_headers_and_timestamp_are_copied_and_topic_partition_default_to_the_host() {
        let headers = [Header::new("h1", Some(b"v1")), Header::new("h2", None)];
        let rec = Record::new(
            "in-0",
            3,
            7,
            Some(1_700_000_000_000),
            Some(b"k"),
            Some(br#"{"a":1}"#),
            &headers,
        );
        let out = transform(json!({})).run_views(&[rec]).unwrap();
        let expected = OutRecord::new(&br#"{"a":1}"#[..])
            .with_key(&b"k"[..])
            .with_timestamp(1_700_000_000_000)
            .with_header("h1", Some(b"v1".to_vec()))
            .with_header("h2", None);
        assert_eq!(out.records(), [expected]);
        assert_eq!(
            out.records()[0].headers[1],
            OutHeader {
                key: "h2".into(),
                value: None.into()
            }
        );
    }

    #[test]
    fn keep_partition_and_topic() {
        let out = transform(json!({ "keep_partition": true, "topic": "out" }))
            .run_views(&[record(1, "{}"), record(2, "{ }")])
            .unwrap();
        let mut reserialized = OutRecord::new(&b"{}"[..])
            .with_partition(3)
            .with_topic("out");
        reserialized.input = 1;
        assert_eq!(
            out.records(),
            [
                OutRecord::new(&b"{}"[..])
                    .with_partition(3)
                    .with_topic("out"),
                reserialized
            ]
        );
    }

    #[test]
    fn records_whose_bytes_stay_the_same_are_forwarded() {
        let config = json!({ "filter": [{ "field": "a", "exists": true }], "topic": "t" });
        let mut t = JsonTransform::new(serde_json::from_value(config).unwrap()).unwrap();
        let values = [r#"{"a":1}"#, r#"{"b":1}"#, r#"{ "a": 2 }"#, r#"{"a":[3]}"#];
        let batch: Vec<Record<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| record(i as i64, v))
            .collect();
        let mut out = Output::new();
        t.transform(&batch, &mut out).unwrap();
        // Compact input passes unchanged: forwarded; the spaced one is re-serialized: emitted.
        let forwarded: Vec<(u32, Forward)> = out
            .forwards()
            .iter()
            .map(|f| (f.input, f.to.clone()))
            .collect();
        assert_eq!(
            forwarded,
            [(0, Forward::to_topic("t")), (3, Forward::to_topic("t"))]
        );
        let emitted: Vec<(u32, Option<&[u8]>)> = out
            .records()
            .iter()
            .map(|r| {
                (
                    r.input,
                    r.value.as_ref().map(|v| v.as_slice()).into_option(),
                )
            })
            .collect();
        assert_eq!(emitted, [(2, Some(&br#"{"a":2}"#[..]))]);
    }

    #[test]
    fn select_keeps_listed_fields_in_input_order() {
        let mut t = transform(json!({ "select": ["c", "a", "missing"] }));
        assert_eq!(
            outputs(&mut t, &[r#"{"a":1,"b":2,"c":3}"#, r#"{"b":2}"#]),
            [r#"{"a":1,"c":3}"#, "{}"]
        );
    }

    #[test]
    fn rename_keeps_position_and_swaps() {
        let mut t = transform(json!({ "rename": { "a": "b", "b": "a", "c": "see" } }));
        assert_eq!(
            outputs(&mut t, &[r#"{"a":1,"b":2,"c":3,"d":4}"#, r#"{"d":4}"#]),
            [r#"{"b":1,"a":2,"see":3,"d":4}"#, r#"{"d":4}"#]
        );
    }

    #[test]
    fn rename_applies_after_select() {
        let mut t =
            transform(json!({ "select": ["id", "cust"], "rename": { "cust": "customer" } }));
        assert_eq!(
            outputs(&mut t, &[r#"{"cust":"c1","x":0,"id":9}"#]),
            [r#"{"customer":"c1","id":9}"#]
        );
    }

    #[test]
    fn rename_collision_is_invalid_input() {
        let mut t = transform(json!({ "rename": { "a": "b" } }));
        let expected = "invalid record at topic/partition/offset in-0/3/41: \
                        cannot rename field \"a\" to \"b\": the record also has a field \"b\"";
        assert_eq!(
            batch_error(&mut t, &[r#"{"a":1}"#, r#"{"a":1,"b":2}"#]),
            expected
        );
        assert_eq!(
            batch_error(&mut t, &[r#"{"a":1}"#, r#"{"b":2,"a":1}"#]),
            expected
        );
        // Without `a`, `b` simply stays.
        assert_eq!(outputs(&mut t, &[r#"{"b":2}"#]), [r#"{"b":2}"#]);
    }

    #[test]
    fn set_overwrites_in_place_and_appends_in_config_order() {
        let mut t = transform(json!({ "set": { "z": "new", "a": 0, "obj": { "k": [1] } } }));
        assert_eq!(
            outputs(&mut t, &[r#"{"a":1,"b":2}"#]),
            [r#"{"a":0,"b":2,"z":"new","obj":{"k":[1]}}"#]
        );
    }

    #[test]
    fn filter_equals_compares_json_values() {
        let mut t = transform(json!({ "filter": [{ "field": "status", "equals": "paid" }] }));
        let (records, rejections) = run(
            &mut t,
            &[
                r#"{"status":"paid","n":1}"#,
                r#"{"status":"open"}"#,
                r#"{"other":"paid"}"#,
                r#"{"status":["paid"]}"#,
                r#"{"n":2,"status":"paid"}"#,
            ],
        );
        assert_eq!(
            records,
            [
                (0, r#"{"status":"paid","n":1}"#.to_string()),
                (4, r#"{"n":2,"status":"paid"}"#.to_string())
            ]
        );
        assert_eq!(rejections, []);
    }

    #[test]
    fn filter_numbers_compare_by_value_and_structures_deeply() {
        let mut t = transform(json!({ "filter": [
            { "field": "n", "equals": 1 },
            { "field": "o", "equals": { "a": [1.0, null], "b": false } },
        ] }));
        assert_eq!(
            outputs(
                &mut t,
                &[
                    r#"{"n":1.0,"o":{"b":false,"a":[1,null]}}"#,
                    r#"{"n":1,"o":{"b":false,"a":[1,null],"c":0}}"#,
                    r#"{"n":2,"o":{"b":false,"a":[1,null]}}"#,
                    r#"{"n":"1","o":{"b":false,"a":[1,null]}}"#,
                    r#"{"n":1e0,"o":{"a":[1,null],"b":false}}"#,
                ]
            ),
            [
                r#"{"n":1.0,"o":{"b":false,"a":[1,null]}}"#,
                // Numbers are re-serialized in serde_json's canonical form.
                r#"{"n":1.0,"o":{"a":[1,null],"b":false}}"#
            ]
        );
    }

    #[test]
    fn filter_equals_null_from_json_config() {
        let mut t = transform(json!({ "filter": [{ "field": "x", "equals": null }] }));
        assert_eq!(
            outputs(&mut t, &[r#"{"x":null}"#, r#"{}"#, r#"{"x":0}"#]),
            [r#"{"x":null}"#]
        );
    }

    #[test]
    fn filter_exists() {
        let mut t = transform(json!({ "filter": [
            { "field": "id", "exists": true },
            { "field": "deleted", "exists": false },
        ] }));
        let (records, _) = run(
            &mut t,
            &[
                r#"{"id":null}"#,
                r#"{"id":1,"deleted":false}"#,
                r#"{"x":1}"#,
                r#"{"id":2}"#,
            ],
        );
        assert_eq!(
            records,
            [
                (0, r#"{"id":null}"#.to_string()),
                (3, r#"{"id":2}"#.to_string())
            ]
        );
    }

    #[test]
    fn filter_sees_input_fields_before_select_and_rename() {
        let mut t = transform(json!({
            "select": ["id"],
            "rename": { "id": "key" },
            "filter": [{ "field": "status", "equals": "ok" }, { "field": "id", "exists": true }],
        }));
        assert_eq!(
            outputs(
                &mut t,
                &[r#"{"id":1,"status":"ok"}"#, r#"{"id":2,"status":"ko"}"#]
            ),
            [r#"{"key":1}"#]
        );
    }

    #[test]
    fn filtered_out_records_do_not_hide_invalid_ones() {
        // Validity is checked first: an invalid record is never silently filtered out.
        let mut t = transform(json!({ "filter": [{ "field": "a", "exists": true }] }));
        assert_eq!(
            batch_error(&mut t, &["{}", "[]"]),
            "invalid record at topic/partition/offset in-0/3/41: the value is an array, not a JSON object"
        );
    }

    #[test]
    fn on_invalid_fail_names_the_record() {
        let mut t = transform(json!({}));
        assert_eq!(
            batch_error(&mut t, &["{}", "not json"]),
            "invalid record at topic/partition/offset in-0/3/41: \
             the value is not valid JSON: expected ident at line 1 column 2"
        );
        assert_eq!(
            batch_error(&mut t, &[r#""text""#]),
            "invalid record at topic/partition/offset in-0/3/40: the value is a string, not a JSON object"
        );
        assert_eq!(
            batch_error(&mut t, &["null"]),
            "invalid record at topic/partition/offset in-0/3/40: the value is null, not a JSON object"
        );
        let tombstone = Record::new("in-1", 0, 5, None, Some(b"k"), None, &[]);
        assert_eq!(
            t.run_views(&[tombstone]).unwrap_err().message.into_string(),
            "invalid record at topic/partition/offset in-1/0/5: the record has no value"
        );
    }

    #[test]
    fn on_invalid_reject_rejects_only_the_bad_records() {
        let mut t = transform(json!({ "on_invalid": "reject", "set": { "ok": true } }));
        let (records, rejections) = run(&mut t, &["{}", "[1]", "{\"a\":", "{\"b\":1}", "42"]);
        assert_eq!(
            records,
            [
                (0, r#"{"ok":true}"#.to_string()),
                (3, r#"{"b":1,"ok":true}"#.to_string())
            ]
        );
        assert_eq!(
            rejections,
            [
                (1, "the value is an array, not a JSON object".to_string()),
                (
                    2,
                    "the value is not valid JSON: EOF while parsing a value at line 1 column 5"
                        .to_string()
                ),
                (4, "the value is a number, not a JSON object".to_string()),
            ]
        );
    }

    #[test]
    fn on_invalid_skip_drops_bad_records() {
        let mut t = transform(json!({ "on_invalid": "skip" }));
        let (records, rejections) = run(&mut t, &["true", r#"{"a":1}"#, ""]);
        assert_eq!(records, [(1, r#"{"a":1}"#.to_string())]);
        assert_eq!(rejections, []);
        let tombstone = Record::new("in-0", 0, 1, None, None, None, &[]);
        let out = t.run_views(&[tombstone]).unwrap();
        assert_eq!(out.records(), []);
        assert_eq!(out.rejections(), [] as [Rejection; 0]);
    }

    #[test]
    fn documented_example() {
        let config = r#"{
            "select": ["id", "status", "amount", "customer"],
            "rename": { "customer": "customer_id" },
            "filter": [{ "field": "status", "equals": "paid" }, { "field": "amount", "exists": true }],
            "set": { "source": "orders", "version": 2 },
            "on_invalid": "reject",
            "keep_partition": true,
            "topic": "orders-paid"
        }"#;
        let mut t = TestDriver::<JsonTransform>::new(config).unwrap();
        let (records, rejections) = run(
            &mut t,
            &[
                r#"{"id":1,"customer":"c7","note":"x","status":"paid","amount":12.5}"#,
                r#"{"id":2,"customer":"c8","status":"open","amount":3}"#,
                r#"{"id":3,"status":"paid"}"#,
                r#"oops"#,
                r#"{"version":1,"status":"paid","amount":0,"id":4}"#,
            ],
        );
        assert_eq!(
            records,
            [
                (
                    0,
                    r#"{"id":1,"customer_id":"c7","status":"paid","amount":12.5,"source":"orders","version":2}"#
                        .to_string()
                ),
                (4, r#"{"status":"paid","amount":0,"id":4,"source":"orders","version":2}"#.to_string()),
            ]
        );
        assert_eq!(
            rejections,
            [(
                3,
                "the value is not valid JSON: expected value at line 1 column 1".to_string()
            )]
        );
    }

    #[test]
    fn documented_toml_config_is_valid() {
        let config = doc_toml(include_str!("lib.rs"));
        let config: Config = serde_json::from_value(serde_json::to_value(config).unwrap()).unwrap();
        assert_eq!(config.rename["customer"], "customer_id");
        assert_eq!(config.filter.len(), 2);
        assert_eq!(config.on_invalid, OnInvalid::Reject);
        JsonTransform::new(config).unwrap();
    }

    /// The `[transform.config]` table of the ```toml block of the crate documentation in `source`.
    fn doc_toml(source: &str) -> toml::Table {
        let block: String = source
            .lines()
            .filter_map(|line| line.strip_prefix("//!"))
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
            .skip_while(|line| *line != "```toml")
            .skip(1)
            .take_while(|line| *line != "```")
            .map(|line| format!("{line}\n"))
            .collect();
        let mut document: toml::Table = block.parse().unwrap();
        let transform = document.remove("transform").unwrap();
        transform.as_table().unwrap()["config"]
            .as_table()
            .unwrap()
            .clone()
    }

    #[test]
    fn config_rejects_unknown_fields_and_bad_values() {
        let err = |json: &str| {
            serde_json::from_str::<Config>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"selct":["a"]}"#).starts_with("unknown field `selct`, expected one of"));
        assert!(err(r#"{"on_invalid":"drop"}"#)
            .starts_with("unknown variant `drop`, expected one of `fail`, `reject`, `skip`"));
        assert!(err(r#"{"filter":[{"field":"a","equal":1}]}"#).starts_with("unknown field `equal`"));
        assert!(err(r#"{"rename":{"a":1}}"#)
            .starts_with("invalid type: integer `1`, expected a string"));
    }

    #[test]
    fn config_validation_messages() {
        let cases = [
            (
                json!({ "select": [] }),
                "select is empty, which would drop every field: remove it to keep all fields",
            ),
            (
                json!({ "select": ["a", ""] }),
                "select: a field name is empty",
            ),
            (
                json!({ "select": ["a", "b", "a"] }),
                "select lists \"a\" twice",
            ),
            (
                json!({ "rename": { "a": "" } }),
                "rename \"a\" = \"\": a field name is empty",
            ),
            (
                json!({ "rename": { "a": "a" } }),
                "rename maps \"a\" to itself",
            ),
            (
                json!({ "rename": { "a": "c", "b": "c" } }),
                "rename maps both \"a\" and \"b\" to \"c\"",
            ),
            (
                json!({ "select": ["a"], "rename": { "b": "c" } }),
                "rename source \"b\" is not in select, so it would never be renamed",
            ),
            (
                json!({ "select": ["a", "b"], "rename": { "a": "b" } }),
                "rename \"a\" = \"b\" clashes with the selected field \"b\"",
            ),
            (
                json!({ "rename": { "a": "b" }, "set": { "b": 1 } }),
                "rename \"a\" = \"b\" is pointless: set overwrites \"b\" afterwards",
            ),
            (
                json!({ "filter": [{ "field": "a", "exists": true }, { "field": "", "exists": true }] }),
                "filter[1]: the field name is empty",
            ),
            (
                json!({ "filter": [{ "field": "a" }] }),
                "filter[0] (field \"a\"): give exactly one of `equals` or `exists`",
            ),
            (
                json!({ "filter": [{ "field": "a", "equals": 1, "exists": true }] }),
                "filter[0] (field \"a\"): give exactly one of `equals` or `exists`",
            ),
            (json!({ "set": { "": 1 } }), "set: a field name is empty"),
            (
                json!({ "topic": "" }),
                "topic is empty: remove it to use the pipeline's sink topic",
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config_error(config.clone()), expected, "config {config}");
        }
        // Swapping selected fields is fine.
        transform(json!({ "select": ["a", "b"], "rename": { "a": "b", "b": "a" } }));
    }
}
