//! The RESP (Redis protocol) listeners: `--listen-redis-urls` parsing, binding, serving.
//!
//! Accepted forms: `redis://host:port`, `tcp://host:port` or bare `host:port`; several are
//! comma-separated; an empty value or `off` turns RESP off.

use anyhow::bail;
use tokio::net::TcpListener;

/// The addresses to listen on; empty when RESP is off.
pub fn urls(flag: &[String]) -> Vec<String> {
    flag.iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty() && !u.eq_ignore_ascii_case("off"))
        .collect()
}

async fn resolve(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let hostport = match url.split_once("://") {
        Some(("redis" | "tcp", rest)) => rest,
        Some((scheme, _)) => bail!("unsupported URL scheme {scheme:?} in --listen-redis-urls {url} (use redis://, tcp:// or host:port)"),
        None => url,
    };
    crate::listen::lookup(url, hostport).await
}

/// Binds every RESP URL, failing with a one-line reason on the first that cannot be bound.
pub async fn bind_all(urls: &[String]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for url in urls {
        out.push(crate::listen::bind(url, resolve(url).await?).await?);
    }
    Ok(out)
}

/// Serves RESP on every listener until `stop` turns true.
pub fn spawn_all<S>(
    listeners: Vec<TcpListener>,
    store: S,
    max_request_bytes: usize,
    max_txn_ops: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinSet<std::io::Result<()>>
where
    S: cairn_api::Kv + cairn_api::Lease + cairn_api::Watch + cairn_api::Maintenance + cairn_api::Auth,
{
    let mut set = tokio::task::JoinSet::new();
    for listener in listeners {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let config = cairn_resp::Config { max_request_bytes, max_txn_ops, port };
        let mut stop = stop.clone();
        set.spawn(cairn_resp::serve(listener, store.clone(), config, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_and_empty_turn_resp_off() {
        assert!(urls(&["".into()]).is_empty());
        assert!(urls(&["off".into()]).is_empty());
        assert_eq!(urls(&["127.0.0.1:6379".into()]), vec!["127.0.0.1:6379".to_string()]);
    }

    #[tokio::test]
    async fn schemes_are_redis_tcp_or_none() {
        for u in ["redis://127.0.0.1:1", "tcp://127.0.0.1:1", "127.0.0.1:1"] {
            assert_eq!(resolve(u).await.unwrap().port(), 1, "{u}");
        }
        assert!(resolve("http://127.0.0.1:1").await.is_err());
    }
}
