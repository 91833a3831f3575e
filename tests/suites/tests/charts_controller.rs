//! The gha-runner-scale-set-controller chart rendered with real Helm (the cases of ARC's chart
//! tests; docs/architecture.md#charts).

use serde_json::{Value, json};
use suites::helm::{Chart, Render, Rendered};

const RELEASE: &str = "test-arc";
const NS: &str = "arc-system";
const FULLNAME: &str = "test-arc-gha-rs-controller";

fn render(values: Value) -> Rendered {
    Render::new(Chart::Controller, RELEASE, NS)
        .values(values)
        .render()
        .expect("render")
}

fn render_err(values: Value) -> String {
    Render::new(Chart::Controller, RELEASE, NS)
        .values(values)
        .render_err()
        .expect("render should fail")
}

fn manager(r: &Rendered) -> Value {
    let d = r.single("Deployment").expect("deployment");
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    containers[0].clone()
}

fn args(r: &Rendered) -> Vec<String> {
    manager(r)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn rules(obj: &Value) -> Vec<(String, String, Vec<String>)> {
    obj["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            let strs = |v: &Value| -> Vec<String> {
                v.as_array()
                    .expect("list")
                    .iter()
                    .map(|s| s.as_str().expect("str").to_string())
                    .collect()
            };
            let groups = strs(&r["apiGroups"]);
            let resources = strs(&r["resources"]);
            assert_eq!(groups.len(), 1);
            assert_eq!(resources.len(), 1);
            (groups[0].clone(), resources[0].clone(), strs(&r["verbs"]))
        })
        .collect()
}

fn has_rule(obj: &Value, group: &str, resource: &str, verbs: &[&str]) -> bool {
    rules(obj).iter().any(|(g, r, v)| {
        let mut got = v.clone();
        got.sort();
        let mut want: Vec<String> = verbs.iter().map(|s| s.to_string()).collect();
        want.sort();
        g == group && r == resource && got == want
    })
}

fn subject_is_controller(binding: &Value, sa: &str, ns: &str) {
    let subjects = binding["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], sa);
    assert_eq!(subjects[0]["namespace"], ns);
}

#[test]
fn service_account_default_name_and_annotations() {
    let r = render(json!({"serviceAccount": {"annotations": {"foo": "bar"}}}));
    let sa = r.get("ServiceAccount", FULLNAME).expect("sa");
    assert_eq!(sa["metadata"]["namespace"], NS);
    assert_eq!(sa["metadata"]["annotations"]["foo"], "bar");
    assert_eq!(
        sa["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "gha-rs-controller"
    );
}

#[test]
fn service_account_name_override() {
    let r = render(json!({"serviceAccount": {"name": "test-arc"}}));
    assert!(r.find("ServiceAccount", "test-arc").is_some());
    let d = r.single("Deployment").expect("deployment");
    assert_eq!(
        d["spec"]["template"]["spec"]["serviceAccountName"],
        "test-arc"
    );
    assert_eq!(
        d["metadata"]["labels"]["actions.github.com/controller-service-account-name"],
        "test-arc"
    );
}

#[test]
fn service_account_named_default_is_refused() {
    let err = render_err(json!({"serviceAccount": {"name": "default"}}));
    assert!(
        err.contains("serviceAccount.name cannot be set to 'default'"),
        "{err}"
    );
}

#[test]
fn service_account_not_created() {
    let r = render(json!({"serviceAccount": {"create": false, "name": "overwritten"}}));
    assert!(r.of_kind("ServiceAccount").is_empty());
    let d = r.single("Deployment").expect("deployment");
    assert_eq!(
        d["spec"]["template"]["spec"]["serviceAccountName"],
        "overwritten"
    );
}

#[test]
fn service_account_not_created_requires_a_name() {
    let err = render_err(json!({"serviceAccount": {"create": false}}));
    assert!(
        err.contains("serviceAccount.name must be set if serviceAccount.create is false"),
        "{err}"
    );
}

#[test]
fn cluster_role_and_binding_by_default() {
    let r = render(json!({}));
    let cr = r.get("ClusterRole", FULLNAME).expect("cluster role");
    assert!(cr["metadata"].get("namespace").is_none());
    assert_eq!(rules(cr).len(), 16);
    for res in [
        "autoscalingrunnersets",
        "autoscalinglisteners",
        "ephemeralrunnersets",
        "ephemeralrunners",
    ] {
        assert!(has_rule(
            cr,
            "actions.github.com",
            res,
            &[
                "create", "delete", "get", "list", "patch", "update", "watch"
            ]
        ));
        assert!(has_rule(
            cr,
            "actions.github.com",
            &format!("{res}/finalizers"),
            &["patch", "update"]
        ));
        assert!(has_rule(
            cr,
            "actions.github.com",
            &format!("{res}/status"),
            &["get", "patch", "update"]
        ));
    }
    assert!(has_rule(cr, "", "pods", &["list", "watch"]));
    assert!(has_rule(cr, "", "serviceaccounts", &["list", "watch"]));
    assert!(has_rule(
        cr,
        "rbac.authorization.k8s.io",
        "rolebindings",
        &["list", "watch"]
    ));
    assert!(has_rule(
        cr,
        "rbac.authorization.k8s.io",
        "roles",
        &["list", "watch", "patch"]
    ));
    assert!(
        !rules(cr)
            .iter()
            .any(|(_, res, _)| res == "secrets" || res == "configmaps"),
        "no cluster-wide secret or configmap access"
    );

    let crb = r.get("ClusterRoleBinding", FULLNAME).expect("binding");
    assert_eq!(crb["roleRef"]["kind"], "ClusterRole");
    assert_eq!(crb["roleRef"]["name"], FULLNAME);
    subject_is_controller(crb, FULLNAME, NS);

    assert!(!r.has_source("manager_single_namespace_controller_role.yaml"));
    assert!(!r.has_source("manager_single_namespace_watch_role.yaml"));
    assert!(!r.has_source("manager_single_namespace_controller_role_binding.yaml"));
    assert!(!r.has_source("manager_single_namespace_watch_role_binding.yaml"));
}

#[test]
fn listener_role_and_binding() {
    let r = render(json!({}));
    let role = r
        .get("Role", &format!("{FULLNAME}-listener"))
        .expect("role");
    assert_eq!(role["metadata"]["namespace"], NS);
    let rs = rules(role);
    let order: Vec<&str> = rs.iter().map(|(_, res, _)| res.as_str()).collect();
    assert_eq!(
        order,
        [
            "pods",
            "pods/status",
            "secrets",
            "serviceaccounts",
            "events"
        ]
    );
    assert!(has_rule(
        role,
        "events.k8s.io",
        "events",
        &["create", "patch"]
    ));
    assert!(has_rule(role, "", "pods", &["create", "delete", "get"]));
    assert!(has_rule(role, "", "pods/status", &["get"]));
    assert!(has_rule(
        role,
        "",
        "secrets",
        &["create", "delete", "get", "patch", "update"]
    ));
    assert!(has_rule(
        role,
        "",
        "serviceaccounts",
        &["create", "delete", "get", "patch", "update"]
    ));

    let rb = r
        .get("RoleBinding", &format!("{FULLNAME}-listener"))
        .expect("binding");
    assert_eq!(rb["metadata"]["namespace"], NS);
    assert_eq!(rb["roleRef"]["kind"], "Role");
    assert_eq!(rb["roleRef"]["name"], format!("{FULLNAME}-listener"));
    subject_is_controller(rb, FULLNAME, NS);
}

#[test]
fn default_deployment() {
    let r = render(json!({"image": {"tag": "dev"}}));
    let d = r.get("Deployment", FULLNAME).expect("deployment");
    let labels = &d["metadata"]["labels"];
    assert_eq!(d["metadata"]["namespace"], NS);
    assert_eq!(labels["helm.sh/chart"], "gha-rs-controller-0.14.2");
    assert_eq!(labels["app.kubernetes.io/name"], "gha-rs-controller");
    assert_eq!(labels["app.kubernetes.io/instance"], RELEASE);
    assert_eq!(labels["app.kubernetes.io/namespace"], NS);
    assert_eq!(labels["app.kubernetes.io/version"], "0.14.2");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(labels["app.kubernetes.io/part-of"], "gha-rs-controller");
    assert_eq!(
        labels["actions.github.com/controller-service-account-namespace"],
        NS
    );
    assert_eq!(
        labels["actions.github.com/controller-service-account-name"],
        FULLNAME
    );
    assert!(
        labels
            .get("actions.github.com/controller-watch-single-namespace")
            .is_none()
    );

    assert_eq!(d["spec"]["replicas"], 1);
    let selector = &d["spec"]["selector"]["matchLabels"];
    assert_eq!(selector.as_object().expect("selector").len(), 3);
    assert_eq!(selector["app.kubernetes.io/name"], "gha-rs-controller");
    assert_eq!(selector["app.kubernetes.io/instance"], RELEASE);
    assert_eq!(selector["app.kubernetes.io/namespace"], NS);

    let pod = &d["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "gha-rs-controller"
    );
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/component"],
        "controller-manager"
    );
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"],
        "gha-rs-controller"
    );
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    assert_eq!(
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "manager"
    );

    let spec = &pod["spec"];
    assert!(spec.get("imagePullSecrets").is_none());
    assert_eq!(spec["serviceAccountName"], FULLNAME);
    assert!(spec.get("securityContext").is_none());
    assert!(spec.get("priorityClassName").is_none());
    assert_eq!(spec["terminationGracePeriodSeconds"], 10);
    assert_eq!(spec["volumes"], json!([{"name": "tmp", "emptyDir": {}}]));
    for k in [
        "nodeSelector",
        "affinity",
        "tolerations",
        "topologySpreadConstraints",
    ] {
        assert!(spec.get(k).is_none(), "{k}");
    }

    let c = manager(&r);
    assert_eq!(c["name"], "manager");
    assert_eq!(
        c["image"],
        "ghcr.io/arc-rs/gha-runner-scale-set-controller:dev"
    );
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["command"], json!(["/manager"]));
    let mut got = args(&r);
    got.sort();
    let mut want = vec![
        "--auto-scaling-runner-set-only",
        "--log-level=debug",
        "--log-format=text",
        "--metrics-addr=0",
        "--listener-metrics-addr=0",
        "--listener-metrics-endpoint=",
        "--runner-max-concurrent-reconciles=2",
        "--update-strategy=immediate",
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        c["env"],
        json!([
            {"name": "CONTROLLER_MANAGER_CONTAINER_IMAGE", "value": "ghcr.io/arc-rs/gha-runner-scale-set-controller:dev"},
            {"name": "CONTROLLER_MANAGER_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
        ])
    );
    assert!(c.get("resources").is_none());
    assert!(c.get("securityContext").is_none());
    assert!(c.get("ports").is_none());
    assert!(c.get("livenessProbe").is_none());
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "tmp", "mountPath": "/tmp"}])
    );
}

#[test]
fn default_image_tag_is_app_version() {
    let r = render(json!({}));
    assert_eq!(
        manager(&r)["image"],
        "ghcr.io/arc-rs/gha-runner-scale-set-controller:0.14.2"
    );
}

#[test]
fn customized_deployment() {
    let r = render(json!({
        "labels": {"foo": "bar", "github": "actions"},
        "nameOverride": "gha-rs-controller-override",
        "fullnameOverride": "gha-rs-controller-fullname-override",
        "env": [{"name": "ENV_VAR_NAME_1", "value": "ENV_VAR_VALUE_1"}],
        "podAnnotations": {"foo": "bar"},
        "podLabels": {"pod-label": "yes"},
        "imagePullSecrets": [{"name": "dockerhub"}],
        "image": {"pullPolicy": "Always", "tag": "dev"},
        "podSecurityContext": {"fsGroup": 1000},
        "securityContext": {"runAsUser": 1000, "runAsNonRoot": true, "readOnlyRootFilesystem": true},
        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
        "priorityClassName": "test-priority-class",
        "volumes": [{"name": "customMount", "configMap": {"name": "my-configmap"}}],
        "volumeMounts": [{"name": "customMount", "mountPath": "/my/mount/path"}],
        "nodeSelector": {"foo": "bar"},
        "tolerations": [{"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "foo", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"foo": "bar"}}}],
        "flags": {"logLevel": "info", "logFormat": "json"}
    }));
    let name = "gha-rs-controller-fullname-override";
    let d = r.get("Deployment", name).expect("deployment");
    let labels = &d["metadata"]["labels"];
    assert_eq!(labels["foo"], "bar");
    assert_eq!(labels["github"], "actions");
    assert_eq!(
        labels["app.kubernetes.io/name"],
        "gha-rs-controller-override"
    );
    assert_eq!(
        labels["actions.github.com/controller-service-account-name"],
        name
    );
    let pod = &d["spec"]["template"];
    assert_eq!(pod["metadata"]["annotations"]["foo"], "bar");
    assert_eq!(
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "manager"
    );
    assert_eq!(pod["metadata"]["labels"]["pod-label"], "yes");
    let spec = &pod["spec"];
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "dockerhub"}]));
    assert_eq!(spec["securityContext"]["fsGroup"], 1000);
    assert_eq!(spec["priorityClassName"], "test-priority-class");
    assert_eq!(spec["volumes"][0]["name"], "tmp");
    assert_eq!(spec["volumes"][1]["name"], "customMount");
    assert_eq!(spec["nodeSelector"]["foo"], "bar");
    assert_eq!(spec["tolerations"][0]["key"], "foo");
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["values"],
        json!(["bar"])
    );
    assert_eq!(spec["topologySpreadConstraints"][0]["topologyKey"], "foo");

    let c = manager(&r);
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["env"].as_array().expect("env").len(), 3);
    assert_eq!(
        c["env"][2],
        json!({"name": "ENV_VAR_NAME_1", "value": "ENV_VAR_VALUE_1"})
    );
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["securityContext"]["runAsUser"], 1000);
    assert_eq!(
        c["volumeMounts"][1],
        json!({"name": "customMount", "mountPath": "/my/mount/path"})
    );
    let a = args(&r);
    for want in [
        "--auto-scaler-image-pull-secrets=dockerhub",
        "--log-level=info",
        "--log-format=json",
    ] {
        assert!(a.contains(&want.to_string()), "{want} in {a:?}");
    }
    let sa = r.get("ServiceAccount", name).expect("sa");
    assert_eq!(sa["metadata"]["labels"]["foo"], "bar");
}

#[test]
fn leader_election_with_two_replicas() {
    let r = render(json!({"replicaCount": 2}));
    let role = r
        .get("Role", &format!("{FULLNAME}-leader-election"))
        .expect("role");
    assert_eq!(role["metadata"]["namespace"], NS);
    assert!(has_rule(
        role,
        "coordination.k8s.io",
        "leases",
        &["get", "watch", "list", "delete", "update", "create"]
    ));
    assert!(has_rule(role, "", "events", &["create", "patch"]));
    let rb = r
        .get("RoleBinding", &format!("{FULLNAME}-leader-election"))
        .expect("binding");
    assert_eq!(rb["roleRef"]["name"], format!("{FULLNAME}-leader-election"));
    subject_is_controller(rb, FULLNAME, NS);
    let d = r.single("Deployment").expect("deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    let a = args(&r);
    assert!(a.contains(&"--enable-leader-election".to_string()));
    assert!(a.contains(&format!("--leader-election-id={FULLNAME}")));
}

#[test]
fn no_leader_election_with_one_replica() {
    let r = render(json!({}));
    assert!(
        r.find("Role", &format!("{FULLNAME}-leader-election"))
            .is_none()
    );
    assert!(!args(&r).iter().any(|a| a.contains("leader-election")));
}

#[test]
fn image_pull_secrets_become_listener_flags() {
    let r = render(json!({"imagePullSecrets": [{"name": "dockerhub"}, {"name": "ghcr"}]}));
    let a = args(&r);
    let flags: Vec<&String> = a
        .iter()
        .filter(|a| a.starts_with("--auto-scaler-image-pull-secrets="))
        .collect();
    assert_eq!(
        flags,
        [
            "--auto-scaler-image-pull-secrets=dockerhub",
            "--auto-scaler-image-pull-secrets=ghcr"
        ]
    );
}

#[test]
fn watch_single_namespace() {
    let r = render(json!({"flags": {"watchSingleNamespace": "demo"}}));
    let d = r.single("Deployment").expect("deployment");
    assert_eq!(
        d["metadata"]["labels"]["actions.github.com/controller-watch-single-namespace"],
        "demo"
    );
    let a = args(&r);
    assert!(a.contains(&"--watch-single-namespace=demo".to_string()));
    assert_eq!(a.len(), 9, "{a:?}");

    assert!(r.of_kind("ClusterRole").is_empty());
    assert!(r.of_kind("ClusterRoleBinding").is_empty());

    let own = r
        .get("Role", &format!("{FULLNAME}-single-namespace"))
        .expect("own ns role");
    assert_eq!(own["metadata"]["namespace"], NS);
    assert_eq!(rules(own).len(), 10);
    assert!(has_rule(
        own,
        "actions.github.com",
        "autoscalinglisteners",
        &[
            "create", "delete", "get", "list", "patch", "update", "watch"
        ]
    ));
    assert!(has_rule(
        own,
        "rbac.authorization.k8s.io",
        "roles",
        &["list", "watch"]
    ));
    let watch = r
        .get("Role", &format!("{FULLNAME}-single-namespace-watch"))
        .expect("watch role");
    assert_eq!(watch["metadata"]["namespace"], "demo");
    assert_eq!(rules(watch).len(), 14);
    assert!(has_rule(
        watch,
        "actions.github.com",
        "autoscalingrunnersets",
        &[
            "create", "delete", "get", "list", "patch", "update", "watch"
        ]
    ));
    assert!(has_rule(
        watch,
        "actions.github.com",
        "autoscalinglisteners",
        &["list", "watch"]
    ));
    assert!(has_rule(
        watch,
        "rbac.authorization.k8s.io",
        "roles",
        &["list", "watch", "patch"]
    ));

    for (name, ns) in [
        (format!("{FULLNAME}-single-namespace"), NS),
        (format!("{FULLNAME}-single-namespace-watch"), "demo"),
    ] {
        let rb = r.get("RoleBinding", &name).expect("binding");
        assert_eq!(rb["metadata"]["namespace"], ns);
        assert_eq!(rb["roleRef"]["name"], name);
        assert_eq!(rb["roleRef"]["kind"], "Role");
        subject_is_controller(rb, FULLNAME, NS);
    }
}

#[test]
fn env_entries_in_order() {
    let env = json!([
        {"name": "ENV_VAR_NAME_1", "value": "ENV_VAR_VALUE_1"},
        {"name": "ENV_VAR_NAME_2", "valueFrom": {"secretKeyRef": {"key": "ENV_VAR_NAME_2", "name": "secret-name", "optional": true}}},
        {"name": "ENV_VAR_NAME_3", "value": ""},
        {"name": "ENV_VAR_NAME_4"}
    ]);
    let r = render(json!({"env": env}));
    let got = manager(&r)["env"].as_array().expect("env").clone();
    assert_eq!(got.len(), 6);
    assert_eq!(got[2..], env.as_array().expect("list")[..]);
}

#[test]
fn env_that_is_not_a_list_is_refused_by_the_schema() {
    let err = render_err(json!({"env": {"A": "b"}}));
    assert!(err.contains("/env"), "{err}");
}

#[test]
fn metrics_enabled() {
    let r = render(
        json!({"metrics": {"controllerManagerAddr": ":8080", "listenerAddr": ":8081", "listenerEndpoint": "/metrics"}}),
    );
    let c = manager(&r);
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    let a = args(&r);
    for want in [
        "--listener-metrics-addr=:8081",
        "--listener-metrics-endpoint=/metrics",
        "--metrics-addr=:8080",
    ] {
        assert_eq!(
            a.iter().filter(|x| *x == want).count(),
            1,
            "{want} once in {a:?}"
        );
    }
    assert!(!a.contains(&"--metrics-addr=0".to_string()));
}

#[test]
fn metrics_address_without_port_fails() {
    let err = render_err(
        json!({"metrics": {"controllerManagerAddr": "localhost", "listenerAddr": ":8081", "listenerEndpoint": "/metrics"}}),
    );
    assert!(
        err.contains("metrics.controllerManagerAddr must end with a numeric port"),
        "{err}"
    );
}

#[test]
fn pprof_and_health_probes() {
    let r = render(
        json!({"pprof": {"addr": ":6060"}, "flags": {"healthProbeBindAddress": ":8081", "k8sClientRateLimiterQPS": 50, "k8sClientRateLimiterBurst": 100, "rateLimiter": {"name": "typed_rate_limiter"}}}),
    );
    let c = manager(&r);
    assert_eq!(
        c["ports"],
        json!([{"name": "pprof", "containerPort": 6060, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": 8081})
    );
    assert_eq!(c["livenessProbe"]["initialDelaySeconds"], 15);
    assert_eq!(c["livenessProbe"]["periodSeconds"], 20);
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": 8081})
    );
    assert_eq!(c["readinessProbe"]["initialDelaySeconds"], 5);
    assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
    let a = args(&r);
    for want in [
        "--pprof-addr=:6060",
        "--health-probe-bind-address=:8081",
        "--k8s-client-rate-limiter-qps=50",
        "--k8s-client-rate-limiter-burst=100",
        "--workqueue-rate-limiter=typed_rate_limiter",
    ] {
        assert!(a.contains(&want.to_string()), "{want} in {a:?}");
    }
}

#[test]
fn exclude_label_propagation_prefixes() {
    let r = render(
        json!({"flags": {"excludeLabelPropagationPrefixes": ["prefix.com/", "complete.io/label"]}}),
    );
    let a = args(&r);
    assert!(a.contains(&"--exclude-label-propagation-prefix=prefix.com/".to_string()));
    assert!(a.contains(&"--exclude-label-propagation-prefix=complete.io/label".to_string()));
}

#[test]
fn update_strategy_reaches_the_manager() {
    let r = render(json!({"flags": {"updateStrategy": "eventual"}}));
    assert!(args(&r).contains(&"--update-strategy=eventual".to_string()));
    let r = render(json!({"flags": {"updateStrategy": null}}));
    assert!(!args(&r).iter().any(|a| a.starts_with("--update-strategy")));
    let r = render(json!({}));
    assert!(args(&r).contains(&"--update-strategy=immediate".to_string()));
    let err = render_err(json!({"flags": {"updateStrategy": "later"}}));
    for part in [
        "flags.updateStrategy",
        "\"later\"",
        "\"immediate\"",
        "\"eventual\"",
    ] {
        assert!(err.contains(part), "the refusal names {part}: {err}");
    }
}

#[test]
fn zero_max_concurrent_reconciles_drops_the_flag() {
    let r = render(json!({"flags": {"runnerMaxConcurrentReconciles": 0}}));
    assert!(
        !args(&r)
            .iter()
            .any(|a| a.starts_with("--runner-max-concurrent-reconciles"))
    );
}

#[test]
fn namespace_override_moves_namespaced_objects() {
    let r = render(
        json!({"namespaceOverride": "test-ns", "replicaCount": 2, "flags": {"watchSingleNamespace": "demo"}}),
    );
    for (kind, name) in [
        ("Deployment", FULLNAME.to_string()),
        ("ServiceAccount", FULLNAME.to_string()),
        ("Role", format!("{FULLNAME}-leader-election")),
        ("RoleBinding", format!("{FULLNAME}-leader-election")),
        ("Role", format!("{FULLNAME}-listener")),
        ("RoleBinding", format!("{FULLNAME}-listener")),
        ("Role", format!("{FULLNAME}-single-namespace")),
        ("RoleBinding", format!("{FULLNAME}-single-namespace")),
    ] {
        assert_eq!(
            r.get(kind, &name).expect("object")["metadata"]["namespace"],
            "test-ns",
            "{kind}/{name}"
        );
    }
    for kind in ["Role", "RoleBinding"] {
        let o = r
            .get(kind, &format!("{FULLNAME}-single-namespace-watch"))
            .expect("watch");
        assert_eq!(o["metadata"]["namespace"], "demo");
    }
    let rb = r
        .get("RoleBinding", &format!("{FULLNAME}-listener"))
        .expect("binding");
    subject_is_controller(rb, FULLNAME, "test-ns");
    let d = r.single("Deployment").expect("deployment");
    assert_eq!(
        d["metadata"]["labels"]["actions.github.com/controller-service-account-namespace"],
        "test-ns"
    );
}

#[test]
fn fullname_uses_release_name_when_it_contains_the_base_name() {
    let r = Render::new(Chart::Controller, "arc-gha-rs-controller", NS)
        .render()
        .expect("render");
    assert!(r.find("Deployment", "arc-gha-rs-controller").is_some());
}

#[test]
fn set_flags_reach_the_manager() {
    let r = Render::new(Chart::Controller, RELEASE, NS)
        .set("flags.logLevel", "warn")
        .set("replicaCount", "3")
        .render()
        .expect("render");
    assert!(args(&r).contains(&"--log-level=warn".to_string()));
    assert_eq!(r.single("Deployment").expect("d")["spec"]["replicas"], 3);
}

#[test]
fn wrong_values_fail_with_the_value_named() {
    for (values, needle) in [
        (json!({"flags": {"logLevel": "verbose"}}), "/flags/logLevel"),
        (json!({"flags": {"logFormat": "xml"}}), "/flags/logFormat"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (json!({"image": {"tag": 1.5}}), "/image/tag"),
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (
            json!({"flags": {"rateLimiter": {"name": "fast"}}}),
            "/flags/rateLimiter/name",
        ),
        (
            json!({"imagePullSecrets": ["dockerhub"]}),
            "/imagePullSecrets/0",
        ),
        (
            json!({"pprof": {"addr": "nowhere"}}),
            "pprof.addr must end with a numeric port",
        ),
        (
            json!({"flags": {"healthProbeBindAddress": "x"}}),
            "flags.healthProbeBindAddress must end with a numeric port",
        ),
    ] {
        let err = render_err(values.clone());
        assert!(err.contains(needle), "{values}: {err}");
    }
}

/// Renders from a YAML values file (as `helm install -f`), cleaning it up afterwards.
fn render_file(yaml: &str) -> anyhow::Result<Rendered> {
    let path = std::env::temp_dir().join(format!(
        "arc-rs-controller-values-{}-{}.yaml",
        std::process::id(),
        yaml.len()
    ));
    std::fs::write(&path, yaml)?;
    let result = Render::new(Chart::Controller, RELEASE, NS)
        .values_file(&path)
        .render();
    let _ = std::fs::remove_file(&path);
    result
}

#[test]
fn values_file_with_empty_keys_renders_like_the_defaults() {
    // Keys left empty in a values file (as in ARC's own values.yaml, e.g. `env:`) are null.
    let r = render_file(
        "labels: {}\nreplicaCount: 1\nenv:\nmetrics:\npprof:\nvolumes:\nnodeSelector:\n\
         flags:\n  logLevel: debug\n  watchSingleNamespace:\n  excludeLabelPropagationPrefixes:\n\
         \x20 rateLimiter:\n  healthProbeBindAddress:\n",
    )
    .expect("render");
    let defaults = render(json!({}));
    assert_eq!(args(&r), args(&defaults));
    assert_eq!(manager(&r)["env"], manager(&defaults)["env"]);
    assert!(r.get("ClusterRole", FULLNAME).is_ok());
}

#[test]
fn removed_image_block_fails_with_the_fix() {
    let err = render_err(json!({"image": null}));
    assert!(err.contains("image.repository is required"), "{err}");
}

#[test]
fn notes_name_the_release() {
    let r = render(json!({}));
    assert!(r.notes.contains(FULLNAME), "{}", r.notes);
}
