//! The Kubernetes example in `deploy/kubernetes/` means what the README says: its pipeline file is
//! one txform accepts, with metrics on the port the probes and the Service use; each pod takes its
//! instance id from its name; the grace period outlasts txform's own stop grace. (Schema validation
//! against the Kubernetes API: `scripts/validate-manifests.sh`.)

use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;
use txform_tests::process::workspace_dir;

fn documents() -> Vec<Value> {
    let path = workspace_dir().join("deploy/kubernetes/txform.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .collect()
}

use serde::Deserialize as _;

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

#[test]
fn the_statefulset_example_runs_a_valid_pipeline_with_probes_on_its_metrics_port() {
    let docs = documents();
    let config_map = of_kind(&docs, "ConfigMap");
    let text = config_map["data"]["pipeline.toml"]
        .as_str()
        .expect("pipeline.toml in the ConfigMap");
    let pipeline = txform::config::parse(text, Path::new("pipeline.toml"), Path::new("/"))
        .unwrap_or_else(|e| panic!("the example pipeline is refused: {e}"));
    let listen = pipeline.metrics.listen.expect("metrics on");
    let port = i64::from(listen.port());

    let set = of_kind(&docs, "StatefulSet");
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args,
        [
            "run",
            "/etc/txform/pipeline.toml",
            "--instance-id-from-hostname"
        ]
    );
    let mount = &container["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/txform/pipeline.toml");
    assert_eq!(mount["subPath"], "pipeline.toml");
    assert_eq!(container["ports"][0]["containerPort"].as_i64(), Some(port));
    let named = container["ports"][0]["name"]
        .as_str()
        .expect("a named port");
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], named, "{probe}");
    }
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("a grace period");
    assert!(
        Duration::from_secs(grace) > txform::shutdown::STOP_GRACE,
        "grace {grace} s must outlast txform's stop grace {:?}",
        txform::shutdown::STOP_GRACE
    );
    assert_eq!(set["spec"]["serviceName"], "txform");
    let service = of_kind(&docs, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"].as_i64(), Some(port));
}
