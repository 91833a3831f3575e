//! Well-known names ARC uses: annotations, labels, finalizers, child-object names
//! (docs/architecture.md#names-and-hashes, docs/architecture.md#labels-and-annotations,
//! docs/architecture.md#finalizers).

/// Annotation keys.
pub mod annotations {
    /// Scale set id on the service (decimal); no prefix, as in ARC.
    pub const RUNNER_SCALE_SET_ID: &str = "runner-scale-set-id";
    /// Scale set name returned by the service.
    pub const RUNNER_SCALE_SET_NAME: &str = "actions.github.com/runner-scale-set-name";
    /// Runner group name returned by the service.
    pub const RUNNER_GROUP_NAME: &str = "actions.github.com/runner-group-name";
    /// Hash of the content that matters for drift detection.
    pub const INTEGRITY_HASH: &str = "actions.github.com/integrity-hash";
    /// EphemeralRunnerSet `spec.patchID` at the time the runner was created.
    pub const PATCH_ID: &str = "actions.github.com/patch-id";
    /// Written by the chart: the manager RoleBinding to unprotect on deletion.
    pub const CLEANUP_MANAGER_ROLE_BINDING: &str =
        "actions.github.com/cleanup-manager-role-binding";
    /// Written by the chart: the manager Role to unprotect on deletion.
    pub const CLEANUP_MANAGER_ROLE_NAME: &str = "actions.github.com/cleanup-manager-role-name";
    /// Written by the chart: the kubernetes-mode Role to unprotect on deletion.
    pub const CLEANUP_KUBERNETES_MODE_ROLE_NAME: &str =
        "actions.github.com/cleanup-kubernetes-mode-role-name";
    /// Written by the chart: the kubernetes-mode RoleBinding to unprotect on deletion.
    pub const CLEANUP_KUBERNETES_MODE_ROLE_BINDING_NAME: &str =
        "actions.github.com/cleanup-kubernetes-mode-role-binding-name";
    /// Written by the chart: the kubernetes-mode ServiceAccount to unprotect on deletion.
    pub const CLEANUP_KUBERNETES_MODE_SERVICE_ACCOUNT_NAME: &str =
        "actions.github.com/cleanup-kubernetes-mode-service-account-name";
    /// Written by the chart: the GitHub Secret to unprotect on deletion.
    pub const CLEANUP_GITHUB_SECRET_NAME: &str = "actions.github.com/cleanup-github-secret-name";
    /// Written by the chart: the no-permission ServiceAccount to unprotect on deletion.
    pub const CLEANUP_NO_PERMISSION_SERVICE_ACCOUNT_NAME: &str =
        "actions.github.com/cleanup-no-permission-service-account-name";
    /// The `githubConfigUrl` the scale set was created under (an arc-rs addition): a later
    /// change of the URL is refused with a Condition instead of silently keeping the old set.
    pub const GITHUB_CONFIG_URL: &str = "actions.github.com/github-config-url";
    /// Written by the chart (sha256 of the values); not read.
    pub const VALUES_HASH: &str = "actions.github.com/values-hash";
    /// On a runner pod: the id of the registration its JIT config belongs to (an arc-rs
    /// addition), copied into `status.runnerId` with the first status write.
    pub const RUNNER_ID: &str = "actions.github.com/runner-id";
    /// On a runner pod: the registration's runner name (an arc-rs addition).
    pub const RUNNER_NAME: &str = "actions.github.com/runner-name";
}

/// Label keys and fixed values.
pub mod labels {
    /// `app.kubernetes.io/part-of`.
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    /// Value of [`PART_OF`].
    pub const PART_OF_VALUE: &str = "gha-runner-scale-set";
    /// `app.kubernetes.io/component`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// [`COMPONENT`] of an EphemeralRunnerSet.
    pub const COMPONENT_RUNNER_SET: &str = "runner-set";
    /// [`COMPONENT`] of an AutoscalingListener.
    pub const COMPONENT_LISTENER: &str = "runner-scale-set-listener";
    /// [`COMPONENT`] of an EphemeralRunner and its pod.
    pub const COMPONENT_RUNNER: &str = "runner";
    /// `app.kubernetes.io/version`, copied from the AutoscalingRunnerSet.
    pub const VERSION: &str = "app.kubernetes.io/version";
    /// Name of the AutoscalingRunnerSet.
    pub const SCALE_SET_NAME: &str = "actions.github.com/scale-set-name";
    /// Namespace of the AutoscalingRunnerSet.
    pub const SCALE_SET_NAMESPACE: &str = "actions.github.com/scale-set-namespace";
    /// Enterprise parsed from the config URL.
    pub const ENTERPRISE: &str = "actions.github.com/enterprise";
    /// Organization parsed from the config URL.
    pub const ORGANIZATION: &str = "actions.github.com/organization";
    /// Repository parsed from the config URL.
    pub const REPOSITORY: &str = "actions.github.com/repository";
    /// AutoscalingListener name, on the listener Role and RoleBinding.
    pub const LISTENER_NAME: &str = "auto-scaling-listener-name";
    /// AutoscalingListener namespace, on the listener Role and RoleBinding.
    pub const LISTENER_NAMESPACE: &str = "auto-scaling-listener-namespace";
    /// Marks runner pods (value `True`).
    pub const EPHEMERAL_RUNNER: &str = "actions-ephemeral-runner";
    /// Runner pod template hash.
    pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
    /// Never propagated; only filtered out before hashing.
    pub const RUNNER_TEMPLATE_HASH: &str = "runner-template-hash";
    /// Put by container hooks on job pods and Secrets: the EphemeralRunner name.
    pub const RUNNER_POD: &str = "runner-pod";
}

/// Finalizers.
pub mod finalizers {
    /// On an AutoscalingRunnerSet.
    pub const AUTOSCALING_RUNNER_SET: &str = "autoscalingrunnerset.actions.github.com/finalizer";
    /// On an AutoscalingListener.
    pub const AUTOSCALING_LISTENER: &str = "autoscalinglistener.actions.github.com/finalizer";
    /// On an EphemeralRunnerSet.
    pub const EPHEMERAL_RUNNER_SET: &str = "ephemeralrunnerset.actions.github.com/finalizer";
    /// On an EphemeralRunner: its pod and Secrets are cleaned up.
    pub const EPHEMERAL_RUNNER: &str = "ephemeralrunner.actions.github.com/finalizer";
    /// On an EphemeralRunner: the runner is removed from the service.
    pub const RUNNER_REGISTRATION: &str =
        "ephemeralrunner.actions.github.com/runner-registration-finalizer";
    /// Put by the chart on its Role, RoleBinding, ServiceAccounts and GitHub Secret.
    pub const CLEANUP_PROTECTION: &str = "actions.github.com/cleanup-protection";
}

/// Name of the runner container in runner pods.
pub const RUNNER_CONTAINER: &str = "runner";
/// Name of the listener container in listener pods.
pub const LISTENER_CONTAINER: &str = "listener";

pub use scaleset_core::naming::{
    listener_config_secret_name, listener_name, listener_proxy_secret_name, runner_generate_name,
    runner_proxy_secret_name, short_hash as h8,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h8_matches_arc() {
        assert_eq!(h8("arc-runners@@https://github.com/org/repo"), "7f984dc6");
        assert_eq!(
            h8("default@my-group@https://github.com/enterprises/ent"),
            "d997d8cb"
        );
    }

    #[test]
    fn the_crd_admits_the_names_the_reconciler_accepts() {
        assert_eq!(
            crate::crd::MAX_ARS_NAME,
            scaleset_core::naming::MAX_ARS_NAME
        );
    }

    #[test]
    fn listener_name_matches_arc() {
        assert_eq!(
            listener_name("set", "arc-runners", "", "https://github.com/org/repo"),
            "set-7f984dc6-listener"
        );
    }
}
