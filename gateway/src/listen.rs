//! Client listeners: binding the client URLs and serving the protocol routes on them.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context};
use tokio::net::TcpListener;
use cairn_etcd_v3::lenient_authority::LenientAuthority;
use tokio_stream::wrappers::TcpListenerStream;

/// Parses `http://host:port` into an address to bind.
async fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => bail!("unsupported URL scheme {scheme:?} in {url} (only http for now)"),
        None => bail!("URL {url} has no scheme (expected http://host:port)"),
    };
    lookup(url, rest).await
}

/// The first address `hostport` (from `url`) resolves to.
pub async fn lookup(url: &str, hostport: &str) -> anyhow::Result<SocketAddr> {
    let hostport = hostport.trim_end_matches('/');
    let mut addrs = tokio::net::lookup_host(hostport).await.with_context(|| format!("cannot resolve {url}"))?;
    addrs.next().ok_or_else(|| anyhow!("{url} resolves to no address"))
}

/// Binds `addr` (named `url` in errors), with a one-line reason when it cannot.
pub async fn bind(url: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!("cannot listen on {url}: address already in use"),
        _ => anyhow!("cannot listen on {url}: {e}"),
    })
}

/// Binds every URL, failing with a one-line reason on the first that cannot be bound.
pub async fn bind_all(urls: &[String]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for url in urls {
        out.push(bind(url, resolve(url).await?).await?);
    }
    Ok(out)
}

/// Accepted connections, each read through the `:authority` repair real etcd clients need.
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<LenientAuthority<tokio::net::TcpStream>>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        conn.map(|stream| {
            let _ = stream.set_nodelay(true);
            LenientAuthority::new(stream)
        })
    })
}

/// Serves `routes` on every listener until `shutdown` completes.
pub async fn serve(
    listeners: Vec<TcpListener>,
    routes: tonic::service::Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners {
        let routes = routes.clone();
        let mut stop = stop_rx.clone();
        servers.spawn(async move {
            tonic::transport::Server::builder()
                // HTTP/1.1 too: the JSON gateway and the v2 API share the port with gRPC.
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming(listener), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while let Some(res) = servers.join_next().await {
        res.context("listener task")?.context("serving")?;
    }
    Ok(())
}
