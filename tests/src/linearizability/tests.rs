use super::*;
use proptest::prelude::*;

const INF: u64 = u64::MAX;

fn get(c: usize, t: (u64, u64), key: &str, v: Option<&str>) -> Operation {
    let ret = if t.1 == INF { Outcome::Unknown } else { Outcome::Get(v.map(String::from)) };
    Operation { client: c, op: Op::Get { key: key.into() }, invoke: t.0, ret: t.1, outcome: ret }
}

fn put(c: usize, t: (u64, u64), key: &str, v: &str) -> Operation {
    let outcome = if t.1 == INF { Outcome::Unknown } else { Outcome::Put };
    Operation { client: c, op: Op::Put { key: key.into(), value: v.into() }, invoke: t.0, ret: t.1, outcome }
}

fn del(c: usize, t: (u64, u64), key: &str) -> Operation {
    let outcome = if t.1 == INF { Outcome::Unknown } else { Outcome::Delete };
    Operation { client: c, op: Op::Delete { key: key.into() }, invoke: t.0, ret: t.1, outcome }
}

fn cas(c: usize, t: (u64, u64), key: &str, expect: Option<&str>, v: &str, ok: Option<bool>) -> Operation {
    Operation {
        client: c,
        op: Op::Cas { key: key.into(), expect: expect.map(String::from), value: v.into() },
        invoke: t.0,
        ret: t.1,
        outcome: ok.map_or(Outcome::Unknown, Outcome::Cas),
    }
}

fn failed(mut o: Operation) -> Operation {
    o.outcome = Outcome::Fail;
    o
}

fn ok(h: &[Operation]) {
    if let Err(v) = check(h) {
        panic!("linearizable history rejected: {v}");
    }
}

fn bad(h: &[Operation]) -> Box<Violation> {
    match check(h) {
        Ok(s) => panic!("non-linearizable history accepted ({s:?}): {h:#?}"),
        Err(v) => {
            assert!(!v.inconclusive, "a small history is decided: {v}");
            v
        }
    }
}

#[test]
fn empty_and_sequential_histories_are_linearizable() {
    ok(&[]);
    ok(&[
        get(0, (0, 1), "k", None),
        put(0, (2, 3), "k", "a"),
        get(0, (4, 5), "k", Some("a")),
        del(0, (6, 7), "k"),
        get(0, (8, 9), "k", None),
    ]);
}

#[test]
fn concurrent_read_may_see_old_or_new_value() {
    for seen in [None, Some("a")] {
        ok(&[put(0, (0, 10), "k", "a"), get(1, (1, 2), "k", seen), get(2, (3, 4), "k", seen)]);
    }
    // Porcupine's README example: a put concurrent with reads returning new then old (the
    // reads overlap each other, so either order works).
    ok(&[put(0, (0, 100), "k", "100"), get(1, (5, 50), "k", Some("100")), get(2, (10, 20), "k", None)]);
}

#[test]
fn stale_read_after_acknowledged_write_is_rejected() {
    let v = bad(&[put(0, (0, 1), "k", "a"), put(0, (2, 3), "k", "b"), get(1, (4, 5), "k", Some("a"))]);
    assert_eq!(v.key, "k");
    // Two reads that overlap the write but not each other: new value, then the old one.
    bad(&[put(0, (0, 100), "k", "x"), get(1, (5, 10), "k", Some("x")), get(2, (20, 30), "k", None)]);
}

#[test]
fn lost_write_is_rejected() {
    bad(&[put(0, (0, 1), "k", "a"), get(1, (2, 3), "k", None)]);
    bad(&[put(0, (0, 1), "k", "a"), del(1, (2, 3), "k"), put(0, (4, 5), "k", "b"), get(1, (6, 7), "k", None)]);
}

#[test]
fn read_of_a_value_never_written_is_rejected() {
    bad(&[put(0, (0, 1), "k", "a"), get(1, (0, 5), "k", Some("z"))]);
    // ... also when the value was written to another key.
    bad(&[put(0, (0, 1), "j", "a"), get(1, (2, 3), "k", Some("a"))]);
}

#[test]
fn read_before_the_write_was_invoked_is_rejected() {
    bad(&[get(1, (0, 1), "k", Some("a")), put(0, (2, 3), "k", "a")]);
}

#[test]
fn keys_are_independent() {
    ok(&[put(0, (0, 1), "a", "1"), put(0, (2, 3), "b", "2"), get(1, (4, 5), "a", Some("1")), get(1, (6, 7), "b", Some("2"))]);
    let v = bad(&[put(0, (0, 1), "a", "1"), put(0, (2, 3), "b", "2"), get(1, (4, 5), "b", None)]);
    assert_eq!(v.key, "b");
}

#[test]
fn unknown_write_may_apply_late_or_never() {
    // Never applied.
    ok(&[put(0, (0, INF), "k", "a"), get(1, (5, 6), "k", None), get(1, (7, 8), "k", None)]);
    // Applied long after the client gave up.
    ok(&[put(0, (0, INF), "k", "a"), get(1, (5, 6), "k", None), get(1, (100, 101), "k", Some("a"))]);
    // Applied once, then visible from then on.
    bad(&[put(0, (0, INF), "k", "a"), get(1, (5, 6), "k", Some("a")), get(1, (7, 8), "k", None)]);
    // But never before it was invoked.
    bad(&[get(1, (0, 1), "k", Some("a")), put(0, (2, INF), "k", "a")]);
}

#[test]
fn unknown_write_is_not_an_acknowledged_one() {
    // Had the put been acknowledged, the later read of nothing would be a lost write.
    ok(&[put(0, (0, INF), "k", "a"), get(1, (10, 11), "k", None)]);
    bad(&[put(0, (0, 5), "k", "a"), get(1, (10, 11), "k", None)]);
}

#[test]
fn failed_ops_never_apply() {
    ok(&[failed(put(0, (0, 1), "k", "a")), get(1, (2, 3), "k", None)]);
    bad(&[failed(put(0, (0, 1), "k", "a")), get(1, (2, 3), "k", Some("a"))]);
}

#[test]
fn unknown_reads_are_ignored() {
    ok(&[put(0, (0, 1), "k", "a"), get(1, (2, INF), "k", None), get(1, (3, 4), "k", Some("a"))]);
}

#[test]
fn compare_and_put() {
    ok(&[
        put(0, (0, 1), "k", "a"),
        cas(1, (2, 3), "k", Some("a"), "b", Some(true)),
        cas(2, (4, 5), "k", Some("a"), "c", Some(false)),
        get(0, (6, 7), "k", Some("b")),
    ]);
    // The compare saw "a" but the key held "b".
    bad(&[put(0, (0, 1), "k", "b"), cas(1, (2, 3), "k", Some("a"), "c", Some(true))]);
    // The compare failed although the key held what it expected.
    bad(&[put(0, (0, 1), "k", "a"), cas(1, (2, 3), "k", Some("a"), "c", Some(false))]);
    // Create-if-absent: only one of two sequential creates succeeds.
    bad(&[cas(0, (0, 1), "k", None, "a", Some(true)), cas(1, (2, 3), "k", None, "b", Some(true))]);
    // ... also when they overlap; either may win.
    bad(&[cas(0, (0, 10), "k", None, "a", Some(true)), cas(1, (2, 3), "k", None, "b", Some(true))]);
    ok(&[cas(0, (0, 10), "k", None, "a", Some(true)), cas(1, (2, 3), "k", None, "b", Some(false))]);
    ok(&[cas(0, (0, 10), "k", None, "a", Some(false)), cas(1, (2, 3), "k", None, "b", Some(true))]);
}

#[test]
fn unknown_compare_and_put_applies_only_if_the_compare_holds() {
    ok(&[put(0, (0, 1), "k", "a"), cas(1, (2, INF), "k", Some("a"), "b", None), get(0, (5, 6), "k", Some("b"))]);
    bad(&[put(0, (0, 1), "k", "x"), cas(1, (2, INF), "k", Some("a"), "b", None), get(0, (5, 6), "k", Some("b"))]);
}

#[test]
fn failed_compare_keeps_an_unobserved_unknown_write() {
    // Nobody reads "a", but the failed compare proves the key was not absent: only the unknown
    // put explains it. Dropping the put as unobserved would reject a linearizable history.
    ok(&[put(0, (0, INF), "k", "a"), cas(1, (5, 6), "k", None, "b", Some(false))]);
}

#[test]
fn unobserved_unknown_writes_are_pruned() {
    let mut h = vec![put(0, (0, 1), "k", "0")];
    for i in 0..200u64 {
        h.push(put(1 + i as usize, (2 + i, INF), "k", &format!("lost{i}")));
    }
    h.push(get(0, (300, 301), "k", Some("0")));
    let stats = check(&h).unwrap();
    assert_eq!(stats.pruned, 200);
    assert_eq!(stats.unknown, 200);
}

#[test]
fn recorder_records_outcomes_and_dropped_handles_as_unknown() {
    let r = Recorder::new();
    r.invoke(0, Op::Put { key: "k".into(), value: "a".into() }).complete(Outcome::Put);
    let p = r.invoke(1, Op::Get { key: "k".into() });
    drop(p);
    r.invoke(2, Op::Get { key: "k".into() }).complete(Outcome::Get(Some("a".into())));
    let h = r.history();
    assert_eq!(h.len(), 3);
    assert_eq!(h[1].outcome, Outcome::Unknown);
    assert_eq!(h[1].ret, u64::MAX);
    assert!(h[0].invoke <= h[0].ret && h[0].ret <= h[2].ret);
    check(&h).unwrap();
}

#[test]
fn long_concurrent_history_is_checked_quickly() {
    // 4 clients, 5 keys, 20k ops; every op overlaps the ops of the other clients.
    let mut h = Vec::new();
    let mut last: HashMap<String, Option<String>> = HashMap::new();
    for i in 0..20_000u64 {
        let key = format!("k{}", i % 5);
        let t = (i * 10, i * 10 + 35);
        let c = (i % 4) as usize;
        if i % 3 == 0 {
            let v = format!("v{i}");
            h.push(put(c, t, &key, &v));
            last.insert(key, Some(v));
        } else {
            h.push(get(c, t, &key, last.get(&key).cloned().flatten().as_deref()));
        }
    }
    assert_eq!(check(&h).unwrap().checked, 20_000);
}

/// A random history from a sequential execution: each op takes effect at its own instant
/// (1000 apart) inside a random interval around it; some writes are unknown or failed.
fn sequential_history(seed: Vec<(u8, u8, u16, u16, u8)>) -> Vec<Operation> {
    let mut state: HashMap<String, String> = HashMap::new();
    let mut h = Vec::new();
    for (i, (kind, key, before, after, fate)) in seed.into_iter().enumerate() {
        let at = 10_000 + 1000 * i as u64;
        let key = format!("k{}", key % 3);
        // Up to 2.5 op spacings either side: each op overlaps a few neighbours.
        let (invoke, ret) = (at - u64::from(before % 2500), at + u64::from(after % 2500));
        let value = format!("v{i}");
        let c = i % 5;
        let fate = fate % 10; // 0: unknown, 1: failed (not applied), else ok
        let (op, outcome) = match kind % 10 {
            0..=3 => (Op::Get { key: key.clone() }, Outcome::Get(state.get(&key).cloned())),
            4..=6 => {
                if fate != 1 {
                    state.insert(key.clone(), value.clone());
                }
                (Op::Put { key, value }, Outcome::Put)
            }
            7 => {
                if fate != 1 {
                    state.remove(&key);
                }
                (Op::Delete { key }, Outcome::Delete)
            }
            _ => {
                // Expect the current value half the time.
                let expect = if kind % 2 == 0 { state.get(&key).cloned() } else { Some(format!("v{}", i / 2)) };
                let holds = state.get(&key) == expect.as_ref();
                if holds && fate != 1 {
                    state.insert(key.clone(), value.clone());
                }
                (Op::Cas { key, expect, value }, Outcome::Cas(holds))
            }
        };
        let outcome = match fate {
            0 => Outcome::Unknown,
            1 if !matches!(op, Op::Get { .. }) => Outcome::Fail,
            _ => outcome,
        };
        let ret = if outcome == Outcome::Unknown { u64::MAX } else { ret };
        h.push(Operation { client: c, op, invoke, ret, outcome });
    }
    h
}

fn seed() -> impl Strategy<Value = Vec<(u8, u8, u16, u16, u8)>> {
    proptest::collection::vec(any::<(u8, u8, u16, u16, u8)>(), 1..150)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn histories_of_sequential_executions_are_linearizable(seed in seed()) {
        let h = sequential_history(seed);
        if let Err(v) = check(&h) {
            panic!("rejected: {v}");
        }
    }

    #[test]
    fn read_of_an_unwritten_value_is_caught(seed in seed(), pick in any::<prop::sample::Index>()) {
        let mut h = sequential_history(seed);
        let i = pick.index(h.len());
        let key = h[i].op.key().to_string();
        let (invoke, ret) = (h[i].invoke, h[i].invoke + 1);
        h.push(Operation { client: 9, op: Op::Get { key }, invoke, ret, outcome: Outcome::Get(Some("never".into())) });
        prop_assert!(check(&h).is_err());
    }

    #[test]
    fn stale_read_is_caught(seed in seed()) {
        let mut h = sequential_history(seed);
        // Two acknowledged puts to one key, the first returned before the second was invoked;
        // a read after everything returned sees the first one's value.
        let end = h.iter().filter(|o| o.ret != u64::MAX).map(|o| o.ret).max().unwrap_or(0);
        let acked: Vec<&Operation> = h.iter().filter(|o| o.outcome == Outcome::Put).collect();
        let pair = acked.iter().flat_map(|a| acked.iter().map(move |b| (a, b)))
            .find(|(a, b)| a.op.key() == b.op.key() && a.ret < b.invoke);
        prop_assume!(pair.is_some());
        let (a, _) = pair.unwrap();
        let (key, value) = (a.op.key().to_string(), a.op.written().unwrap().to_string());
        h.push(Operation { client: 9, op: Op::Get { key }, invoke: end + 1, ret: end + 2, outcome: Outcome::Get(Some(value)) });
        prop_assert!(check(&h).is_err());
    }

    #[test]
    fn read_before_its_write_is_caught(seed in seed()) {
        let mut h = sequential_history(seed);
        let w = h.iter().find(|o| o.outcome == Outcome::Put).cloned();
        prop_assume!(w.is_some());
        let w = w.unwrap();
        let (key, value) = (w.op.key().to_string(), w.op.written().unwrap().to_string());
        h.push(Operation { client: 9, op: Op::Get { key }, invoke: w.invoke - 2, ret: w.invoke - 1, outcome: Outcome::Get(Some(value)) });
        prop_assert!(check(&h).is_err());
    }
}
