//! Client histories and a linearizability checker for a key-value store.
//!
//! [`Recorder`] records every client operation with its invoke and return times and its
//! outcome. [`check`] decides whether the history is linearizable against a map of registers
//! (get / put / delete / compare-and-put per key):
//!
//! - **Wing & Gong's search with Lowe's memoization**, as in porcupine
//!   (github.com/anishathalye/porcupine): call and return events in time order in a doubly
//!   linked list; the search linearizes a pending call, or backtracks when it meets the return
//!   of an operation it has not linearized yet. A (set of linearized operations, model state)
//!   pair already explored is never explored again.
//! - **P-compositionality**: a history of independent registers is linearizable iff each key's
//!   sub-history is, so each key is checked on its own (every operation touches one key).
//! - **Outcomes**: `Fail` means definitely not applied (dropped before checking); `Unknown`
//!   (timeout, connection lost) means it may take effect at any time after its invoke, or never:
//!   its return time is infinity. An unknown get tells nothing and is dropped. An unknown write
//!   whose value nobody observed is dropped too: it can always be linearized at the very end,
//!   where nobody sees it, so this changes no verdict and keeps faults cheap to check.
//!
//! Why not a crate: no Rust crate on crates.io checks recorded histories with real-time
//! intervals and unknown outcomes (`lincheck` runs in-process structures under loom;
//! `stateright` checks its own actor models), so this is porcupine's algorithm, written out.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An operation a client invokes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Get { key: String },
    Put { key: String, value: String },
    Delete { key: String },
    /// A txn: if the key's value is `expect` (`None`: the key is absent) put `value`.
    Cas { key: String, expect: Option<String>, value: String },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }

    /// The value this operation may write.
    fn written(&self) -> Option<&str> {
        match self {
            Op::Put { value, .. } | Op::Cas { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A get answered with this value (`None`: the key is absent).
    Get(Option<String>),
    Put,
    Delete,
    /// A compare-and-put answered: did the compare succeed (and the put apply)?
    Cas(bool),
    /// Definitely not applied (e.g. the request could not be sent).
    Fail,
    /// Timed out or lost: may have taken effect at any time after its invoke, or never.
    Unknown,
}

/// One recorded operation. Times are nanoseconds since the recorder started; an operation
/// whose outcome is unknown returns at `u64::MAX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub op: Op,
    pub invoke: u64,
    pub ret: u64,
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: u64| if t == u64::MAX { "inf".to_string() } else { format!("{:.3}", t as f64 / 1e6) };
        write!(f, "c{} [{} .. {}] {:?} -> {:?}", self.client, ms(self.invoke), ms(self.ret), self.op, self.outcome)
    }
}

/// Records operations from many tasks or threads (cheap to clone).
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Operation>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { start: Instant::now(), ops: Arc::default() }
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Nanoseconds since the recorder started: the clock of the recorded times.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Notes the invoke time of `op`; complete the returned handle with the outcome. A handle
    /// dropped without an outcome (a task cancelled mid-request) is recorded as unknown.
    pub fn invoke(&self, client: usize, op: Op) -> Pending {
        Pending { recorder: self.clone(), client, op: Some(op), invoke: self.now() }
    }

    /// Every operation recorded so far.
    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().expect("recorder lock").clone()
    }

    fn record(&self, client: usize, op: Op, invoke: u64, outcome: Outcome) {
        let ret = if outcome == Outcome::Unknown { u64::MAX } else { self.now().max(invoke) };
        self.ops.lock().expect("recorder lock").push(Operation { client, op, invoke, ret, outcome });
    }
}

/// An invoked operation waiting for its outcome.
pub struct Pending {
    recorder: Recorder,
    client: usize,
    op: Option<Op>,
    invoke: u64,
}

impl Pending {
    pub fn complete(mut self, outcome: Outcome) {
        if let Some(op) = self.op.take() {
            self.recorder.record(self.client, op, self.invoke, outcome);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            self.recorder.record(self.client, op, self.invoke, Outcome::Unknown);
        }
    }
}

/// What a successful check saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations checked (after dropping failed ops, unknown gets and unobserved unknown writes).
    pub checked: usize,
    /// Unknown operations in the history.
    pub unknown: usize,
    /// Unknown writes dropped because nobody observed their value.
    pub pruned: usize,
    pub keys: usize,
}

/// Why a history is not (known to be) linearizable.
#[derive(Clone, Debug)]
pub struct Violation {
    pub key: String,
    /// True if the search gave up (too many states) rather than proved a violation.
    pub inconclusive: bool,
    /// The longest prefix of this key's operations the search could linearize.
    pub longest_prefix: Vec<Operation>,
    /// This key's operations left out of that prefix, by invoke time.
    pub rest: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.inconclusive { "search gave up (state budget)" } else { "not linearizable" };
        writeln!(f, "key {:?}: {what}", self.key)?;
        let skip = self.longest_prefix.len().saturating_sub(10);
        writeln!(f, "longest linearizable prefix ({} ops, last {} shown):", self.longest_prefix.len(), self.longest_prefix.len() - skip)?;
        for op in &self.longest_prefix[skip..] {
            writeln!(f, "  {op}")?;
        }
        writeln!(f, "not linearizable after it ({} ops, first 10 by invoke):", self.rest.len())?;
        for op in self.rest.iter().take(10) {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// States explored per key before the search gives up.
const STATE_BUDGET: usize = 2_000_000;

/// Checks a history: `Ok` if it is linearizable, else the first key that is not.
pub fn check(history: &[Operation]) -> Result<Stats, Box<Violation>> {
    let mut by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in history {
        by_key.entry(op.op.key()).or_default().push(op);
    }
    let mut stats = Stats { keys: by_key.len(), ..Stats::default() };
    stats.unknown = history.iter().filter(|o| o.outcome == Outcome::Unknown).count();
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let ops = prepare(&by_key[key], &mut stats.pruned);
        stats.checked += ops.len();
        check_key(key, &ops)?;
    }
    Ok(stats)
}

/// Drops what cannot affect the verdict: failed ops, unknown gets, unknown writes whose value
/// nobody observed (see the module doc).
fn prepare<'a>(ops: &[&'a Operation], pruned: &mut usize) -> Vec<&'a Operation> {
    let mut observed: HashSet<&str> = HashSet::new();
    for o in ops {
        match (&o.op, &o.outcome) {
            (_, Outcome::Get(Some(v))) => {
                observed.insert(v);
            }
            (Op::Cas { expect: Some(e), .. }, _) => {
                observed.insert(e);
            }
            _ => {}
        }
    }
    // A failed compare observes "the value is not X": dropping a write before it could turn it
    // into a success, so writes that may precede a failed compare are kept.
    let last_failed_cas_ret =
        ops.iter().filter(|o| o.outcome == Outcome::Cas(false)).map(|o| o.ret).max();
    ops.iter()
        .copied()
        .filter(|o| match o.outcome {
            Outcome::Fail => false,
            Outcome::Unknown => match o.op.written() {
                None => !matches!(o.op, Op::Get { .. }),
                Some(v) => {
                    let keep = observed.contains(v) || last_failed_cas_ret.is_some_and(|r| r > o.invoke);
                    if !keep {
                        *pruned += 1;
                    }
                    keep
                }
            },
            _ => true,
        })
        .collect()
}

/// One key's operation for the model: values are numbered, `None` is "absent".
#[derive(Clone, Copy, Debug)]
enum Step {
    Get(Option<u32>),
    Put(u32),
    Delete,
    Cas { expect: Option<u32>, value: u32, ok: Option<bool> },
}

impl Step {
    /// The register's state after this step, or `None` if the step cannot happen in `state`.
    fn apply(self, state: Option<u32>) -> Option<Option<u32>> {
        match self {
            Step::Get(v) => (v == state).then_some(state),
            Step::Put(v) => Some(Some(v)),
            Step::Delete => Some(None),
            Step::Cas { expect, value, ok } => {
                let matches = expect == state;
                match ok {
                    Some(ok) if ok != matches => None,
                    _ => Some(if matches { Some(value) } else { state }),
                }
            }
        }
    }
}

fn check_key(key: &str, ops: &[&Operation]) -> Result<(), Box<Violation>> {
    let n = ops.len();
    if n == 0 {
        return Ok(());
    }
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut id = |v: &Option<String>| -> Option<u32> {
        v.as_ref().map(|v| {
            let next = u32::try_from(ids.len()).expect("fewer than 2^32 values");
            *ids.entry(v.clone()).or_insert(next)
        })
    };
    let steps: Vec<Step> = ops
        .iter()
        .map(|o| match (&o.op, &o.outcome) {
            (Op::Get { .. }, Outcome::Get(v)) => Step::Get(id(v)),
            (Op::Put { value, .. }, _) => Step::Put(id(&Some(value.clone())).expect("some")),
            (Op::Delete { .. }, _) => Step::Delete,
            (Op::Cas { expect, value, .. }, outcome) => Step::Cas {
                expect: id(expect),
                value: id(&Some(value.clone())).expect("some"),
                ok: match outcome {
                    Outcome::Cas(ok) => Some(*ok),
                    _ => None,
                },
            },
            (op, outcome) => panic!("operation {op:?} cannot end with {outcome:?}"),
        })
        .collect();

    // Events: node 0 is the list head; node 1 + 2i is op i's call, 2 + 2i its return.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n); // (time, is_return, op)
    for (i, o) in ops.iter().enumerate() {
        events.push((o.invoke, false, i));
        events.push((o.ret, true, i));
    }
    // Calls before returns at equal times: touching operations count as concurrent.
    events.sort_unstable();
    let node = |(_, is_ret, op): (u64, bool, usize)| 1 + 2 * op + usize::from(is_ret);
    let mut next = vec![usize::MAX; 2 * n + 1];
    let mut prev = vec![usize::MAX; 2 * n + 1];
    let mut last = 0;
    for &e in &events {
        next[last] = node(e);
        prev[node(e)] = last;
        last = node(e);
    }
    const END: usize = usize::MAX;
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        let (p, nx) = (prev[x], next[x]);
        next[p] = nx;
        if nx != END {
            prev[nx] = p;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        let (p, nx) = (prev[x], next[x]);
        next[p] = x;
        if nx != END {
            prev[nx] = x;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<u32>)> = HashSet::new();
    let mut state: Option<u32> = None;
    let mut stack: Vec<(usize, Option<u32>)> = Vec::new(); // (op, state before it)
    let mut longest: Vec<usize> = Vec::new();
    let mut entry = next[0];
    while next[0] != END {
        if entry == END {
            // Cannot happen: the last event is a return, which makes the search backtrack.
            unreachable!("search ran past the last event");
        }
        let op = (entry - 1) / 2;
        let is_call = (entry - 1) % 2 == 0;
        if is_call {
            if let Some(after) = steps[op].apply(state) {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), after)) {
                    if seen.len() > STATE_BUDGET {
                        let stacked: Vec<usize> = stack.iter().map(|&(o, _)| o).collect();
                        let best = if stacked.len() > longest.len() { &stacked } else { &longest };
                        return Err(violation(key, ops, best, true));
                    }
                    stack.push((op, state));
                    state = after;
                    lift(&mut next, &mut prev, 1 + 2 * op);
                    lift(&mut next, &mut prev, 2 + 2 * op);
                    entry = next[0];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = next[entry];
        } else {
            // The return of an operation not yet linearized: undo the last choice.
            if stack.len() > longest.len() {
                longest = stack.iter().map(|&(o, _)| o).collect();
            }
            let Some((op, before)) = stack.pop() else {
                return Err(violation(key, ops, &longest, false));
            };
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            unlift(&mut next, &mut prev, 2 + 2 * op);
            unlift(&mut next, &mut prev, 1 + 2 * op);
            entry = next[1 + 2 * op];
        }
    }
    Ok(())
}

fn violation(key: &str, ops: &[&Operation], longest: &[usize], inconclusive: bool) -> Box<Violation> {
    let in_prefix: HashSet<usize> = longest.iter().copied().collect();
    let mut rest: Vec<Operation> =
        (0..ops.len()).filter(|i| !in_prefix.contains(i)).map(|i| ops[i].clone()).collect();
    rest.sort_by_key(|o| o.invoke);
    Box::new(Violation {
        key: key.to_string(),
        inconclusive,
        longest_prefix: longest.iter().map(|&i| ops[i].clone()).collect(),
        rest,
    })
}

#[cfg(test)]
mod tests;
