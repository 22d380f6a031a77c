//! Test harness for Cairn's cross-crate tests: runs the real `cairn` binary on a free
//! 127.0.0.1 port with a temp data dir, and always stops it (also when a test fails).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod linearizability;
pub mod proxy;
pub mod tls;
pub mod workload;

/// The `cairn` binary next to this test executable (target/<profile>/cairn), or `CAIRN_BIN`.
pub fn cairn_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // Tests live in target/<profile>/deps/, helper binaries in target/<profile>/.
    let dir = exe.parent().expect("exe dir");
    let candidates = [dir.join("cairn"), dir.parent().map(|p| p.join("cairn")).unwrap_or_default()];
    let bin = candidates.iter().find(|p| p.exists());
    bin.cloned().unwrap_or_else(|| {
        panic!("{} not found: run `cargo build --workspace --bins` before the tests", candidates[1].display())
    })
}

/// A port nobody listens on right now, never handed out before by this process.
///
/// Ports come from below Linux's ephemeral range (32768 and up), where the kernel picks the
/// local ports of outgoing connections and of `bind(0)`: a port found free there can be taken
/// by any client socket before the server binds it. Each test process starts at its own
/// pid-derived offset and walks forward, so parallel tests in one process never share a port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000; // 12000..32000
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = CURSOR.compare_exchange(u32::MAX, (std::process::id() * 7919) % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (LOW + CURSOR.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 12000..32000");
}

/// A running cairn process.
pub struct Cairn {
    child: Option<Child>,
    pub port: u16,
    /// The RESP (Redis protocol) port; 0 when the caller turned RESP off or chose the address.
    pub redis_port: u16,
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Cairn {
    /// Starts cairn on a free port with `data_dir` and waits until it answers.
    pub fn start(data_dir: &Path) -> Cairn {
        Self::start_with(data_dir, &[])
    }

    /// Like [`Cairn::start`], with extra flags.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Cairn {
        let port = free_port();
        let mut cairn = Self::spawn(data_dir, port, extra);
        cairn.wait_ready(Duration::from_secs(30));
        cairn
    }

    /// Starts cairn without waiting for it. Unless `extra` names `--listen-redis-urls`, RESP
    /// listens on a free port too (parallel servers must not share Redis's 6379).
    pub fn spawn(data_dir: &Path, port: u16, extra: &[&str]) -> Cairn {
        let url = format!("http://127.0.0.1:{port}");
        // Every member listens for peers; a lone test server gets a free port of its own.
        let peer_args: Vec<String> = if extra.contains(&"--listen-peer-urls") {
            Vec::new()
        } else {
            let peer = format!("http://127.0.0.1:{}", free_port());
            vec!["--listen-peer-urls".into(), peer.clone(), "--initial-advertise-peer-urls".into(), peer]
        };
        let redis_port = if extra.iter().any(|a| a.starts_with("--listen-redis-urls")) { 0 } else { free_port() };
        let redis_args: Vec<String> = if redis_port == 0 {
            Vec::new()
        } else {
            vec!["--listen-redis-urls".into(), format!("127.0.0.1:{redis_port}")]
        };
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let child = Command::new(cairn_bin())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(&peer_args)
            .args(&redis_args)
            .args(extra)
            // CAIRN_TEST_LOG_LEVEL (e.g. "info,cairn_raft=trace") turns up the servers' logs.
            .args(std::env::var("CAIRN_TEST_LOG_LEVEL").map(|l| vec!["--log-level".to_string(), l]).unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn cairn");
        Cairn { child: Some(child), port, redis_port, data_dir: data_dir.to_path_buf(), log }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<redis_port>`: where RESP clients connect.
    pub fn redis_addr(&self) -> String {
        format!("127.0.0.1:{}", self.redis_port)
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let url = self.url();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("cairn exited with {status} before it was ready:\n{}", self.log());
            }
            let ok = rt.block_on(async {
                match etcd_client::Client::connect([url.as_str()], None).await {
                    Ok(mut c) => c.status().await.is_ok(),
                    Err(_) => false,
                }
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "cairn not ready after {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the server to exit by itself: its exit status code (None if a signal ended
    /// it), or Err after `timeout` with it still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let child = self.child.as_mut().ok_or("not running")?;
        let status = wait_for_exit(child, timeout).ok_or_else(|| format!("still running after {timeout:?}"))?;
        self.child = None;
        Ok(status.code())
    }

    /// SIGTERM, then waits for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        terminate(self.child.take()?)
    }
}

/// SIGTERM to `c`, then waits (15 s at most) for its exit: its status code, or None when it had
/// to be killed.
pub fn terminate(mut c: Child) -> Option<i32> {
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    match wait_for_exit(&mut c, Duration::from_secs(15)) {
        Some(status) => status.code(),
        None => {
            let _ = c.kill();
            let _ = c.wait();
            None
        }
    }
}

/// Waits up to `timeout` for `c` to exit: its status, or None while it still runs.
fn wait_for_exit(c: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = c.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Cairn {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs cairn to completion with `args` (for flag and start-up error tests), with a timeout.
/// RESP is off unless `args` turn it on (parallel servers must not share Redis's 6379).
pub fn run_cairn(args: &[&str], timeout: Duration) -> Output {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let mut child = Command::new(cairn_bin())
        .env("CAIRN_LISTEN_REDIS_URLS", "off")
        .args(args)
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A multi-threaded runtime for a test body.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A real etcd (Debian's etcd-server, or `ETCD_BIN`) on free 127.0.0.1 ports, for differential
/// tests; killed when dropped.
pub struct RealEtcd {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RealEtcd {
    pub fn start() -> RealEtcd {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(&bin)
            .args(["--name", "s1", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("s1={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run real etcd ({bin}): {e}; install Debian's etcd-server"));
        let etcd = RealEtcd { child, port, _dir: dir };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !rt.block_on(async {
            match etcd_client::Client::connect([etcd.url()], None).await {
                Ok(mut c) => c.status().await.is_ok(),
                Err(_) => false,
            }
        }) {
            assert!(Instant::now() < deadline, "real etcd did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl RealEtcd {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Resident memory of process `pid` in bytes (VmRSS), Linux only.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
