//! `txform inspect PLUGIN`: the facts of a plugin, whether this host can run it (with the same reason
//! `run` gives), and its configuration documentation. Offline.

use std::ffi::OsStr;
use std::time::Duration;

use txform_plugin_api::API_VERSION;
use txform_tests::{run_command, Plugin};

const TIMEOUT: Duration = Duration::from_secs(30);

fn inspect(plugin: &Plugin) -> (Option<i32>, String, String) {
    let path = plugin.path();
    let result = run_command(&[OsStr::new("inspect"), path.as_os_str()], TIMEOUT);
    (
        result.code(),
        result.stdout.clone(),
        path.display().to_string(),
    )
}

#[test]
fn a_loadable_plugin_with_its_config_documentation() {
    let (code, stdout, path) = inspect(&Plugin::passthrough());
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "plugin: {path}\nname: txform-passthrough\nversion: 0.1.0\n\
             plugin-api: {API_VERSION} (this host: {API_VERSION})\nloadable: yes\nconfig:\n  \
             keep_partition  bool    default false  produce each record to the partition number it was read from\n  \
             topic           string  optional       output topic; the pipeline's sink.topic when unset\n"
        )
    );
}

#[test]
fn an_older_plugin_of_the_line_without_config_documentation() {
    let (code, stdout, path) = inspect(&Plugin::prefix_only_fixture());
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "plugin: {path}\nname: txform-fixture-prefix-only\nversion: 0.0.0\n\
             plugin-api: 0.2.0-prefix (this host: {API_VERSION})\nloadable: yes\n\
             config: not documented by the plugin\n"
        )
    );
}

#[test]
fn a_refused_plugin_gives_the_reason_run_gives() {
    let (code, stdout, path) = inspect(&Plugin::newer_fixture());
    assert_eq!(code, Some(2), "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "plugin: {path}\nname: txform-fixture-newer\nversion: 0.0.0\n\
             plugin-api: 0.2.9 (this host: {API_VERSION})\n\
             loadable: no: plugin {path} cannot run in this host: it was built against \
             txform-plugin-api 0.2.9 and needs host features this txform lacks (windowed-stores); \
             this host's plugin-api is {API_VERSION}: upgrade txform\n\
             config:\n  state_store: the store's name\n"
        )
    );
}

#[test]
fn a_library_of_another_abi_line_is_only_named() {
    let (code, stdout, path) = inspect(&Plugin::old_version_fixture());
    assert_eq!(code, Some(2), "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "plugin: {path}\nloadable: no: plugin {path} was built against an incompatible \
             txform-plugin-api: it was built against plugin-api 0.1.0, this host needs 0.2.0 (same \
             minor version); rebuild it against this host's plugin-api\n"
        )
    );
}
