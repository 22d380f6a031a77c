//! A recorded workload: K concurrent clients doing random gets, puts, deletes and
//! compare-and-puts (txns) on a few keys against random members, every operation recorded in
//! a [`Recorder`]; then [`verify`] checks the history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::Live;
use crate::linearizability::{check, Op, Operation, Outcome, Recorder, Stats};

/// The shape of the load.
#[derive(Clone, Debug)]
pub struct Workload {
    pub clients: usize,
    pub keys: usize,
    /// A request without an answer in this time has an unknown outcome.
    pub op_timeout: Duration,
    /// Percent of gets, puts, deletes; the rest are compare-and-puts.
    pub mix: (u32, u32, u32),
}

impl Default for Workload {
    fn default() -> Self {
        Workload { clients: 6, keys: 5, op_timeout: Duration::from_secs(1), mix: (45, 35, 5) }
    }
}

fn key(i: usize) -> String {
    format!("lin/k{i}")
}

/// A running workload; stop it with [`Running::stop`].
pub struct Running {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub recorder: Recorder,
    live: Live,
    keys: usize,
}

impl Workload {
    /// Starts the clients on `rt` against the members `live` says are up.
    pub fn start(&self, rt: &tokio::runtime::Runtime, live: Live) -> Running {
        let recorder = Recorder::new();
        let stop = Arc::new(AtomicBool::new(false));
        let seed: u64 = std::env::var("CAIRN_FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
        eprintln!("workload seed {seed} (CAIRN_FAULTS_SEED)");
        let tasks = (0..self.clients)
            .map(|c| {
                let client = ClientLoop {
                    id: c,
                    cfg: self.clone(),
                    live: live.clone(),
                    recorder: recorder.clone(),
                    stop: stop.clone(),
                    rng: StdRng::seed_from_u64(seed.wrapping_add(c as u64)),
                };
                rt.spawn(client.run())
            })
            .collect();
        Running { stop, tasks, recorder, live, keys: self.keys }
    }
}

struct ClientLoop {
    id: usize,
    cfg: Workload,
    live: Live,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
    rng: StdRng,
}

fn connect_options() -> ConnectOptions {
    ConnectOptions::new().with_connect_timeout(Duration::from_millis(500))
}

impl ClientLoop {
    async fn run(mut self) {
        let mut conns: HashMap<usize, Client> = HashMap::new();
        let mut avoid_until: HashMap<usize, Instant> = HashMap::new();
        // What this client last saw in each key: what its compare-and-puts expect.
        let mut seen: HashMap<String, Option<String>> = HashMap::new();
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut up = self.live.up();
            up.retain(|(m, _)| avoid_until.get(m).is_none_or(|&t| t <= now));
            if up.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let (m, url) = up.swap_remove(self.rng.random_range(0..up.len()));
            if !conns.contains_key(&m) {
                match Client::connect([url.as_str()], Some(connect_options())).await {
                    Ok(c) => {
                        conns.insert(m, c);
                    }
                    Err(_) => {
                        avoid_until.insert(m, now + Duration::from_millis(500));
                        continue;
                    }
                }
            }
            let client = conns.get_mut(&m).expect("connected");
            let k = key(self.rng.random_range(0..self.cfg.keys));
            seq += 1;
            let value = format!("c{}-{seq}", self.id);
            let (g, p, d) = self.cfg.mix;
            let roll = self.rng.random_range(0..100);
            let op = if roll < g {
                Op::Get { key: k.clone() }
            } else if roll < g + p {
                Op::Put { key: k.clone(), value }
            } else if roll < g + p + d {
                Op::Delete { key: k.clone() }
            } else {
                Op::Cas { key: k.clone(), expect: seen.get(&k).cloned().flatten(), value }
            };
            let pending = self.recorder.invoke(self.id, op.clone());
            match tokio::time::timeout(self.cfg.op_timeout, execute(client, &op)).await {
                Ok(Ok(outcome)) => {
                    match (&op, &outcome) {
                        (_, Outcome::Get(v)) => {
                            seen.insert(k, v.clone());
                        }
                        (Op::Put { value, .. }, _) | (Op::Cas { value, .. }, Outcome::Cas(true)) => {
                            seen.insert(k, Some(value.clone()));
                        }
                        (Op::Delete { .. }, _) => {
                            seen.insert(k, None);
                        }
                        _ => {}
                    }
                    pending.complete(outcome);
                }
                // Timed out or failed: it may still be applied (or already was).
                _ => {
                    pending.complete(Outcome::Unknown);
                    avoid_until.insert(m, Instant::now() + Duration::from_millis(500));
                    conns.remove(&m);
                }
            }
        }
    }
}

async fn execute(c: &mut Client, op: &Op) -> Result<Outcome, etcd_client::Error> {
    Ok(match op {
        Op::Get { key } => {
            let r = c.get(key.as_str(), None).await?;
            Outcome::Get(r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
        }
        Op::Put { key, value } => {
            c.put(key.as_str(), value.as_str(), None).await?;
            Outcome::Put
        }
        Op::Delete { key } => {
            c.delete(key.as_str(), None).await?;
            Outcome::Delete
        }
        Op::Cas { key, expect, value } => {
            let compare = match expect {
                Some(e) => Compare::value(key.as_str(), CompareOp::Equal, e.as_str()),
                None => Compare::version(key.as_str(), CompareOp::Equal, 0),
            };
            let txn = Txn::new().when([compare]).and_then([TxnOp::put(key.as_str(), value.as_str(), None)]);
            Outcome::Cas(c.txn(txn).await?.succeeded())
        }
    })
}

impl Running {
    /// Stops the clients, then reads every key once more (recorded too, retried until a
    /// member answers) and returns the history and the final values.
    pub fn stop(self, rt: &tokio::runtime::Runtime) -> (Vec<Operation>, HashMap<String, Option<String>>) {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            for t in self.tasks {
                let _ = t.await;
            }
        });
        let mut finals = HashMap::new();
        let reader = 10_000;
        for k in (0..self.keys).map(key) {
            let deadline = Instant::now() + Duration::from_secs(30);
            let value = loop {
                assert!(Instant::now() < deadline, "no member answers a read of {k}");
                let Some((_, url)) = self.live.up().into_iter().next() else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let op = Op::Get { key: k.clone() };
                let pending = self.recorder.invoke(reader, op.clone());
                let got = rt.block_on(async {
                    let mut c = Client::connect([url.as_str()], Some(connect_options())).await?;
                    tokio::time::timeout(Duration::from_secs(2), execute(&mut c, &op))
                        .await
                        .unwrap_or_else(|_| Err(etcd_client::Error::InvalidArgs("timeout".into())))
                });
                match got {
                    Ok(Outcome::Get(v)) => {
                        pending.complete(Outcome::Get(v.clone()));
                        break v;
                    }
                    _ => {
                        pending.complete(Outcome::Unknown);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            };
            finals.insert(k, value);
        }
        (self.recorder.history(), finals)
    }
}

/// What a verified history held.
#[derive(Debug)]
pub struct Summary {
    pub stats: Stats,
    pub ok: usize,
    pub acked_writes: usize,
}

/// Checks a history: linearizable, and (stated directly) every acknowledged write is in the
/// final values or was overwritten by a write that may follow it.
pub fn verify(history: &[Operation], finals: &HashMap<String, Option<String>>) -> Result<Summary, String> {
    let stats = check(history).map_err(|v| v.to_string())?;
    fn writes<'a>(history: &'a [Operation], key: &'a str) -> impl Iterator<Item = &'a Operation> + 'a {
        history.iter().filter(move |o| {
            o.op.key() == key
                && !matches!(o.op, Op::Get { .. })
                && matches!(o.outcome, Outcome::Put | Outcome::Delete | Outcome::Cas(true) | Outcome::Unknown)
        })
    }
    for (key, fin) in finals {
        // Who wrote the final value (values are unique; deletes leave nothing).
        let writers: Vec<&Operation> = writes(history, key)
            .filter(|o| match (fin, &o.op) {
                (Some(v), Op::Put { value, .. } | Op::Cas { value, .. }) => value == v,
                (None, Op::Delete { .. }) => true,
                _ => false,
            })
            .collect();
        if let Some(v) = fin {
            if writers.is_empty() {
                return Err(format!("final value {v:?} of {key} was never written"));
            }
        }
        let acked = writes(history, key).filter(|o| o.outcome != Outcome::Unknown);
        for a in acked {
            // `a` is acknowledged: the final value is `a`'s, or of a write not entirely before `a`.
            let covered = writers.iter().any(|w| *w == a || w.ret > a.invoke);
            if !covered {
                return Err(format!("acknowledged write {a} is lost: final value of {key} is {fin:?}"));
            }
        }
    }
    let ok = history.iter().filter(|o| !matches!(o.outcome, Outcome::Unknown | Outcome::Fail)).count();
    let acked_writes = history
        .iter()
        .filter(|o| !matches!(o.op, Op::Get { .. }) && !matches!(o.outcome, Outcome::Unknown | Outcome::Fail))
        .count();
    Ok(Summary { stats, ok, acked_writes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: Op, t: (u64, u64), outcome: Outcome) -> Operation {
        Operation { client: 0, op, invoke: t.0, ret: t.1, outcome }
    }

    #[test]
    fn verify_catches_a_lost_acknowledged_write_and_a_foreign_final_value() {
        let put = |v: &str, t| op(Op::Put { key: "k".into(), value: v.into() }, t, Outcome::Put);
        let h = vec![put("a", (0, 1)), put("b", (2, 3))];
        let finals = |v: Option<&str>| HashMap::from([("k".to_string(), v.map(String::from))]);
        assert!(verify(&h, &finals(Some("b"))).is_ok());
        let lost = verify(&h, &finals(Some("a"))).unwrap_err();
        assert!(lost.contains("is lost"), "{lost}");
        assert!(verify(&h, &finals(None)).is_err());
        assert!(verify(&h, &finals(Some("z"))).unwrap_err().contains("never written"));
        // A final delete covers the puts before it.
        let mut h2 = h.clone();
        h2.push(op(Op::Delete { key: "k".into() }, (4, 5), Outcome::Delete));
        assert!(verify(&h2, &finals(None)).is_ok());
    }
}
