//! Whether this build of librdkafka can do what a property asks for.
//!
//! librdkafka accepts `sasl.mechanism = "SCRAM-SHA-512"` in a build without SCRAM and fails only
//! when it connects ("No provider for SASL mechanism"), so the file is checked against the build's
//! `builtin.features` before anything connects.

use std::sync::OnceLock;

use rdkafka::config::ClientConfig;

/// The features of the librdkafka txform is linked with (`builtin.features`, e.g. `ssl,sasl_scram`).
pub(super) fn builtin() -> &'static [String] {
    static FEATURES: OnceLock<Vec<String>> = OnceLock::new();
    FEATURES.get_or_init(|| {
        ClientConfig::new()
            .create_native_config()
            .ok()
            .and_then(|config| config.get("builtin.features").ok())
            .map(|features| features.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    })
}

/// The problem with `key = value` if it needs a feature missing from `builtin`, as text that
/// follows the key.
pub(super) fn missing(key: &str, value: &str, builtin: &[String]) -> Option<String> {
    let missing: Vec<&str> = needed(key, value)
        .into_iter()
        .filter(|feature| !builtin.iter().any(|have| have == feature))
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "= {value:?} needs librdkafka feature {}, which this build of txform lacks (builtin.features: {})",
        missing.join(" and "),
        builtin.join(",")
    ))
}

/// The `builtin.features` names `key = value` needs (values of these keys are never secrets).
fn needed(key: &str, value: &str) -> Vec<&'static str> {
    let value = value.trim().to_ascii_lowercase();
    match key {
        "security.protocol" => {
            let mut features = Vec::new();
            if value.contains("ssl") {
                features.push("ssl");
            }
            if value.starts_with("sasl") {
                features.push("sasl");
            }
            features
        }
        "sasl.mechanism" | "sasl.mechanisms" => value
            .split(',')
            .filter_map(|mechanism| match mechanism.trim() {
                "plain" => Some("sasl_plain"),
                "scram-sha-256" | "scram-sha-512" => Some("sasl_scram"),
                "gssapi" => Some("sasl_gssapi"),
                "oauthbearer" => Some("sasl_oauthbearer"),
                _ => None,
            })
            .collect(),
        // OIDC client credentials fetch tokens with librdkafka's HTTP client (libcurl).
        "sasl.oauthbearer.method" if value == "oidc" => vec!["http", "oidc"],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(list: &str) -> Vec<String> {
        list.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn this_build_has_tls_every_sasl_mechanism_but_kerberos_and_oidc() {
        let have = builtin();
        for feature in [
            "ssl",
            "sasl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "http",
            "oidc",
        ] {
            assert!(
                have.iter().any(|f| f == feature),
                "{feature} missing from {have:?}"
            );
        }
        assert_eq!(missing("security.protocol", "SASL_SSL", have), None);
        assert_eq!(missing("sasl.mechanism", "SCRAM-SHA-512", have), None);
        assert_eq!(missing("sasl.oauthbearer.method", "oidc", have), None);
    }

    #[test]
    fn a_missing_feature_is_named_with_what_the_build_has() {
        let plain_only = features("gzip,sasl,sasl_plain");
        assert_eq!(
            missing("sasl.mechanism", "SCRAM-SHA-512", &plain_only).unwrap(),
            "= \"SCRAM-SHA-512\" needs librdkafka feature sasl_scram, which this build of txform \
             lacks (builtin.features: gzip,sasl,sasl_plain)"
        );
        assert_eq!(
            missing("security.protocol", "sasl_ssl", &plain_only).unwrap(),
            "= \"sasl_ssl\" needs librdkafka feature ssl, which this build of txform lacks \
             (builtin.features: gzip,sasl,sasl_plain)"
        );
        assert_eq!(
            missing("sasl.oauthbearer.method", "OIDC", &plain_only).unwrap(),
            "= \"OIDC\" needs librdkafka feature http and oidc, which this build of txform lacks \
             (builtin.features: gzip,sasl,sasl_plain)"
        );
        assert_eq!(missing("security.protocol", "plaintext", &plain_only), None);
        assert_eq!(missing("sasl.mechanism", "PLAIN", &plain_only), None);
        assert_eq!(
            missing("sasl.oauthbearer.method", "default", &plain_only),
            None
        );
        assert_eq!(missing("linger.ms", "5", &plain_only), None);
    }
}
