//! `--pprof-addr`: CPU profiles in Go's pprof format, as ARC's controller serves them with
//! `net/http/pprof`, so `go tool pprof http://<addr>/debug/pprof/profile?seconds=30` works.
//!
//! `GET /debug/pprof/profile?seconds=N` samples the whole process at 100 Hz for N seconds
//! (default 30, as Go) with `pprof-rs` and returns the gzipped protobuf profile;
//! `GET /debug/pprof/` lists what is served. Go's other profiles (heap, goroutine, ...) have no
//! counterpart here. One profile runs at a time; a second request is refused with 409, as Go
//! refuses one with 500.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pprof::protos::Message;

/// Sampling frequency (Go's default CPU profile rate).
const FREQUENCY: i32 = 100;
/// Profile length when `seconds` is absent (Go's default).
const DEFAULT_SECONDS: u64 = 30;
/// Longest profile served.
const MAX_SECONDS: u64 = 3600;

/// The routes served on `--pprof-addr`.
pub fn router() -> axum::Router {
    axum::Router::new()
        .route("/debug/pprof/", axum::routing::get(index))
        .route("/debug/pprof/profile", axum::routing::get(profile))
}

async fn index() -> &'static str {
    "/debug/pprof/\n\nprofile: CPU profile in pprof format; ?seconds=N sets its length \
     (default 30).\n\nGo's heap, allocs, goroutine, block, mutex, threadcreate and trace \
     profiles have no counterpart in this Rust process.\n"
}

async fn profile(Query(query): Query<HashMap<String, String>>) -> Response {
    let seconds = match profile_seconds(query.get("seconds").map(String::as_str)) {
        Ok(s) => s,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let sampled =
        tokio::task::spawn_blocking(move || cpu_profile(Duration::from_secs(seconds))).await;
    match sampled {
        Ok(Ok(body)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile\"",
                ),
            ],
            body,
        )
            .into_response(),
        Ok(Err(ProfileError::Busy)) => (
            StatusCode::CONFLICT,
            "a CPU profile is already being taken; retry when it is done\n",
        )
            .into_response(),
        Ok(Err(ProfileError::Failed(e))) => {
            tracing::warn!(error = %e, "CPU profile failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not take a CPU profile: {e}\n"),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the CPU profile task failed: {e}\n"),
        )
            .into_response(),
    }
}

/// The profile length a `seconds` query value asks for.
fn profile_seconds(value: Option<&str>) -> Result<u64, String> {
    let Some(value) = value else {
        return Ok(DEFAULT_SECONDS);
    };
    match value.parse::<u64>() {
        Ok(s) if (1..=MAX_SECONDS).contains(&s) => Ok(s),
        _ => Err(format!(
            "seconds: {value:?} is not a profile length; use a whole number of seconds from 1 \
             to {MAX_SECONDS}, e.g. ?seconds=30\n"
        )),
    }
}

enum ProfileError {
    Busy,
    Failed(String),
}

/// Samples the process for `length` and returns the gzipped protobuf profile.
fn cpu_profile(length: Duration) -> Result<Vec<u8>, ProfileError> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| match e {
            pprof::Error::Running => ProfileError::Busy,
            other => ProfileError::Failed(other.to_string()),
        })?;
    std::thread::sleep(length);
    let report = guard
        .report()
        .build()
        .map_err(|e| ProfileError::Failed(e.to_string()))?;
    drop(guard);
    let profile = report
        .pprof()
        .map_err(|e| ProfileError::Failed(e.to_string()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())
        .and_then(|()| gz.finish())
        .map_err(|e| ProfileError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_default_to_30_and_bad_values_name_the_parameter() {
        assert_eq!(profile_seconds(None), Ok(30));
        assert_eq!(profile_seconds(Some("2")), Ok(2));
        for bad in ["0", "-1", "1.5", "x", "3601"] {
            let e = profile_seconds(Some(bad)).expect_err("a bad length");
            assert!(
                e.starts_with("seconds: ") && e.contains("?seconds=30"),
                "{e}"
            );
        }
    }
}
