//! Start-up problems end with one clear line on stderr and a non-zero exit, never a panic.

use std::net::TcpListener;
use std::time::Duration;

use cairn_tests::{free_port, run_cairn, Cairn};

fn one_line_error(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    stderr.lines().filter(|l| l.starts_with("cairn: ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_taken_port_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", holder.local_addr().unwrap().port());
    let data = dir.path().join("d");
    let out = run_cairn(&["--data-dir", data.to_str().unwrap(), "--listen-client-urls", &url], Duration::from_secs(20));
    let line = one_line_error(&out);
    assert!(line.contains("address already in use"), "{line}");
}

#[test]
fn a_data_dir_held_by_another_cairn_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let _first = Cairn::start(&data);
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = run_cairn(&["--data-dir", data.to_str().unwrap(), "--listen-client-urls", &url], Duration::from_secs(20));
    let line = one_line_error(&out);
    assert!(line.contains("in use by another cairn"), "{line}");
}

#[test]
fn an_unusable_data_dir_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = run_cairn(&["--data-dir", file.to_str().unwrap(), "--listen-client-urls", &url], Duration::from_secs(20));
    let line = one_line_error(&out);
    assert!(line.contains("cannot use data dir"), "{line}");
}

#[test]
fn version_and_help_work() {
    let out = run_cairn(&["--version"], Duration::from_secs(10));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cairn "));
    let out = run_cairn(&["--help"], Duration::from_secs(10));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--name", "--data-dir", "--listen-client-urls", "--advertise-client-urls", "--max-request-bytes", "--log-level"] {
        assert!(help.contains(flag), "--help lists {flag}");
    }
}

#[test]
fn etcd_environment_variables_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(cairn_tests::cairn_bin())
        .env("ETCD_DATA_DIR", &data)
        .env("ETCD_LISTEN_CLIENT_URLS", &url)
        .env("CAIRN_NAME", "envname")
        .env("ETCD_LISTEN_REDIS_URLS", "off")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = cairn_tests::runtime();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let name = loop {
        let got = rt.block_on(async {
            let mut c = etcd_client::Client::connect([url.as_str()], None).await.ok()?;
            let m = c.member_list().await.ok()?;
            Some(m.members()[0].name().to_string())
        });
        if let Some(n) = got {
            break n;
        }
        assert!(std::time::Instant::now() < deadline, "server from env vars never came up");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(name, "envname");
    assert!(data.join("member").exists(), "ETCD_DATA_DIR was used");
}
