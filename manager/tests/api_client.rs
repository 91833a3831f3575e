//! The manager's API client against the real kube-apiserver: requests in flight together and a
//! watch all speak HTTP/2 (one multiplexed connection), and the client reconnects after the API
//! server restarts. One test: the restart would break any other test of this binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use http::Version;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tower::ServiceExt;

/// The manager's client, recording the HTTP version of every response.
fn client(cp: &testbed::ControlPlane) -> anyhow::Result<(kube::Client, Arc<Mutex<Vec<Version>>>)> {
    let versions = Arc::new(Mutex::new(Vec::new()));
    let seen = versions.clone();
    let record = tower::layer::layer_fn(move |service: manager::api_client::BaseService| {
        let seen = seen.clone();
        service.map_response(move |response| {
            seen.lock().expect("versions").push(response.version());
            response
        })
    });
    let client = manager::api_client::builder(cp.config().clone())?
        .with_layer(&record)
        .build();
    Ok((client, versions))
}

#[tokio::test]
async fn requests_and_watches_share_http2_and_survive_a_restart() -> anyhow::Result<()> {
    let cp = testbed::ControlPlane::shared().await?;
    let ns = cp.test_namespace("h2").await?;
    let (client, versions) = client(cp)?;
    let maps: Api<ConfigMap> = Api::namespaced(client, ns.name());
    let stream = watcher(maps.clone(), watcher::Config::default()).applied_objects();
    let watch = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut names = std::collections::BTreeSet::new();
        while names.len() < 20 {
            let Some(map) = stream.try_next().await? else {
                break;
            };
            names.insert(map.name_any());
        }
        anyhow::Ok(names)
    });
    futures::future::try_join_all((0..20).map(|i| {
        let maps = maps.clone();
        async move {
            let map: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": { "name": format!("m{i}") },
                "data": { "i": i.to_string() },
            }))?;
            maps.create(&PostParams::default(), &map).await?;
            anyhow::Ok(())
        }
    }))
    .await?;
    let seen = tokio::time::timeout(Duration::from_secs(30), watch).await???;
    assert_eq!(seen.len(), 20, "the watch saw every ConfigMap created");
    let versions = versions.lock().expect("versions").clone();
    assert!(
        versions.len() >= 22,
        "20 creates, a list and a watch: {versions:?}"
    );
    assert!(
        versions.iter().all(|v| *v == Version::HTTP_2),
        "every response over HTTP/2: {versions:?}"
    );

    // The one connection dies with the API server; the next requests open another.
    if cp.is_existing_cluster() {
        return Ok(());
    }
    cp.restart_apiserver().await?;
    let started = tokio::time::Instant::now();
    loop {
        match maps.list_metadata(&ListParams::default()).await {
            Ok(_) => return Ok(()),
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "no request succeeded 30 s after the restart: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
