//! ARC 0.14.2's sample Grafana dashboard against our exporters, and the manager's pprof server.
//!
//! The dashboard's metrics and labels are test data (tests/suites/data/arc-0.14.2/
//! dashboard-metrics.tsv, read from the dashboard JSON at 9bb16ae). The real manager binary runs
//! against the real kube-apiserver and the Actions-service emulator over HTTP; every `manager`
//! row must be scraped from it with its exporter labels, the seven `workqueue_*` metrics for each
//! of the four controllers. The `listener` rows are checked on the listener's registry in this
//! process (tests/suites/tests/listener_process.rs scrapes a listener process), and the listener
//! pod the manager creates carries the pod labels the dashboard's scrape labels come from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "manager_support.rs"]
mod support;

use std::time::Duration;

use actions_emulator::{Emulator, EmulatorConfig};
use k8s_openapi::api::core::v1::Pod;
use k8s_reconcilers::crd::{AutoscalingListener, EphemeralRunner};
use kube::ResourceExt;
use kube::api::Api;
use support::*;
use testbed::ControlPlane;

const CONTROLLERS: [&str; 4] = [
    "autoscalingrunnerset",
    "autoscalinglistener",
    "ephemeralrunnerset",
    "ephemeralrunner",
];

const WORKQUEUE: [&str; 7] = [
    "workqueue_depth",
    "workqueue_adds_total",
    "workqueue_queue_duration_seconds_sum",
    "workqueue_work_duration_seconds_sum",
    "workqueue_unfinished_work_seconds",
    "workqueue_longest_running_processor_seconds",
    "workqueue_retries_total",
];

/// One row of the dashboard's metric list.
struct Row {
    exporter: String,
    metric: String,
    exporter_labels: Vec<String>,
}

fn dashboard_rows() -> Vec<Row> {
    let path =
        suites::helm::workspace_root().join("tests/suites/data/arc-0.14.2/dashboard-metrics.tsv");
    let text = std::fs::read_to_string(&path).expect("dashboard metric list");
    let labels = |s: &str| -> Vec<String> {
        if s == "-" {
            Vec::new()
        } else {
            s.split(',').map(str::to_owned).collect()
        }
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "row {l:?}");
            Row {
                exporter: cols[0].to_owned(),
                metric: cols[1].to_owned(),
                exporter_labels: labels(cols[2]),
            }
        })
        .collect()
}

/// Whether `metrics` has a sample of `name` carrying every label in `labels` (any value) and
/// the label values in `values`.
fn has_series(metrics: &str, name: &str, labels: &[String], values: &[(&str, &str)]) -> bool {
    metrics.lines().any(|line| {
        let Some(rest) = line.strip_prefix(name) else {
            return false;
        };
        let label_text = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((l, _)) => l,
                None => return false,
            },
            None if rest.starts_with(' ') => "",
            None => return false,
        };
        let set: Vec<(&str, &str)> = label_text
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        labels.iter().all(|l| set.iter().any(|(k, _)| k == l))
            && values.iter().all(|(k, v)| set.contains(&(*k, *v)))
    })
}

#[tokio::test]
async fn every_metric_of_arcs_dashboard_is_exported_with_its_labels() -> anyhow::Result<()> {
    let rows = dashboard_rows();
    assert!(rows.iter().any(|r| r.metric == "workqueue_depth"));
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    k8s_reconcilers::crd::install(&admin, Duration::from_secs(60)).await?;
    let ctrl = cp.test_namespace("dash-ctrl").await?;
    let run = cp.test_namespace("dash-run").await?;
    let (c, r) = (ctrl.name(), run.name());
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    pat_secret(&admin, r, "gh", &emu).await?;
    let manager = Manager::start(cp.kubeconfig_path(), c, r, &[])?;
    create_ars(&admin, r, "arc", &emu.org_url("octo-org"), "gh").await?;

    scale_runner_set(&admin, r, "arc", 1, 1).await?;
    let er_api: Api<EphemeralRunner> = Api::namespaced(admin.clone(), r);
    let pods_r: Api<Pod> = Api::namespaced(admin.clone(), r);
    suites::registered_runners(&er_api, &pods_r, 1, WAIT).await?;

    // The listener pod's labels are where the dashboard's actions_github_com_scale_set_* labels
    // come from (Prometheus' Kubernetes service discovery with a labelmap).
    let al_api: Api<AutoscalingListener> = Api::namespaced(admin.clone(), c);
    let pods_c: Api<Pod> = Api::namespaced(admin.clone(), c);
    let listener_pod = eventually("the listener pod", WAIT, || async {
        let Some(al) = al_api
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        pods_c.get_opt(&al.name_any()).await.map_err(Into::into)
    })
    .await?;
    let pod_labels = listener_pod.labels();
    assert_eq!(
        pod_labels
            .get("actions.github.com/scale-set-name")
            .map(String::as_str),
        Some("arc"),
        "{pod_labels:?}"
    );
    assert_eq!(
        pod_labels
            .get("actions.github.com/scale-set-namespace")
            .map(String::as_str),
        Some(r),
        "{pod_labels:?}"
    );

    let metrics = eventually("every dashboard metric of the manager", WAIT, || async {
        let m = manager.metrics().await?;
        let complete = rows
            .iter()
            .filter(|row| row.exporter == "manager")
            .all(|row| has_series(&m, &row.metric, &row.exporter_labels, &[]));
        Ok(complete.then_some(m))
    })
    .await;
    let metrics = match metrics {
        Ok(m) => m,
        Err(e) => {
            let m = manager.metrics().await?;
            let missing: Vec<&str> = rows
                .iter()
                .filter(|row| row.exporter == "manager")
                .filter(|row| !has_series(&m, &row.metric, &row.exporter_labels, &[]))
                .map(|row| row.metric.as_str())
                .collect();
            anyhow::bail!("{e}: missing {missing:?} in\n{m}");
        }
    };

    for row in rows.iter().filter(|r| r.exporter == "manager") {
        assert!(
            has_series(&metrics, &row.metric, &row.exporter_labels, &[]),
            "{} with labels {:?}",
            row.metric,
            row.exporter_labels
        );
    }
    // controller-runtime's work-queue metrics for every controller, labelled as it labels them.
    for controller in CONTROLLERS {
        let labels = [("name", controller), ("controller", controller)];
        for metric in WORKQUEUE {
            assert!(
                has_series(&metrics, metric, &[], &labels),
                "{metric} for {controller}:\n{metrics}"
            );
        }
        assert!(has_series(
            &metrics,
            "workqueue_depth",
            &[],
            &[("name", controller), ("priority", "0")]
        ));
    }
    // The queues saw the work: adds, waits and reconciles were counted.
    for controller in [
        "autoscalingrunnerset",
        "ephemeralrunnerset",
        "ephemeralrunner",
    ] {
        let labels = [("controller", controller)];
        for metric in [
            "workqueue_adds_total",
            "workqueue_queue_duration_seconds_count",
            "workqueue_work_duration_seconds_count",
        ] {
            assert!(
                sample(&metrics, metric, &labels).is_some_and(|n| n > 0.0),
                "{metric} for {controller}:\n{metrics}"
            );
        }
    }

    // The listener's dashboard metrics on its registry, with ARC's default metric set.
    let parts = listener::config::parse_config_url(&emu.org_url("octo-org"))?;
    let listener_metrics = listener::metrics::Metrics::new(None, parts, "arc", r);
    listener_metrics.record_statistics(&Default::default());
    listener_metrics.record_desired(1);
    // One job through its life, so that the job histograms have series.
    let t0 = chrono::Utc::now();
    let job = actions_client::JobInfo {
        scale_set_assign_time: Some(t0),
        runner_assign_time: Some(t0 + chrono::Duration::seconds(3)),
        finish_time: Some(t0 + chrono::Duration::seconds(10)),
        ..Default::default()
    };
    listener_metrics.record_job_started(&actions_client::JobStarted {
        job: job.clone(),
        ..Default::default()
    });
    listener_metrics.record_job_completed(&actions_client::JobCompleted {
        job,
        result: "succeeded".into(),
        ..Default::default()
    });
    let text = listener_metrics.encode()?;
    for row in rows.iter().filter(|r| r.exporter == "listener") {
        match row.metric.strip_suffix("_bucket") {
            Some(base) => assert!(
                text.contains(&format!("# TYPE {base} histogram"))
                    && has_series(&text, &row.metric, &row.exporter_labels, &[]),
                "{base}:\n{text}"
            ),
            None => assert!(
                has_series(
                    &text,
                    &row.metric,
                    &row.exporter_labels,
                    &[("namespace", r)]
                ),
                "{} with labels {:?}:\n{text}",
                row.metric,
                row.exporter_labels
            ),
        }
    }
    Ok(())
}

/// `GET path` on 127.0.0.1:`port`: status and raw body, which is never chunked.
async fn get_bytes(port: u16, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let (status, head, body) = http_get_raw(port, path).await?;
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    Ok((status, body))
}

#[tokio::test]
async fn pprof_serves_a_cpu_profile_go_tool_pprof_reads() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    k8s_reconcilers::crd::install(&admin, Duration::from_secs(60)).await?;
    let ctrl = cp.test_namespace("pprof-ctrl").await?;
    let run = cp.test_namespace("pprof-run").await?;
    let port = free_port()?;
    let manager = Manager::start(
        cp.kubeconfig_path(),
        ctrl.name(),
        run.name(),
        &[format!("--pprof-addr=127.0.0.1:{port}")],
    )?;
    let (status, index) = eventually("the pprof index", WAIT, || async {
        Ok(get_bytes(port, "/debug/pprof/").await.ok())
    })
    .await?;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&index).contains("profile"));

    let (status, body) = get_bytes(port, "/debug/pprof/profile?seconds=abc").await?;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("seconds") && body.contains("\"abc\""),
        "{body}"
    );

    let (status, profile) = get_bytes(port, "/debug/pprof/profile?seconds=1").await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&profile));
    assert_eq!(profile.get(..2), Some(&[0x1f, 0x8b][..]), "a gzip stream");
    let dir = tempfile_dir()?;
    let file = dir.join("profile.pb.gz");
    std::fs::write(&file, &profile)?;

    let go = std::process::Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED the go tool pprof check: `go` is not installed");
        return Ok(());
    }
    let out = std::process::Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&file)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "go tool pprof failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Type: cpu"), "{stdout}\n{stderr}");
    assert!(stdout.contains("Duration:"), "{stdout}\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    drop(manager);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("arc-pprof-{}-{}", std::process::id(), free_port()?));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
