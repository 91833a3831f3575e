//! Time-bounded fuzzing of the client's decoding of service answers on stable Rust, run by
//! `cargo test` (and so by `cargo xtask test`). Inputs are the seed corpus in `fuzz/seeds`
//! (real answer shapes from the protocol and the emulator) mutated structurally (a JSON node
//! replaced, dropped, re-typed or pushed to an extreme, also inside a message's string-encoded
//! batch body) and byte-wise (flips, inserts, cuts, splices), under every status the client
//! classifies. The oracle is `actions_client::fuzzing::check`, the one the coverage-guided
//! targets in `fuzz/` run: no panic, every failure a typed error with the call's context, no
//! credential in it.
//!
//! One pass uses a fixed seed, one a fresh seed that is printed; `ARC_FUZZ_SEED=<n>` replays a
//! pass, `ARC_FUZZ_SECS` sets the time budget of both passes together (default 10 s).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actions_client::fuzzing::{self, Answer, Input};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

const FIXED_SEED: u64 = 0x0a2c_5eed_2026;
const DEFAULT_SECS: u64 = 10;
const CONTENT_TYPES: [Option<&str>; 3] = [Some("application/json"), Some("text/plain"), None];

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

fn read_seeds(folder: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(seed_dir().join(folder))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

/// Values that have broken decoders before: extremes, wrong types, odd strings.
fn odd_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(i64::MAX),
        3 => json!(i64::MIN),
        4 => json!(u64::MAX),
        5 => json!(-1),
        6 => json!(1.5e300),
        7 => json!(""),
        8 => json!("0001-01-01T00:00:00Z"),
        9 => json!("\u{0}\u{feff}\u{10ffff}é"),
        10 => json!("x".repeat(rng.random_range(0..5000))),
        11 => json!([]),
        12 => json!({}),
        13 => json!([1, "two", null, {"messageType": "JobAvailable"}]),
        14 => json!("9999-99-99T99:99:99Z"),
        _ => json!(rng.random::<i64>()),
    }
}

/// Mutates one random node of `value` (recursing into strings that hold JSON, like a message's
/// batch body).
fn mutate_json(rng: &mut StdRng, value: &mut Value, depth: usize) {
    let descend = depth < 6 && rng.random_bool(0.7);
    match value {
        Value::Object(map) if descend && !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.random_range(0..keys.len())].clone();
            match rng.random_range(0..8) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    if let Some(v) = map.remove(&key) {
                        map.insert(key.to_ascii_uppercase(), v);
                    }
                }
                _ => {
                    if let Some(v) = map.get_mut(&key) {
                        mutate_json(rng, v, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.random_range(0..items.len());
            match rng.random_range(0..6) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.push(copy);
                }
                _ => mutate_json(rng, &mut items[i], depth + 1),
            }
        }
        Value::String(text) if descend => {
            if let Ok(mut inner) = serde_json::from_str::<Value>(text) {
                mutate_json(rng, &mut inner, depth + 1);
                *text = inner.to_string();
            } else {
                *value = odd_value(rng);
            }
        }
        _ => {
            *value = match rng.random_range(0..5) {
                0 => Value::Array(vec![value.take()]),
                1 => json!(value.to_string()),
                2 => {
                    let mut map = Map::new();
                    map.insert("value".into(), value.take());
                    Value::Object(map)
                }
                _ => odd_value(rng),
            };
        }
    }
}

const TOKENS: [&[u8]; 10] = [
    b"null",
    b"{",
    b"}",
    b"\"",
    b"9223372036854775808",
    b"-0",
    b"1e999",
    b"\\ud800",
    b"\xEF\xBB\xBF",
    b"\xff\xfe",
];

fn mutate_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>, other: &[u8]) {
    let len = bytes.len();
    match rng.random_range(0..6) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let i = rng.random_range(0..=len);
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            bytes.splice(i..i, token.iter().copied());
        }
        2 if len > 0 => {
            let a = rng.random_range(0..len);
            let b = rng.random_range(a..=len);
            bytes.drain(a..b);
        }
        3 => bytes.truncate(rng.random_range(0..=len)),
        4 if !other.is_empty() => {
            let cut = rng.random_range(0..=len);
            let from = rng.random_range(0..other.len());
            bytes.truncate(cut);
            bytes.extend_from_slice(&other[from..]);
        }
        _ => {
            let i = rng.random_range(0..=len);
            bytes.insert(i, rng.random());
        }
    }
}

fn mutated(rng: &mut StdRng, answer: Answer, seeds: &[Vec<u8>], errors: &[Vec<u8>]) -> Input {
    let error = rng.random_bool(0.2);
    let pool = if error && !errors.is_empty() {
        errors
    } else {
        seeds
    };
    let mut body = pool[rng.random_range(0..pool.len())].clone();
    for _ in 0..rng.random_range(1..4) {
        let structural = rng.random_bool(0.6);
        let parsed = structural
            .then(|| {
                serde_json::from_slice::<Value>(body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&body))
                    .ok()
            })
            .flatten();
        match parsed {
            Some(mut value) => {
                mutate_json(rng, &mut value, 0);
                body = value.to_string().into_bytes();
            }
            None => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                mutate_bytes(rng, &mut body, other);
            }
        }
    }
    let input = Input::ok(answer, body);
    if error {
        let statuses = Input::statuses();
        input.with_status(
            statuses[rng.random_range(0..statuses.len())],
            CONTENT_TYPES[rng.random_range(0..CONTENT_TYPES.len())],
        )
    } else {
        input
    }
}

/// One input's verdict: `None` when the oracle holds, else what went wrong.
fn verdict(answer: Answer, input: &Input) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(|| fuzzing::check(answer, input))) {
        Ok(Ok(())) => None,
        Ok(Err(problem)) => Some(problem),
        Err(panic) => Some(format!(
            "{answer:?} panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        )),
    }
}

fn describe(input: &Input) -> String {
    format!(
        "status {} content type {:?} body {:?}",
        input.status,
        input.content_type,
        String::from_utf8_lossy(&input.body)
    )
}

#[test]
fn every_seed_decodes_without_a_violation() {
    let errors = read_seeds("errors");
    assert!(
        !errors.is_empty(),
        "no error seeds in {}",
        seed_dir().display()
    );
    let mut failures = Vec::new();
    for answer in Answer::ALL {
        let seeds = read_seeds(answer.name());
        assert!(!seeds.is_empty(), "no seeds for {}", answer.name());
        for seed in &seeds {
            let input = Input::ok(answer, seed.clone());
            failures.extend(verdict(answer, &input).map(|p| format!("{p}; {}", describe(&input))));
            let raw = Input::from_bytes(answer, seed);
            failures.extend(verdict(answer, &raw).map(|p| format!("{p}; {}", describe(&raw))));
        }
        for body in &errors {
            for status in Input::statuses() {
                for ct in CONTENT_TYPES {
                    let input = Input::ok(answer, body.clone()).with_status(*status, ct);
                    failures.extend(
                        verdict(answer, &input).map(|p| format!("{p}; {}", describe(&input))),
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mutated_answers_decode_without_a_violation() {
    let secs = std::env::var("ARC_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let replay: Option<u64> = std::env::var("ARC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let passes = match replay {
        Some(seed) => vec![seed],
        None => vec![FIXED_SEED, rand::rng().random()],
    };
    let errors = read_seeds("errors");
    let slice = Duration::from_secs(secs) / (passes.len() * Answer::ALL.len()) as u32;
    let mut failures = Vec::new();
    let mut tried = 0u64;
    for seed in &passes {
        eprintln!("fuzz pass with seed {seed} (replay: ARC_FUZZ_SEED={seed})");
        for (index, answer) in Answer::ALL.into_iter().enumerate() {
            let seeds = read_seeds(answer.name());
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(index as u64));
            let start = Instant::now();
            while start.elapsed() < slice && failures.len() < 5 {
                let input = mutated(&mut rng, answer, &seeds, &errors);
                tried += 1;
                if let Some(problem) = verdict(answer, &input) {
                    failures.push(format!("seed {seed}: {problem}; {}", describe(&input)));
                }
            }
        }
    }
    eprintln!("fuzz: {tried} mutated answers decoded");
    assert!(tried > 0, "no input was tried");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
