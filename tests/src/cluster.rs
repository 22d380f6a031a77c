//! A cluster of N members of real etcd or of Cairn on 127.0.0.1, for fault tests.
//!
//! Both backends take etcd's flags (`--name`, `--data-dir`, `--listen-client-urls`,
//! `--advertise-client-urls`, `--listen-peer-urls`, `--initial-advertise-peer-urls`,
//! `--initial-cluster`, `--initial-cluster-state`, `--initial-cluster-token`,
//! `--heartbeat-interval`, `--election-timeout`), so one harness drives both.
//!
//! ```no_run
//! use cairn_tests::cluster::{Backend, Cluster};
//! use cairn_tests::workload::{verify, Workload};
//! let mut cluster = Cluster::start(Backend::Cairn, 3); // or Backend::Etcd
//! let rt = cairn_tests::runtime();
//! let running = Workload::default().start(&rt, cluster.live());
//! let leader = cluster.leader();
//! cluster.isolate(leader);
//! // ... wait for a new leader ...
//! cluster.heal();
//! let (history, finals) = running.stop(&rt);
//! verify(&history, &finals).unwrap(); // linearizable, acknowledged writes present
//! cluster.check_hash_kv().unwrap(); // same HashKV on every member
//! ```
//!
//! Faults: [`Cluster::kill9`] / [`Cluster::restart`] a member, [`Cluster::kill9_all`] /
//! [`Cluster::restart_all`], [`Cluster::isolate`] / [`Cluster::partition`] / [`Cluster::heal`],
//! and [`Cluster::delay`] (a slow member).
//!
//! The network faults need no root: every member advertises its peer URL at a userspace TCP
//! proxy ([`Net`]) that forwards to the member's real peer port. A peer connection is only
//! ever made *to* a member's advertised URL, so every peer byte crosses one proxy; the proxy
//! learns which member opened each connection from `/proc` (the process owning the connecting
//! socket), so it knows each connection's link (from, to) and can cut or delay links one by
//! one. A cut link closes its open connections and holds new ones open without forwarding (a
//! black hole) until healed; a delayed link delivers every chunk that much later, in order.
//! A connection whose dialler is gone before the lookup (it gave up or was killed) cannot be
//! attributed; it is cut whenever any link of its target is.
//! The one assumption about the backend: members reach each other only at the peer URLs the
//! cluster advertises (true of etcd, and of any transport dialling `--initial-cluster` URLs).
//! Network namespaces with veth would also work here (we run as root) but leave state behind
//! when a test process dies, and `tc netem` (delays) is missing from this kernel.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::free_port;

/// Which server the cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Real etcd (`ETCD_BIN`, else `etcd` on the PATH: Debian's etcd-server 3.4).
    Etcd,
    /// Cairn (`CAIRN_BIN`, else target/<profile>/cairn).
    Cairn,
}

impl Backend {
    fn bin(self) -> PathBuf {
        match self {
            Backend::Etcd => PathBuf::from(std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into())),
            Backend::Cairn => crate::cairn_bin(),
        }
    }
}

/// Timing of the cluster's Raft (etcd's flags, in milliseconds).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// `--snapshot-count` (applied entries between snapshots), when not the server's default.
    pub snapshot_count: Option<u64>,
}

impl Default for Timing {
    /// etcd's defaults.
    fn default() -> Self {
        Timing { heartbeat_ms: 100, election_ms: 1000, snapshot_count: None }
    }
}

/// The members' client URLs and which members are up; shared with workload drivers so they
/// follow membership changes and do not send to a member the harness killed (those requests
/// would only add unknown outcomes).
#[derive(Clone, Default)]
pub struct Live(Arc<Mutex<Vec<(String, bool)>>>);

impl Live {
    pub fn is_up(&self, member: usize) -> bool {
        self.0.lock().expect("live lock").get(member).is_some_and(|m| m.1)
    }

    /// Client URLs of the members that are up, with their indexes.
    pub fn up(&self) -> Vec<(usize, String)> {
        let members = self.0.lock().expect("live lock");
        members.iter().enumerate().filter(|(_, m)| m.1).map(|(i, m)| (i, m.0.clone())).collect()
    }

    fn set(&self, member: usize, up: bool) {
        self.0.lock().expect("live lock")[member].1 = up;
    }

    fn push(&self, url: String) {
        self.0.lock().expect("live lock").push((url, false));
    }
}

struct Member {
    name: String,
    client_port: u16,
    /// Where the member listens for peers.
    peer_port: u16,
    /// Where the others reach it: its proxy.
    proxy_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// The member id it reports (etcd's hex id as a number), once known.
    id: Option<u64>,
    /// `--initial-cluster` and `--initial-cluster-state` it starts with.
    initial_cluster: String,
    state: &'static str,
    /// Removed from the cluster for good.
    removed: bool,
}

/// A running cluster; every member is killed when it is dropped (also when a test panics).
pub struct Cluster {
    pub backend: Backend,
    pub timing: Timing,
    members: Vec<Member>,
    token: String,
    net: Net,
    live: Live,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members with etcd's default timing and waits until they agree on a leader.
    pub fn start(backend: Backend, n: usize) -> Cluster {
        Cluster::start_with(backend, n, Timing::default())
    }

    pub fn start_with(backend: Backend, n: usize, timing: Timing) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let net = Net::new(n);
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("m{i}");
            let peer_port = free_port();
            let proxy_port = net.listen(i, peer_port);
            members.push(Member {
                data_dir: dir.path().join(&name),
                log: dir.path().join(format!("{name}.log")),
                name,
                client_port: free_port(),
                peer_port,
                proxy_port,
                child: None,
                id: None,
                initial_cluster: String::new(),
                state: "new",
                removed: false,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.proxy_port))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial_cluster.clone();
        }
        let token = format!("cairn-faults-{}-{}", std::process::id(), members[0].client_port);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let live = Live::default();
        for m in &members {
            live.push(format!("http://127.0.0.1:{}", m.client_port));
        }
        let mut cluster = Cluster { backend, timing, members, token, net, live, rt, dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    /// Members ever started, removed ones included (indexes are never reused).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Client URL of member `i`.
    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    pub fn live(&self) -> Live {
        self.live.clone()
    }

    /// What member `i` wrote to stderr (all its runs).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// The tail of every member's log, for failure messages.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let log = self.log(i);
            let all: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {} (last {lines} lines)\n", m.name));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        assert!(m.child.is_none(), "{} is running", m.name);
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log).expect("log file");
        let mut cmd = Command::new(self.backend.bin());
        cmd.args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", m.peer_port)])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{}", m.proxy_port)])
            .args(["--initial-cluster", &m.initial_cluster])
            // On a restart the data dir exists and etcd ignores the initial-cluster flags.
            .args(["--initial-cluster-state", m.state, "--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", &self.timing.heartbeat_ms.to_string()])
            .args(["--election-timeout", &self.timing.election_ms.to_string()]);
        if let Some(count) = self.timing.snapshot_count {
            cmd.args(["--snapshot-count", &count.to_string()]);
        }
        if self.backend == Backend::Cairn {
            // Members share one machine: Redis's 6379 would be taken by the first.
            cmd.args(["--listen-redis-urls", "off"]);
            if let Ok(level) = std::env::var("CAIRN_TEST_LOG_LEVEL") {
                cmd.args(["--log-level", &level]);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.backend.bin()));
        self.net.set_pid(i, Some(child.id()));
        self.members[i].child = Some(child);
    }

    /// SIGKILL member `i` (no chance to flush anything).
    pub fn kill9(&mut self, i: usize) {
        self.live.set(i, false);
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.net.set_pid(i, None);
    }

    /// SIGKILL every member at once.
    pub fn kill9_all(&mut self) {
        for i in 0..self.len() {
            self.live.set(i, false);
        }
        for m in &mut self.members {
            if let Some(c) = m.child.as_mut() {
                let _ = c.kill();
            }
        }
        for i in 0..self.len() {
            self.kill9(i);
        }
    }

    /// Starts member `i` again on its data dir and waits until it answers.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_member(i, Duration::from_secs(30));
    }

    /// Starts every stopped member, then waits for a healthy cluster.
    pub fn restart_all(&mut self) {
        for i in 0..self.len() {
            if self.members[i].child.is_none() && !self.members[i].removed {
                self.spawn(i);
            }
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Adds a member: `MemberAdd` through the leader, then starts it with
    /// `--initial-cluster-state existing`. Returns its index.
    pub fn add_member(&mut self) -> usize {
        let i = self.members.len();
        let name = format!("m{i}");
        let peer_port = free_port();
        self.net.add_member();
        let proxy_port = self.net.listen(i, peer_port);
        let peer_url = format!("http://127.0.0.1:{proxy_port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let l = self.leader();
            let added = self.client(l).map(|mut c| self.rt.block_on(c.member_add([peer_url.as_str()], None)));
            match added {
                Some(Ok(_)) => break,
                other => {
                    let err = other.map(|r| r.err());
                    assert!(Instant::now() < deadline, "MemberAdd {peer_url} failed: {err:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        let mut initial: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.proxy_port))
            .collect();
        initial.push(format!("{name}={peer_url}"));
        let client_port = free_port();
        self.live.push(format!("http://127.0.0.1:{client_port}"));
        self.members.push(Member {
            data_dir: self.dir.path().join(&name),
            log: self.dir.path().join(format!("{name}.log")),
            name,
            client_port,
            peer_port,
            proxy_port,
            child: None,
            id: None,
            initial_cluster: initial.join(","),
            state: "existing",
            removed: false,
        });
        self.spawn(i);
        self.wait_member(i, Duration::from_secs(30));
        i
    }

    /// Removes member `i` (`MemberRemove` through another member), then kills it: it is out of
    /// every later check.
    pub fn remove_member(&mut self, i: usize) {
        let id = self.members[i].id.expect("member id known");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let via = (0..self.len()).find(|&j| j != i && self.members[j].child.is_some()).expect("another member");
            let removed = self.client(via).map(|mut c| self.rt.block_on(c.member_remove(id)));
            match removed {
                Some(Ok(_)) => break,
                other => {
                    let err = other.map(|r| r.err());
                    assert!(Instant::now() < deadline, "MemberRemove {id:x} failed: {err:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        self.kill9(i);
        self.members[i].removed = true;
    }

    /// Indexes of the members still in the cluster (running or not).
    pub fn members(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| !self.members[i].removed).collect()
    }

    /// Cuts every link between `group` and the other members (links inside each side stay).
    pub fn partition(&self, group: &[usize]) {
        let n = self.len();
        let mut cut = Vec::new();
        for &a in group {
            for b in (0..n).filter(|b| !group.contains(b)) {
                cut.push((a, b));
            }
        }
        self.net.cut(&cut);
    }

    /// Cuts member `i` off from every other member (clients still reach it).
    pub fn isolate(&self, i: usize) {
        self.partition(&[i]);
    }

    /// Restores every link and removes every delay.
    pub fn heal(&self) {
        self.net.heal();
    }

    /// Delays every peer byte to and from member `i` by `delay` (each direction).
    pub fn delay(&self, i: usize, delay: Duration) {
        self.net.set_delay(i, delay);
    }

    /// Connections the proxies could not attribute to a member: their dialler closed its socket
    /// (or died) before the lookup. They are cut whenever any link of their target is.
    pub fn unattributed_connections(&self) -> usize {
        self.net.state.lock().expect("net lock").unattributed
    }

    fn client(&self, i: usize) -> Option<Client> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        self.rt.block_on(Client::connect([self.url(i)], Some(opts))).ok()
    }

    /// Member `i`'s view: (its id, the leader's id, raft term), if it answers.
    pub fn status(&self, i: usize) -> Option<(u64, u64, u64)> {
        let mut c = self.client(i)?;
        let s = self.rt.block_on(c.status()).ok()?;
        Some((s.header()?.member_id(), s.leader(), s.raft_term()))
    }

    /// The member that member `i` names as its leader, if it answers and names one.
    pub fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let (_, leader, _) = self.status(i)?;
        self.members.iter().position(|m| m.id == Some(leader))
    }

    /// Waits up to `timeout` for `cond`; false if it never held.
    pub fn wait_for(&mut self, timeout: Duration, mut cond: impl FnMut(&mut Cluster) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn wait_member(&mut self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.members[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{} exited with {status}:\n{}", self.members[i].name, self.log(i));
            }
            if let Some((id, _, _)) = self.status(i) {
                self.members[i].id = Some(id);
                self.live.set(i, true);
                return;
            }
            assert!(Instant::now() < deadline, "{} not answering after {timeout:?}:\n{}", self.members[i].name, self.log(i));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running member answers and all agree on a leader among them.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in 0..self.len() {
            if self.members[i].child.is_some() {
                self.wait_member(i, deadline.saturating_duration_since(Instant::now()));
            }
        }
        loop {
            if self.leader_now().is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "no agreed leader after {timeout:?}:\n{}", self.logs_tail(20));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The leader, if every running member answers and names the same leader, one of them.
    fn leader_now(&mut self) -> Option<usize> {
        let mut leader = None;
        for i in 0..self.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let (id, l, _) = self.status(i)?;
            self.members[i].id = Some(id);
            if l == 0 || leader.is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l);
        }
        let leader = leader?;
        self.members.iter().position(|m| m.child.is_some() && m.id == Some(leader))
    }

    /// Waits (up to 30 s) for an agreed leader and returns it.
    pub fn leader(&mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.leader_now() {
                return l;
            }
            assert!(Instant::now() < deadline, "no agreed leader:\n{}", self.logs_tail(20));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Some member that is not the leader.
    pub fn follower(&mut self) -> usize {
        let l = self.leader();
        self.members().into_iter().find(|&i| i != l).expect("more than one member")
    }

    /// Waits until every member has applied the cluster's latest revision, then compares
    /// `Maintenance.HashKV` at that revision on every member. Returns the revision and hash.
    pub fn check_hash_kv(&mut self) -> Result<(i64, u32), String> {
        let l = self.leader();
        let mut c = self.client(l).ok_or("leader not answering")?;
        // A linearizable read gives the latest revision.
        let rev = self.rt.block_on(c.get("hash-kv-probe", None)).map_err(|e| e.to_string())?;
        let rev = rev.header().ok_or("no header")?.revision();
        let mut hashes = Vec::new();
        for i in self.members() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let got = self.client(i).map(|mut c| self.rt.block_on(c.hash_kv(rev)));
                match got {
                    Some(Ok(h)) => {
                        hashes.push((i, h.hash(), h.compact_version()));
                        break;
                    }
                    _ if Instant::now() > deadline => {
                        return Err(format!("{} gave no HashKV at revision {rev}: {:?}", self.members[i].name, got.map(|r| r.err())));
                    }
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        if hashes.iter().any(|&(_, h, c)| (h, c) != (hashes[0].1, hashes[0].2)) {
            return Err(format!("HashKV at revision {rev} differs: (member, hash, compact revision) {hashes:?}"));
        }
        Ok((rev, hashes[0].1))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The peer network: one proxy per member, links that can be cut or delayed.
struct Net {
    state: Arc<Mutex<NetState>>,
    /// Bumped on every change so open connections re-check their link.
    changed: tokio::sync::watch::Sender<u64>,
    rt: Option<tokio::runtime::Runtime>,
}

#[derive(Default)]
struct NetState {
    pids: Vec<Option<u32>>,
    /// Cut links, unordered (a < b).
    cut: HashSet<(usize, usize)>,
    delay: Vec<Duration>,
    unattributed: usize,
}

impl NetState {
    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }
}

impl Net {
    fn new(n: usize) -> Net {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cluster-net")
            .enable_all()
            .build()
            .expect("net runtime");
        let state = NetState { pids: vec![None; n], delay: vec![Duration::ZERO; n], ..NetState::default() };
        Net { state: Arc::new(Mutex::new(state)), changed: tokio::sync::watch::channel(0).0, rt: Some(rt) }
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("net runtime")
    }

    /// Starts member `to`'s proxy, forwarding to `target`; returns the proxy's port.
    fn listen(&self, to: usize, target: u16) -> u16 {
        let listener = self.rt().block_on(TcpListener::bind("127.0.0.1:0")).expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = self.state.clone();
        let changed = self.changed.subscribe();
        self.rt().spawn(async move {
            while let Ok((conn, from_addr)) = listener.accept().await {
                let (state, changed) = (state.clone(), changed.clone());
                tokio::spawn(async move {
                    let from = match identify(&state, from_addr, port).await {
                        Origin::Member(m) => Some(m),
                        Origin::Gone => return,
                        Origin::Unknown => {
                            state.lock().expect("net lock").unattributed += 1;
                            None
                        }
                    };
                    proxy(conn, from, to, target, state, changed).await;
                });
            }
        });
        port
    }

    fn add_member(&self) {
        let mut s = self.state.lock().expect("net lock");
        s.pids.push(None);
        s.delay.push(Duration::ZERO);
    }

    fn set_pid(&self, member: usize, pid: Option<u32>) {
        self.state.lock().expect("net lock").pids[member] = pid;
    }

    fn cut(&self, links: &[(usize, usize)]) {
        let mut s = self.state.lock().expect("net lock");
        for &(a, b) in links {
            s.cut.insert((a.min(b), a.max(b)));
        }
        drop(s);
        self.changed.send_modify(|v| *v += 1);
    }

    fn heal(&self) {
        let mut s = self.state.lock().expect("net lock");
        s.cut.clear();
        s.delay.iter_mut().for_each(|d| *d = Duration::ZERO);
        drop(s);
        self.changed.send_modify(|v| *v += 1);
    }

    fn set_delay(&self, member: usize, delay: Duration) {
        self.state.lock().expect("net lock").delay[member] = delay;
        self.changed.send_modify(|v| *v += 1);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Who opened a connection to a proxy.
#[derive(Debug, PartialEq, Eq)]
enum Origin {
    Member(usize),
    /// The dialler already closed its socket: nothing to forward.
    Gone,
    /// Not found (not one of the members' sockets, or the lookup lost a race).
    Unknown,
}

/// Which member opened the connection that reached proxy `proxy_port` from `from`: the
/// member process owning the socket 127.0.0.1:from.port -> proxy_port.
async fn identify(state: &Mutex<NetState>, from: SocketAddr, proxy_port: u16) -> Origin {
    for _ in 0..10 {
        let pids = state.lock().expect("net lock").pids.clone();
        let found = tokio::task::spawn_blocking(move || socket_owner(from.port(), proxy_port, &pids)).await;
        match found {
            Ok(Origin::Unknown) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(origin) => return origin,
        }
    }
    Origin::Unknown
}

fn socket_owner(local_port: u16, remote_port: u16, pids: &[Option<u32>]) -> Origin {
    let mut inode = None;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| addr.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if f.len() > 9 && port(f[1]) == Some(local_port) && port(f[2]) == Some(remote_port) {
                inode = Some(f[9].to_string());
            }
        }
    }
    let Some(inode) = inode else { return Origin::Unknown };
    if inode == "0" {
        return Origin::Gone; // closed by its process, lingering in FIN_WAIT or TIME_WAIT
    }
    let want = format!("socket:[{inode}]");
    let owner = pids.iter().position(|pid| {
        pid.is_some_and(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten().any(|e| {
                std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == want.as_str())
            })
        })
    });
    owner.map_or(Origin::Unknown, Origin::Member)
}

/// Forwards one connection from member `from` (if known) to member `to` at `target`, as long
/// as their link is not cut, delaying each direction by both ends' delays.
async fn proxy(
    conn: TcpStream,
    from: Option<usize>,
    to: usize,
    target: u16,
    state: Arc<Mutex<NetState>>,
    mut changed: tokio::sync::watch::Receiver<u64>,
) {
    // A connection of unknown origin (its dialler died or gave up before the lookup) is
    // treated as cut whenever any link of `to` is: a partition never leaks.
    let cut = |s: &NetState| match from {
        Some(f) => s.is_cut(f, to),
        None => s.cut.iter().any(|&(a, b)| a == to || b == to),
    };
    if cut(&state.lock().expect("net lock")) {
        // A black hole: accepted, never answered, closed once the link heals.
        while changed.changed().await.is_ok() {
            if !cut(&state.lock().expect("net lock")) {
                return;
            }
        }
        return;
    }
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let _ = conn.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let delay = {
        let state = state.clone();
        move || {
            let s = state.lock().expect("net lock");
            s.delay[to] + from.map_or(Duration::ZERO, |f| s.delay[f])
        }
    };
    let (cr, cw) = conn.into_split();
    let (ur, uw) = upstream.into_split();
    let pumps = async {
        tokio::join!(pump(cr, uw, delay.clone()), pump(ur, cw, delay));
    };
    let cut_now = async {
        while changed.changed().await.is_ok() {
            if cut(&state.lock().expect("net lock")) {
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    // Dropping the halves closes both sockets.
    tokio::select! {
        _ = pumps => {}
        _ = cut_now => {}
    }
}

/// Copies `r` to `w`, delivering each chunk `delay()` after it was read, in order.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: impl Fn() -> Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((tokio::time::Instant::now() + delay(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server standing in for member 1's peer port.
    fn echo(rt: &tokio::runtime::Runtime) -> u16 {
        let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = l.local_addr().unwrap().port();
        rt.spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    async fn round_trip(s: &mut TcpStream, wait: Duration) -> Option<Duration> {
        let start = Instant::now();
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(wait, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) if &buf == b"ping" => Some(start.elapsed()),
            _ => None,
        }
    }

    #[test]
    fn proxy_attributes_cuts_black_holes_heals_and_delays_links() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let net = Net::new(3);
        // This test process plays member 0; the proxy fronts member 1.
        net.set_pid(0, Some(std::process::id()));
        let proxy = net.listen(1, echo(net.rt()));
        rt.block_on(async {
            let connect = || TcpStream::connect(("127.0.0.1", proxy));
            let mut open = connect().await.unwrap();
            assert!(round_trip(&mut open, Duration::from_secs(5)).await.is_some(), "forwards");

            // Cutting another link changes nothing for this one.
            net.cut(&[(1, 2)]);
            assert!(round_trip(&mut open, Duration::from_secs(5)).await.is_some(), "link 0-1 is not cut");

            net.cut(&[(0, 1)]);
            let mut buf = [0u8; 1];
            let closed = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf)).await;
            assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the open connection is closed: {closed:?}");
            let mut held = connect().await.unwrap();
            assert!(round_trip(&mut held, Duration::from_millis(300)).await.is_none(), "a new connection is a black hole");

            net.heal();
            let closed = tokio::time::timeout(Duration::from_secs(5), held.read(&mut buf)).await;
            assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the held connection closes on heal: {closed:?}");
            let mut fresh = connect().await.unwrap();
            assert!(round_trip(&mut fresh, Duration::from_secs(5)).await.is_some(), "healed");

            // 100 ms on member 1's side, 50 on member 0's: 150 ms each way.
            net.set_delay(1, Duration::from_millis(100));
            net.set_delay(0, Duration::from_millis(50));
            let rtt = round_trip(&mut fresh, Duration::from_secs(5)).await.expect("delayed, not lost");
            assert!(rtt >= Duration::from_millis(300), "round trip {rtt:?} includes both delays both ways");
        });
        assert_eq!(net.state.lock().unwrap().unattributed, 0, "every connection came from member 0");
    }
}
