//! `helm lint --strict` (real Helm) passes on both charts, with defaults and with ARC's values.

use std::process::Command;

use suites::helm::{Chart, python, workspace_root};

fn lint(chart: Chart, values: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(python().expect("helm environment"));
    cmd.arg(workspace_root().join("xtask/scripts/helm-render.py"))
        .arg("lint")
        .arg(chart.path())
        .arg("--strict");
    if let Some(v) = values {
        cmd.args(["--values-json", v]);
    }
    let out = cmd.output().expect("run lint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn controller_chart_lints_clean() {
    let (ok, report) = lint(Chart::Controller, None);
    assert!(ok, "{report}");
    assert!(
        report.contains("1 chart(s) linted, no failures"),
        "{report}"
    );
    let (ok, report) = lint(
        Chart::Controller,
        Some(
            r#"{"replicaCount": 2, "flags": {"watchSingleNamespace": "demo"}, "metrics": {"controllerManagerAddr": ":8080", "listenerAddr": ":8080", "listenerEndpoint": "/metrics"}}"#,
        ),
    );
    assert!(ok, "{report}");
}

#[test]
fn scale_set_chart_lints_clean() {
    let (ok, report) = lint(Chart::ScaleSet, None);
    assert!(ok, "{report}");
    for mode in ["dind", "kubernetes", "kubernetes-novolume"] {
        let values = format!(
            r#"{{"githubConfigUrl": "https://github.com/org", "controllerServiceAccount": {{"name": "arc", "namespace": "arc-system"}}, "githubConfigSecret": {{"github_token": "t"}}, "containerMode": {{"type": "{mode}"}}}}"#
        );
        let (ok, report) = lint(Chart::ScaleSet, Some(&values));
        assert!(ok, "{mode}: {report}");
    }
}

#[test]
fn lint_reports_schema_violations() {
    let (ok, report) = lint(
        Chart::Controller,
        Some(r#"{"flags": {"logLevel": "loud"}}"#),
    );
    assert!(!ok, "{report}");
    assert!(report.contains("logLevel"), "{report}");
}
