//! The body of the `import` fuzz target (`fuzz/fuzz_targets/import.rs`) over a seeded
//! corpus: valid OpenClaw JSON (v1, flat), a valid OpenClaw SQLite file, and seeded random
//! mutations of each (byte flips, truncations, splices). cargo-fuzz is not needed; every
//! case must return without a panic, and the unmutated seeds must be accepted.

use modelauth::handlers::transfer::fuzz_import_source;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn seeds() -> Vec<Vec<u8>> {
    let v1 = serde_json::json!({"version": 1,
        "profiles": {"openai:a": {"type": "api_key", "provider": "openai", "key": "sk-fuzz-1"},
                     "anthropic:o": {"type": "oauth", "provider": "anthropic", "access": "a",
                                     "refresh": "r", "expires": 1_900_000_000_000i64}},
        "order": {"openai": ["openai:a"]},
        "lastGood": {"openai": "openai:a"},
        "usageStats": {"openai:a": {"lastUsed": 1, "errorCount": 2, "cooldownUntil": 3}}});
    let flat = serde_json::json!({"openai": {"apiKey": "sk-fuzz-2"},
                                  "anthropic": {"access": "x", "refresh": "y", "expires": 5}});
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.sqlite");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = DELETE;
             CREATE TABLE auth_profile_store (store_key TEXT PRIMARY KEY, store_json TEXT);
             CREATE TABLE auth_profile_state (state_key TEXT PRIMARY KEY, state_json TEXT);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO auth_profile_store VALUES ('primary', ?1)",
            [v1.to_string()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO auth_profile_state VALUES ('primary', ?1)",
            [r#"{"order":{"openai":["openai:a"]}}"#],
        )
        .unwrap();
    }
    let sqlite = std::fs::read(&db).unwrap();
    let with = |sel: u8, body: &[u8]| {
        let mut v = vec![sel];
        v.extend_from_slice(body);
        v
    };
    vec![
        with(0, v1.to_string().as_bytes()),
        with(0, flat.to_string().as_bytes()),
        with(1, &sqlite),
        with(2, v1.to_string().as_bytes()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Splice(usize, Vec<u8>),
}

fn mutate(seed: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for m in ms {
        if v.len() <= 1 {
            break;
        }
        match m {
            Mutation::Flip(i, b) => {
                let i = 1 + i % (v.len() - 1);
                v[i] ^= b | 1;
            }
            Mutation::Truncate(i) => v.truncate(1 + i % (v.len() - 1)),
            Mutation::Splice(i, bytes) => {
                let i = 1 + i % (v.len() - 1);
                v.splice(i..i, bytes.iter().copied());
            }
        }
    }
    v
}

#[test]
fn the_seeds_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for (i, s) in seeds().iter().enumerate() {
        assert!(fuzz_import_source(s, dir.path()), "seed {i}");
    }
}

#[test]
fn seeded_mutations_of_every_parser_never_panic() {
    let seeds = seeds();
    let dir = tempfile::tempdir().unwrap();
    let mutation = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Splice(i, b)),
    ];
    let strategy = (0..seeds.len(), prop::collection::vec(mutation, 1..8));
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 1200,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]),
    );
    let accepted = std::cell::Cell::new(0usize);
    runner
        .run(&strategy, |(which, ms)| {
            let input = mutate(&seeds[which], &ms);
            if fuzz_import_source(&input, dir.path()) {
                accepted.set(accepted.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    // Mutations must not all be refused by the first check: some reach the planner.
    let accepted = accepted.get();
    assert!(accepted > 0);
    eprintln!("1200 mutated sources, {accepted} accepted and planned");
}
