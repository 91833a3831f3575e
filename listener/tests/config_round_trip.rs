//! The config.json contract between the processes: what the manager writes for an
//! AutoscalingListener is what the listener reads, value for value.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_reconcilers::ManagerOptions;
use k8s_reconcilers::controllers::autoscaling_listener::config::{listener_config, to_json};
use k8s_reconcilers::crd::{
    AutoscalingListener, AutoscalingListenerSpec, GaugeMetric, HistogramMetric, MetricsConfig,
};
use k8s_reconcilers::github::Credentials;
use k8s_reconcilers::github::memory::MemoryService;
use listener::config::{GitHubCredentials, ListenerConfig, LogFormat, LogLevel};
use secrecy::{ExposeSecret, SecretString};

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn autoscaling_listener() -> AutoscalingListener {
    let metrics = MetricsConfig {
        gauges: Some(BTreeMap::from([(
            "gha_desired_runners".to_owned(),
            GaugeMetric {
                labels: vec!["name".into()],
            },
        )])),
        histograms: Some(BTreeMap::from([(
            "gha_job_startup_duration_seconds".to_owned(),
            HistogramMetric {
                labels: vec!["job_workflow_name".into()],
                buckets: Some(vec![1.0, 5.0]),
            },
        )])),
        counters: None,
    };
    AutoscalingListener::new(
        "arc-set-listener",
        AutoscalingListenerSpec {
            github_config_url: Some("https://ghe.example/enterprises/acme".into()),
            runner_scale_set_id: Some(42),
            autoscaling_runner_set_namespace: Some("arc-runners".into()),
            autoscaling_runner_set_name: Some("arc-set".into()),
            ephemeral_runner_set_name: Some("arc-set-abcde".into()),
            max_runners: Some(12),
            min_runners: Some(3),
            metrics: Some(metrics),
            ..Default::default()
        },
    )
}

fn options() -> ManagerOptions {
    let mut options = ManagerOptions::new(
        "arc-systems",
        "listener:dev",
        Arc::new(MemoryService::new()),
    );
    options.listener_log_level = "warn".into();
    options.listener_log_format = "json".into();
    options.listener_metrics_addr = ":8080".into();
    options.listener_metrics_endpoint = "/custom-metrics".into();
    options
}

#[test]
fn the_listener_reads_what_the_manager_writes() -> anyhow::Result<()> {
    let al = autoscaling_listener();
    let app = Credentials::App {
        app_id: "Iv1.client".into(),
        installation_id: 77,
        private_key: SecretString::from(
            "-----BEGIN RSA PRIVATE KEY-----\nk\n-----END RSA PRIVATE KEY-----",
        ),
    };
    let json = to_json(&listener_config(&al, &app, Some(CA), &options())?)?;
    let config = ListenerConfig::from_json(&json)?;

    assert_eq!(config.configure_url, "https://ghe.example/enterprises/acme");
    assert_eq!(config.url_parts().enterprise, "acme");
    assert_eq!(config.ephemeral_runner_set_namespace, "arc-runners");
    assert_eq!(config.ephemeral_runner_set_name, "arc-set-abcde");
    assert_eq!(config.runner_scale_set_id, 42);
    assert_eq!(config.runner_scale_set_name, "arc-set");
    assert_eq!((config.min_runners, config.max_runners), (3, 12));
    assert_eq!(config.server_root_ca.as_deref(), Some(CA));
    assert_eq!(config.log_level, LogLevel::Warn);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.metrics_addr.as_deref(), Some(":8080"));
    assert_eq!(config.metrics_endpoint, "/custom-metrics");
    assert_eq!(config.metrics, al.spec.metrics);
    assert_eq!(config.health_addr.as_deref(), Some("0.0.0.0:8081"));
    match &config.credentials {
        GitHubCredentials::App {
            app_id,
            installation_id,
            private_key,
        } => {
            assert_eq!((app_id.as_str(), *installation_id), ("Iv1.client", 77));
            assert!(private_key.expose_secret().contains("RSA PRIVATE KEY"));
        }
        GitHubCredentials::Pat(_) | GitHubCredentials::Vault(_) => {
            panic!("expected App credentials")
        }
    }

    let pat = Credentials::Pat(SecretString::from("ghp_roundtrip"));
    let mut unlimited = al;
    unlimited.spec.max_runners = None;
    let mut no_metrics = options();
    no_metrics.listener_metrics_addr.clear();
    let config = ListenerConfig::from_json(&to_json(&listener_config(
        &unlimited,
        &pat,
        None,
        &no_metrics,
    )?)?)?;
    assert!(
        matches!(&config.credentials, GitHubCredentials::Pat(t) if t.expose_secret() == "ghp_roundtrip")
    );
    assert_eq!(config.max_runners, i64::from(i32::MAX));
    assert_eq!(config.server_root_ca, None);
    assert_eq!(config.metrics_addr, None);
    assert_eq!(config.metrics_endpoint, "/metrics");
    Ok(())
}
