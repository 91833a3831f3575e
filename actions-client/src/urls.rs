//! Building Actions service and message-queue URLs
//! (docs/architecture.md#urls-decoding-and-user-agent,
//! docs/architecture.md#message-session-and-long-poll).

use url::Url;

/// The `api-version` every Actions service request carries.
pub const API_VERSION: &str = "6.0-preview";

/// `S` joined with `path` (repeated `/` collapsed, `.`/`..` cleaned, a trailing `/` kept), with
/// `params` and `api-version` merged into the query, keys sorted, form-encoded.
pub fn service_url(base: &str, path: &str, params: &[(&str, &str)]) -> Result<String, String> {
    let mut url = Url::parse(base).map_err(|e| format!("Actions service URL {base:?}: {e}"))?;
    let joined = clean_path(&format!("{}/{}", url.path(), path));
    url.set_path(&joined);
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (k, v) in params {
        pairs.retain(|(key, _)| key != k);
        pairs.push(((*k).to_owned(), (*v).to_owned()));
    }
    if !pairs.iter().any(|(k, _)| k == "api-version") {
        pairs.push(("api-version".to_owned(), API_VERSION.to_owned()));
    }
    set_sorted_query(&mut url, pairs);
    Ok(url.to_string())
}

fn clean_path(path: &str) -> String {
    let trailing = path.ends_with('/');
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut joined = format!("/{}", out.join("/"));
    if trailing && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

fn set_sorted_query(url: &mut Url, mut pairs: Vec<(String, String)>) {
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if pairs.is_empty() {
        url.set_query(None);
        return;
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    url.set_query(Some(&query));
}

/// `M` for GET message: `lastMessageId` merged (sorted re-encoding) only when `last > 0`.
pub fn get_message_url(queue_url: &str, last_message_id: i64) -> Result<String, String> {
    if last_message_id <= 0 {
        return Ok(queue_url.to_owned());
    }
    let mut url =
        Url::parse(queue_url).map_err(|e| format!("message queue URL {queue_url:?}: {e}"))?;
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "lastMessageId")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.push(("lastMessageId".to_owned(), last_message_id.to_string()));
    set_sorted_query(&mut url, pairs);
    Ok(url.to_string())
}

/// `M` with `/{id}` appended to its path; the original query kept byte for byte.
pub fn delete_message_url(queue_url: &str, message_id: i64) -> Result<String, String> {
    let mut url =
        Url::parse(queue_url).map_err(|e| format!("message queue URL {queue_url:?}: {e}"))?;
    let query = url.query().map(str::to_owned);
    let path = format!("{}/{message_id}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(query.as_deref());
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn service_urls() {
        assert_eq!(
            service_url(
                "https://pipelines.example/AbC/",
                "/_apis/runtime/runnerscalesets/42",
                &[]
            )
            .unwrap(),
            "https://pipelines.example/AbC/_apis/runtime/runnerscalesets/42?api-version=6.0-preview"
        );
        assert_eq!(
            service_url(
                "https://p.example/AbC",
                "_apis/runtime/runnergroups/",
                &[("groupName", "gpu pool")]
            )
            .unwrap(),
            "https://p.example/AbC/_apis/runtime/runnergroups/?api-version=6.0-preview&groupName=gpu+pool"
        );
        assert_eq!(
            service_url(
                "https://p.example/t//x/../",
                "/_apis/runtime/runnerscalesets",
                &[("runnerGroupId", "1"), ("name", "c++ & #1")]
            )
            .unwrap(),
            "https://p.example/t/_apis/runtime/runnerscalesets?api-version=6.0-preview&name=c%2B%2B+%26+%231&runnerGroupId=1"
        );
    }

    #[test]
    fn queue_urls() {
        let m = "https://broker.example/queue/42?sessionId=5f0c&z=1";
        assert_eq!(get_message_url(m, 0).unwrap(), m);
        assert_eq!(
            get_message_url(m, 17).unwrap(),
            "https://broker.example/queue/42?lastMessageId=17&sessionId=5f0c&z=1"
        );
        assert_eq!(
            delete_message_url("https://broker.example/queue/42?z=1&sessionId=5f0c", 17).unwrap(),
            "https://broker.example/queue/42/17?z=1&sessionId=5f0c"
        );
        assert_eq!(
            delete_message_url("http://h/q/", 3).unwrap(),
            "http://h/q/3"
        );
    }
}
