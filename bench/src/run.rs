//! Running a workload: connections, the request budget, the client tasks, the progress bar.
//!
//! Setup (connections, prefill, lease grants, watch creation) happens before the clock starts,
//! so the reported throughput and latencies cover only the measured requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_etcd_v3::pb::etcdserverpb::{
    watch_request, PutRequest, WatchCreateRequest,
    WatchRequest,
};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use crate::connection::Connection;
use crate::keys;
use crate::report::{Report, Stats};
use crate::workloads::{self, Worker};
use crate::{BenchArgs, BenchError, Workload};

/// Requests sent when neither --total nor --duration is given.
const DEFAULT_TOTAL: u64 = 10_000;

/// How long watch-latency waits for the last events after the last put.
const WATCH_DRAIN: Duration = Duration::from_secs(5);

/// Hands out request numbers until the count or the time is used up.
struct Budget {
    issued: AtomicU64,
    total: Option<u64>,
    deadline: Option<Instant>,
}

impl Budget {
    fn start(args: &BenchArgs) -> Budget {
        let deadline = args.duration.map(|d| Instant::now() + d);
        let total = match (args.total, deadline) {
            (Some(t), _) => Some(t),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TOTAL),
        };
        Budget { issued: AtomicU64::new(0), total, deadline }
    }

    fn next(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.total {
            Some(t) if n >= t => None,
            _ => Some(n),
        }
    }
}

/// The progress bar on stderr, refreshed by a ticker task (drawn only on a terminal).
struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(args: &BenchArgs, budget: &Budget, done: Arc<AtomicU64>) -> Progress {
        let timed = budget.total.is_none();
        let bar = if args.no_progress {
            ProgressBar::hidden()
        } else if let Some(d) = args.duration.filter(|_| timed) {
            ProgressBar::new(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        } else {
            ProgressBar::new(budget.total.unwrap_or(DEFAULT_TOTAL))
        };
        let template = if timed {
            "[{elapsed_precise}] {wide_bar} {msg}"
        } else {
            "[{elapsed_precise}] {wide_bar} {pos}/{len} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let ticker_bar = bar.clone();
        let start = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64().max(1e-3);
                if timed {
                    ticker_bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
                    ticker_bar.set_message(format!("{n} requests, {:.0} req/s", n as f64 / secs));
                } else {
                    ticker_bar.set_position(n);
                    ticker_bar.set_message(format!("{:.0} req/s", n as f64 / secs));
                }
            }
        });
        Progress { bar, ticker }
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// Opens `--conns` connections, spread over the endpoints round-robin.
async fn connect(args: &BenchArgs) -> Result<Vec<Connection>, BenchError> {
    let mut connections = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let ep = &args.endpoints[i % args.endpoints.len()];
        let connection = Connection::open(ep).await.map_err(|source| BenchError::Connect { endpoint: ep.clone(), source })?;
        connections.push(connection);
    }
    Ok(connections)
}

pub async fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    if args.clients == 0 || args.conns == 0 {
        return Err(BenchError::Usage("--clients and --conns must be at least 1".into()));
    }
    if args.key_size == 0 {
        return Err(BenchError::Usage("--key-size must be at least 1".into()));
    }
    if args.endpoints.is_empty() {
        return Err(BenchError::Usage("no --endpoints".into()));
    }
    let connections = connect(args).await?;
    match &args.workload {
        Workload::WatchLatency { streams, watchers_per_stream, put_rate } => {
            watch_latency(args, &connections, *streams, *watchers_per_stream, *put_rate).await
        }
        _ => closed_loop(args, &connections).await,
    }
}

/// Waits for every task and merges what each measured into `stats`.
async fn join_into(stats: &mut Stats, tasks: &mut JoinSet<Stats>, what: &str) {
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(s) => stats.merge(s),
            Err(e) => stats.error(format!("{what} task failed: {e}")),
        }
    }
}

/// put, range, txn-put, lease-keepalive: `--clients` tasks, each one request in flight.
async fn closed_loop(args: &BenchArgs, connections: &[Connection]) -> Result<Report, BenchError> {
    if let Workload::Range { prefill, .. } = &args.workload {
        workloads::prefill(connections, args, (*prefill).max(1)).await?;
    }
    let mut workers = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        workers.push(Worker::new(i, connections[i % connections.len()].clone(), args).await?);
    }
    let budget = Arc::new(Budget::start(args));
    let done = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(args, &budget, done.clone());
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for mut worker in workers {
        let (budget, done, timeout) = (budget.clone(), done.clone(), args.timeout);
        tasks.spawn(async move {
            let mut stats = Stats::new();
            while let Some(seq) = budget.next() {
                let t = Instant::now();
                match worker.call(seq, timeout).await {
                    Ok(()) => stats.ok(t.elapsed()),
                    Err(e) => stats.error(e),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            stats
        });
    }
    let mut stats = Stats::new();
    join_into(&mut stats, &mut tasks, "client").await;
    let elapsed = start.elapsed();
    progress.finish();
    Ok(Report::build(args.workload.name(), args, stats, elapsed))
}

/// watch-latency: `--clients` putters write one key at `put_rate`; every watcher's event is one
/// latency sample, measured from just before the put was sent to the event's arrival.
async fn watch_latency(
    args: &BenchArgs,
    connections: &[Connection],
    streams: usize,
    watchers_per_stream: usize,
    put_rate: u64,
) -> Result<Report, BenchError> {
    if streams == 0 || watchers_per_stream == 0 {
        return Err(BenchError::Usage("--streams and --watchers-per-stream must be at least 1".into()));
    }
    let key = keys::key(0, args.key_size);
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut watch_tasks = JoinSet::new();
    for s in 0..streams {
        let mut client = connections[s % connections.len()].watch();
        let (tx, rx) = tokio::sync::mpsc::channel(watchers_per_stream + 1);
        for _ in 0..watchers_per_stream {
            let create = WatchCreateRequest { key: key.clone(), ..Default::default() };
            let req = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
            tx.send(req).await.map_err(|_| BenchError::Setup("watch request stream closed".into()))?;
        }
        let mut stream = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| BenchError::Setup(format!("watch: {s}")))?
            .into_inner();
        let mut created = 0;
        while created < watchers_per_stream {
            match stream.message().await {
                Ok(Some(r)) if r.created => created += 1,
                Ok(Some(_)) => {}
                Ok(None) => return Err(BenchError::Setup("watch stream ended during setup".into())),
                Err(s) => return Err(BenchError::Setup(format!("watch: {s}"))),
            }
        }
        let (sent, received, mut stop) = (sent.clone(), received.clone(), stop_rx.clone());
        watch_tasks.spawn(async move {
            let _keep_request_stream_open = tx;
            let mut stats = Stats::new();
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    msg = stream.message() => match msg {
                        Ok(Some(r)) => {
                            let now = Instant::now();
                            for ev in r.events {
                                let seq = ev.kv.as_ref().and_then(|kv| keys::value_seq(&kv.value));
                                let t0 = seq.and_then(|n| sent.lock().ok()?.get(&n).copied());
                                if let Some(t0) = t0 {
                                    stats.ok(now - t0);
                                    received.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Ok(None) => { stats.error("watch stream ended"); break }
                        Err(s) => { stats.error(format!("watch: {s}")); break }
                    }
                }
            }
            stats
        });
    }

    let budget = Arc::new(Budget::start(args));
    let done = Arc::new(AtomicU64::new(0));
    let put_ok = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(args, &budget, done.clone());
    let start = Instant::now();
    let mut putters = JoinSet::new();
    for i in 0..args.clients {
        let mut kv = connections[i % connections.len()].kv();
        let (budget, done, put_ok, sent, key) = (budget.clone(), done.clone(), put_ok.clone(), sent.clone(), key.clone());
        let (val_size, timeout, clients) = (args.val_size, args.timeout, args.clients);
        putters.spawn(async move {
            let mut stats = Stats::new();
            let mut pace = (put_rate > 0)
                .then(|| tokio::time::interval(Duration::from_secs_f64(clients as f64 / put_rate as f64)));
            while let Some(seq) = budget.next() {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                if let Ok(mut m) = sent.lock() {
                    m.insert(seq, Instant::now());
                }
                let req = PutRequest { key: key.clone(), value: keys::value(seq, val_size), ..Default::default() };
                match tokio::time::timeout(timeout, kv.put(req)).await {
                    Ok(Ok(_)) => {
                        put_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(s)) => stats.error(format!("put: {:?}: {}", s.code(), s.message())),
                    Err(_) => stats.error(format!("put timed out after {timeout:?}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            stats
        });
    }
    let mut stats = Stats::new();
    join_into(&mut stats, &mut putters, "putter").await;
    let expected = put_ok.load(Ordering::Relaxed) * (streams * watchers_per_stream) as u64;
    let drain_until = Instant::now() + WATCH_DRAIN;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let _ = stop_tx.send(true);
    join_into(&mut stats, &mut watch_tasks, "watch").await;
    let got = received.load(Ordering::Relaxed);
    if got < expected {
        stats.errors_n("watch event not received", expected - got);
    }
    progress.finish();
    Ok(Report::build(args.workload.name(), args, stats, elapsed))
}
