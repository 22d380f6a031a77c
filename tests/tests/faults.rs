//! Faults under load (issue 4): while clients read and write a few keys on every member, a
//! fault hits the cluster; afterwards the recorded history must be linearizable, every
//! acknowledged write present, and `Maintenance.HashKV` equal on every member.
//!
//! Each scenario runs against real etcd 3.4 (`faults_etcd_*`: proves the harness and the
//! checker) and against Cairn (`faults_cairn_*`, the same scenarios on Cairn's binary).
//! Scenarios run one at a time (each is a few seconds of load on a 3- or 5-member cluster).
//! `CAIRN_FAULTS_SEED` replays a workload's random choices.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_tests::cluster::{Backend, Cluster};
use cairn_tests::linearizability::{Op, Operation, Outcome, Recorder};
use cairn_tests::runtime;
use cairn_tests::workload::{verify, Workload};
use etcd_client::{Client, GetOptions};

/// One scenario at a time: they share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Starts `members` members, runs the workload, calls `fault` (which injects the fault and
/// repairs it), keeps the load on for a while, then checks everything.
fn scenario(backend: Backend, members: usize, name: &str, fault: impl FnOnce(&mut Cluster)) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut cluster = Cluster::start(backend, members);
    let up = started.elapsed();
    let rt = runtime();
    let running = Workload::default().start(&rt, cluster.live());
    // Load first: the fault hits a cluster in the middle of acknowledging writes.
    wait_acked_writes(&running.recorder, 0, 30, name);
    let before_fault = running.recorder.now();
    fault(&mut cluster);
    let repaired = running.recorder.now();
    let fault_time = Duration::from_nanos(repaired - before_fault);
    cluster.wait_healthy(Duration::from_secs(30));
    let healthy = Duration::from_nanos(running.recorder.now() - repaired);
    sleep(500);
    wait_acked_writes(&running.recorder, repaired, 30, name);
    let (history, finals) = running.stop(&rt);


    let checking = Instant::now();
    let summary = verify(&history, &finals)
        .unwrap_or_else(|e| panic!("{name}: {e}\nserver logs:\n{}", cluster.logs_tail(15)));
    let check_time = checking.elapsed();
    let (rev, hash) = cluster.check_hash_kv().unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {} ops ({} ok, {} acked writes, {} unknown, {} unknown writes pruned), linearizable; \
         HashKV {hash:#x} at revision {rev} on all members; {:.1} s (start {up:.1?}, fault {fault_time:.1?}, \
         healthy again {healthy:.1?}, check {check_time:.1?}); {} peer connections unattributed",
        history.len(),
        summary.ok,
        summary.acked_writes,
        summary.stats.unknown,
        summary.stats.pruned,
        started.elapsed().as_secs_f64(),
        cluster.unattributed_connections(),
    );
}

fn acked_write(o: &Operation) -> bool {
    !matches!(o.op, Op::Get { .. }) && !matches!(o.outcome, Outcome::Unknown | Outcome::Fail)
}

/// Waits (up to 60 s, else fails) until `n` writes invoked after `since` are acknowledged.
fn wait_acked_writes(rec: &Recorder, since: u64, n: usize, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let acked = rec.history().iter().filter(|o| acked_write(o) && o.invoke >= since).count();
        if acked >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: only {acked} writes acknowledged in 60 s");
        sleep(100);
    }
}

/// kill -9 the leader; the others elect a new one; the old leader comes back.
fn kill_leader(c: &mut Cluster) {
    let old = c.leader();
    c.kill9(old);
    let others: Vec<usize> = (0..c.len()).filter(|&i| i != old).collect();
    let elected = c.wait_for(Duration::from_secs(20), |c| {
        c.leader_seen_by(others[0]).is_some_and(|l| l != old)
    });
    assert!(elected, "no new leader after the leader was killed");
    sleep(1000);
    c.restart(old);
}

/// kill -9 a follower, keep going without it, restart it.
fn kill_follower(c: &mut Cluster) {
    let f = c.follower();
    c.kill9(f);
    sleep(2000);
    c.restart(f);
}

/// Cut the leader off from every other member; the majority elects a new leader; heal.
fn partition_leader(c: &mut Cluster) {
    let old = c.leader();
    c.isolate(old);
    let other = (0..c.len()).find(|&i| i != old).expect("other member");
    let elected = c.wait_for(Duration::from_secs(20), |c| c.leader_seen_by(other).is_some_and(|l| l != old));
    assert!(elected, "the majority elected no new leader while the old one was cut off");
    sleep(1000);
    c.heal();
}

/// 5 members: the leader and one follower (a minority) cut off from the other three.
fn partition_leader_minority(c: &mut Cluster) {
    let old = c.leader();
    let buddy = (0..c.len()).find(|&i| i != old).expect("follower");
    c.partition(&[old, buddy]);
    let other = (0..c.len()).find(|&i| i != old && i != buddy).expect("majority member");
    let elected = c.wait_for(Duration::from_secs(20), |c| c.leader_seen_by(other).is_some_and(|l| l != old && l != buddy));
    assert!(elected, "the majority elected no new leader");
    sleep(1000);
    c.heal();
}

/// Add a member, then remove the leader (its replacement takes over), under load.
fn add_and_remove_members(c: &mut Cluster) {
    let added = c.add_member();
    sleep(1000);
    let old = c.leader();
    c.remove_member(old);
    let other = c.members().into_iter().find(|&i| i != old).expect("members left");
    let elected = c.wait_for(Duration::from_secs(20), |c| c.leader_seen_by(other).is_some_and(|l| l != old));
    assert!(elected, "no new leader after the leader was removed");
    assert!(c.members().contains(&added));
    sleep(1000);
    // And a follower, back to three members.
    let f = c.follower();
    c.remove_member(f);
}

/// kill -9 every member at once, start them all again.
fn restart_all(c: &mut Cluster) {
    c.kill9_all();
    sleep(300);
    c.restart_all();
}

/// One follower's peer traffic is delayed by 150 ms each way for a while.
fn slow_follower(c: &mut Cluster) {
    let f = c.follower();
    c.delay(f, Duration::from_millis(150));
    sleep(3000);
    c.heal();
}

// Real etcd 3.4: the harness and the checker against the reference.

#[test]
fn faults_etcd_kill_leader() {
    scenario(Backend::Etcd, 3, "etcd kill leader", kill_leader);
}

#[test]
fn faults_etcd_kill_follower_and_restart() {
    scenario(Backend::Etcd, 3, "etcd kill follower", kill_follower);
}

#[test]
fn faults_etcd_partition_leader() {
    scenario(Backend::Etcd, 3, "etcd partition leader", partition_leader);
}

#[test]
fn faults_etcd_add_and_remove_members() {
    scenario(Backend::Etcd, 3, "etcd add and remove members", add_and_remove_members);
}

#[test]
fn faults_etcd_restart_all() {
    scenario(Backend::Etcd, 3, "etcd restart all", restart_all);
}

#[test]
fn faults_etcd_slow_follower() {
    scenario(Backend::Etcd, 3, "etcd slow follower", slow_follower);
}

#[test]
fn faults_etcd_5_members_partition_leader_minority() {
    scenario(Backend::Etcd, 5, "etcd 5 members partition leader+1", partition_leader_minority);
}

#[test]
fn faults_etcd_5_members_kill_leader() {
    scenario(Backend::Etcd, 5, "etcd 5 members kill leader", kill_leader);
}

/// The whole chain can fail: a serializable read from a follower cut off from the leader
/// returns a value overwritten before the read began, and the check must say so.
fn stale_read_is_caught(backend: Backend) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(backend, 3);
    let (l, f) = (c.leader(), c.follower());
    let rt = runtime();
    let rec = Recorder::new();
    let connect = |url: String| rt.block_on(Client::connect([url], None)).unwrap();
    let (mut leader, mut follower) = (connect(c.url(l)), connect(c.url(f)));
    let serializable = || Some(GetOptions::new().with_serializable());
    let put = |client: &mut Client, value: &str| {
        let p = rec.invoke(0, Op::Put { key: "k".into(), value: value.into() });
        rt.block_on(client.put("k", value, None)).unwrap();
        p.complete(Outcome::Put);
    };
    put(&mut leader, "v1");
    let caught_up = c.wait_for(Duration::from_secs(10), |_| {
        let r = rt.block_on(follower.get("k", serializable())).unwrap();
        r.kvs().first().is_some_and(|kv| kv.value() == b"v1")
    });
    assert!(caught_up, "the follower applies v1");
    c.isolate(f);
    put(&mut leader, "v2");
    let p = rec.invoke(1, Op::Get { key: "k".into() });
    let r = rt.block_on(follower.get("k", serializable())).unwrap();
    let seen = r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
    p.complete(Outcome::Get(seen.clone()));
    assert_eq!(seen.as_deref(), Some("v1"), "the cut-off follower still serves v1");
    let finals = HashMap::from([("k".to_string(), Some("v2".to_string()))]);
    let err = verify(&rec.history(), &finals).expect_err("a stale read is not linearizable");
    assert!(err.contains("not linearizable"), "{err}");
    c.heal();
}

#[test]
fn faults_etcd_stale_serializable_read_from_cut_off_follower_is_caught() {
    stale_read_is_caught(Backend::Etcd);
}

// Cairn: the same scenarios, same binary flags.

#[test]
fn faults_cairn_stale_serializable_read_from_cut_off_follower_is_caught() {
    stale_read_is_caught(Backend::Cairn);
}


#[test]
fn faults_cairn_kill_leader() {
    scenario(Backend::Cairn, 3, "cairn kill leader", kill_leader);
}

#[test]
fn faults_cairn_kill_follower_and_restart() {
    scenario(Backend::Cairn, 3, "cairn kill follower", kill_follower);
}

#[test]
fn faults_cairn_partition_leader() {
    scenario(Backend::Cairn, 3, "cairn partition leader", partition_leader);
}

#[test]
fn faults_cairn_add_and_remove_members() {
    scenario(Backend::Cairn, 3, "cairn add and remove members", add_and_remove_members);
}

#[test]
fn faults_cairn_restart_all() {
    scenario(Backend::Cairn, 3, "cairn restart all", restart_all);
}

#[test]
fn faults_cairn_slow_follower() {
    scenario(Backend::Cairn, 3, "cairn slow follower", slow_follower);
}

#[test]
fn faults_cairn_5_members_partition_leader_minority() {
    scenario(Backend::Cairn, 5, "cairn 5 members partition leader+1", partition_leader_minority);
}

#[test]
fn faults_cairn_5_members_kill_leader() {
    scenario(Backend::Cairn, 5, "cairn 5 members kill leader", kill_leader);
}
