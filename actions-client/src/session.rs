//! [`ScaleSetSession`]: owns one message session and keeps it usable.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::Retryable;

use crate::client::ActionsClient;
use crate::error::{Error, ErrorInfo, Result};
use crate::types::{MessageSession, ScaleSetMessage, Statistics};

/// How [`ScaleSetSession`] deals with a session conflict (409).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Keep retrying a conflicting create for this long (0 = fail at once).
    pub conflict_timeout: Duration,
    /// First wait between conflicting creates.
    pub conflict_min_delay: Duration,
    /// Largest wait between conflicting creates.
    pub conflict_max_delay: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            conflict_timeout: Duration::from_secs(300),
            conflict_min_delay: Duration::from_secs(2),
            conflict_max_delay: Duration::from_secs(30),
        }
    }
}

struct State {
    session: MessageSession,
    generation: u64,
    statistics: Option<Statistics>,
}

/// A message session owned by this process.
///
/// * a 401 on get message, delete message or acquire jobs refreshes the queue token and retries
///   once (a second 401 is [`Error::TokenExpired`]);
/// * a session the service reports gone is re-created and the call retried once;
/// * a conflicting create (another live session) is retried with backoff for
///   [`SessionOptions::conflict_timeout`];
/// * [`ScaleSetSession::close`] deletes the session; dropping an open one deletes it in the
///   background when a Tokio runtime is available.
pub struct ScaleSetSession {
    client: ActionsClient,
    scale_set_id: i64,
    owner: String,
    options: SessionOptions,
    state: Mutex<State>,
    renew: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

impl std::fmt::Debug for ScaleSetSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleSetSession")
            .field("scale_set_id", &self.scale_set_id)
            .field("owner", &self.owner)
            .field("session_id", &self.session().session_id)
            .finish()
    }
}

#[derive(Clone, Copy)]
enum Renewal {
    Refresh,
    Recreate,
}

impl ScaleSetSession {
    /// Creates a session for `scale_set_id` owned by `owner` (e.g. the pod name).
    pub async fn open(
        client: ActionsClient,
        scale_set_id: i64,
        owner: impl Into<String>,
        options: SessionOptions,
    ) -> Result<Self> {
        let owner = owner.into();
        let session = create(&client, scale_set_id, &owner, &options).await?;
        Ok(Self {
            client,
            scale_set_id,
            owner,
            options,
            state: Mutex::new(State {
                statistics: session.statistics,
                session,
                generation: 0,
            }),
            renew: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    /// The scale set id.
    pub fn scale_set_id(&self) -> i64 {
        self.scale_set_id
    }

    /// The client.
    pub fn client(&self) -> &ActionsClient {
        &self.client
    }

    /// A copy of the current session.
    pub fn session(&self) -> MessageSession {
        self.lock().session.clone()
    }

    /// The latest statistics: from the newest message that had them, else from the session.
    pub fn statistics(&self) -> Option<Statistics> {
        self.lock().statistics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Result<(MessageSession, u64)> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::SessionNotFound(Box::new(ErrorInfo::new(
                "session",
                "the session was closed",
            ))));
        }
        let state = self.lock();
        Ok((state.session.clone(), state.generation))
    }

    async fn run<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(MessageSession) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let (session, generation) = self.current()?;
        let renewal = match call(session).await {
            Err(Error::TokenExpired(_)) => Renewal::Refresh,
            Err(Error::SessionNotFound(info)) => {
                tracing::info!(problem = %info, "message session gone; creating a new one");
                Renewal::Recreate
            }
            other => return other,
        };
        self.renew(generation, renewal).await?;
        let (session, _) = self.current()?;
        call(session).await
    }

    async fn renew(&self, generation: u64, renewal: Renewal) -> Result<()> {
        let _guard = self.renew.lock().await;
        let (session, current) = self.current()?;
        if current != generation {
            return Ok(());
        }
        let fresh = match renewal {
            Renewal::Refresh => {
                match self
                    .client
                    .refresh_message_session(self.scale_set_id, &session)
                    .await
                {
                    Ok(s) => s,
                    Err(Error::SessionNotFound(_)) => {
                        create(&self.client, self.scale_set_id, &self.owner, &self.options).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            Renewal::Recreate => {
                create(&self.client, self.scale_set_id, &self.owner, &self.options).await?
            }
        };
        let mut state = self.lock();
        if fresh.statistics.is_some() {
            state.statistics = fresh.statistics;
        }
        state.session = fresh;
        state.generation += 1;
        Ok(())
    }

    /// Q1 with refresh and re-creation; see [`ActionsClient::get_message`].
    pub async fn get_message(
        &self,
        last_message_id: i64,
        max_capacity: i64,
    ) -> Result<Option<ScaleSetMessage>> {
        let message = self
            .run(|s| async move {
                self.client
                    .get_message(&s, last_message_id, max_capacity)
                    .await
            })
            .await?;
        if let Some(stats) = message.as_ref().and_then(|m| m.statistics) {
            self.lock().statistics = Some(stats);
        }
        Ok(message)
    }

    /// Q2 with refresh and re-creation; see [`ActionsClient::delete_message`].
    pub async fn delete_message(&self, message_id: i64) -> Result<()> {
        self.run(|s| async move { self.client.delete_message(&s, message_id).await })
            .await
    }

    /// A10 with refresh and re-creation; see [`ActionsClient::acquire_jobs`].
    pub async fn acquire_jobs(&self, request_ids: &[i64]) -> Result<Vec<i64>> {
        self.run(|s| async move {
            self.client
                .acquire_jobs(self.scale_set_id, &s, request_ids)
                .await
        })
        .await
    }

    /// Deletes the session (A9). Idempotent; a session already gone counts as deleted.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let id = self.lock().session.session_id.clone();
        match self
            .client
            .delete_message_session(self.scale_set_id, &id)
            .await
        {
            Ok(()) | Err(Error::SessionNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for ScaleSetSession {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("message session dropped outside a Tokio runtime; not deleted");
            return;
        };
        let client = self.client.clone();
        let scale_set_id = self.scale_set_id;
        let id = self.lock().session.session_id.clone();
        runtime.spawn(async move {
            if let Err(e) = client.delete_message_session(scale_set_id, &id).await {
                tracing::warn!(error = %e, "deleting the dropped message session failed");
            }
        });
    }
}

async fn create(
    client: &ActionsClient,
    scale_set_id: i64,
    owner: &str,
    options: &SessionOptions,
) -> Result<MessageSession> {
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(options.conflict_min_delay)
        .with_max_delay(options.conflict_max_delay)
        .with_factor(2.0)
        .without_max_times()
        .with_total_delay(Some(options.conflict_timeout));
    (|| client.create_message_session(scale_set_id, owner))
        .retry(backoff)
        .when(|e| matches!(e, Error::SessionConflict(_)) && !options.conflict_timeout.is_zero())
        .notify(|e, wait| tracing::info!(error = %e, ?wait, "message session conflict; retrying"))
        .await
}
