//! The pipeline file as serde sees it: one struct per table, before any semantic check.
//!
//! Every table is `deny_unknown_fields`, so a misspelt key is an error instead of a silently
//! ignored setting. Fields that validation checks afterwards keep their `Spanned` location.
//! Tables themselves are never `Spanned`: toml 0.8 cannot give a span to a table written with
//! dotted keys (`source.topics = [...]`) and fails the whole parse instead, so table-level
//! problems are raised during deserialization, where toml attaches the table's location itself.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::types::Guarantee;

/// A table with a name for messages about keys missing from it.
pub(super) trait Table {
    /// The table as written in the file, e.g. `[source]`.
    const NAME: &'static str;

    /// The message for required key `field` being absent.
    fn missing(field: &str) -> String {
        format!("missing field `{field}` in {}", Self::NAME)
    }
}

/// Table `T`, deserialized so that a missing key names its table.
///
/// serde reports a missing key as ``missing field `topics` `` without saying where; toml adds the
/// table's line, but `topics` alone does not tell `[source]` from `[sink]`.
///
/// Only for `Option` fields: serde builds the error for a missing *required* field by
/// deserializing that field's type, which would name the wrong table.
pub(super) struct Named<T>(pub T);

impl<'de, T: Deserialize<'de> + Table> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Named).map_err(|error| {
            match missing_field(&error.to_string()) {
                // Rebuilt without a span: toml then gives it the span of the table being read,
                // which is where the key is missing.
                Some(field) => de::Error::custom(T::missing(field)),
                None => error,
            }
        })
    }
}

/// The key named by serde's ``missing field `key` `` message (`serde::de::Error::missing_field`),
/// looked for on every line because the text is toml's rendering of the error, which may add lines.
fn missing_field(message: &str) -> Option<&str> {
    message.lines().find_map(|line| {
        line.strip_prefix("missing field `")?
            .strip_suffix('`')
            .filter(|field| !field.contains('`'))
    })
}

/// The whole file.
///
/// Required tables are `Option`s too, so that validation can report every missing one at once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub kafka: Option<Named<RawKafka>>,
    pub source: Option<Named<RawSource>>,
    pub sink: Option<Named<RawSink>>,
    pub transaction: Option<Named<RawTransaction>>,
    pub batch: Option<Named<RawBatch>>,
    pub errors: Option<Named<RawErrors>>,
    pub log: Option<Named<RawLog>>,
    pub metrics: Option<Named<RawMetrics>>,
    pub state: Option<Named<RawState>>,
    pub transform: Option<Transforms>,
}

/// `[kafka.*]`: librdkafka properties by client role.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKafka {
    pub common: CommonProperties,
    pub consumer: Option<Properties>,
    pub producer: Option<Properties>,
}

impl Table for RawKafka {
    const NAME: &'static str = "[kafka]";

    fn missing(field: &str) -> String {
        format!("missing table [kafka.{field}]")
    }
}

/// One librdkafka property as written.
pub(super) struct RawProperty {
    /// The key and where it is, for refusing properties txform owns.
    pub key: Spanned<String>,
    /// The value converted to the string librdkafka takes, before its `${...}` references are
    /// resolved.
    pub value: String,
}

/// A table of librdkafka properties, in file order (the order they are applied in).
pub(super) struct Properties(pub Vec<RawProperty>);

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads the table as a map so that any key is accepted and file order is kept.
        struct PropertiesVisitor;

        impl<'de> Visitor<'de> for PropertiesVisitor {
            type Value = Properties;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of librdkafka properties")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Properties, A::Error> {
                let mut properties = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let PropertyValue(value) = map.next_value()?;
                    properties.push(RawProperty { key, value });
                }
                Ok(Properties(properties))
            }
        }

        deserializer.deserialize_map(PropertiesVisitor)
    }
}

/// `[kafka.common]`, which must say where the brokers are.
pub(super) struct CommonProperties(pub Properties);

impl<'de> Deserialize<'de> for CommonProperties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let properties = Properties::deserialize(deserializer)?;
        if properties
            .0
            .iter()
            .any(|property| property.key.get_ref() == "bootstrap.servers")
        {
            Ok(CommonProperties(properties))
        } else {
            // No span: toml attaches the span of [kafka.common].
            Err(de::Error::custom(
                "missing property \"bootstrap.servers\" in [kafka.common]",
            ))
        }
    }
}

/// A property value as librdkafka wants it: a string. TOML integers, floats and booleans are
/// accepted for convenience (`"linger.ms" = 5`); arrays, tables and datetimes have no librdkafka
/// meaning and are refused.
struct PropertyValue(String);

impl<'de> Deserialize<'de> for PropertyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Accepts the scalar kinds and turns each into its usual text.
        struct ValueVisitor;

        impl Visitor<'_> for ValueVisitor {
            type Value = PropertyValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, integer, float or boolean")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value))
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_string()))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_string()))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_string()))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_string()))
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

/// `[source]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub topics: Spanned<Vec<Spanned<String>>>,
    pub group_id: Spanned<String>,
}

impl Table for RawSource {
    const NAME: &'static str = "[source]";
}

/// `[sink]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub topic: Spanned<String>,
}

impl Table for RawSink {
    const NAME: &'static str = "[sink]";
}

/// `[transaction]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransaction {
    pub guarantee: Option<Guarantee>,
    pub id_prefix: Spanned<String>,
    pub instance_id: Option<Spanned<String>>,
    pub static_membership: Option<bool>,
}

impl Table for RawTransaction {
    const NAME: &'static str = "[transaction]";
}

// Numbers are read as i64 (what TOML integers are) and range-checked by validation, so that a
// negative or too large value is one of the collected problems rather than the only one reported.

/// `[batch]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBatch {
    pub max_records: Option<Spanned<i64>>,
    pub max_wait_ms: Option<Spanned<i64>>,
    pub max_bytes: Option<Spanned<i64>>,
}

impl Table for RawBatch {
    const NAME: &'static str = "[batch]";
}

/// `[errors]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawErrors {
    pub max_retries: Option<Spanned<i64>>,
    pub max_retry_time_ms: Option<Spanned<i64>>,
    pub initial_backoff_ms: Option<Spanned<i64>>,
    pub max_backoff_ms: Option<Spanned<i64>>,
    pub on_failure: Option<Spanned<FailureActionName>>,
    pub dead_letter_topic: Option<Spanned<String>>,
}

/// The spellings of `errors.on_failure`.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum FailureActionName {
    Stop,
    DeadLetter,
    Skip,
}

impl Table for RawErrors {
    const NAME: &'static str = "[errors]";
}

/// `[log]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub stats_interval_secs: Option<Spanned<i64>>,
}

impl Table for RawLog {
    const NAME: &'static str = "[log]";
}

/// `[metrics]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<Spanned<String>>,
    pub liveness_timeout_secs: Option<Spanned<i64>>,
}

impl Table for RawMetrics {
    const NAME: &'static str = "[metrics]";
}

/// `[state]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub dir: Option<Spanned<String>>,
    pub replication_factor: Option<Spanned<i64>>,
}

impl Table for RawState {
    const NAME: &'static str = "[state]";
}

/// The `[[transform]]` array, which must not be empty (`transform = []`).
///
/// Each element keeps its span (the `[[transform]]` header), which array elements, unlike tables
/// in general, always have; that span is the transform's line in later messages.
pub(super) struct Transforms(pub Vec<Spanned<RawTransform>>);

impl<'de> Deserialize<'de> for Transforms {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let transforms = Vec::<Spanned<RawTransform>>::deserialize(deserializer)?;
        if transforms.is_empty() {
            return Err(de::Error::custom(
                "the chain needs at least one [[transform]]",
            ));
        }
        Ok(Transforms(transforms))
    }
}

/// One `[[transform]]`.
///
/// `plugin` is required but optional here: a missing key is checked by validation, because
/// [`Named`]'s message would lose the element's line (toml gives array elements no span of their
/// own when an error is rebuilt).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransform {
    pub name: Option<Spanned<String>>,
    pub plugin: Option<Spanned<String>>,
    /// Free-form: only the plugin knows its schema.
    pub config: Option<toml::Table>,
}
