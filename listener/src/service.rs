//! What the loop needs from the Actions service ([`ScaleSetService`]), its implementation over
//! `actions_client` ([`ActionsService`]), and the class of a failed call ([`classify`]).

use std::future::Future;

use actions_client::{
    ActionsClient, Credentials, Error, MessageSession, SystemInfo, Transport, TransportConfig,
};

use scaleset_core::listener_policy::ErrorClass;

use crate::config::{GitHubCredentials, ListenerConfig};

/// One message from the queue.
pub use actions_client::ScaleSetMessage as Message;

/// The Actions-service operations the listener uses (docs/architecture.md#operations: A7-A10, Q1, Q2).
pub trait ScaleSetService: Send + Sync + 'static {
    /// A7: opens a message session owned by `owner`.
    fn create_session(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<MessageSession, Error>> + Send;
    /// A8: a new message-queue token for `session`.
    fn refresh_session(
        &self,
        session: &MessageSession,
    ) -> impl Future<Output = Result<MessageSession, Error>> + Send;
    /// A9: deletes `session`.
    fn delete_session(
        &self,
        session: &MessageSession,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Q1: long poll; `Ok(None)` is a 202 (no message).
    fn get_message(
        &self,
        session: &MessageSession,
        last_message_id: i64,
        max_capacity: i64,
    ) -> impl Future<Output = Result<Option<Message>, Error>> + Send;
    /// Q2: acknowledges one message.
    fn delete_message(
        &self,
        session: &MessageSession,
        message_id: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// A10: acquires jobs by `runnerRequestId`; returns the ids actually acquired.
    fn acquire_jobs(
        &self,
        session: &MessageSession,
        request_ids: &[i64],
    ) -> impl Future<Output = Result<Vec<i64>, Error>> + Send;
    /// Forgets the admin token, so that the next call runs the credential exchange again.
    fn reauthenticate(&self);
}

/// Classifies an `actions_client` error for the error policy
/// ([`scaleset_core::listener_policy::on_error`]).
pub fn classify(error: &Error) -> ErrorClass {
    match error {
        Error::Config { .. } => ErrorClass::InvalidConfig,
        Error::ScaleSetNotFound(_) => ErrorClass::ScaleSetNotFound,
        Error::SessionConflict(_) => ErrorClass::SessionConflict,
        Error::SessionNotFound(_) => ErrorClass::SessionNotFound,
        Error::TokenExpired(_) => ErrorClass::QueueTokenExpired,
        Error::AuthFailed(_) => ErrorClass::Unauthorized,
        Error::RateLimited { retry_after, .. } => ErrorClass::RateLimited(*retry_after),
        Error::Rejected(_)
        | Error::RunnerGroupNotFound(_)
        | Error::RunnerNotFound(_)
        | Error::RunnerExists(_) => ErrorClass::Rejected,
        _ => ErrorClass::Transient,
    }
}

/// [`ScaleSetService`] over [`ActionsClient`] for one scale set. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ActionsService {
    client: ActionsClient,
    scale_set_id: i64,
}

impl ActionsService {
    /// A client for `config`'s URL, credentials and CA, with proxies from the environment. No
    /// network I/O happens here.
    pub fn connect(config: &ListenerConfig) -> Result<Self, Error> {
        let credentials = match &config.credentials {
            GitHubCredentials::Pat(token) => Credentials::pat(token.clone())?,
            GitHubCredentials::App {
                app_id,
                installation_id,
                private_key,
            } => Credentials::app(app_id.clone(), *installation_id, private_key)?,
            GitHubCredentials::Vault(lookup) => {
                return Err(Error::Config {
                    field: "vault_lookup_key",
                    value: lookup.lookup_key.clone(),
                    reason: "the credentials are still in Azure Key Vault; call ListenerConfig::resolve_vault first".into(),
                });
            }
        };
        let transport = Transport::new(TransportConfig {
            root_ca_pem: config.server_root_ca.clone(),
            ..TransportConfig::default()
        })?;
        let client = ActionsClient::builder(config.configure_url.clone(), credentials)
            .transport(transport)
            .system_info(SystemInfo {
                scale_set_id: config.runner_scale_set_id,
                subsystem: "listener".to_owned(),
                ..SystemInfo::default()
            })
            .build()?;
        Ok(ActionsService {
            client,
            scale_set_id: config.runner_scale_set_id,
        })
    }
}

impl ScaleSetService for ActionsService {
    async fn create_session(&self, owner: &str) -> Result<MessageSession, Error> {
        self.client
            .create_message_session(self.scale_set_id, owner)
            .await
    }

    async fn refresh_session(&self, session: &MessageSession) -> Result<MessageSession, Error> {
        self.client
            .refresh_message_session(self.scale_set_id, session)
            .await
    }

    async fn delete_session(&self, session: &MessageSession) -> Result<(), Error> {
        match self
            .client
            .delete_message_session(self.scale_set_id, &session.session_id)
            .await
        {
            Ok(()) | Err(Error::SessionNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn get_message(
        &self,
        session: &MessageSession,
        last_message_id: i64,
        max_capacity: i64,
    ) -> Result<Option<Message>, Error> {
        self.client
            .get_message(session, last_message_id, max_capacity)
            .await
    }

    async fn delete_message(&self, session: &MessageSession, message_id: i64) -> Result<(), Error> {
        self.client.delete_message(session, message_id).await
    }

    async fn acquire_jobs(
        &self,
        session: &MessageSession,
        request_ids: &[i64],
    ) -> Result<Vec<i64>, Error> {
        self.client
            .acquire_jobs(self.scale_set_id, session, request_ids)
            .await
    }

    fn reauthenticate(&self) {
        self.client.invalidate_admin_token();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actions_client::ErrorInfo;

    fn info() -> Box<ErrorInfo> {
        Box::new(ErrorInfo::new("get message", "x"))
    }

    #[test]
    fn classes() {
        let rate_limited = Error::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(7)),
            info: info(),
        };
        let cases = [
            (Error::SessionConflict(info()), ErrorClass::SessionConflict),
            (Error::SessionNotFound(info()), ErrorClass::SessionNotFound),
            (Error::TokenExpired(info()), ErrorClass::QueueTokenExpired),
            (Error::AuthFailed(info()), ErrorClass::Unauthorized),
            (
                Error::ScaleSetNotFound(info()),
                ErrorClass::ScaleSetNotFound,
            ),
            (Error::Rejected(info()), ErrorClass::Rejected),
            (Error::Server(info()), ErrorClass::Transient),
            (Error::Transport(info()), ErrorClass::Transient),
            (Error::BadResponse(info()), ErrorClass::Transient),
            (
                rate_limited,
                ErrorClass::RateLimited(Some(std::time::Duration::from_secs(7))),
            ),
        ];
        for (error, class) in cases {
            assert_eq!(classify(&error), class, "{error}");
        }
    }
}
