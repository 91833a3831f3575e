//! Leader election with a `coordination.k8s.io/v1` Lease, with client-go's semantics: a
//! candidate takes the Lease when it is free or when its record has not changed for a lease
//! duration (measured on the local clock, so clock skew between candidates does not matter);
//! the leader renews every retry period and gives up when it could not renew within the renew
//! deadline. Every write is guarded by the Lease's resourceVersion, so two candidates never
//! both succeed in taking it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::cli::LeaderElection;

/// A candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    settings: LeaderElection,
    observed: Option<(LeaseSpec, Instant)>,
}

/// Result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease (taken or renewed).
    Leading,
    /// Someone else holds it.
    Following {
        /// Current holder.
        holder: String,
    },
}

impl Elector {
    /// A candidate named `identity` for the Lease `settings.lease_name` in `namespace`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        identity: String,
        settings: LeaderElection,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: settings.lease_name.clone(),
            identity,
            settings,
            observed: None,
        }
    }

    /// This candidate's identity (the Lease's `holderIdentity` while it leads).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Retries until this candidate leads.
    pub async fn acquire(&mut self) {
        let mut announced = None::<String>;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    return;
                }
                Ok(Attempt::Following { holder }) => {
                    if announced.as_deref() != Some(holder.as_str()) {
                        tracing::info!(lease = %self.name, %holder, "waiting for leadership");
                        announced = Some(holder);
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "leader election attempt failed")
                }
            }
            tokio::time::sleep(self.settings.retry_period).await;
        }
    }

    /// Renews while leading; returns when leadership is lost (no successful renewal within
    /// the renew deadline, or another holder took the Lease).
    pub async fn hold(&mut self) {
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => last_renew = Instant::now(),
                Ok(Attempt::Following { holder }) => {
                    tracing::error!(lease = %self.name, %holder, "leadership taken over");
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "renewing the lease failed");
                }
            }
            if last_renew.elapsed() >= self.settings.renew_deadline {
                tracing::error!(lease = %self.name, "could not renew the lease within the renew deadline");
                return;
            }
        }
    }

    /// Gives the Lease up (on shutdown) so another candidate takes over without waiting for it
    /// to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released leadership"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "releasing the lease failed"),
        }
    }

    /// One client-go style attempt.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs =
            i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created.spec.unwrap_or_default());
                    Ok(Attempt::Leading)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following {
                    holder: "(just created by another candidate)".into(),
                }),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        self.observe(spec.clone());
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        if !ours && !holder.is_empty() && !self.observed_expired(&spec) {
            return Ok(Attempt::Following { holder });
        }
        let mut next = spec.clone();
        if !ours {
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            next.holder_identity = Some(self.identity.clone());
        }
        next.lease_duration_seconds = Some(duration_secs);
        next.renew_time = Some(now);
        lease.spec = Some(next);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(updated.spec.unwrap_or_default());
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following {
                holder: "(changed concurrently)".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Records the Lease record and when we first saw it in this form.
    fn observe(&mut self, spec: LeaseSpec) {
        let changed = self.observed.as_ref().is_none_or(|(seen, _)| *seen != spec);
        if changed {
            self.observed = Some((spec, Instant::now()));
        }
    }

    /// Whether the holder failed to renew for a whole lease duration, on our clock.
    fn observed_expired(&self, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.lease_duration, Duration::from_secs);
        self.observed
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= duration)
    }
}

/// A unique candidate identity: the host (pod) name and a random suffix, like
/// controller-runtime's.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "manager".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}
