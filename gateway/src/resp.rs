//! The RESP (Redis protocol) listeners: `--listen-redis-urls` parsing, binding, serving.
//!
//! Accepted forms: `redis://host:port`, `tcp://host:port` or bare `host:port` (plaintext) and
//! `rediss://host:port` (TLS with --cert-file/--key-file, client certificates checked as on
//! the client URLs, as `redis-cli --tls` expects); several are comma-separated; an empty value
//! or `off` turns RESP off.

use std::sync::Arc;

use anyhow::bail;
use futures::StreamExt;

use crate::listen::{AcceptLimits, Listener};

/// Redis's answer to a client past `maxclients`, sent before closing a refused plaintext connection.
const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// The addresses to listen on; empty when RESP is off.
pub fn urls(flag: &[String]) -> Vec<String> {
    flag.iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty() && !u.eq_ignore_ascii_case("off"))
        .collect()
}

/// Whether `url` is TLS, and its address.
async fn resolve(url: &str) -> anyhow::Result<(bool, std::net::SocketAddr)> {
    let (tls, hostport) = match url.split_once("://") {
        Some(("redis" | "tcp", rest)) => (false, rest),
        Some(("rediss", rest)) => (true, rest),
        Some((scheme, _)) => bail!("unsupported URL scheme {scheme:?} in --listen-redis-urls {url} (use redis://, rediss://, tcp:// or host:port)"),
        None => (false, url),
    };
    Ok((tls, crate::listen::lookup(url, hostport).await?))
}

/// Binds every RESP URL, failing with a one-line reason on the first that cannot be bound.
pub async fn bind_all(urls: &[String], tls: Option<&Arc<rustls::ServerConfig>>) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for url in urls {
        let (secure, addr) = resolve(url).await?;
        let tls = match (secure, tls) {
            (true, Some(config)) => Some(config.clone()),
            (true, None) => bail!("TLS key/cert (--cert-file, --key-file) must be provided for {url}"),
            (false, _) => None,
        };
        out.push(Listener::new(url, crate::listen::bind(url, addr).await?, tls));
    }
    Ok(out)
}

/// Serves RESP on every listener until `stop` turns true.
pub fn spawn_all<S>(
    listeners: Vec<Listener>,
    store: S,
    max_request_bytes: usize,
    max_txn_ops: usize,
    max_connections: usize,
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
        let limits = AcceptLimits { max_connections, refusal: Some(MAX_CLIENTS_REACHED) };
        let accepted = crate::listen::incoming(listener, limits).filter_map(|conn| async move {
            let conn = conn.ok()?;
            let info = conn.info().clone();
            let addr = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
            Some(cairn_resp::Accepted {
                peer: addr(info.tcp.remote_addr()),
                local: addr(info.tcp.local_addr()),
                cert_user: info.cert_cn,
                stream: conn,
            })
        });
        set.spawn(cairn_resp::serve_connections(accepted, store.clone(), config, async move {
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
    async fn schemes_are_redis_rediss_tcp_or_none() {
        for u in ["redis://127.0.0.1:1", "tcp://127.0.0.1:1", "127.0.0.1:1"] {
            assert_eq!(resolve(u).await.unwrap(), (false, "127.0.0.1:1".parse().unwrap()), "{u}");
        }
        assert!(resolve("rediss://127.0.0.1:1").await.unwrap().0);
        assert!(resolve("http://127.0.0.1:1").await.is_err());
    }
}
