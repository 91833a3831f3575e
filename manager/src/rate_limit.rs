//! Client-side rate limit of the manager's Kubernetes requests: a token bucket, as client-go's
//! `--kube-api-qps` / `--kube-api-burst` (and ARC's `k8sClientRateLimiterQPS` / `Burst`) mean.
//!
//! Up to `burst` requests go at once, then one every `1/qps` seconds. tower's `RateLimit` is a
//! fixed window instead (`burst` requests, then nothing until the window ends), which stalled
//! single requests for up to `burst/qps` seconds (1.5 s with the chart's defaults) whenever a
//! few runners finished together.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tower::{Layer, Service};

/// [`Layer`] of [`TokenBucket`]; every service it wraps shares one bucket.
#[derive(Clone)]
pub struct TokenBucketLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl TokenBucketLayer {
    /// `qps` requests per second on average, `burst` at once. `qps` must be positive and finite
    /// (the flag parser checks it); a `burst` of 0 counts as 1.
    pub fn new(qps: f64, burst: u64) -> Self {
        let interval =
            Duration::from_secs_f64(1.0 / qps.max(f64::MIN_POSITIVE)).max(Duration::from_nanos(1));
        let burst =
            NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: Arc::new(RateLimiter::direct(quota)),
        }
    }
}

impl<S> Layer<S> for TokenBucketLayer {
    type Service = TokenBucket<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenBucket {
            inner,
            limiter: self.limiter.clone(),
            wait: None,
            permitted: false,
        }
    }
}

/// A service that is ready once it holds a token from the shared bucket and its inner service
/// is ready; each request spends the token.
pub struct TokenBucket<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    wait: Option<BoxFuture<'static, ()>>,
    permitted: bool,
}

impl<S, B> Service<http::Request<B>> for TokenBucket<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            let limiter = self.limiter.clone();
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(async move { limiter.until_ready().await }));
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
            self.permitted = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.permitted = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_burst_goes_at_once_then_the_bucket_is_empty() {
        let layer = TokenBucketLayer::new(20.0, 5);
        let mut service = layer.layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, ()>(())
        }));
        for _ in 0..5 {
            (&mut service)
                .oneshot(http::Request::new(()))
                .await
                .expect("within the burst");
        }
        assert!(
            layer.limiter.check().is_err(),
            "five requests used the burst of five"
        );
        // The next request waits for a token instead of failing.
        (&mut service)
            .oneshot(http::Request::new(()))
            .await
            .expect("after a wait");
    }

    #[test]
    fn odd_settings_still_make_a_limiter() {
        for (qps, burst) in [(0.001, 0), (1e9, u64::MAX), (20.0, 30)] {
            let layer = TokenBucketLayer::new(qps, burst);
            assert!(layer.limiter.check().is_ok(), "qps {qps} burst {burst}");
        }
    }
}
