//! `rest_client_requests_total` for the manager's Kubernetes client: each request counted by
//! its method, the API server's host and the response's status code (`<error>` when none came),
//! as client-go counts the requests of ARC's controller.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use k8s_reconcilers::metrics::RestClientLabels;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

/// [`Layer`] of [`RequestMetrics`].
#[derive(Clone)]
pub struct RequestMetricsLayer {
    requests: Family<RestClientLabels, Counter>,
    host: String,
}

impl RequestMetricsLayer {
    /// Counts into `requests`, labelled with the API server `host`.
    pub fn new(requests: Family<RestClientLabels, Counter>, host: String) -> Self {
        Self { requests, host }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// Counts every request's outcome.
#[derive(Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    layer: RequestMetricsLayer,
}

impl<S, B, R> Service<http::Request<B>> for RequestMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method().to_string();
        let layer = self.layer.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "<error>".to_owned(),
            };
            layer
                .requests
                .get_or_create(&RestClientLabels {
                    code,
                    host: layer.host,
                    method,
                })
                .inc();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_code_method_and_host() {
        let requests = Family::<RestClientLabels, Counter>::default();
        let layer = RequestMetricsLayer::new(requests.clone(), "10.0.0.1:6443".into());
        let mut service = layer.layer(tower::service_fn(|r: http::Request<()>| async move {
            let status = if r.method() == http::Method::GET {
                200
            } else {
                409
            };
            Ok::<_, ()>(
                http::Response::builder()
                    .status(status)
                    .body(())
                    .expect("response"),
            )
        }));
        for method in [http::Method::GET, http::Method::GET, http::Method::PATCH] {
            let request = http::Request::builder()
                .method(method)
                .body(())
                .expect("request");
            (&mut service).oneshot(request).await.expect("response");
        }
        let count = |code: &str, method: &str| {
            requests
                .get_or_create(&RestClientLabels {
                    code: code.into(),
                    host: "10.0.0.1:6443".into(),
                    method: method.into(),
                })
                .get()
        };
        assert_eq!(count("200", "GET"), 2);
        assert_eq!(count("409", "PATCH"), 1);
    }
}
