//! Runs every fuzz target's checks on stable Rust, without cargo-fuzz: the committed seeds
//! (`seeds/<target>/`, including each crash found so far), any local corpus and artifacts
//! (`corpus/<target>/`, `artifacts/<target>/`, not committed), and a few thousand cheap
//! mutations of the seeds. `cargo test --release` in this directory.

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("resp_request", cairn_fuzz::resp_request),
    ("v2_request", cairn_fuzz::v2_request),
    ("gateway_json", cairn_fuzz::gateway_json),
];

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["seeds", "corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for e in entries.flatten() {
            if e.path().is_file() {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_seed_passes_its_target() {
    for (name, target) in TARGETS {
        let inputs = inputs(name);
        assert!(!inputs.is_empty(), "no seeds for {name}");
        for (path, data) in inputs {
            eprintln!("{}", path.display());
            target(&data);
        }
    }
}

/// A xorshift generator: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [&[u8]; 12] =
    [b"\r\n", b"\n", b"*", b"$", b"-1", b"99999999999999999999", b"%", b"&", b"=", b"\"", b"{", b"}"];

fn mutate(rng: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(at),
            2 => {
                let end = (at + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, ins.iter().copied());
            }
            4 => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len());
                v.splice(at..at, other[from..].iter().copied().take(rng.below(32)));
            }
            _ if v.len() > 2 => v[rng.below(2)] = rng.next() as u8,
            _ => {}
        }
    }
    v
}

#[test]
fn mutated_seeds_pass_their_target() {
    let rounds: usize = std::env::var("FUZZ_REPLAY_MUTATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(3000);
    for (name, target) in TARGETS {
        let seeds: Vec<Vec<u8>> = inputs(name).into_iter().map(|(_, d)| d).collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..rounds {
            let seed = &seeds[i % seeds.len()];
            let input = mutate(&mut rng, seed, &seeds);
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "{name} failed on mutation {i}: {:?}", String::from_utf8_lossy(&input));
        }
    }
}
