//! A server confined to one CPU still runs two runtime workers: the Raft log's fsync blocks
//! the worker it runs on, and with a single worker every connection waited for it (the tail
//! at 1,000 clients doubled; BENCHMARKS.md, run 10).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_tests::free_port;

/// Starts cairn under `taskset` with `cpus` and returns its "ready to serve" log line.
fn ready_line(cpus: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let mut child = Command::new("taskset")
        .args(["-c", cpus])
        .arg(cairn_tests::cairn_bin())
        .args(["--data-dir", dir.path().join("d").to_str().unwrap(), "--listen-client-urls", &url])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .env("CAIRN_LISTEN_REDIS_URLS", "off")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("taskset (util-linux) runs cairn");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ready to serve client requests") {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    line.expect("cairn logged that it is ready")
}

#[test]
fn one_cpu_still_gets_two_runtime_workers() {
    let line = ready_line("0", &[]);
    assert!(line.contains("runtime_workers=2"), "{line}");
}

#[test]
fn tokio_worker_threads_still_decides() {
    let line = ready_line("0", &[("TOKIO_WORKER_THREADS", "1")]);
    assert!(line.contains("runtime_workers=1"), "{line}");
}
