//! The librdkafka property tables: passed through as strings, except for the properties
//! exactly-once depends on, which txform sets itself and refuses from the file. Every other
//! property is checked by librdkafka, one at a time, so each problem names its own key and line.

use super::error::Problems;
use super::features;
use super::librdkafka::property_problem;
use super::schema::{Properties, RawKafka};
use super::secrets::{resolve, System};
use super::types::KafkaProperties;

/// Which client a txform-owned property belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Consumer,
    Producer,
}

const CLIENT_ID: &str = "txform names each client after its instance and process, which the consumer group reports when it decides who holds an instance id";

/// Properties that exactly-once depends on: txform sets them itself, so a user value would either
/// be overwritten (confusing) or break the guarantee. Each names the setting that controls it.
const OWNED: &[(&str, Role, &str)] = &[
    ("group.id", Role::Consumer, "set `source.group_id` instead"),
    (
        "enable.auto.commit",
        Role::Consumer,
        "txform commits offsets as `transaction.guarantee` requires",
    ),
    (
        "enable.auto.offset.store",
        Role::Consumer,
        "txform stores offsets as `transaction.guarantee` requires",
    ),
    (
        "isolation.level",
        Role::Consumer,
        "txform reads committed records only (see `transaction.guarantee`)",
    ),
    (
        "group.instance.id",
        Role::Consumer,
        "set `transaction.static_membership` instead",
    ),
    ("client.id", Role::Consumer, CLIENT_ID),
    ("client.id", Role::Producer, CLIENT_ID),
    (
        "transactional.id",
        Role::Producer,
        "set `transaction.id_prefix` and `transaction.instance_id` instead",
    ),
    (
        "enable.idempotence",
        Role::Producer,
        "txform always enables it (see `transaction.guarantee`)",
    ),
];

/// Checks the three property tables, resolving `${...}` references in values; every value that is
/// secret (by its key, or because a reference produced it) is added to `secrets`.
pub(super) fn kafka(
    raw: RawKafka,
    problems: &mut Problems<'_>,
    secrets: &mut Vec<String>,
) -> KafkaProperties {
    let empty = || Properties(Vec::new());
    KafkaProperties {
        common: properties(
            "common",
            raw.common.0,
            &[Role::Consumer, Role::Producer],
            problems,
            secrets,
        ),
        consumer: properties(
            "consumer",
            raw.consumer.unwrap_or_else(empty),
            &[Role::Consumer],
            problems,
            secrets,
        ),
        producer: properties(
            "producer",
            raw.producer.unwrap_or_else(empty),
            &[Role::Producer],
            problems,
            secrets,
        ),
    }
}

/// Refuses the properties of `[kafka.<table>]` that txform owns for the clients in `roles`, and
/// those librdkafka refuses.
fn properties(
    table: &str,
    raw: Properties,
    roles: &[Role],
    problems: &mut Problems<'_>,
    secrets: &mut Vec<String>,
) -> Vec<(String, String)> {
    let mut properties = Vec::with_capacity(raw.0.len());
    for property in raw.0 {
        let key = property.key.get_ref();
        let value = match resolve(&property.value, &System) {
            Ok(resolved) => {
                secrets.extend(resolved.secrets);
                resolved.value
            }
            Err(problem) => {
                problems.at(
                    property.key.span(),
                    format!("`kafka.{table}.\"{key}\"` {problem}"),
                );
                continue;
            }
        };
        if KafkaProperties::is_secret(key) {
            secrets.push(value.clone());
        }
        let owned = OWNED
            .iter()
            .find(|(name, role, _)| name == key && roles.contains(role));
        if let Some((_, _, hint)) = owned {
            problems.at(
                property.key.span(),
                format!("`kafka.{table}.\"{key}\"` is managed by txform: {hint}"),
            );
        } else if key == "bootstrap.servers" && value.trim().is_empty() {
            problems.at(
                property.key.span(),
                format!("`kafka.{table}.\"{key}\"` must not be empty"),
            );
        } else if let Some(problem) = property_problem(key, &value)
            .or_else(|| features::missing(key, &value, features::builtin()))
        {
            problems.at(
                property.key.span(),
                format!("`kafka.{table}.\"{key}\"` {problem}"),
            );
        }
        properties.push((property.key.into_inner(), value));
    }
    properties
}
