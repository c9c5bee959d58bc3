//! Mutation fuzzing of loading and validation: node files built from the
//! examples, mutated (bytes, lines, tokens, splits into several files), fed
//! to the loader. No input may panic or hang, and every rejection must point
//! at a file and a line of the input.
//!
//! `PODNET_FUZZ_CASES` sets the count (default 100,000); `PODNET_FUZZ_SEED`
//! the seed, printed with any failure so it can be replayed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use podnet::config::load_bytes;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments that steer mutations toward the interesting parts of the format.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    ",",
    ".",
    "#",
    "\n",
    " ",
    "\\",
    "\\u0000",
    "\u{0}",
    "é",
    "\u{202e}",
    "0x",
    "1e400",
    "inf",
    "nan",
    "-0",
    "9999999999999999999999",
    "true",
    "false",
    "1979-05-27T07:32:00Z",
    "version = 2",
    "version = \"1\"",
    "[masters.x]",
    "[masters.\"a b\"]",
    "kind = 1",
    "kind = \"ipvlan\"",
    "mode = \"l3s\"",
    "mode = \"passthru\"",
    "mtu = -1",
    "mtu = 70000",
    "shim = {}",
    "shim = { name = \"ens192\" }",
    "egress = \"1Xbit\"",
    "egress = \"100Mbps\"",
    "egress = 0",
    "ingress = \"1.5.5G\"",
    "tier = \"nope\"",
    "[tiers.t]",
    "num_vfs = 300",
    "[sriov.ens192.vfs.99]",
    "addresses = [\"1.2.3.4\"]",
    "routes = [\"10.0.0.1/8\"]",
    "[[ipip.peers]]",
    "pod_cidr = \"::/129\"",
    "node = \"1.2.3\"",
    "[rdma]",
    "netns_mode = 3",
    "default_tier = \"silver\"",
    "[shaping]",
    "backend = \"htb\"",
    "a.b.c = 1",
];

fn mutate(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(9) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.remove(i);
            }
            2 => {
                let i = rng.below(out.len() + 1);
                let t = rng.pick(TOKENS).as_bytes();
                out.splice(i..i, t.iter().copied());
            }
            3 => {
                // Drop a line.
                let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').collect();
                let skip = rng.below(lines.len());
                out = lines
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, l)| *l)
                    .collect::<Vec<_>>()
                    .join(&b'\n');
            }
            4 => {
                // Duplicate a line somewhere else (duplicate keys and tables).
                let mut lines: Vec<Vec<u8>> =
                    out.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let from = lines[rng.below(lines.len())].clone();
                let at = rng.below(lines.len() + 1);
                lines.insert(at, from);
                out = lines.join(&b'\n');
            }
            5 => {
                // Swap two lines (keys move between tables).
                let mut lines: Vec<Vec<u8>> =
                    out.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
                out = lines.join(&b'\n');
            }
            6 => {
                let n = rng.below(out.len() + 1);
                out.truncate(n);
            }
            7 => {
                // Replace the value after an `=` with another token.
                let eqs: Vec<usize> = out
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'=')
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&eq) = eqs.get(rng.below(eqs.len())) {
                    let end = out[eq..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(out.len(), |p| eq + p);
                    let value = format!(" {}", rng.pick(TOKENS));
                    out.splice(eq + 1..end, value.bytes());
                }
            }
            _ => {
                let i = rng.below(out.len() + 1);
                let t = rng.pick(TOKENS).as_bytes();
                out.splice(i..i, t.iter().copied());
            }
        }
    }
    out
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        // Folders are config dirs; files beside them are example programs.
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "toml") {
                out.push((f.display().to_string(), std::fs::read(&f).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 4, "no example node files to fuzz from");
    out
}

fn run_case(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Result<bool, String> {
    // One to three files; each a mutated example, a later one overriding.
    let nfiles = 1 + rng.below(3);
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for i in 0..nfiles {
        let (_, text) = rng.pick(seeds);
        files.push((
            PathBuf::from(format!("{i:02}-fuzz.toml")),
            mutate(rng, text),
        ));
    }
    let names: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| load_bytes(files.clone())));
    let took = start.elapsed();
    let show = || {
        files
            .iter()
            .map(|(p, t)| format!("== {}\n{}", p.display(), String::from_utf8_lossy(t)))
            .collect::<String>()
    };
    if took > Duration::from_secs(2) {
        return Err(format!("loading took {took:?} (a hang?)\n{}", show()));
    }
    match result {
        Err(_) => Err(format!("panicked on:\n{}", show())),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(d)) => {
            if d.items.is_empty() {
                return Err(format!("rejected with no diagnostic:\n{}", show()));
            }
            for item in &d.items {
                let Some(loc) = &item.location else {
                    return Err(format!("diagnostic without a location: {item}\n{}", show()));
                };
                if !names.contains(&loc.file) || loc.line == 0 || loc.column == 0 {
                    return Err(format!("diagnostic points nowhere: {item}\n{}", show()));
                }
            }
            // Rendering quotes the source: it must not panic either.
            let rendered = catch_unwind(AssertUnwindSafe(|| d.render()));
            match rendered {
                Ok(r) if r.contains("nothing was changed") => Ok(false),
                Ok(r) => Err(format!("render lacks the summary:\n{r}")),
                Err(_) => Err(format!("render panicked on:\n{}", show())),
            }
        }
    }
}

#[test]
fn mutated_node_files_never_panic_hang_or_lose_their_location() {
    let cases: usize = std::env::var("PODNET_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::var("PODNET_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let seeds = seeds();
    // Quiet the default hook: caught panics are reported as failures below.
    std::panic::set_hook(Box::new(|_| {}));
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let start = Instant::now();
    let results: Vec<Result<(usize, usize), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                s.spawn(move || {
                    let mut rng = Rng(seed ^ ((t as u64 + 1) * 0x1000_0000_01b3));
                    let (mut valid, mut rejected) = (0, 0);
                    for i in (t..cases).step_by(threads) {
                        match run_case(&mut rng, seeds) {
                            Ok(true) => valid += 1,
                            Ok(false) => rejected += 1,
                            Err(e) => {
                                return Err(format!("case {i} (seed {seed}, thread {t}): {e}"))
                            }
                        }
                    }
                    Ok((valid, rejected))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let _ = std::panic::take_hook();
    let (mut valid, mut rejected) = (0, 0);
    for r in results {
        let (v, j) = r.unwrap_or_else(|e| panic!("{e}"));
        valid += v;
        rejected += j;
    }
    eprintln!(
        "fuzzed {cases} node file sets in {:.1}s: {valid} valid, {rejected} rejected with located errors",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(valid + rejected, cases);
    // Mutations that never get past the parser would test little.
    assert!(
        valid > cases / 100,
        "only {valid} of {cases} mutated files were valid"
    );
    assert!(
        rejected > cases / 2,
        "only {rejected} of {cases} mutated files were rejected"
    );
}
