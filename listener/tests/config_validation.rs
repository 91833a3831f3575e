//! Every config key's validation, with the error text (key named, fix given, no secret leaked).

use listener::config::{GitHubCredentials, ListenerConfig, LogFormat, LogLevel};
use serde_json::{Value, json};

fn base() -> Value {
    json!({"configure_url":"https://github.com/my-org","vault_type":"","vault_lookup_key":"",
      "github_app_id":"","github_app_installation_id":0,"github_app_private_key":"","github_token":"ghp_secret123",
      "ephemeral_runner_set_namespace":"arc-runners","ephemeral_runner_set_name":"arc-runner-set",
      "max_runners":2147483647,"min_runners":0,"runner_scale_set_id":7,"runner_scale_set_name":"arc-runner-set",
      "server_root_ca":"","log_level":"debug","log_format":"text","metrics_addr":"","metrics_endpoint":"","metrics":null})
}

fn with(key: &str, value: Value) -> Value {
    let mut v = base();
    v[key] = value;
    v
}

fn error_of(v: Value) -> String {
    let err = ListenerConfig::from_json(&v.to_string()).expect_err("config must be rejected");
    let text = err.to_string();
    assert!(!text.contains("ghp_secret123"), "secret leaked: {text}");
    assert!(text.contains("fix:"), "no fix in: {text}");
    text
}

#[test]
fn arc_example_loads() {
    let c = ListenerConfig::from_json(&format!("{}\n", base())).expect("valid");
    assert_eq!(c.configure_url, "https://github.com/my-org");
    assert_eq!(c.url_parts().organization, "my-org");
    assert_eq!(c.max_runners, 2147483647);
    assert_eq!(c.runner_scale_set_id, 7);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(c.metrics_addr.is_none());
    assert!(matches!(c.credentials, GitHubCredentials::Pat(_)));
    assert!(!format!("{c:?}").contains("ghp_secret123"));
}

#[test]
fn unknown_keys_are_ignored_and_optional_keys_default() {
    let mut v = base();
    v["something_new"] = json!(1);
    let obj = v.as_object_mut().expect("object");
    obj.remove("max_runners");
    obj.remove("metrics");
    let c = ListenerConfig::from_json(&v.to_string()).expect("valid");
    assert_eq!(c.max_runners, 2147483647);
}

#[test]
fn configure_url() {
    assert!(
        error_of(with("configure_url", json!("")))
            .starts_with("config key `configure_url`: is empty")
    );
    let e = error_of(with("configure_url", json!("https://github.com/a/b/c")));
    assert!(
        e.contains("`configure_url`") && e.contains("enterprise, org, or repository"),
        "{e}"
    );
    let e = error_of(with("configure_url", json!("github.com/org")));
    assert!(
        e.starts_with("config key `configure_url`: \"github.com/org\": not a URL"),
        "{e}"
    );
    let e = error_of(with("configure_url", json!("ftp://github.com/org")));
    assert!(e.contains("scheme must be http or https"), "{e}");
    let e = error_of(with("configure_url", json!(7)));
    assert!(
        e.starts_with("config key `configure_url`: is a number, expected a string"),
        "{e}"
    );
    let c = ListenerConfig::from_json(
        &with(
            "configure_url",
            json!("https://ghe.example/enterprises/acme/"),
        )
        .to_string(),
    )
    .expect("enterprise URL");
    assert_eq!(c.url_parts().enterprise, "acme");
}

#[test]
fn runner_set_keys() {
    let e = error_of(with("ephemeral_runner_set_namespace", json!("")));
    assert!(
        e.starts_with("config key `ephemeral_runner_set_namespace`: is empty"),
        "{e}"
    );
    let e = error_of(with("ephemeral_runner_set_name", json!("")));
    assert!(
        e.starts_with("config key `ephemeral_runner_set_name`: is empty"),
        "{e}"
    );
    let e = error_of(with("runner_scale_set_id", json!(0)));
    assert!(
        e.starts_with("config key `runner_scale_set_id`: is 0"),
        "{e}"
    );
    let e = error_of(with("runner_scale_set_id", json!("7")));
    assert!(e.contains("is a string, expected an integer"), "{e}");
}

#[test]
fn runner_bounds() {
    let mut v = with("min_runners", json!(5));
    v["max_runners"] = json!(3);
    let e = error_of(v);
    assert!(
        e.starts_with("config key `min_runners`: (5) is greater than max_runners (3)"),
        "{e}"
    );
    let e = error_of(with("max_runners", json!(2147483648i64)));
    assert!(
        e.starts_with("config key `max_runners`: is 2147483648"),
        "{e}"
    );
    let e = error_of(with("min_runners", json!(-1)));
    assert!(e.starts_with("config key `min_runners`: is -1"), "{e}");
    let e = error_of(with("max_runners", json!(1.5)));
    assert!(
        e.contains("`max_runners`") && e.contains("not a whole number"),
        "{e}"
    );
}

#[test]
fn vault_keys() {
    let e = error_of(with("vault_type", json!("hashicorp")));
    assert!(
        e.starts_with("config key `vault_type`: unknown vault type \"hashicorp\""),
        "{e}"
    );
    let e = error_of(with("vault_type", json!("azure_key_vault")));
    assert!(
        e.starts_with("config key `vault_lookup_key`: is empty but vault_type is azure_key_vault"),
        "{e}"
    );
    let mut vault = with("vault_type", json!("azure_key_vault"));
    vault["vault_lookup_key"] = json!("kv-secret");
    let e = error_of(vault);
    assert!(
        e.starts_with("config key `azure_key_vault`: is not set"),
        "{e}"
    );
    let e = error_of(with("vault_lookup_key", json!("k")));
    assert!(e.starts_with("config key `vault_lookup_key`"), "{e}");
}

/// ARC's controller writes `vault_type`, `vault_lookup_key` and `azure_key_vault` (and empty
/// credentials): the listener keeps them to read the vault at start.
#[test]
fn an_azure_key_vault_config_is_kept_for_the_listener_to_read() {
    let mut v = with("vault_type", json!("azure_key_vault"));
    v["vault_lookup_key"] = json!("kv-secret");
    v["github_token"] = json!("");
    v["azure_key_vault"] = json!({"tenant_id": "t", "client_id": "c",
        "url": "https://v.vault.azure.net/", "certificate_path": "/etc/akv/cert.pem"});
    let config = ListenerConfig::from_json(&v.to_string()).expect("valid");
    let GitHubCredentials::Vault(lookup) = &config.credentials else {
        panic!("expected the vault lookup, got {:?}", config.credentials);
    };
    assert_eq!(lookup.lookup_key, "kv-secret");
    assert_eq!(
        (
            lookup.key_vault.tenant_id.as_str(),
            lookup.key_vault.client_id.as_str(),
            lookup.key_vault.url.as_str(),
            lookup.key_vault.certificate_path.as_str()
        ),
        ("t", "c", "https://v.vault.azure.net/", "/etc/akv/cert.pem")
    );
}

#[test]
fn credentials() {
    let e = error_of(with("github_token", json!("")));
    assert!(
        e.starts_with("config key `github_token`: no credentials"),
        "{e}"
    );
    let mut app = with("github_token", json!(""));
    app["github_app_id"] = json!("123");
    app["github_app_installation_id"] = json!(456);
    app["github_app_private_key"] =
        json!("-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----");
    let c = ListenerConfig::from_json(&app.to_string()).expect("app credentials");
    assert!(matches!(
        c.credentials,
        GitHubCredentials::App {
            installation_id: 456,
            ..
        }
    ));
    let mut numeric_id = app.clone();
    numeric_id["github_app_id"] = json!(123);
    assert!(ListenerConfig::from_json(&numeric_id.to_string()).is_ok());
    let mut both = app.clone();
    both["github_token"] = json!("ghp_secret123");
    assert!(
        error_of(both)
            .starts_with("config key `github_token`: both a PAT and GitHub App credentials")
    );
    let mut no_install = app.clone();
    no_install["github_app_installation_id"] = json!(0);
    let e = error_of(no_install);
    assert!(
        e.starts_with("config key `github_app_installation_id`"),
        "{e}"
    );
    let mut no_key = app.clone();
    no_key["github_app_private_key"] = json!("");
    assert!(error_of(no_key).starts_with("config key `github_app_private_key`"));
    let mut no_id = app;
    no_id["github_app_id"] = json!("");
    assert!(error_of(no_id).starts_with("config key `github_app_id`"));
    let e = error_of(with("github_token", json!(42)));
    assert!(
        e.starts_with("config key `github_token`: is a number, expected a string"),
        "{e}"
    );
}

#[test]
fn server_root_ca() {
    let e = error_of(with("server_root_ca", json!("not a pem")));
    assert!(
        e.starts_with("config key `server_root_ca`: contains no PEM certificate"),
        "{e}"
    );
}

#[test]
fn logging_keys() {
    let e = error_of(with("log_level", json!("verbose")));
    assert!(
        e.starts_with("config key `log_level`: invalid log level \"verbose\""),
        "{e}"
    );
    let e = error_of(with("log_level", json!("")));
    assert!(e.contains("`log_level`"), "{e}");
    let c = ListenerConfig::from_json(&with("log_level", json!("WARN")).to_string())
        .expect("case-insensitive");
    assert_eq!(c.log_level, LogLevel::Warn);
    let e = error_of(with("log_format", json!("JSON")));
    assert!(
        e.starts_with("config key `log_format`: invalid log format \"JSON\""),
        "{e}"
    );
}

#[test]
fn metrics_keys() {
    let e = error_of(with("metrics_addr", json!("8080")));
    assert!(
        e.starts_with("config key `metrics_addr`: \"8080\" is not host:port"),
        "{e}"
    );
    let e = error_of(with("metrics_endpoint", json!("metrics")));
    assert!(e.starts_with("config key `metrics_endpoint`"), "{e}");
    let e = error_of(with("metrics", json!({"counters": []})));
    assert!(e.starts_with("config key `metrics`: invalid"), "{e}");
    let e = error_of(with(
        "metrics",
        json!({"histograms": {"gha_job_startup_duration_seconds": {"labels": [], "buckets": [5, 1]}}}),
    ));
    assert!(e.contains("strictly increasing"), "{e}");
    let mut v = with("metrics_addr", json!(":8080"));
    v["metrics"] = json!({"gauges": {"gha_desired_runners": {"labels": ["name"]}}});
    let c = ListenerConfig::from_json(&v.to_string()).expect("metrics on");
    assert_eq!(c.metrics_addr.as_deref(), Some(":8080"));
    assert_eq!(c.metrics_endpoint, "/metrics");
    let gauges = c.metrics.and_then(|m| m.gauges).unwrap_or_default();
    assert_eq!(gauges.len(), 1);
}

#[test]
fn our_own_keys() {
    let e = error_of(with("health_addr", json!("nope")));
    assert!(e.starts_with("config key `health_addr`"), "{e}");
    let e = error_of(with("liveness_stale_after_seconds", json!(0)));
    assert!(
        e.starts_with("config key `liveness_stale_after_seconds`: is 0"),
        "{e}"
    );
    let e = error_of(with("session_conflict_timeout_seconds", json!(-5)));
    assert!(
        e.starts_with("config key `session_conflict_timeout_seconds`"),
        "{e}"
    );
}

#[test]
fn file_level_errors() {
    let e =
        ListenerConfig::from_json("{\"github_token\": \"ghp_secret123\"").expect_err("truncated");
    let text = e.to_string();
    assert!(
        text.contains("not a JSON object") && !text.contains("ghp_secret123"),
        "{text}"
    );
    let e = ListenerConfig::from_json("[1]").expect_err("array");
    assert!(e.to_string().contains("top level is not an object"));
    let e = ListenerConfig::from_file(std::path::Path::new("/nonexistent/config.json"))
        .expect_err("missing");
    assert!(
        e.to_string()
            .starts_with("cannot read config file /nonexistent/config.json"),
        "{e}"
    );
}

#[test]
fn every_key_rejects_the_wrong_json_type() {
    let strings = [
        "configure_url",
        "vault_type",
        "vault_lookup_key",
        "github_app_id",
        "github_app_private_key",
        "github_token",
        "ephemeral_runner_set_namespace",
        "ephemeral_runner_set_name",
        "runner_scale_set_name",
        "server_root_ca",
        "log_level",
        "log_format",
        "metrics_addr",
        "metrics_endpoint",
        "health_addr",
    ];
    for key in strings {
        let e = error_of(with(key, json!(true)));
        assert_eq!(
            e,
            format!(
                "config key `{key}`: is a boolean, expected a string; fix: write {key} as a JSON string"
            )
        );
    }
    let integers = [
        "github_app_installation_id",
        "max_runners",
        "min_runners",
        "runner_scale_set_id",
        "liveness_stale_after_seconds",
        "session_conflict_timeout_seconds",
    ];
    for key in integers {
        let e = error_of(with(key, json!([1])));
        assert_eq!(
            e,
            format!(
                "config key `{key}`: is an array, expected an integer; fix: write {key} as a JSON integer without quotes"
            )
        );
    }
    let e = error_of(with("metrics", json!("all")));
    assert!(e.starts_with("config key `metrics`: invalid: "), "{e}");
}

#[test]
fn exact_messages_of_the_remaining_checks() {
    assert_eq!(
        error_of(with("vault_lookup_key", json!("k"))),
        "config key `vault_lookup_key`: is set but vault_type is empty; fix: set vault_type, or remove vault_lookup_key"
    );
    assert_eq!(
        error_of(with("metrics_endpoint", json!("metrics"))),
        "config key `metrics_endpoint`: \"metrics\" is not an absolute URL path; fix: start it with '/', e.g. /metrics"
    );
    assert_eq!(
        error_of(with("log_format", json!(""))),
        "config key `log_format`: invalid log format \"\"; fix: use json or text"
    );
    assert_eq!(
        error_of(with("runner_scale_set_id", json!(-3))),
        "config key `runner_scale_set_id`: is -3, must be a positive id; fix: set it to the scale set id from the AutoscalingRunnerSet annotation runner-scale-set-id"
    );
    let c = ListenerConfig::from_json(&with("runner_scale_set_name", json!("")).to_string())
        .expect("the name is informational");
    assert_eq!(c.runner_scale_set_name, "");
    let mut v = with("liveness_stale_after_seconds", json!(45));
    v["session_conflict_timeout_seconds"] = json!(60);
    v["health_addr"] = json!(":8081");
    let c = ListenerConfig::from_json(&v.to_string()).expect("our keys");
    assert_eq!(c.liveness_stale_after.as_secs(), 45);
    assert_eq!(c.session_conflict_timeout.as_secs(), 60);
    assert_eq!(c.health_addr.as_deref(), Some(":8081"));
    let c = ListenerConfig::from_json(&base().to_string()).expect("defaults");
    assert_eq!(c.liveness_stale_after.as_secs(), 180);
    assert_eq!(c.session_conflict_timeout.as_secs(), 300);
}
