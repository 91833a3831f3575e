//! The gha-runner-scale-set chart rendered with real Helm (the cases of ARC's chart tests,
//! naming and rendered objects; docs/architecture.md#charts).

use serde_json::{Value, json};
use suites::helm::{Chart, Render, Rendered};

const RELEASE: &str = "test-runners";
const NS: &str = "namespace";
const FULL: &str = "test-runners-gha-rs";
const RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:latest";

/// Deep-merges `extra` over `base` (objects merge, everything else replaces).
fn merge(base: Value, extra: Value) -> Value {
    match (base, extra) {
        (Value::Object(mut b), Value::Object(e)) => {
            for (k, v) in e {
                let merged = match b.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            Value::Object(b)
        }
        (_, e) => e,
    }
}

fn base() -> Value {
    json!({
        "githubConfigUrl": "https://github.com/actions",
        "githubConfigSecret": {"github_token": "gh_token12345"},
        "controllerServiceAccount": {"name": "arc", "namespace": "arc-system"}
    })
}

fn with(extra: Value) -> Value {
    merge(base(), extra)
}

fn render(values: Value) -> Rendered {
    Render::new(Chart::ScaleSet, RELEASE, NS)
        .values(values)
        .render()
        .expect("render")
}

fn render_err(values: Value) -> String {
    Render::new(Chart::ScaleSet, RELEASE, NS)
        .values(values)
        .render_err()
        .expect("render should fail")
}

fn ars(r: &Rendered) -> Value {
    r.single("AutoscalingRunnerSet").expect("ars").clone()
}

fn pod_spec(r: &Rendered) -> Value {
    ars(r)["spec"]["template"]["spec"].clone()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|o| o["name"].as_str().expect("name").to_string())
        .collect()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn rule_resources(role: &Value) -> Vec<String> {
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["resources"][0].as_str().expect("resource").to_string())
        .collect()
}

fn finalized(obj: &Value) {
    assert_eq!(
        obj["metadata"]["finalizers"],
        json!(["actions.github.com/cleanup-protection"]),
        "{}",
        obj["metadata"]["name"]
    );
}

// --- GitHub secret -------------------------------------------------------------------------

#[test]
fn github_token_secret() {
    let r = render(base());
    let s = r
        .get("Secret", &format!("{FULL}-github-secret"))
        .expect("secret");
    assert_eq!(s["metadata"]["namespace"], NS);
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"], json!({"github_token": "Z2hfdG9rZW4xMjM0NQ=="}));
    finalized(s);
}

#[test]
fn github_app_secret() {
    let r = render(merge(
        base(),
        json!({"githubConfigSecret": {"github_token": "", "github_app_id": "10", "github_app_installation_id": 2, "github_app_private_key": "pem"}}),
    ));
    let s = r
        .get("Secret", &format!("{FULL}-github-secret"))
        .expect("secret");
    assert_eq!(
        s["data"],
        json!({"github_app_id": "MTA=", "github_app_installation_id": "Mg==", "github_app_private_key": "cGVt"})
    );
}

#[test]
fn numeric_app_ids_keep_every_digit() {
    // Values reach templates as float64; large ids must not become 9.8765432e+07.
    let r = render(with(json!({
        "githubConfigSecret": {"github_app_id": 1234567, "github_app_installation_id": 98765432, "github_app_private_key": "pem"},
        "labels": {"build": 12345678}
    })));
    let s = r
        .get("Secret", &format!("{FULL}-github-secret"))
        .expect("secret");
    assert_eq!(s["data"]["github_app_id"], "MTIzNDU2Nw==", "1234567");
    assert_eq!(
        s["data"]["github_app_installation_id"], "OTg3NjU0MzI=",
        "98765432"
    );
    assert_eq!(ars(&r)["metadata"]["labels"]["build"], "12345678");
}

#[test]
fn secret_without_token_or_app_fails() {
    let err = render_err(with(json!({"githubConfigSecret": {"github_token": ""}})));
    assert!(
        err.contains("provide .Values.githubConfigSecret.github_token or .Values.githubConfigSecret.github_app_id"),
        "{err}"
    );
}

#[test]
fn app_secret_without_installation_or_key_fails() {
    let err = render_err(with(
        json!({"githubConfigSecret": {"github_token": "", "github_app_id": "10"}}),
    ));
    assert!(
        err.contains(
            "github_app_installation_id and .Values.githubConfigSecret.github_app_private_key"
        ),
        "{err}"
    );
}

#[test]
fn predefined_secret_is_used_and_not_rendered() {
    let r = render(with(json!({"githubConfigSecret": "pre-defined-secrets"})));
    assert!(r.of_kind("Secret").is_empty());
    assert!(!r.has_source("githubsecret.yaml"));
    let a = ars(&r);
    assert_eq!(a["spec"]["githubConfigSecret"], "pre-defined-secrets");
    assert!(
        a["metadata"]["annotations"]
            .get("actions.github.com/cleanup-github-secret-name")
            .is_none()
    );
}

#[test]
fn empty_predefined_secret_fails() {
    let err = render_err(with(json!({"githubConfigSecret": ""})));
    assert!(
        err.contains("Values.githubConfigSecret is required for setting auth with GitHub server"),
        "{err}"
    );
}

#[test]
fn cleanup_secret_annotation_for_rendered_secrets() {
    for secret in [
        json!({"github_token": "t"}),
        json!({"github_token": "", "github_app_id": "1", "github_app_installation_id": "2", "github_app_private_key": "k"}),
    ] {
        let r = render(with(json!({"githubConfigSecret": secret})));
        assert_eq!(
            ars(&r)["metadata"]["annotations"]["actions.github.com/cleanup-github-secret-name"],
            format!("{FULL}-github-secret")
        );
    }
}

// --- service accounts and kube-mode RBAC ---------------------------------------------------

#[test]
fn default_mode_uses_the_no_permission_service_account() {
    let r = render(base());
    let sa = r
        .get("ServiceAccount", &format!("{FULL}-no-permission"))
        .expect("sa");
    assert_eq!(sa["metadata"]["namespace"], NS);
    finalized(sa);
    let a = ars(&r);
    assert_eq!(
        a["spec"]["template"]["spec"]["serviceAccountName"],
        format!("{FULL}-no-permission")
    );
    let ann = &a["metadata"]["annotations"];
    assert_eq!(
        ann["actions.github.com/cleanup-no-permission-service-account-name"],
        format!("{FULL}-no-permission")
    );
    assert!(
        ann.get("actions.github.com/cleanup-kubernetes-mode-service-account-name")
            .is_none()
    );
    assert!(r.find("Role", &format!("{FULL}-kube-mode")).is_none());
}

#[test]
fn kubernetes_modes_render_kube_mode_rbac() {
    for (mode, resources) in [
        (
            "kubernetes",
            vec!["pods", "pods/exec", "pods/log", "jobs", "secrets"],
        ),
        (
            "kubernetes-novolume",
            vec!["pods", "pods/exec", "pods/log", "secrets"],
        ),
    ] {
        let r = render(with(json!({"containerMode": {"type": mode}})));
        let kube = format!("{FULL}-kube-mode");
        let sa = r.get("ServiceAccount", &kube).expect("sa");
        finalized(sa);
        let role = r.get("Role", &kube).expect("role");
        finalized(role);
        assert_eq!(rule_resources(role), resources, "{mode}");
        assert_eq!(
            role["rules"][0]["verbs"],
            json!(["get", "list", "create", "delete"])
        );
        let rb = r.get("RoleBinding", &kube).expect("binding");
        finalized(rb);
        assert_eq!(
            rb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": kube})
        );
        assert_eq!(
            rb["subjects"],
            json!([{"kind": "ServiceAccount", "name": kube, "namespace": NS}])
        );
        assert!(
            r.find("ServiceAccount", &format!("{FULL}-no-permission"))
                .is_none(),
            "{mode}"
        );
        let a = ars(&r);
        assert_eq!(a["spec"]["template"]["spec"]["serviceAccountName"], kube);
        let ann = &a["metadata"]["annotations"];
        for key in [
            "actions.github.com/cleanup-kubernetes-mode-role-binding-name",
            "actions.github.com/cleanup-kubernetes-mode-role-name",
            "actions.github.com/cleanup-kubernetes-mode-service-account-name",
        ] {
            assert_eq!(ann[key], kube, "{mode} {key}");
        }
        assert_eq!(
            ann["actions.github.com/cleanup-manager-role-name"],
            format!("{FULL}-manager")
        );
        assert_eq!(
            ann["actions.github.com/cleanup-manager-role-binding"],
            format!("{FULL}-manager")
        );
        assert_eq!(
            ann["actions.github.com/cleanup-github-secret-name"],
            format!("{FULL}-github-secret")
        );
        assert!(
            ann.get("actions.github.com/cleanup-no-permission-service-account-name")
                .is_none()
        );
    }
}

#[test]
fn kube_mode_additional_role_rules() {
    let r = render(with(
        json!({"containerMode": {"type": "kubernetes", "kubernetesModeAdditionalRoleRules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
        ]}}),
    ));
    let role = r.get("Role", &format!("{FULL}-kube-mode")).expect("role");
    assert_eq!(rule_resources(role).len(), 6);
    assert_eq!(
        role["rules"][5],
        json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]})
    );
}

#[test]
fn user_service_account_replaces_chart_ones() {
    for mode in ["", "dind", "kubernetes", "kubernetes-novolume"] {
        let r = render(with(json!({
            "containerMode": {"type": mode},
            "template": {"spec": {"serviceAccountName": "test-service-account", "containers": [{"name": "runner", "image": RUNNER_IMAGE}]}}
        })));
        assert!(r.of_kind("ServiceAccount").is_empty(), "{mode}");
        assert!(r.find("Role", &format!("{FULL}-kube-mode")).is_none());
        let a = ars(&r);
        assert_eq!(
            a["spec"]["template"]["spec"]["serviceAccountName"],
            "test-service-account"
        );
        let ann = a["metadata"]["annotations"]
            .as_object()
            .expect("annotations");
        assert!(
            !ann.keys()
                .any(|k| k.contains("kubernetes-mode") || k.contains("no-permission")),
            "{mode}: {ann:?}"
        );
    }
}

// --- the AutoscalingRunnerSet --------------------------------------------------------------

#[test]
fn basic_autoscaling_runner_set() {
    let r = render(base());
    let a = ars(&r);
    assert_eq!(a["apiVersion"], "actions.github.com/v1alpha1");
    assert_eq!(a["metadata"]["name"], RELEASE);
    assert_eq!(a["metadata"]["namespace"], NS);
    let l = &a["metadata"]["labels"];
    assert_eq!(l["app.kubernetes.io/name"], RELEASE);
    assert_eq!(l["app.kubernetes.io/instance"], RELEASE);
    assert_eq!(l["app.kubernetes.io/part-of"], "gha-rs");
    assert_eq!(l["app.kubernetes.io/component"], "autoscaling-runner-set");
    assert_eq!(l["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(l["app.kubernetes.io/version"], "0.14.2");
    assert_eq!(l["helm.sh/chart"], "gha-rs-0.14.2");
    assert_eq!(l["actions.github.com/scale-set-name"], RELEASE);
    assert_eq!(l["actions.github.com/scale-set-namespace"], NS);
    let s = &a["spec"];
    assert_eq!(s["githubConfigUrl"], "https://github.com/actions");
    assert_eq!(s["githubConfigSecret"], format!("{FULL}-github-secret"));
    for absent in [
        "runnerGroup",
        "runnerScaleSetName",
        "minRunners",
        "maxRunners",
        "proxy",
        "githubServerTLS",
        "listenerTemplate",
        "runnerScaleSetLabels",
        "vaultConfig",
    ] {
        assert!(s.get(absent).is_none(), "{absent}");
    }
    let spec = &s["template"]["spec"];
    assert_eq!(
        spec["containers"],
        json!([{"name": "runner", "image": RUNNER_IMAGE, "command": ["/home/runner/run.sh"]}])
    );
    assert_eq!(spec["restartPolicy"], "Never");
    assert!(spec.get("volumes").is_none());
    assert!(spec.get("initContainers").is_none());
}

#[test]
fn runner_scale_set_name_overrides_names() {
    let r = render(with(
        json!({"runnerScaleSetName": "test-runner-scale-set-name"}),
    ));
    let a = ars(&r);
    assert_eq!(a["metadata"]["name"], "test-runner-scale-set-name");
    assert_eq!(
        a["metadata"]["labels"]["app.kubernetes.io/name"],
        "test-runner-scale-set-name"
    );
    assert_eq!(
        a["metadata"]["labels"]["actions.github.com/scale-set-name"],
        "test-runner-scale-set-name"
    );
    assert_eq!(
        a["metadata"]["labels"]["actions.github.com/scale-set-namespace"],
        NS
    );
    assert_eq!(
        a["spec"]["runnerScaleSetName"],
        "test-runner-scale-set-name"
    );
    assert_eq!(
        a["spec"]["githubConfigSecret"],
        "test-runner-scale-set-name-gha-rs-github-secret"
    );
    assert!(
        r.find("Secret", "test-runner-scale-set-name-gha-rs-github-secret")
            .is_some()
    );
    assert!(
        r.find("Role", "test-runner-scale-set-name-gha-rs-manager")
            .is_some()
    );
}

#[test]
fn underscores_in_the_name_become_dashes_in_object_names() {
    let r = render(with(json!({"runnerScaleSetName": "my_runners"})));
    let a = ars(&r);
    assert_eq!(a["metadata"]["name"], "my-runners");
    assert_eq!(a["spec"]["runnerScaleSetName"], "my_runners");
    assert!(
        r.find("Secret", "my-runners-gha-rs-github-secret")
            .is_some()
    );
}

#[test]
fn scale_set_labels() {
    let r = render(with(json!({"scaleSetLabels": ["linux", "x64"]})));
    assert_eq!(
        ars(&r)["spec"]["runnerScaleSetLabels"],
        json!(["linux", "x64"])
    );
    let err = render_err(with(json!({"scaleSetLabels": ["linux", ""]})));
    assert!(
        err.contains("scaleSetLabels contains an empty string"),
        "{err}"
    );
    let long = "a".repeat(256);
    let err = render_err(with(json!({"scaleSetLabels": [long]})));
    assert!(err.contains("256 characters or more"), "{err}");
}

#[test]
fn template_metadata_is_copied() {
    let r = render(with(
        json!({"template": {"metadata": {"labels": {"test1": "test1"}, "annotations": {"test2": "test2"}}}}),
    ));
    let t = &ars(&r)["spec"]["template"];
    assert_eq!(t["metadata"]["labels"]["test1"], "test1");
    assert_eq!(t["metadata"]["annotations"]["test2"], "test2");
    assert_eq!(t["spec"]["containers"][0]["name"], "runner");
}

#[test]
fn runner_limits_validation() {
    let err = render_err(with(json!({"maxRunners": -1})));
    assert!(
        err.contains("maxRunners has to be greater or equal to 0"),
        "{err}"
    );
    let err = render_err(with(json!({"minRunners": -1})));
    assert!(
        err.contains("minRunners has to be greater or equal to 0"),
        "{err}"
    );
    let err = render_err(with(json!({"minRunners": 1, "maxRunners": 0})));
    assert!(
        err.contains("maxRunners has to be greater or equal to minRunners"),
        "{err}"
    );
    let err = render_err(with(json!({"maxRunners": "5"})));
    assert!(err.contains("/maxRunners"), "{err}");
}

#[test]
fn runner_limits_rendered() {
    let s = ars(&render(with(json!({"minRunners": 0, "maxRunners": 0}))))["spec"].clone();
    assert_eq!(
        (s["minRunners"].clone(), s["maxRunners"].clone()),
        (json!(0), json!(0))
    );
    let s = ars(&render(with(json!({"minRunners": 5}))))["spec"].clone();
    assert_eq!(s["minRunners"], 5);
    assert!(s.get("maxRunners").is_none());
    let s = ars(&render(with(json!({"maxRunners": 5}))))["spec"].clone();
    assert_eq!(s["maxRunners"], 5);
    assert!(s.get("minRunners").is_none());
    let r = Render::new(Chart::ScaleSet, RELEASE, NS)
        .values(base())
        .set("minRunners", "5")
        .set("maxRunners", "10")
        .render()
        .expect("render");
    assert_eq!(ars(&r)["spec"]["minRunners"], 5);
    assert_eq!(ars(&r)["spec"]["maxRunners"], 10);
}

#[test]
fn runner_limits_from_a_values_file() {
    let path = std::env::temp_dir().join(format!("arc-rs-values-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "minRunners: 5\nmaxRunners: 10\ngithubConfigUrl: https://github.com/actions\n",
    )
    .expect("write values file");
    let r = Render::new(Chart::ScaleSet, RELEASE, NS)
        .values_file(&path)
        .set("controllerServiceAccount.name", "arc")
        .set("controllerServiceAccount.namespace", "arc-system")
        .set("githubConfigSecret.github_token", "t")
        .render();
    let _ = std::fs::remove_file(&path);
    let spec = ars(&r.expect("render"))["spec"].clone();
    assert_eq!(spec["minRunners"], 5);
    assert_eq!(spec["maxRunners"], 10);
}

#[test]
fn values_file_with_empty_keys_renders() {
    // Keys left empty in a values file are null; they must mean "not set".
    let path = std::env::temp_dir().join(format!("arc-rs-null-values-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "githubConfigUrl: https://github.com/actions\nproxy:\n  http:\n  noProxy:\nmaxRunners:\n\
         minRunners:\nrunnerGroup:\ngithubServerTLS:\n  certificateFrom:\nkeyVault:\n\
         containerMode:\n  type:\nlistenerTemplate:\nlistenerMetrics:\nlabels:\nannotations:\n\
         resourceMeta:\ntemplate:\n  spec:\n    containers:\n      - name: runner\n\
         \x20       image: ghcr.io/actions/actions-runner:latest\n        env:\n        volumeMounts:\n",
    )
    .expect("write values file");
    let r = Render::new(Chart::ScaleSet, RELEASE, NS)
        .values_file(&path)
        .set("controllerServiceAccount.name", "arc")
        .set("controllerServiceAccount.namespace", "arc-system")
        .set("githubConfigSecret.github_token", "t")
        .render();
    let _ = std::fs::remove_file(&path);
    let spec = ars(&r.expect("render"))["spec"].clone();
    for absent in [
        "proxy",
        "githubServerTLS",
        "minRunners",
        "maxRunners",
        "runnerGroup",
        "vaultConfig",
        "listenerTemplate",
    ] {
        assert!(spec.get(absent).is_none(), "{absent}: {spec}");
    }
    assert_eq!(
        spec["template"]["spec"]["containers"],
        json!([{"name": "runner", "image": RUNNER_IMAGE}])
    );
}

#[test]
fn runner_group() {
    let r = render(with(json!({"runnerGroup": "test-runner-group"})));
    assert_eq!(ars(&r)["spec"]["runnerGroup"], "test-runner-group");
}

#[test]
fn listener_template_and_metrics_are_copied() {
    let listener = json!({
        "spec": {
            "hostname": "example",
            "containers": [
                {"name": "listener", "image": "listener:latest", "command": ["/path/to/entrypoint"], "securityContext": {"runAsUser": 1000},
                 "volumeMounts": [{"name": "listener-config", "mountPath": "/etc/gha-listener"}]},
                {"name": "side-car", "image": "nginx:latest"}
            ]
        }
    });
    let metrics =
        json!({"counters": {"gha_started_jobs_total": {"labels": ["repository", "organization"]}}});
    let r = render(with(
        json!({"listenerTemplate": listener, "listenerMetrics": metrics}),
    ));
    assert_eq!(ars(&r)["spec"]["listenerTemplate"], listener);
    assert_eq!(ars(&r)["spec"]["listenerMetrics"], metrics);
}

#[test]
fn proxy() {
    let r = render(with(json!({"proxy": {
        "http": {"url": "http://proxy.example.com", "credentialSecretRef": "http-secret"},
        "https": {"url": "https://proxy.example.com", "credentialSecretRef": "https-secret"},
        "noProxy": ["example.com", "example.org"]
    }})));
    assert_eq!(
        ars(&r)["spec"]["proxy"],
        json!({
            "http": {"url": "http://proxy.example.com", "credentialSecretRef": "http-secret"},
            "https": {"url": "https://proxy.example.com", "credentialSecretRef": "https-secret"},
            "noProxy": ["example.com", "example.org"]
        })
    );
    let r = render(with(
        json!({"proxy": {"https": {"url": "https://proxy.example.com"}}}),
    ));
    assert_eq!(
        ars(&r)["spec"]["proxy"],
        json!({"https": {"url": "https://proxy.example.com"}})
    );
}

#[test]
fn key_vault() {
    let r = render(with(json!({
        "githubConfigSecret": "vault-secret",
        "keyVault": {"type": "azure_key_vault", "proxy": {"https": {"url": "http://proxy"}},
                     "azureKeyVault": {"url": "https://vault", "tenantId": "t", "clientId": "c", "certificatePath": "/cert"}}
    })));
    assert_eq!(
        ars(&r)["spec"]["vaultConfig"],
        json!({"type": "azure_key_vault", "proxy": {"https": {"url": "http://proxy"}},
               "azureKeyVault": {"url": "https://vault", "tenantId": "t", "clientId": "c", "certificatePath": "/cert"}})
    );
    let err = render_err(with(json!({"keyVault": {"type": "hashicorp"}})));
    assert!(
        err.contains("Unsupported keyVault type: hashicorp"),
        "{err}"
    );
}

#[test]
fn github_config_url() {
    let r = render(with(
        json!({"githubConfigUrl": "https://github.com/actions/"}),
    ));
    assert_eq!(
        ars(&r)["spec"]["githubConfigUrl"],
        "https://github.com/actions"
    );
    let err = render_err(with(json!({"githubConfigUrl": ""})));
    assert!(err.contains("githubConfigUrl is required"), "{err}");
    let err = render_err(with(json!({"githubConfigUrl": "github.com/actions"})));
    assert!(
        err.contains("githubConfigUrl") && err.contains("fix"),
        "{err}"
    );
}

#[test]
fn naming_constraints() {
    let long_release = "a".repeat(46);
    let err = Render::new(Chart::ScaleSet, &long_release, NS)
        .values(base())
        .render_err()
        .expect("fails");
    assert!(err.contains("Name must have up to 45 characters"), "{err}");
    let long_ns = "n".repeat(64);
    let err = Render::new(Chart::ScaleSet, RELEASE, &long_ns)
        .values(base())
        .render_err()
        .expect("fails");
    assert!(
        err.contains("Namespace must have up to 63 characters"),
        "{err}"
    );
    assert!(
        Render::new(Chart::ScaleSet, &"a".repeat(45), NS)
            .values(base())
            .render()
            .is_ok()
    );
}

// --- manager RBAC and controller discovery -------------------------------------------------

#[test]
fn manager_role_and_binding() {
    let r = render(base());
    let role = r.get("Role", &format!("{FULL}-manager")).expect("role");
    assert_eq!(role["metadata"]["namespace"], NS);
    assert_eq!(
        role["metadata"]["labels"]["app.kubernetes.io/component"],
        "manager-role"
    );
    finalized(role);
    assert_eq!(
        rule_resources(role),
        [
            "pods",
            "pods/status",
            "secrets",
            "serviceaccounts",
            "rolebindings",
            "roles",
            "events"
        ]
    );
    // The manager's Warning Events about runners and scale sets (ARC's role has no such rule).
    assert_eq!(
        role["rules"][6],
        json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]})
    );
    assert_eq!(
        role["rules"][2]["verbs"],
        json!(["create", "delete", "get", "list", "patch", "update"])
    );
    assert_eq!(
        role["rules"][4]["apiGroups"],
        json!(["rbac.authorization.k8s.io"])
    );

    let rb = r
        .get("RoleBinding", &format!("{FULL}-manager"))
        .expect("binding");
    finalized(rb);
    assert_eq!(
        rb["metadata"]["labels"]["app.kubernetes.io/component"],
        "manager-role-binding"
    );
    assert_eq!(
        rb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("{FULL}-manager")})
    );
    assert_eq!(
        rb["subjects"],
        json!([{"kind": "ServiceAccount", "name": "arc", "namespace": "arc-system"}])
    );
}

#[test]
fn manager_role_reads_configmaps_with_tls() {
    let r = render(with(
        json!({"githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "certs", "key": "ca.crt"}}}}),
    ));
    let role = r.get("Role", &format!("{FULL}-manager")).expect("role");
    assert_eq!(rule_resources(role).len(), 8);
    assert_eq!(
        role["rules"][6],
        json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]})
    );
}

#[test]
fn discovery_needs_a_cluster_or_explicit_values() {
    let mut values = base();
    values
        .as_object_mut()
        .expect("object")
        .remove("controllerServiceAccount");
    let err = render_err(values.clone());
    assert!(
        err.contains("No gha-rs-controller deployment found"),
        "{err}"
    );
    assert!(err.contains("controllerServiceAccount.name"), "{err}");
    let err = render_err(merge(
        values,
        json!({"controllerServiceAccount": {"name": "arc"}}),
    ));
    assert!(err.contains("controllerServiceAccount.namespace"), "{err}");
}

// --- container modes -----------------------------------------------------------------------

#[test]
fn default_mode_extra_volumes_keep_order() {
    let r = render(with(json!({"template": {"spec": {
        "containers": [{"name": "runner", "image": RUNNER_IMAGE}],
        "volumes": [
            {"name": "foo", "emptyDir": {}},
            {"name": "bar", "emptyDir": {}},
            {"name": "work", "hostPath": {"path": "/data", "type": "Directory"}}
        ]
    }}})));
    let spec = pod_spec(&r);
    assert_eq!(names(&spec["volumes"]), ["foo", "bar", "work"]);
    assert_eq!(spec["volumes"][2]["hostPath"]["path"], "/data");
}

#[test]
fn dind_defaults() {
    let r = render(with(json!({"containerMode": {"type": "dind"}})));
    let spec = pod_spec(&r);
    // Helm's default capabilities report a current Kubernetes: the daemon is a native sidecar.
    assert_eq!(
        names(&spec["initContainers"]),
        ["init-dind-externals", "dind"]
    );
    let init = &spec["initContainers"][0];
    assert_eq!(init["image"], RUNNER_IMAGE);
    assert_eq!(init["command"], json!(["cp"]));
    assert_eq!(
        init["args"],
        json!(["-r", "/home/runner/externals/.", "/home/runner/tmpDir/"])
    );
    assert_eq!(
        init["volumeMounts"],
        json!([{"name": "dind-externals", "mountPath": "/home/runner/tmpDir"}])
    );
    let dind = &spec["initContainers"][1];
    assert_eq!(dind["image"], "docker:dind");
    assert_eq!(
        dind["args"],
        json!([
            "dockerd",
            "--host=unix:///var/run/docker.sock",
            "--group=$(DOCKER_GROUP_GID)"
        ])
    );
    assert_eq!(
        dind["env"],
        json!([{"name": "DOCKER_GROUP_GID", "value": "123"}])
    );
    assert_eq!(dind["securityContext"]["privileged"], true);
    assert_eq!(dind["restartPolicy"], "Always");
    assert_eq!(
        dind["startupProbe"]["exec"]["command"],
        json!(["docker", "info"])
    );
    assert_eq!(dind["startupProbe"]["failureThreshold"], 24);
    assert_eq!(dind["startupProbe"]["periodSeconds"], 5);
    assert_eq!(
        names(&dind["volumeMounts"]),
        ["work", "dind-sock", "dind-externals"]
    );

    assert_eq!(names(&spec["containers"]), ["runner"]);
    let runner = &spec["containers"][0];
    assert_eq!(runner["image"], RUNNER_IMAGE);
    assert_eq!(runner["command"], json!(["/home/runner/run.sh"]));
    assert_eq!(
        runner["env"],
        json!([
            {"name": "DOCKER_HOST", "value": "unix:///var/run/docker.sock"},
            {"name": "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS", "value": "120"}
        ])
    );
    assert_eq!(
        runner["volumeMounts"],
        json!([{"name": "work", "mountPath": "/home/runner/_work"}, {"name": "dind-sock", "mountPath": "/var/run"}])
    );
    assert_eq!(
        spec["volumes"],
        json!([
            {"name": "dind-sock", "emptyDir": {}},
            {"name": "dind-externals", "emptyDir": {}},
            {"name": "work", "emptyDir": {}}
        ])
    );
}

#[test]
fn dind_extra_init_containers_follow_the_chart_ones() {
    let r = render(with(
        json!({"containerMode": {"type": "dind"}, "template": {"spec": {
            "containers": [{"name": "runner", "image": RUNNER_IMAGE}],
            "initContainers": [
                {"name": "kube-init", "image": "runner-image:latest", "command": ["sudo", "chown", "-R", "1001:123", "/home/runner/_work"],
                 "volumeMounts": [{"name": "work", "mountPath": "/home/runner/_work"}]},
                {"name": "ls", "image": "ubuntu:latest", "command": ["ls"]}
            ]
        }}}),
    ));
    let spec = pod_spec(&r);
    assert_eq!(
        names(&spec["initContainers"]),
        ["init-dind-externals", "dind", "kube-init", "ls"]
    );
    assert_eq!(
        spec["initContainers"][2]["command"],
        json!(["sudo", "chown", "-R", "1001:123", "/home/runner/_work"])
    );
    assert_eq!(
        spec["initContainers"][2]["volumeMounts"][0]["mountPath"],
        "/home/runner/_work"
    );
    assert_eq!(spec["initContainers"][3]["image"], "ubuntu:latest");
}

#[test]
fn dind_volumes_order() {
    let r = render(with(
        json!({"containerMode": {"type": "dind"}, "template": {"spec": {
            "containers": [{"name": "runner", "image": RUNNER_IMAGE}],
            "volumes": [
                {"name": "foo", "emptyDir": {}},
                {"name": "bar", "emptyDir": {}},
                {"name": "work", "hostPath": {"path": "/data", "type": "Directory"}}
            ]
        }}}),
    ));
    let spec = pod_spec(&r);
    assert_eq!(
        names(&spec["volumes"]),
        ["dind-sock", "dind-externals", "work", "foo", "bar"]
    );
    assert_eq!(spec["volumes"][2]["hostPath"]["path"], "/data");
}

#[test]
fn dind_merges_user_runner_settings() {
    let r = render(with(
        json!({"containerMode": {"type": "dind"}, "template": {"spec": {
            "containers": [
                {"name": "runner", "image": RUNNER_IMAGE,
                 "env": [{"name": "DOCKER_HOST", "value": "tcp://localhost:9999"}, {"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}, {"name": "others", "mountPath": "/others"}],
                 "resources": {"limits": {"memory": "5Gi"}}},
                {"name": "dind", "image": "user-dind:1"},
                {"name": "other", "image": "other-image"}
            ]
        }}}),
    ));
    let spec = pod_spec(&r);
    assert_eq!(
        names(&spec["containers"]),
        ["runner", "other"],
        "the user's dind container is replaced"
    );
    let runner = &spec["containers"][0];
    assert_eq!(
        names(&runner["env"]),
        [
            "DOCKER_HOST",
            "MY_NODE_NAME",
            "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS"
        ]
    );
    assert_eq!(
        env_value(runner, "DOCKER_HOST").expect("env")["value"],
        "tcp://localhost:9999"
    );
    assert_eq!(
        names(&runner["volumeMounts"]),
        ["work", "others", "dind-sock"]
    );
    assert_eq!(runner["volumeMounts"][0]["mountPath"], "/work");
    assert_eq!(runner["resources"]["limits"]["memory"], "5Gi");
}

#[test]
fn kubernetes_defaults() {
    let r = render(with(json!({"containerMode": {"type": "kubernetes"}})));
    let spec = pod_spec(&r);
    assert!(spec.get("initContainers").is_none());
    assert_eq!(names(&spec["containers"]), ["runner"]);
    let runner = &spec["containers"][0];
    assert_eq!(
        runner["env"],
        json!([
            {"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/home/runner/k8s/index.js"},
            {"name": "ACTIONS_RUNNER_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER", "value": "true"}
        ])
    );
    assert_eq!(
        runner["volumeMounts"],
        json!([{"name": "work", "mountPath": "/home/runner/_work"}])
    );
    assert_eq!(names(&spec["volumes"]), ["work"]);
    let claim = &spec["volumes"][0]["ephemeral"]["volumeClaimTemplate"]["spec"];
    assert_eq!(claim["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(claim["resources"]["requests"]["storage"], "1Gi");

    let r = render(with(
        json!({"containerMode": {"type": "kubernetes", "kubernetesModeWorkVolumeClaim": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "dynamic-blob-storage", "resources": {"requests": {"storage": "5Gi"}}
        }}}),
    ));
    let claim = &pod_spec(&r)["volumes"][0]["ephemeral"]["volumeClaimTemplate"]["spec"];
    assert_eq!(claim["storageClassName"], "dynamic-blob-storage");
    assert_eq!(claim["resources"]["requests"]["storage"], "5Gi");
}

#[test]
fn kubernetes_volumes_order() {
    let r = render(with(
        json!({"containerMode": {"type": "kubernetes"}, "template": {"spec": {
            "containers": [{"name": "runner", "image": RUNNER_IMAGE}],
            "volumes": [
                {"name": "foo", "emptyDir": {}},
                {"name": "bar", "emptyDir": {}},
                {"name": "work", "hostPath": {"path": "/data", "type": "Directory"}}
            ]
        }}}),
    ));
    let spec = pod_spec(&r);
    assert_eq!(names(&spec["volumes"]), ["work", "foo", "bar"]);
    assert_eq!(spec["volumes"][0]["hostPath"]["path"], "/data");
}

#[test]
fn kubernetes_merges_user_runner_settings() {
    let r = render(with(
        json!({"containerMode": {"type": "kubernetes"}, "template": {"spec": {
            "containers": [
                {"name": "runner", "image": RUNNER_IMAGE,
                 "env": [{"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/k8s/custom.js"}, {"name": "MY_VAR", "value": "x"}],
                 "volumeMounts": [{"name": "other", "mountPath": "/other"}]},
                {"name": "sidecar", "image": "busybox"}
            ]
        }}}),
    ));
    let spec = pod_spec(&r);
    assert_eq!(names(&spec["containers"]), ["runner", "sidecar"]);
    let runner = &spec["containers"][0];
    assert_eq!(
        names(&runner["env"]),
        [
            "ACTIONS_RUNNER_CONTAINER_HOOKS",
            "MY_VAR",
            "ACTIONS_RUNNER_POD_NAME",
            "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER"
        ]
    );
    assert_eq!(
        env_value(runner, "ACTIONS_RUNNER_CONTAINER_HOOKS").expect("env")["value"],
        "/k8s/custom.js"
    );
    assert_eq!(names(&runner["volumeMounts"]), ["other", "work"]);
}

#[test]
fn kubernetes_novolume_defaults() {
    let r = render(with(
        json!({"containerMode": {"type": "kubernetes-novolume"}}),
    ));
    let spec = pod_spec(&r);
    let runner = &spec["containers"][0];
    assert_eq!(
        runner["env"],
        json!([
            {"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/home/runner/k8s-novolume/index.js"},
            {"name": "ACTIONS_RUNNER_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER", "value": "true"},
            {"name": "ACTIONS_RUNNER_IMAGE", "value": RUNNER_IMAGE}
        ])
    );
    assert_eq!(runner["volumeMounts"], json!([]));
    assert_eq!(spec["volumes"], json!([]));
}

#[test]
fn kubernetes_novolume_keeps_user_volumes_and_mounts() {
    let r = render(with(
        json!({"containerMode": {"type": "kubernetes-novolume"}, "template": {"spec": {
            "containers": [{"name": "runner", "image": RUNNER_IMAGE, "volumeMounts": [{"name": "test-volume", "mountPath": "/test/path"}]}],
            "volumes": [{"name": "test-volume", "emptyDir": {}}]
        }}}),
    ));
    let spec = pod_spec(&r);
    assert_eq!(
        spec["volumes"],
        json!([{"name": "test-volume", "emptyDir": {}}])
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        json!([{"name": "test-volume", "mountPath": "/test/path"}])
    );
}

#[test]
fn default_mode_extra_containers_and_pod_fields() {
    let r = render(with(json!({"template": {"spec": {
        "dnsPolicy": "ClusterFirst",
        "dnsConfig": {"nameservers": ["192.0.2.1"]},
        "nodeSelector": {"disk": "ssd"},
        "containers": [
            {"name": "runner", "image": RUNNER_IMAGE, "command": ["/home/runner/run.sh"],
             "env": [{"name": "RUNNER_ENV", "value": "runner_env"}],
             "resources": {"limits": {"cpu": "1"}},
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            {"name": "other", "image": "other-image", "env": [{"name": "OTHER_ENV", "value": "other_env"}]}
        ],
        "volumes": [{"name": "work", "emptyDir": {}}]
    }}})));
    let spec = pod_spec(&r);
    assert_eq!(names(&spec["containers"]), ["runner", "other"]);
    let runner = &spec["containers"][0];
    assert_eq!(
        runner["env"],
        json!([{"name": "RUNNER_ENV", "value": "runner_env"}])
    );
    assert_eq!(runner["resources"]["limits"]["cpu"], "1");
    assert_eq!(
        runner["volumeMounts"],
        json!([{"name": "work", "mountPath": "/work"}])
    );
    assert_eq!(spec["containers"][1]["env"][0]["value"], "other_env");
    assert_eq!(spec["volumes"], json!([{"name": "work", "emptyDir": {}}]));
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["dnsConfig"]["nameservers"], json!(["192.0.2.1"]));
    assert_eq!(spec["nodeSelector"]["disk"], "ssd");
}

#[test]
fn restart_policy() {
    assert_eq!(pod_spec(&render(base()))["restartPolicy"], "Never");
    let r = render(with(
        json!({"template": {"spec": {"restartPolicy": "Always"}}}),
    ));
    assert_eq!(pod_spec(&r)["restartPolicy"], "Always");
}

#[test]
fn default_values_leave_runner_env_and_mounts_out() {
    let runner = pod_spec(&render(base()))["containers"][0].clone();
    assert!(runner.get("env").is_none());
    assert!(runner.get("volumeMounts").is_none());
}

#[test]
fn tls_with_runner_mount_path_in_every_mode() {
    let path = "/runner/mount/path/cert.pem";
    for mode in ["", "dind", "kubernetes", "kubernetes-novolume"] {
        let r = render(with(json!({
            "containerMode": {"type": mode},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "certs-configmap", "key": "cert.pem"}}, "runnerMountPath": "/runner/mount/path/"}
        })));
        let a = ars(&r);
        assert_eq!(
            a["spec"]["githubServerTLS"],
            json!({"certificateFrom": {"configMapKeyRef": {"name": "certs-configmap", "key": "cert.pem"}}}),
            "{mode}"
        );
        let spec = &a["spec"]["template"]["spec"];
        assert_eq!(
            spec["volumes"][0],
            json!({"name": "github-server-tls-cert", "configMap": {"name": "certs-configmap", "items": [{"key": "cert.pem", "path": "cert.pem"}]}}),
            "{mode}"
        );
        let runner = &spec["containers"][0];
        assert_eq!(runner["name"], "runner");
        let mounts = runner["volumeMounts"].as_array().expect("mounts");
        assert!(
            mounts.contains(
                &json!({"name": "github-server-tls-cert", "mountPath": path, "subPath": "cert.pem"})
            ),
            "{mode}: {mounts:?}"
        );
        assert_eq!(
            env_value(runner, "NODE_EXTRA_CA_CERTS").expect("env")["value"],
            path,
            "{mode}"
        );
        assert_eq!(
            env_value(runner, "RUNNER_UPDATE_CA_CERTS").expect("env")["value"],
            "1",
            "{mode}"
        );
    }
}

#[test]
fn tls_without_runner_mount_path_injects_nothing() {
    for mode in ["", "dind", "kubernetes", "kubernetes-novolume"] {
        let r = render(with(json!({
            "containerMode": {"type": mode},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "certs-configmap", "key": "cert.pem"}}}
        })));
        let a = ars(&r);
        assert!(a["spec"].get("githubServerTLS").is_some(), "{mode}");
        let spec = &a["spec"]["template"]["spec"];
        let text = spec.to_string();
        assert!(!text.contains("github-server-tls-cert"), "{mode}");
        assert!(!text.contains("NODE_EXTRA_CA_CERTS"), "{mode}");
        assert!(!text.contains("RUNNER_UPDATE_CA_CERTS"), "{mode}");
    }
}

#[test]
fn tls_keeps_user_ca_env() {
    let r = render(with(json!({
        "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "c", "key": "ca.crt"}}, "runnerMountPath": "/certs"},
        "template": {"spec": {"containers": [{"name": "runner", "image": RUNNER_IMAGE, "env": [{"name": "NODE_EXTRA_CA_CERTS", "value": "/mine.pem"}]}]}}
    })));
    let runner = pod_spec(&r)["containers"][0].clone();
    assert_eq!(
        names(&runner["env"]),
        ["NODE_EXTRA_CA_CERTS", "RUNNER_UPDATE_CA_CERTS"]
    );
    assert_eq!(
        env_value(&runner, "NODE_EXTRA_CA_CERTS").expect("env")["value"],
        "/mine.pem"
    );
    assert_eq!(runner["volumeMounts"][0]["mountPath"], "/certs/ca.crt");
}

// --- labels, annotations, hash, namespace --------------------------------------------------

#[test]
fn values_hash_annotation() {
    let hash = |v: Value| {
        ars(&render(v))["metadata"]["annotations"]["actions.github.com/values-hash"]
            .as_str()
            .expect("hash")
            .to_string()
    };
    let first = hash(base());
    assert!(!first.is_empty() && first.len() <= 63, "{first}");
    assert_eq!(first, hash(base()), "stable for the same values");
    assert_ne!(
        first,
        hash(with(json!({"minRunners": 1}))),
        "changes with the values"
    );
}

#[test]
fn custom_labels_land_everywhere_and_reserved_ones_win() {
    let r = render(with(json!({
        "containerMode": {"type": "kubernetes"},
        "labels": {"argocd.argoproj.io/sync-wave": "\"1\"", "app.kubernetes.io/part-of": "not-gha-rs", "app.kubernetes.io/component": "mine", "actions.github.com/custom": "x"},
        "resourceMeta": {
            "autoscalingRunnerSet": {"labels": {"ars": "yes"}},
            "githubConfigSecret": {"labels": {"secret": "yes"}},
            "managerRole": {"labels": {"managerRole": "yes"}},
            "managerRoleBinding": {"labels": {"managerRoleBinding": "yes"}},
            "kubernetesModeRole": {"labels": {"kubeRole": "yes"}},
            "kubernetesModeRoleBinding": {"labels": {"kubeRoleBinding": "yes"}},
            "kubernetesModeServiceAccount": {"labels": {"kubeSa": "yes"}},
            "autoscalingListener": {"labels": {"listener": "yes"}},
            "listenerServiceAccount": {"labels": {"lsa": "yes"}},
            "listenerRole": {"labels": {"lrole": "yes"}},
            "listenerRoleBinding": {"labels": {"lrb": "yes"}},
            "listenerConfigSecret": {"labels": {"lcs": "yes"}},
            "ephemeralRunnerSet": {"labels": {"ers": "yes"}},
            "ephemeralRunner": {"labels": {"er": "yes"}},
            "ephemeralRunnerConfigSecret": {"labels": {"ercs": "yes"}}
        }
    })));
    let kube = format!("{FULL}-kube-mode");
    let manager = format!("{FULL}-manager");
    for (kind, name, own) in [
        ("AutoscalingRunnerSet", RELEASE.to_string(), "ars"),
        ("Secret", format!("{FULL}-github-secret"), "secret"),
        ("Role", manager.clone(), "managerRole"),
        ("RoleBinding", manager.clone(), "managerRoleBinding"),
        ("Role", kube.clone(), "kubeRole"),
        ("RoleBinding", kube.clone(), "kubeRoleBinding"),
        ("ServiceAccount", kube.clone(), "kubeSa"),
    ] {
        let o = r.get(kind, &name).expect("object");
        let l = &o["metadata"]["labels"];
        assert_eq!(l["argocd.argoproj.io/sync-wave"], "\"1\"", "{kind}/{name}");
        assert_eq!(l[own], "yes", "{kind}/{name}");
        assert_eq!(l["app.kubernetes.io/part-of"], "gha-rs", "{kind}/{name}");
        assert!(
            l.get("actions.github.com/custom").is_none(),
            "{kind}/{name}"
        );
        assert_ne!(l["app.kubernetes.io/component"], "mine", "{kind}/{name}");
    }
    let spec = ars(&r)["spec"].clone();
    for (field, key) in [
        ("autoscalingListener", "listener"),
        ("listenerServiceAccountMetadata", "lsa"),
        ("listenerRoleMetadata", "lrole"),
        ("listenerRoleBindingMetadata", "lrb"),
        ("listenerConfigSecretMetadata", "lcs"),
        ("ephemeralRunnerSetMetadata", "ers"),
        ("ephemeralRunnerMetadata", "er"),
        ("ephemeralRunnerConfigSecretMetadata", "ercs"),
    ] {
        assert_eq!(spec[field]["labels"][key], "yes", "{field}");
    }
    let np = render(with(
        json!({"resourceMeta": {"noPermissionServiceAccount": {"labels": {"np": "yes"}}}}),
    ));
    let sa = np
        .get("ServiceAccount", &format!("{FULL}-no-permission"))
        .expect("sa");
    assert_eq!(sa["metadata"]["labels"]["np"], "yes");
}

#[test]
fn custom_annotations_land_everywhere() {
    let r = render(with(json!({
        "containerMode": {"type": "kubernetes"},
        "annotations": {"actions.github.com/vault": "azure_key_vault", "global": "yes"},
        "resourceMeta": {
            "autoscalingRunnerSet": {"annotations": {"ars": "yes", "actions.github.com/cleanup-manager-role-name": "hijack", "actions.github.com/values-hash": "fake"}},
            "githubConfigSecret": {"annotations": {"secret": "yes"}},
            "managerRole": {"annotations": {"managerRole": "yes"}},
            "managerRoleBinding": {"annotations": {"managerRoleBinding": "yes"}},
            "kubernetesModeRole": {"annotations": {"kubeRole": "yes"}},
            "kubernetesModeRoleBinding": {"annotations": {"kubeRoleBinding": "yes"}},
            "kubernetesModeServiceAccount": {"annotations": {"kubeSa": "yes"}},
            "ephemeralRunner": {"annotations": {"er": "yes"}}
        }
    })));
    let kube = format!("{FULL}-kube-mode");
    let manager = format!("{FULL}-manager");
    for (kind, name, own) in [
        ("AutoscalingRunnerSet", RELEASE.to_string(), "ars"),
        ("Secret", format!("{FULL}-github-secret"), "secret"),
        ("Role", manager.clone(), "managerRole"),
        ("RoleBinding", manager.clone(), "managerRoleBinding"),
        ("Role", kube.clone(), "kubeRole"),
        ("RoleBinding", kube.clone(), "kubeRoleBinding"),
        ("ServiceAccount", kube.clone(), "kubeSa"),
    ] {
        let a = &r.get(kind, &name).expect("object")["metadata"]["annotations"];
        assert_eq!(a["global"], "yes", "{kind}/{name}");
        assert_eq!(a[own], "yes", "{kind}/{name}");
    }
    let a = ars(&r);
    let ann = &a["metadata"]["annotations"];
    assert_eq!(ann["actions.github.com/vault"], "azure_key_vault");
    assert_eq!(
        ann["actions.github.com/cleanup-manager-role-name"], manager,
        "users cannot redirect cleanup"
    );
    assert_ne!(ann["actions.github.com/values-hash"], "fake");
    assert_eq!(
        a["spec"]["ephemeralRunnerMetadata"]["annotations"]["er"],
        "yes"
    );
}

#[test]
fn namespace_override_applies_to_every_object() {
    for mode in ["", "dind", "kubernetes", "kubernetes-novolume"] {
        let r = render(with(
            json!({"namespaceOverride": "test-namespace-override", "containerMode": {"type": mode}}),
        ));
        assert!(r.manifests.len() >= 5, "{mode}");
        for o in r.objects() {
            assert_eq!(
                o["metadata"]["namespace"], "test-namespace-override",
                "{mode}: {}",
                o["metadata"]["name"]
            );
        }
        assert_eq!(
            ars(&r)["metadata"]["labels"]["actions.github.com/scale-set-namespace"],
            "test-namespace-override"
        );
    }
}

#[test]
fn wrong_values_fail_with_the_value_named() {
    for (values, needle) in [
        (
            json!({"containerMode": {"type": "docker"}}),
            "/containerMode/type",
        ),
        (json!({"githubConfigSecret": 5}), "/githubConfigSecret"),
        (json!({"scaleSetLabels": "linux"}), "/scaleSetLabels"),
        (
            json!({"proxy": {"http": {"credentialSecretRef": "s"}}}),
            "/proxy/http",
        ),
        (
            json!({"githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "x"}}}}),
            "/githubServerTLS/certificateFrom/configMapKeyRef",
        ),
        (
            json!({"resourceMeta": {"autoscalingRunnerSett": {}}}),
            "/resourceMeta",
        ),
        (
            json!({"template": {"spec": {"containers": [{"image": "x"}]}}}),
            "/template/spec/containers/0",
        ),
        (
            json!({"githubServerTLS": {"runnerMountPath": "/certs"}}),
            "githubServerTLS.runnerMountPath needs",
        ),
    ] {
        let err = render_err(with(values.clone()));
        assert!(err.contains(needle), "{values}: {err}");
    }
}

#[test]
fn notes_name_the_scale_set() {
    assert!(render(base()).notes.contains("runs-on: test-runners"));
}
