//! Micro-benchmarks (`cargo bench`): the resolution walk, request parsing and dispatch,
//! and a store read. Whole-process figures (cold one-shot, serve throughput) are in
//! `bench/process.py`; both are described in BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use modelauth::core::ids::Aliases;
use modelauth::core::profile::{validate_profile, Credential, Profile, StoredProfile};
use modelauth::core::resolve::{walk, WalkInput};
use modelauth::core::secret_value::Secret;
use modelauth::core::usage::Usage;
use modelauth::handlers::App;
use modelauth::protocol::dispatch::Dispatcher;
use modelauth::store;
use serde_json::json;

const NOW: i64 = 1_800_000_000_000;

fn profiles(n: usize) -> Vec<StoredProfile> {
    (0..n)
        .map(|i| StoredProfile {
            profile: Profile {
                id: format!("openai:p{i}"),
                provider: "openai".into(),
                email: None,
                display_name: None,
                credential: Credential::ApiKey {
                    key: Some(Secret::new(format!("sk-bench-{i}"))),
                    key_ref: None,
                    metadata: None,
                },
            },
            scope: None,
            revision: 1,
            created_at: 0,
            updated_at: 0,
        })
        .collect()
}

fn bench_walk(c: &mut Criterion) {
    let never = |_: &StoredProfile| false;
    for n in [25usize, 1000] {
        let ps = profiles(n);
        let mut usage = HashMap::new();
        for (i, p) in ps.iter().enumerate().step_by(3) {
            usage.insert(
                p.profile.id.clone(),
                Usage {
                    last_used: Some(NOW - i as i64),
                    ..Default::default()
                },
            );
        }
        let order: Vec<String> = ps
            .iter()
            .rev()
            .take(5)
            .map(|p| p.profile.id.clone())
            .collect();
        c.bench_function(&format!("walk/default_order/{n}"), |b| {
            b.iter(|| {
                black_box(walk(&WalkInput {
                    profiles: &ps,
                    order: None,
                    usage: &usage,
                    now: NOW,
                    model: Some("m1"),
                    pinned: None,
                    refresh_margin_ms: 300_000,
                    can_refresh: &never,
                }))
            })
        });
        c.bench_function(&format!("walk/explicit_order/{n}"), |b| {
            b.iter(|| {
                black_box(walk(&WalkInput {
                    profiles: &ps,
                    order: Some(&order),
                    usage: &usage,
                    now: NOW,
                    model: None,
                    pinned: None,
                    refresh_margin_ms: 300_000,
                    can_refresh: &never,
                }))
            })
        });
    }
    let input = json!({"id": "openai:work", "type": "api_key", "key": "sk-abc-123", "email": "a@example.com"});
    c.bench_function("validate_profile", |b| {
        b.iter(|| black_box(validate_profile(&input, "/profile", &Aliases::new()).unwrap()))
    });
}

fn filled_store(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let d = Dispatcher::new(App::new(path.clone()));
    let document = json!({"version": 1, "profiles": (0..n).map(|i| {
        let prov = ["openai", "anthropic", "google", "openrouter"][i % 4];
        (format!("{prov}:p{i}"), json!({"type": "api_key", "provider": prov, "key": format!("sk-bench-{i:06}")}))
    }).collect::<serde_json::Map<_, _>>()});
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": "store.import", "params": {"document": document}}).to_string();
    let out = d.handle_line(line.as_bytes()).unwrap();
    assert!(out.contains("\"result\""), "{}", &out[..out.len().min(300)]);
    (dir, path)
}

fn bench_dispatch(c: &mut Criterion) {
    let (_dir, path) = filled_store(100);
    let d = Dispatcher::new(App::new(path.clone()));
    let resolve = br#"{"jsonrpc":"2.0","id":7,"method":"auth.resolve","params":{"provider":"openai","agent":"main"}}"#;
    c.bench_function("dispatch/auth.resolve/100_profiles_warm", |b| {
        b.iter(|| black_box(d.handle_line(resolve)))
    });
    let unknown =
        br#"{"jsonrpc":"2.0","id":7,"method":"no.such.method","params":{"provider":"openai"}}"#;
    c.bench_function("dispatch/parse_and_route_only", |b| {
        b.iter(|| black_box(d.handle_line(unknown)))
    });
    let bad = br#"{"jsonrpc":"2.0","id":7,"method":"profiles.put","params":{"profile":{"id":"openai:x","type":"bearer"}}}"#;
    c.bench_function("dispatch/invalid_profile", |b| {
        b.iter(|| black_box(d.handle_line(bad)))
    });
    let mut st = store::open(path);
    c.bench_function("store/read_view_of_one_provider/100_profiles", |b| {
        b.iter(|| {
            black_box(
                st.read(|c| c.view_profiles(Some("main"), Some("openai")))
                    .unwrap(),
            )
        })
    });
}

criterion_group!(benches, bench_walk, bench_dispatch);
criterion_main!(benches);
