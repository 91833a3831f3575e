//! Builds the listener's `config.json` ([`ListenerConfigFile`]) from an AutoscalingListener
//! (docs/architecture.md#listener-configuration).

use crate::crd::AutoscalingListener;
use crate::error::Error;
use crate::github::Credentials;
use crate::listener_config::{AzureKeyVaultFile, ListenerConfigFile};
use crate::options::ManagerOptions;

/// The config of the listener of `al`, checked as ARC's controller checks it.
pub fn listener_config(
    al: &AutoscalingListener,
    credentials: &Credentials,
    root_ca: Option<&str>,
    options: &ManagerOptions,
) -> Result<ListenerConfigFile, Error> {
    let spec = &al.spec;
    let mut config = ListenerConfigFile {
        configure_url: spec.github_config_url.clone().unwrap_or_default(),
        ephemeral_runner_set_namespace: spec
            .autoscaling_runner_set_namespace
            .clone()
            .unwrap_or_default(),
        ephemeral_runner_set_name: spec.ephemeral_runner_set_name.clone().unwrap_or_default(),
        max_runners: Some(spec.max_runners.unwrap_or(i32::MAX).into()),
        min_runners: spec.min_runners.unwrap_or(0).into(),
        runner_scale_set_id: spec.runner_scale_set_id.unwrap_or(0),
        runner_scale_set_name: spec.autoscaling_runner_set_name.clone().unwrap_or_default(),
        server_root_ca: root_ca.unwrap_or_default().to_owned(),
        log_level: options.listener_log_level.clone(),
        log_format: options.listener_log_format.clone(),
        metrics: spec.metrics.clone(),
        health_addr: super::pod::health_addr(al).to_owned(),
        ..Default::default()
    };
    let vault = spec
        .vault_config
        .as_ref()
        .filter(|v| v.type_.as_deref().is_some_and(|t| !t.is_empty()));
    match (vault, credentials) {
        // With a vault the listener reads the credentials itself, as ARC's does.
        (Some(vault), _) => {
            config.vault_type = vault.type_.clone().unwrap_or_default();
            config.vault_lookup_key = spec.github_config_secret.clone().unwrap_or_default();
            config.azure_key_vault = vault.azure_key_vault.as_ref().map(|a| AzureKeyVaultFile {
                tenant_id: a.tenant_id.clone(),
                client_id: a.client_id.clone(),
                url: a.url.clone(),
                certificate_path: a.certificate_path.clone(),
            });
        }
        (None, Credentials::Pat(token)) => config.github_token = token.clone(),
        (
            None,
            Credentials::App {
                app_id,
                installation_id,
                private_key,
            },
        ) => {
            config.github_app_id = app_id.clone();
            config.github_app_installation_id = *installation_id;
            config.github_app_private_key = private_key.clone();
        }
    }
    if !options.listener_metrics_addr.is_empty() {
        config.metrics_addr = options.listener_metrics_addr.clone();
        config.metrics_endpoint = options.listener_metrics_endpoint.clone();
    }
    validate(&config)?;
    Ok(config)
}

/// `config` as the Secret holds it: one JSON document and a newline.
pub fn to_json(config: &ListenerConfigFile) -> Result<String, Error> {
    let mut json = serde_json::to_string(config).map_err(|source| Error::Serialize {
        what: "listener config.json",
        source,
    })?;
    json.push('\n');
    Ok(json)
}

fn validate(c: &ListenerConfigFile) -> Result<(), Error> {
    let fail = |m: String| Err(Error::Config(format!("listener config: {m}")));
    if c.configure_url.is_empty() {
        return fail("GitHubConfigUrl is not provided; set spec.githubConfigUrl".into());
    }
    if c.ephemeral_runner_set_namespace.is_empty() || c.ephemeral_runner_set_name.is_empty() {
        return fail(format!(
            "EphemeralRunnerSetNamespace {:?} or EphemeralRunnerSetName {:?} is missing",
            c.ephemeral_runner_set_namespace, c.ephemeral_runner_set_name
        ));
    }
    if !c.vault_type.is_empty() && c.vault_lookup_key.is_empty() {
        return fail(format!(
            "VaultLookupKey is required when VaultType is set to {:?}; set spec.githubConfigSecret to the Key Vault secret's name",
            c.vault_type
        ));
    }
    if c.runner_scale_set_id == 0 {
        return fail("RunnerScaleSetId \"0\" is missing".into());
    }
    let max_runners = c.max_runners.unwrap_or(i32::MAX.into());
    if max_runners < c.min_runners {
        return fail(format!(
            "MinRunners \"{}\" cannot be greater than MaxRunners \"{}\"; set spec.minRunners <= spec.maxRunners",
            c.min_runners, max_runners
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AutoscalingListenerSpec;
    use secrecy::SecretString;

    fn listener() -> AutoscalingListener {
        AutoscalingListener::new(
            "l",
            AutoscalingListenerSpec {
                github_config_url: Some("https://github.com/org/repo".into()),
                runner_scale_set_id: Some(5),
                autoscaling_runner_set_namespace: Some("arc-runners".into()),
                autoscaling_runner_set_name: Some("my-set".into()),
                ephemeral_runner_set_name: Some("my-set".into()),
                max_runners: Some(10),
                min_runners: Some(1),
                ..Default::default()
            },
        )
    }

    fn options() -> ManagerOptions {
        struct NoConnector;
        impl crate::github::Connector for NoConnector {
            fn connect(
                &self,
                _: crate::github::ServiceConfig,
            ) -> futures::future::BoxFuture<
                '_,
                Result<
                    std::sync::Arc<dyn crate::github::ActionsService>,
                    crate::github::ServiceError,
                >,
            > {
                Box::pin(async {
                    Err(crate::github::ServiceError::new(
                        crate::github::ServiceErrorKind::Configuration,
                        "connect",
                        "unused in this test",
                    ))
                })
            }
        }
        let mut o = ManagerOptions::new("ctrl", "img", std::sync::Arc::new(NoConnector));
        o.listener_metrics_addr = ":8080".into();
        o.listener_metrics_endpoint = "/metrics".into();
        o
    }

    #[test]
    fn arc_example_shape() -> Result<(), Error> {
        let pat = Credentials::Pat(SecretString::from("ghp_x".to_owned()));
        let json = to_json(&listener_config(&listener(), &pat, None, &options())?)?;
        assert_eq!(
            json,
            concat!(
                r#"{"configure_url":"https://github.com/org/repo","vault_type":"","vault_lookup_key":"","#,
                r#""github_app_id":"","github_app_installation_id":0,"github_app_private_key":"","github_token":"ghp_x","#,
                r#""ephemeral_runner_set_namespace":"arc-runners","ephemeral_runner_set_name":"my-set","#,
                r#""max_runners":10,"min_runners":1,"runner_scale_set_id":5,"runner_scale_set_name":"my-set","#,
                r#""server_root_ca":"","log_level":"debug","log_format":"text","metrics_addr":":8080","#,
                r#""metrics_endpoint":"/metrics","metrics":null,"health_addr":"0.0.0.0:8081"}"#,
                "\n"
            )
        );
        Ok(())
    }

    #[test]
    fn with_a_vault_the_config_names_the_vault_not_the_credentials() -> Result<(), Error> {
        let mut al = listener();
        al.spec.github_config_secret = Some("kv-secret".into());
        al.spec.vault_config = Some(crate::crd::VaultConfig {
            type_: Some("azure_key_vault".into()),
            azure_key_vault: Some(crate::crd::AzureKeyVaultConfig {
                url: "https://v.vault.azure.net/".into(),
                tenant_id: "t".into(),
                client_id: "c".into(),
                certificate_path: "/etc/akv/cert.pem".into(),
            }),
            proxy: None,
        });
        let pat = Credentials::Pat(SecretString::from("ghp_fromVault".to_owned()));
        let json = to_json(&listener_config(&al, &pat, None, &options())?)?;
        assert!(
            json.starts_with(concat!(
                r#"{"configure_url":"https://github.com/org/repo","vault_type":"azure_key_vault","vault_lookup_key":"kv-secret","#,
                r#""azure_key_vault":{"tenant_id":"t","client_id":"c","url":"https://v.vault.azure.net/","certificate_path":"/etc/akv/cert.pem"},"#,
                r#""github_app_id":"","github_app_installation_id":0,"github_app_private_key":"","github_token":"","#,
            )),
            "{json}"
        );
        assert!(!json.contains("ghp_fromVault"));
        al.spec.github_config_secret = None;
        let err = listener_config(&al, &pat, None, &options()).expect_err("no lookup key");
        assert!(err.to_string().contains("VaultLookupKey"), "{err}");
        Ok(())
    }

    #[test]
    fn min_above_max_is_refused_with_the_fix() {
        let mut al = listener();
        al.spec.min_runners = Some(11);
        let pat = Credentials::Pat(SecretString::from("t".to_owned()));
        let err = listener_config(&al, &pat, None, &options()).expect_err("refused");
        assert!(
            err.to_string()
                .contains("MinRunners \"11\" cannot be greater than MaxRunners \"10\"")
        );
    }
}
