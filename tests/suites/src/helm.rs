//! Real Helm for tests: renders the project's charts with Helm v4's engine (helm-python-sdk, in a
//! virtual environment made by `xtask/scripts/helm-venv.py`) and returns the objects as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

pub use testbed::workspace_root;

/// The python of the Helm environment (shared by every test of a binary).
pub use testbed::helm_python as python;

/// The project's two charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chart {
    /// `charts/gha-runner-scale-set-controller`.
    Controller,
    /// `charts/gha-runner-scale-set`.
    ScaleSet,
}

impl Chart {
    /// The chart's directory.
    pub fn path(self) -> PathBuf {
        let name = match self {
            Chart::Controller => "gha-runner-scale-set-controller",
            Chart::ScaleSet => "gha-runner-scale-set",
        };
        workspace_root().join("charts").join(name)
    }
}

/// One `helm template` (or cluster-aware render) invocation.
#[derive(Debug, Clone)]
pub struct Render {
    chart: Chart,
    release: String,
    namespace: String,
    values: Value,
    files: Vec<PathBuf>,
    sets: Vec<(String, String)>,
    kubeconfig: Option<PathBuf>,
}

impl Render {
    /// Renders `chart` as release `release` into `namespace` with no values.
    pub fn new(chart: Chart, release: &str, namespace: &str) -> Self {
        Self {
            chart,
            release: release.to_string(),
            namespace: namespace.to_string(),
            values: Value::Object(Default::default()),
            files: Vec::new(),
            sets: Vec::new(),
            kubeconfig: None,
        }
    }

    /// User values (like a `-f` file), given as JSON.
    pub fn values(mut self, values: Value) -> Self {
        self.values = values;
        self
    }

    /// A values file (`-f`), merged before [`Render::values`] and the `--set`s, as the helm CLI does.
    pub fn values_file(mut self, path: &Path) -> Self {
        self.files.push(path.to_path_buf());
        self
    }

    /// A `--set key=value` (Helm's own parser: numbers become numbers).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.sets.push(("--set".into(), format!("{key}={value}")));
        self
    }

    /// A `--set-string key=value`.
    pub fn set_string(mut self, key: &str, value: &str) -> Self {
        self.sets
            .push(("--set-string".into(), format!("{key}={value}")));
        self
    }

    /// Render against a live cluster, so `lookup` and capabilities come from it.
    pub fn kubeconfig(mut self, path: &Path) -> Self {
        self.kubeconfig = Some(path.to_path_buf());
        self
    }

    fn output(&self) -> anyhow::Result<std::process::Output> {
        let mut cmd = Command::new(python()?);
        cmd.arg(workspace_root().join("xtask/scripts/helm-render.py"))
            .arg("template")
            .arg(self.chart.path())
            .args(["--release", &self.release, "--namespace", &self.namespace])
            .args(["--output", "json", "--values-json"])
            .arg(self.values.to_string());
        for file in &self.files {
            cmd.arg("-f").arg(file);
        }
        for (flag, expr) in &self.sets {
            cmd.arg(flag).arg(expr);
        }
        if let Some(path) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(path);
        }
        cmd.output().context("running helm-render.py")
    }

    /// Renders; a template failure is an error carrying Helm's message.
    pub fn render(&self) -> anyhow::Result<Rendered> {
        let out = self.output()?;
        if !out.status.success() {
            bail!(
                "helm template {:?} failed: {}",
                self.chart,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let doc: Value = serde_json::from_slice(&out.stdout).context("helm-render.py output")?;
        let objects = doc["manifests"]
            .as_array()
            .context("manifests is not a list")?
            .iter()
            .map(|m| Manifest {
                source: m["source"].as_str().unwrap_or_default().to_string(),
                object: m["object"].clone(),
            })
            .collect();
        Ok(Rendered {
            manifests: objects,
            notes: doc["notes"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Renders expecting failure; returns Helm's error message.
    pub fn render_err(&self) -> anyhow::Result<String> {
        let out = self.output()?;
        if out.status.success() {
            bail!(
                "helm template {:?} succeeded but was expected to fail",
                self.chart
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr
            .lines()
            .filter(|l| !l.contains(" INFO funcMap fail "))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(message)
    }
}

/// One rendered object and the template it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Template path, e.g. `gha-runner-scale-set/templates/manager_role.yaml`.
    pub source: String,
    /// The object.
    pub object: Value,
}

/// What a render produced.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Every object in template order.
    pub manifests: Vec<Manifest>,
    /// NOTES.txt.
    pub notes: String,
}

impl Rendered {
    /// All objects.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.manifests.iter().map(|m| &m.object)
    }

    /// Objects of one kind.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects().filter(|o| o["kind"] == kind).collect()
    }

    /// The object of `kind` named `name`, if rendered.
    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// The object of `kind` named `name`; an error listing what was rendered otherwise.
    pub fn get(&self, kind: &str, name: &str) -> anyhow::Result<&Value> {
        self.find(kind, name).with_context(|| {
            format!(
                "{kind}/{name} not rendered; rendered: {:?}",
                self.objects()
                    .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                    .collect::<Vec<_>>()
            )
        })
    }

    /// The only object of `kind`.
    pub fn single(&self, kind: &str) -> anyhow::Result<&Value> {
        match self.of_kind(kind).as_slice() {
            [one] => Ok(one),
            other => bail!("expected one {kind}, rendered {}", other.len()),
        }
    }

    /// Whether anything came from a template file whose name ends with `suffix`.
    pub fn has_source(&self, suffix: &str) -> bool {
        self.manifests.iter().any(|m| m.source.ends_with(suffix))
    }
}

/// The CRDs Helm would install from `chart`'s `crds/` folder.
pub fn chart_crds(chart: Chart) -> anyhow::Result<Vec<Value>> {
    let out = Command::new(python()?)
        .arg(workspace_root().join("xtask/scripts/helm-render.py"))
        .arg("crds")
        .arg(chart.path())
        .args(["--output", "json"])
        .output()
        .context("running helm-render.py crds")?;
    if !out.status.success() {
        bail!(
            "reading the CRDs of {:?} failed: {}",
            chart,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let doc: Value = serde_json::from_slice(&out.stdout).context("helm-render.py crds output")?;
    Ok(doc["manifests"]
        .as_array()
        .context("manifests is not a list")?
        .iter()
        .map(|m| m["object"].clone())
        .collect())
}

fn release_command(
    action: &str,
    chart: Option<Chart>,
    release: &str,
    namespace: &str,
    values: Option<&Value>,
    kubeconfig: &Path,
) -> anyhow::Result<Value> {
    let mut cmd = Command::new(python()?);
    cmd.arg(workspace_root().join("xtask/scripts/helm-render.py"))
        .arg(action);
    if let Some(chart) = chart {
        cmd.arg(chart.path());
    }
    cmd.args(["--release", release, "--namespace", namespace])
        .arg("--kubeconfig")
        .arg(kubeconfig);
    if let Some(values) = values {
        cmd.arg("--values-json").arg(values.to_string());
    }
    let out = cmd
        .output()
        .with_context(|| format!("running helm-render.py {action}"))?;
    if !out.status.success() {
        bail!(
            "helm {action} {release} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("helm-render.py {action} output"))
}

/// `helm install` (real Helm, release stored in the cluster) of `chart` with `values`.
pub fn install(
    chart: Chart,
    release: &str,
    namespace: &str,
    values: &Value,
    kubeconfig: &Path,
) -> anyhow::Result<Value> {
    release_command(
        "install",
        Some(chart),
        release,
        namespace,
        Some(values),
        kubeconfig,
    )
}

/// `helm upgrade` of an installed release to `values`.
pub fn upgrade(
    chart: Chart,
    release: &str,
    namespace: &str,
    values: &Value,
    kubeconfig: &Path,
) -> anyhow::Result<Value> {
    release_command(
        "upgrade",
        Some(chart),
        release,
        namespace,
        Some(values),
        kubeconfig,
    )
}

/// `helm uninstall` of a release.
pub fn uninstall(release: &str, namespace: &str, kubeconfig: &Path) -> anyhow::Result<Value> {
    release_command("uninstall", None, release, namespace, None, kubeconfig)
}

/// Server-side applies every object (field manager `arc-rs-chart-test`), resolving each kind
/// through API discovery, so the API server validates them exactly as it would Helm's.
pub async fn apply(client: &kube::Client, objects: &[Value]) -> anyhow::Result<()> {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::core::GroupVersionKind;
    use kube::discovery::{Scope, pinned_kind};

    let params = PatchParams::apply("arc-rs-chart-test").force();
    for object in objects {
        let api_version = object["apiVersion"].as_str().context("apiVersion")?;
        let kind = object["kind"].as_str().context("kind")?;
        let name = object["metadata"]["name"]
            .as_str()
            .context("metadata.name")?;
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("discovering {api_version} {kind}"))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let ns = object["metadata"]["namespace"]
                    .as_str()
                    .with_context(|| format!("{kind}/{name} has no namespace"))?;
                Api::namespaced_with(client.clone(), ns, &resource)
            }
        };
        api.patch(name, &params, &Patch::Apply(object))
            .await
            .with_context(|| format!("server-side apply of {kind}/{name} was refused"))?;
    }
    Ok(())
}

/// Which CRDs [`ensure_crds`] installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crds {
    /// The controller chart's `crds/` (what `helm install` installs).
    Chart,
    /// Open-schema stand-ins (same group, kinds, plurals, status subresource), used while the
    /// chart ships no CRDs yet; they check RBAC and names, not the schema.
    StandIn,
}

/// The four `actions.github.com` kinds and their plurals.
pub const KINDS: [(&str, &str); 4] = [
    ("AutoscalingRunnerSet", "autoscalingrunnersets"),
    ("AutoscalingListener", "autoscalinglisteners"),
    ("EphemeralRunnerSet", "ephemeralrunnersets"),
    ("EphemeralRunner", "ephemeralrunners"),
];

fn stand_in_crds() -> Vec<Value> {
    KINDS
        .iter()
        .map(|(kind, plural)| {
            serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.actions.github.com")},
                "spec": {
                    "group": "actions.github.com",
                    "scope": "Namespaced",
                    "names": {
                        "kind": kind,
                        "plural": plural,
                        "singular": kind.to_lowercase(),
                        "listKind": format!("{kind}List")
                    },
                    "versions": [{
                        "name": "v1alpha1", "served": true, "storage": true,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": {
                            "type": "object", "x-kubernetes-preserve-unknown-fields": true
                        }}
                    }]
                }
            })
        })
        .collect()
}

/// Applies the chart's CRDs (or stand-ins when it ships none) and waits until they serve.
pub async fn ensure_crds(client: &kube::Client) -> anyhow::Result<Crds> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::Api;
    use kube::runtime::{conditions, wait::await_condition};

    let mut crds = chart_crds(Chart::Controller)?;
    let which = if crds.is_empty() {
        eprintln!("charts/gha-runner-scale-set-controller/crds/ is empty: using stand-in CRDs");
        crds = stand_in_crds();
        Crds::StandIn
    } else {
        Crds::Chart
    };
    apply(client, &crds).await?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().context("CRD name")?;
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            await_condition(api.clone(), name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established within 60 s"))?
        .with_context(|| format!("watching CRD {name}"))?;
    }
    Ok(which)
}

/// ARC's chart-test value sets for the scale-set chart (every container mode with and without
/// the runner TLS mount, both secret forms, limits, proxy, listener template and metrics, custom
/// runner template, kube-mode claim and extra rules, labels/annotations/resourceMeta, key vault),
/// each complete (URL, token, controller ServiceAccount) so it renders offline.
pub fn scale_set_value_sets() -> Vec<Value> {
    use serde_json::json;
    let base = json!({
        "githubConfigUrl": "https://github.com/actions/",
        "githubConfigSecret": {"github_token": "gh_token12345"},
        "controllerServiceAccount": {"name": "arc", "namespace": "arc-system"}
    });
    let tls = json!({"certificateFrom": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}, "runnerMountPath": "/usr/local/share/ca-certificates/"});
    let mut value_sets = Vec::new();
    for mode in ["", "dind", "kubernetes", "kubernetes-novolume"] {
        value_sets.push(json!({"containerMode": {"type": mode}}));
        value_sets.push(json!({"containerMode": {"type": mode}, "githubServerTLS": tls}));
    }
    value_sets.extend([
        json!({"githubConfigSecret": {"github_token": "", "github_app_id": "123", "github_app_installation_id": "456", "github_app_private_key": "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"}}),
        json!({"githubConfigSecret": "pre-defined-secret"}),
        json!({"minRunners": 1, "maxRunners": 5, "runnerGroup": "group", "runnerScaleSetName": "named-set", "scaleSetLabels": ["linux", "x64"]}),
        json!({"proxy": {"http": {"url": "http://proxy:3128", "credentialSecretRef": "proxy-auth"}, "https": {"url": "http://proxy:3128"}, "noProxy": ["example.com"]}}),
        json!({"listenerTemplate": {"metadata": {"labels": {"l": "1"}}, "spec": {"containers": [{"name": "listener", "securityContext": {"runAsUser": 1000}}, {"name": "side-car", "image": "busybox"}]}}}),
        json!({"listenerMetrics": {"counters": {"gha_started_jobs_total": {"labels": ["repository"]}}, "histograms": {"gha_job_startup_duration_seconds": {"labels": ["repository"], "buckets": [1.0, 5.0, 10.0]}}}}),
        json!({"template": {"metadata": {"labels": {"t": "1"}}, "spec": {"serviceAccountName": "custom", "nodeSelector": {"kubernetes.io/os": "linux"},
               "containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest", "command": ["/home/runner/run.sh"], "resources": {"limits": {"cpu": "2"}}}, {"name": "other", "image": "busybox"}]}}}),
        json!({"containerMode": {"type": "kubernetes", "kubernetesModeWorkVolumeClaim": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "2Gi"}}},
               "kubernetesModeAdditionalRoleRules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}}),
        json!({"labels": {"team": "ci"}, "annotations": {"note": "x"}, "resourceMeta": {
            "autoscalingRunnerSet": {"labels": {"a": "1"}}, "githubConfigSecret": {"annotations": {"b": "2"}},
            "managerRole": {"labels": {"c": "3"}}, "managerRoleBinding": {"labels": {"d": "4"}},
            "noPermissionServiceAccount": {"labels": {"e": "5"}}, "ephemeralRunner": {"labels": {"f": "6"}},
            "autoscalingListener": {"annotations": {"g": "7"}}}}),
    ]);

    value_sets.push(json!({"githubConfigSecret": "vault-secret", "keyVault": {"type": "azure_key_vault",
        "azureKeyVault": {"url": "https://vault.example", "tenantId": "t", "clientId": "c", "certificatePath": "/cert.pem"}}}));
    value_sets
        .into_iter()
        .map(|extra| {
            let mut values = base.clone();
            if let (Some(b), Some(e)) = (values.as_object_mut(), extra.as_object()) {
                for (k, v) in e {
                    b.insert(k.clone(), v.clone());
                }
            }
            values
        })
        .collect()
}
