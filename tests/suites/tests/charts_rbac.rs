//! The charts' RBAC, for real: both charts are applied to the API server, then every API call
//! ARC's controller, listener and kube-mode runners make
//! (docs/architecture.md#objects-ownership-and-finalizers) is made as the chart's own
//! ServiceAccounts — with tokens from the TokenRequest API, no admin. A missing permission fails
//! with 403; so do the calls the design forbids (cluster-wide Secrets, a listener reading what it
//! should only patch).

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchParams,
};
use serde_json::{Value, json};
use suites::helm::{self, Chart, Render};
use testbed::ControlPlane;

const GROUP: &str = "actions.github.com";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1alpha1", kind), plural)
}

fn ars() -> ApiResource {
    resource("AutoscalingRunnerSet", "autoscalingrunnersets")
}
fn al() -> ApiResource {
    resource("AutoscalingListener", "autoscalinglisteners")
}
fn ers() -> ApiResource {
    resource("EphemeralRunnerSet", "ephemeralrunnersets")
}
fn er() -> ApiResource {
    resource("EphemeralRunner", "ephemeralrunners")
}

fn core(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural)
}

fn ns_api(client: &kube::Client, ns: &str, res: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, res)
}

fn all_api(client: &kube::Client, res: &ApiResource) -> Api<DynamicObject> {
    Api::all_with(client.clone(), res)
}

fn object(res: &ApiResource, name: &str, ns: &str, rest: Value) -> DynamicObject {
    let mut obj = json!({
        "apiVersion": res.api_version,
        "kind": res.kind,
        "metadata": {"name": name, "namespace": ns},
    });
    if let (Some(o), Some(r)) = (obj.as_object_mut(), rest.as_object()) {
        for (k, v) in r {
            o.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(obj).expect("dynamic object")
}

fn is_forbidden<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(e)) if e.code == 403)
}

#[track_caller]
fn allowed<T>(what: &str, result: Result<T, kube::Error>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what} must be allowed by the chart's RBAC: {e}"),
    }
}

#[track_caller]
fn forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    assert!(
        is_forbidden(&result),
        "{what} must be forbidden, got {result:?}"
    );
}

/// A watch (timeoutSeconds=1): the server authorizes it, streams, and closes after a second.
async fn watch_result(
    client: &kube::Client,
    res: &ApiResource,
    ns: Option<&str>,
) -> Result<(), kube::Error> {
    use kube::Resource;
    let path = DynamicObject::url_path(res, ns);
    let request = kube::core::Request::new(path)
        .watch(&WatchParams::default().timeout(1), "0")
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await.map(|_| ())
}

fn finalizers_patch() -> Patch<Value> {
    Patch::Merge(json!({"metadata": {"finalizers": null}}))
}

fn pod(name: &str, ns: &str, service_account: &str) -> DynamicObject {
    object(
        &core("Pod", "pods"),
        name,
        ns,
        json!({"spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": false,
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]
        }}),
    )
}

async fn install_crds(client: &kube::Client) {
    helm::ensure_crds(client).await.expect("CRDs");
}

async fn apply_chart(client: &kube::Client, render: Render) -> helm::Rendered {
    let rendered = render.render().expect("render");
    let objects: Vec<Value> = rendered.objects().cloned().collect();
    helm::apply(client, &objects).await.expect("apply chart");
    rendered
}

#[tokio::test]
async fn cluster_wide_controller_listener_and_runners_work_with_exactly_the_chart_rbac() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let admin = cp.client();
    install_crds(&admin).await;
    let c_ns = cp.test_namespace("arc-system").await.expect("ns");
    let r_ns = cp.test_namespace("arc-runners").await.expect("ns");
    let other_ns = cp.test_namespace("unrelated").await.expect("ns");
    let (c, r) = (c_ns.name(), r_ns.name());
    let release = format!("arc-{c}");
    let controller_sa = format!("{release}-gha-rs-controller");

    apply_chart(&admin, Render::new(Chart::Controller, &release, c)).await;
    let scale_set = apply_chart(
        &admin,
        Render::new(Chart::ScaleSet, "runners", r).values(json!({
            "githubConfigUrl": "https://github.com/org",
            "githubConfigSecret": {"github_token": "secret-token"},
            "controllerServiceAccount": {"name": controller_sa, "namespace": c},
            "containerMode": {"type": "kubernetes"},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}},
            "proxy": {"https": {"url": "http://proxy:3128", "credentialSecretRef": "proxy-auth"}}
        })),
    )
    .await;
    let cm: Api<DynamicObject> = ns_api(&admin, r, &core("ConfigMap", "configmaps"));
    cm.create(
        &PostParams::default(),
        &object(
            &core("ConfigMap", "configmaps"),
            "ca",
            r,
            json!({"data": {"ca.crt": "pem"}}),
        ),
    )
    .await
    .expect("ca configmap");
    let secrets_admin = ns_api(&admin, r, &core("Secret", "secrets"));
    secrets_admin
        .create(
            &PostParams::default(),
            &object(
                &core("Secret", "secrets"),
                "proxy-auth",
                r,
                json!({"stringData": {"username": "u", "password": "p"}}),
            ),
        )
        .await
        .expect("proxy secret");
    ns_api(&admin, other_ns.name(), &core("Secret", "secrets"))
        .create(
            &PostParams::default(),
            &object(
                &core("Secret", "secrets"),
                "not-yours",
                other_ns.name(),
                json!({"stringData": {"k": "v"}}),
            ),
        )
        .await
        .expect("unrelated secret");

    let ctl = cp
        .service_account_client(c, &controller_sa)
        .await
        .expect("controller identity");

    // AutoscalingRunnerSet reconciler: cached list/watch cluster-wide, finalizer and status.
    allowed(
        "list ARS cluster-wide",
        all_api(&ctl, &ars()).list(&ListParams::default()).await,
    );
    allowed(
        "watch ARS cluster-wide",
        watch_result(&ctl, &ars(), None).await,
    );
    let ars_api = ns_api(&ctl, r, &ars());
    allowed(
        "add the ARS finalizer",
        ars_api
            .patch("runners", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": ["autoscalingrunnerset.actions.github.com/finalizer"]}})))
            .await,
    );
    allowed(
        "patch ARS status",
        ars_api
            .patch_status(
                "runners",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"currentRunners": 0}})),
            )
            .await,
    );
    // Uncached reads of what the ARS references, in its namespace only.
    let ctl_secrets_r = ns_api(&ctl, r, &core("Secret", "secrets"));
    allowed(
        "get the GitHub secret",
        ctl_secrets_r.get("runners-gha-rs-github-secret").await,
    );
    allowed(
        "get the proxy credentials",
        ctl_secrets_r.get("proxy-auth").await,
    );
    allowed(
        "get the TLS configmap",
        ns_api(&ctl, r, &core("ConfigMap", "configmaps"))
            .get("ca")
            .await,
    );
    forbidden(
        "list Secrets cluster-wide",
        all_api(&ctl, &core("Secret", "secrets"))
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "get a Secret of an unrelated namespace",
        ns_api(&ctl, other_ns.name(), &core("Secret", "secrets"))
            .get("not-yours")
            .await,
    );
    forbidden(
        "list ConfigMaps cluster-wide",
        all_api(&ctl, &core("ConfigMap", "configmaps"))
            .list(&ListParams::default())
            .await,
    );

    // EphemeralRunnerSet for the ARS, and the AutoscalingListener in the controller namespace.
    let ers_api = ns_api(&ctl, r, &ers());
    allowed(
        "create ERS",
        ers_api
            .create(
                &PostParams::default(),
                &object(&ers(), "runners-abcde", r, json!({"spec": {"replicas": 0}})),
            )
            .await,
    );
    allowed(
        "patch ERS",
        ers_api
            .patch(
                "runners-abcde",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 1}})),
            )
            .await,
    );
    allowed(
        "patch ERS status",
        ers_api
            .patch_status(
                "runners-abcde",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"currentReplicas": 0}})),
            )
            .await,
    );
    allowed(
        "list ERS",
        all_api(&ctl, &ers()).list(&ListParams::default()).await,
    );
    let al_api = ns_api(&ctl, c, &al());
    let listener = "runners-754b578d-listener";
    allowed(
        "create AL",
        al_api
            .create(
                &PostParams::default(),
                &object(&al(), listener, c, json!({"spec": {}})),
            )
            .await,
    );
    allowed(
        "patch AL status",
        al_api
            .patch_status(
                listener,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {}})),
            )
            .await,
    );

    // AutoscalingListener reconciler: SA, config secret and pod in the controller namespace,
    // Role and RoleBinding in the scale set's namespace (the API server's escalation check
    // passes only if the controller itself holds every rule it grants).
    allowed(
        "create listener SA",
        ns_api(&ctl, c, &core("ServiceAccount", "serviceaccounts"))
            .create(
                &PostParams::default(),
                &object(
                    &core("ServiceAccount", "serviceaccounts"),
                    listener,
                    c,
                    json!({}),
                ),
            )
            .await,
    );
    let ctl_secrets_c = ns_api(&ctl, c, &core("Secret", "secrets"));
    allowed(
        "create listener config secret",
        ctl_secrets_c
            .create(
                &PostParams::default(),
                &object(
                    &core("Secret", "secrets"),
                    &format!("{listener}-config"),
                    c,
                    json!({"stringData": {"config.json": "{}"}}),
                ),
            )
            .await,
    );
    allowed(
        "update listener config secret",
        ctl_secrets_c
            .patch(
                &format!("{listener}-config"),
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"config.json": "{\"a\":1}"}})),
            )
            .await,
    );
    let rbac_role = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "Role"),
        "roles",
    );
    let rbac_binding = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        "rolebindings",
    );
    allowed(
        "create listener Role (no escalation)",
        ns_api(&ctl, r, &rbac_role)
            .create(
                &PostParams::default(),
                &object(&rbac_role, listener, r, json!({"rules": [
                    {"apiGroups": [GROUP], "resources": ["ephemeralrunnersets"], "resourceNames": ["runners-abcde"], "verbs": ["patch"]},
                    {"apiGroups": [GROUP], "resources": ["ephemeralrunners", "ephemeralrunners/status"], "verbs": ["patch"]}
                ]})),
            )
            .await,
    );
    allowed(
        "create listener RoleBinding",
        ns_api(&ctl, r, &rbac_binding)
            .create(
                &PostParams::default(),
                &object(&rbac_binding, listener, r, json!({
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": listener},
                    "subjects": [{"kind": "ServiceAccount", "name": listener, "namespace": c}]
                })),
            )
            .await,
    );
    let ctl_pods_c = ns_api(&ctl, c, &core("Pod", "pods"));
    allowed(
        "create listener pod",
        ctl_pods_c
            .create(&PostParams::default(), &pod(listener, c, listener))
            .await,
    );
    allowed("get listener pod", ctl_pods_c.get(listener).await);
    allowed(
        "get listener pod status",
        ctl_pods_c.get_status(listener).await,
    );
    allowed(
        "list pods cluster-wide",
        all_api(&ctl, &core("Pod", "pods"))
            .list(&ListParams::default())
            .await,
    );

    // The listener: blind patches of its ERS and of runners, nothing else.
    let lst = cp
        .service_account_client(c, listener)
        .await
        .expect("listener identity");
    let lst_ers = ns_api(&lst, r, &ers());
    allowed(
        "listener patches its ERS",
        lst_ers
            .patch(
                "runners-abcde",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"patchID": 1, "replicas": 2}})),
            )
            .await,
    );
    forbidden("listener reads its ERS", lst_ers.get("runners-abcde").await);
    forbidden(
        "listener lists ERS",
        lst_ers.list(&ListParams::default()).await,
    );

    // EphemeralRunnerSet and EphemeralRunner reconcilers: runners, JIT secrets, runner pods.
    let er_api = ns_api(&ctl, r, &er());
    allowed(
        "create ER",
        er_api
            .create(
                &PostParams::default(),
                &object(&er(), "runners-abcde-runner-1", r, json!({"spec": {}})),
            )
            .await,
    );
    allowed(
        "patch ER status",
        er_api
            .patch_status(
                "runners-abcde-runner-1",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Pending"}})),
            )
            .await,
    );
    allowed(
        "listener patches ER status",
        ns_api(&lst, r, &er())
            .patch_status(
                "runners-abcde-runner-1",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"jobRequestId": 1}})),
            )
            .await,
    );
    allowed(
        "create JIT secret",
        ctl_secrets_r
            .create(
                &PostParams::default(),
                &object(
                    &core("Secret", "secrets"),
                    "runners-abcde-runner-1",
                    r,
                    json!({"stringData": {"jitToken": "x"}}),
                ),
            )
            .await,
    );
    let ctl_pods_r = ns_api(&ctl, r, &core("Pod", "pods"));
    allowed(
        "create runner pod",
        ctl_pods_r
            .create(
                &PostParams::default(),
                &pod("runners-abcde-runner-1", r, "runners-gha-rs-kube-mode"),
            )
            .await,
    );
    allowed(
        "delete runner pod",
        ctl_pods_r
            .delete("runners-abcde-runner-1", &Default::default())
            .await,
    );
    allowed(
        "delete JIT secret",
        ctl_secrets_r
            .delete("runners-abcde-runner-1", &Default::default())
            .await,
    );
    allowed(
        "delete ER",
        er_api
            .delete("runners-abcde-runner-1", &Default::default())
            .await,
    );

    // A kube-mode runner: job pods, exec, logs, jobs, secrets in its namespace.
    let runner = cp
        .service_account_client(r, "runners-gha-rs-kube-mode")
        .await
        .expect("runner identity");
    let runner_pods = ns_api(&runner, r, &core("Pod", "pods"));
    allowed(
        "runner creates a job pod",
        runner_pods
            .create(
                &PostParams::default(),
                &pod("job-pod", r, "runners-gha-rs-kube-mode"),
            )
            .await,
    );
    allowed(
        "runner lists pods",
        runner_pods.list(&ListParams::default()).await,
    );
    let jobs =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("batch", "v1", "Job"), "jobs");
    allowed(
        "runner creates a job",
        ns_api(&runner, r, &jobs)
            .create(
                &PostParams::default(),
                &object(&jobs, "job", r, json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})),
            )
            .await,
    );
    allowed(
        "runner creates a secret",
        ns_api(&runner, r, &core("Secret", "secrets"))
            .create(
                &PostParams::default(),
                &object(
                    &core("Secret", "secrets"),
                    "job-secret",
                    r,
                    json!({"stringData": {"k": "v"}}),
                ),
            )
            .await,
    );
    forbidden(
        "runner reads configmaps",
        ns_api(&runner, r, &core("ConfigMap", "configmaps"))
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "runner touches ERS",
        ns_api(&runner, r, &ers())
            .list(&ListParams::default())
            .await,
    );

    // Deletion: the controller removes the cleanup finalizers from every chart object, in
    // ARC's order, then from the ARS.
    let kube_mode = "runners-gha-rs-kube-mode";
    for (res, name) in [
        (rbac_binding.clone(), kube_mode.to_string()),
        (rbac_role.clone(), kube_mode.to_string()),
        (
            core("ServiceAccount", "serviceaccounts"),
            kube_mode.to_string(),
        ),
        (
            core("Secret", "secrets"),
            "runners-gha-rs-github-secret".to_string(),
        ),
        (rbac_binding.clone(), "runners-gha-rs-manager".to_string()),
        (rbac_role.clone(), "runners-gha-rs-manager".to_string()),
    ] {
        let found = scale_set
            .get(&res.kind, &name)
            .expect("rendered by the chart");
        assert_eq!(
            found["metadata"]["finalizers"][0],
            "actions.github.com/cleanup-protection"
        );
        allowed(
            &format!("remove the cleanup finalizer of {}/{name}", res.kind),
            ns_api(&ctl, r, &res)
                .patch(&name, &PatchParams::default(), &finalizers_patch())
                .await,
        );
    }
    allowed(
        "remove the ARS finalizer",
        ars_api
            .patch("runners", &PatchParams::default(), &finalizers_patch())
            .await,
    );
    allowed(
        "delete the AL",
        al_api.delete(listener, &Default::default()).await,
    );
}

#[tokio::test]
async fn single_namespace_controller_is_confined_to_its_namespaces() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let admin = cp.client();
    install_crds(&admin).await;
    let c_ns = cp.test_namespace("arc-single").await.expect("ns");
    let w_ns = cp.test_namespace("arc-watched").await.expect("ns");
    let elsewhere = cp.test_namespace("arc-elsewhere").await.expect("ns");
    let (c, w) = (c_ns.name(), w_ns.name());
    let release = format!("arc-{c}");
    let controller_sa = format!("{release}-gha-rs-controller");

    apply_chart(
        &admin,
        Render::new(Chart::Controller, &release, c)
            .values(json!({"flags": {"watchSingleNamespace": w}, "replicaCount": 2})),
    )
    .await;
    apply_chart(
        &admin,
        Render::new(Chart::ScaleSet, "runners", w).values(json!({
            "githubConfigUrl": "https://github.com/org",
            "githubConfigSecret": {"github_token": "t"},
            "controllerServiceAccount": {"name": controller_sa, "namespace": c}
        })),
    )
    .await;
    let ctl = cp
        .service_account_client(c, &controller_sa)
        .await
        .expect("controller identity");

    allowed(
        "list ARS in the watched namespace",
        ns_api(&ctl, w, &ars()).list(&ListParams::default()).await,
    );
    allowed(
        "watch ARS in the watched namespace",
        watch_result(&ctl, &ars(), Some(w)).await,
    );
    forbidden(
        "list ARS cluster-wide",
        all_api(&ctl, &ars()).list(&ListParams::default()).await,
    );
    forbidden(
        "list ARS elsewhere",
        ns_api(&ctl, elsewhere.name(), &ars())
            .list(&ListParams::default())
            .await,
    );
    allowed(
        "list AL in its own namespace",
        ns_api(&ctl, c, &al()).list(&ListParams::default()).await,
    );
    allowed(
        "list pods in its own namespace",
        ns_api(&ctl, c, &core("Pod", "pods"))
            .list(&ListParams::default())
            .await,
    );
    allowed(
        "list pods in the watched namespace",
        ns_api(&ctl, w, &core("Pod", "pods"))
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "list pods cluster-wide",
        all_api(&ctl, &core("Pod", "pods"))
            .list(&ListParams::default())
            .await,
    );
    allowed(
        "create ERS in the watched namespace",
        ns_api(&ctl, w, &ers())
            .create(
                &PostParams::default(),
                &object(&ers(), "runners-x", w, json!({"spec": {}})),
            )
            .await,
    );
    allowed(
        "create AL in its own namespace",
        ns_api(&ctl, c, &al())
            .create(
                &PostParams::default(),
                &object(&al(), "runners-x-listener", c, json!({"spec": {}})),
            )
            .await,
    );
    allowed(
        "get the GitHub secret",
        ns_api(&ctl, w, &core("Secret", "secrets"))
            .get("runners-gha-rs-github-secret")
            .await,
    );

    // Leader election (replicaCount 2): a Lease in the controller namespace.
    let leases = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    );
    allowed(
        "create the leader-election Lease",
        ns_api(&ctl, c, &leases)
            .create(
                &PostParams::default(),
                &object(
                    &leases,
                    &release,
                    c,
                    json!({"spec": {"holderIdentity": "me"}}),
                ),
            )
            .await,
    );
}
