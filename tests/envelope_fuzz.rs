//! The body of the `envelope` fuzz target (`fuzz/fuzz_targets/envelope.rs`) over a seeded
//! corpus: real envelopes of the target's fixed key, and seeded random mutations of them
//! (byte flips, truncations, splices, random text). cargo-fuzz is not needed; every case
//! must return without a panic, the unmutated seeds must open, and no mutation may open.

use modelauth::seal::envelope::{aad, fuzz_envelope, StoreKey};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn seeds() -> Vec<String> {
    let k = StoreKey::from_bytes([7; 32]);
    vec![
        k.seal(b"", b"sk-fuzz-secret"),
        k.seal(b"", b""),
        k.seal(b"", &[0xffu8; 300]),
    ]
}

#[test]
fn seeds_open() {
    for s in seeds() {
        assert!(fuzz_envelope(s.as_bytes()));
    }
    // Another place's associated data does not open with the target's empty one.
    let k = StoreKey::from_bytes([7; 32]);
    let moved = k.seal(&aad("s", "profile", "", "openai:a", "key"), b"x");
    assert!(!fuzz_envelope(moved.as_bytes()));
}

#[test]
fn mutations_never_panic_and_never_open() {
    let seeds = seeds();
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 4000,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[22; 32]),
    );
    let strategy = (
        0..seeds.len(),
        0usize..4,
        any::<usize>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..80),
    );
    runner
        .run(&strategy, |(i, op, pos, byte, junk)| {
            let mut b = seeds[i].clone().into_bytes();
            let at = pos % b.len();
            let changed = match op {
                0 => {
                    let old = b[at];
                    b[at] ^= byte | 1;
                    b[at] != old
                }
                1 => {
                    b.truncate(at);
                    true
                }
                2 => {
                    b.splice(at..at, junk.iter().copied());
                    !junk.is_empty()
                }
                _ => {
                    b = junk.clone();
                    true
                }
            };
            let opened = fuzz_envelope(&b);
            if changed && b != seeds[i].as_bytes() {
                // Base64 has a few bits of slack in its last character: a change there can
                // decode to the same bytes. Anything else must not open.
                let same_bytes = b.len() == seeds[i].len() && at + 1 >= b.len();
                prop_assert!(!opened || same_bytes, "a mutation opened: op {op} at {at}");
            }
            Ok(())
        })
        .unwrap();
}
