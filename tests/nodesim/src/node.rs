//! Registering Nodes and keeping them alive: status Ready with capacity, a Lease in
//! `kube-node-lease` renewed like a kubelet's, periodic status heartbeats, and losing a Node.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::status::time;
use crate::{NodeConfig, SIMULATED_NODE_LABEL, SIMULATED_NODE_TAINT};

const FIELD_MANAGER: &str = "nodesim";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_SECONDS: i32 = 40;

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

fn taints(taint: bool) -> Value {
    if taint {
        json!([{ "key": SIMULATED_NODE_TAINT, "value": "true", "effect": "NoSchedule" }])
    } else {
        json!([])
    }
}

fn ready_condition(status: &str, reason: &str, message: &str, at: &str) -> Value {
    json!({
        "type": "Ready", "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": at, "lastTransitionTime": at,
    })
}

fn pressure_conditions(at: &str) -> Vec<Value> {
    [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ]
    .into_iter()
    .map(|(kind, reason)| {
        json!({
            "type": kind, "status": "False", "reason": reason,
            "message": format!("simulated kubelet: {reason}"),
            "lastHeartbeatTime": at, "lastTransitionTime": at,
        })
    })
    .collect()
}

/// Creates (or takes over) the Node, reports it Ready, removes the not-ready taint and creates
/// its Lease.
pub(crate) async fn register(
    client: &kube::Client,
    node: &NodeConfig,
    taint: bool,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("kubernetes.io/hostname", node.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        (SIMULATED_NODE_LABEL, "true"),
    ] {
        labels.insert(k.to_owned(), json!(v));
    }
    for (k, v) in &node.labels {
        labels.insert(k.clone(), json!(v));
    }
    let object = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": node.name, "labels": labels },
    });
    nodes
        .patch(
            &node.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("registering Node {}", node.name))?;
    // A kubelet reports its own version; the simulated one plays the API server's release.
    let kubelet_version = client
        .apiserver_version()
        .await
        .context("reading the API server's version for the Node's kubelet version")?
        .git_version;
    let at = time(now());
    let resources =
        json!({ "cpu": node.cpu, "memory": node.memory, "pods": node.pods.to_string() });
    let mut conditions = pressure_conditions(&at);
    conditions.push(ready_condition(
        "True",
        "KubeletReady",
        "simulated kubelet is posting ready status",
        &at,
    ));
    let status = json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [
                { "type": "InternalIP", "address": "127.0.0.1" },
                { "type": "Hostname", "address": node.name },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 0 } },
            "nodeInfo": {
                "machineID": node.name, "systemUUID": node.name, "bootID": uuid::Uuid::new_v4().to_string(),
                "kernelVersion": "nodesim", "osImage": "nodesim", "containerRuntimeVersion": "nodesim://1",
                "kubeletVersion": kubelet_version,
                "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    });
    nodes
        .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("reporting Node {} Ready", node.name))?;
    // The API server taints new Nodes not-ready; the node lifecycle controller (not run by the
    // testbed) would lift it once the Node is Ready, so the simulator does.
    nodes
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "taints": taints(taint), "unschedulable": null } })),
        )
        .await
        .with_context(|| format!("setting the taints of Node {}", node.name))?;
    renew_lease(client, &node.name).await?;
    Ok(())
}

async fn renew_lease(client: &kube::Client, node: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let uid = Api::<Node>::all(client.clone())
        .get(node)
        .await
        .with_context(|| format!("reading Node {node}"))?
        .metadata
        .uid;
    let micro = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now());
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": node, "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": node, "uid": uid }],
        },
        "spec": { "holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro },
    });
    leases
        .patch(
            node,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .with_context(|| format!("renewing the Lease of Node {node}"))?;
    Ok(())
}

async fn heartbeat(client: &kube::Client, node: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = nodes
        .get_status(node)
        .await
        .with_context(|| format!("reading Node {node}"))?;
    let at = time(now());
    let conditions: Vec<Value> = current
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let mut v = serde_json::to_value(&c).unwrap_or(Value::Null);
            v["lastHeartbeatTime"] = json!(at);
            v
        })
        .filter(|v| !v.is_null())
        .collect();
    nodes
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": { "conditions": conditions } })),
        )
        .await
        .with_context(|| format!("posting the status heartbeat of Node {node}"))?;
    Ok(())
}

/// Renews the Lease every `lease_interval` and posts a status heartbeat every
/// `status_interval` until cancelled. Failures are logged and retried on the next tick.
pub(crate) async fn keep_alive(
    client: kube::Client,
    node: String,
    lease_interval: Duration,
    status_interval: Duration,
    stop: CancellationToken,
) {
    let mut lease = tokio::time::interval(lease_interval);
    let mut status = tokio::time::interval(status_interval);
    lease.tick().await;
    status.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = lease.tick() => {
                if let Err(e) = renew_lease(&client, &node).await {
                    tracing::warn!(node, error = %format!("{e:#}"), "lease renewal failed");
                }
            }
            _ = status.tick() => {
                if let Err(e) = heartbeat(&client, &node).await {
                    tracing::warn!(node, error = %format!("{e:#}"), "status heartbeat failed");
                }
            }
        }
    }
}

/// What the node lifecycle controller does once a kubelet stops posting: the Node's conditions
/// become `Unknown`, it is tainted unreachable, and its pods are marked not ready.
pub(crate) async fn mark_lost(
    client: &kube::Client,
    node: &str,
    taint: bool,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let at = time(now());
    let conditions: Vec<Value> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        .into_iter()
        .map(|kind| {
            json!({
                "type": kind, "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": at, "lastTransitionTime": at,
            })
        })
        .collect();
    nodes
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": { "conditions": conditions } })),
        )
        .await
        .with_context(|| format!("marking Node {node} NotReady"))?;
    let mut list = taints(taint).as_array().cloned().unwrap_or_default();
    list.push(
        json!({ "key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": at }),
    );
    list.push(
        json!({ "key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": at }),
    );
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "taints": list } })),
        )
        .await
        .with_context(|| format!("tainting Node {node} unreachable"))?;
    let pods: Api<Pod> = Api::all(client.clone());
    let bound = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .with_context(|| format!("listing the pods of Node {node}"))?;
    for pod in bound.items {
        let (Some(name), Some(namespace)) =
            (pod.metadata.name.clone(), pod.metadata.namespace.clone())
        else {
            continue;
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let conditions: Vec<Value> = pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let mut v = serde_json::to_value(&c).unwrap_or(Value::Null);
                if c.type_ == "Ready" && c.status != "False" {
                    v["status"] = json!("False");
                    v["reason"] = json!("NodeLost");
                    v["lastTransitionTime"] = json!(at);
                }
                v
            })
            .collect();
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        if let Err(e) = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": { "conditions": conditions } })),
            )
            .await
        {
            tracing::warn!(pod = %format!("{namespace}/{name}"), error = %e, "could not mark a pod of a lost node not ready");
        }
    }
    Ok(())
}

/// Deletes the Node (its Lease goes with it by garbage collection).
pub(crate) async fn delete(client: &kube::Client, node: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    if let Err(e) = nodes.delete(node, &Default::default()).await
        && !matches!(&e, kube::Error::Api(s) if s.code == 404)
    {
        tracing::warn!(node, error = %e, "could not delete a simulated Node");
    }
}
