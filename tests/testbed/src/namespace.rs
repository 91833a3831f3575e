//! A namespace per test, deleted when the test is done with it.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

/// The label every test namespace carries, so leftovers can be found.
pub const TEST_NAMESPACE_LABEL: &str = "testbed.arc-rs.dev/test-namespace";

/// A uniquely named namespace, deleted on drop (or by [`TestNamespace::delete`]).
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    config: kube::Config,
    deleted: bool,
}

impl TestNamespace {
    pub(crate) async fn create(config: kube::Config, prefix: &str) -> anyhow::Result<Self> {
        let name = unique_name(prefix);
        let client = kube::Client::try_from(config.clone()).context("building a kube client")?;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating test namespace {name}"))?;
        Ok(Self {
            name,
            config,
            deleted: false,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace now (it may stay `Terminating` while its objects go away).
    pub async fn delete(mut self) -> anyhow::Result<()> {
        self.deleted = true;
        delete_namespace(self.config.clone(), &self.name).await
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let config = self.config.clone();
        let name = self.name.clone();
        // Drop may run inside any runtime, or none: delete from a runtime of our own.
        let worker = std::thread::Builder::new()
            .name("testbed-ns-delete".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    tokio::time::timeout(Duration::from_secs(30), delete_namespace(config, &name))
                        .await
                        .context("deleting a test namespace timed out")?
                })
            });
        match worker.map(std::thread::JoinHandle::join) {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(namespace = %self.name, error = %format!("{e:#}"), "could not delete test namespace");
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(namespace = %self.name, "could not delete test namespace");
            }
        }
    }
}

async fn delete_namespace(config: kube::Config, name: &str) -> anyhow::Result<()> {
    let client = kube::Client::try_from(config).context("building a kube client")?;
    match Api::<Namespace>::all(client)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting test namespace {name}")),
    }
}

/// `prefix` made DNS-1123 safe, with a random suffix.
pub(crate) fn unique_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    clean.truncate(40);
    let clean = clean.trim_matches('-');
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let suffix = &suffix[..8];
    if clean.is_empty() {
        format!("test-{suffix}")
    } else {
        format!("{clean}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn unique_names_are_dns_labels() {
        let name = unique_name("My_Test::Case");
        assert!(name.starts_with("my-test--case-"), "{name}");
        assert!(name.len() <= 63);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(unique_name("x"), unique_name("x"));
        assert!(unique_name("--").starts_with("test-"));
    }
}
