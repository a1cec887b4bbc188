//! How long a walk holds: the first stored instant after `now` at which
//! [`super::walk`] could decide differently. A `serve` keeps a walk until then
//! ([`crate::handlers`] read cache).

use std::collections::HashMap;

use crate::core::profile::{Credential, StoredProfile};
use crate::core::usage::Usage;

/// The first instant after `now` (ms since the epoch) at which [`super::walk`] over these
/// profiles and usage could decide differently; `None` when no later instant can.
///
/// The walk reads the clock only by comparing it with stored instants: a window's `until`
/// (cooldown or disable), a credential's `expires` and, for an oauth, `expires` minus the
/// refresh margin. Between two of them every comparison keeps its answer, so a walk done
/// at `t0` is the walk at every `now` in `t0 ..< walk_horizon(t0)` (for any model, pin or
/// order: none of them adds an instant). A `serve` process keeps walks that long
/// ([`crate::handlers`] read cache); a clock that goes back before `t0` is not covered.
pub fn walk_horizon(
    profiles: &[StoredProfile],
    usage: &HashMap<String, Usage>,
    refresh_margin_ms: i64,
    now: i64,
) -> Option<i64> {
    let mut horizon: Option<i64> = None;
    let mut consider = |t: i64| {
        if t > now && horizon.is_none_or(|h| t < h) {
            horizon = Some(t);
        }
    };
    for sp in profiles {
        match &sp.profile.credential {
            Credential::OAuth { expires, .. } => {
                consider(*expires);
                consider(expires.saturating_sub(refresh_margin_ms));
            }
            c => {
                if let Some(e) = c.expires() {
                    consider(e);
                }
            }
        }
    }
    for u in usage.values() {
        for w in u.cooldowns.iter().chain(&u.disabled) {
            consider(w.until);
        }
    }
    horizon
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resolve::tests::{has_url, key, oauth, token, NOW};
    use crate::core::resolve::{walk, Step, WalkInput};
    use crate::core::usage::Window;

    #[test]
    fn the_horizon_is_the_first_stored_instant_after_now() {
        let margin = 300_000;
        let ps = [
            key("p:key"),
            token("p:old", Some(NOW - 10)),
            token("p:tok", Some(NOW + 900_000)),
            oauth("p:oa", NOW + 1_000_000, Some("https://t")),
        ];
        let mut usage = HashMap::new();
        assert_eq!(walk_horizon(&ps, &usage, margin, NOW), Some(NOW + 700_000));
        usage.insert(
            "p:key".to_string(),
            Usage {
                cooldowns: vec![
                    Window {
                        until: NOW,
                        reason: "ended".into(),
                        model: None,
                    },
                    Window {
                        until: NOW + 40,
                        reason: "x".into(),
                        model: Some("m".into()),
                    },
                ],
                disabled: Some(Window {
                    until: NOW + 30,
                    reason: "billing".into(),
                    model: None,
                }),
                ..Default::default()
            },
        );
        assert_eq!(walk_horizon(&ps, &usage, margin, NOW), Some(NOW + 30));
        assert_eq!(walk_horizon(&ps, &usage, margin, NOW + 30), Some(NOW + 40));
        assert_eq!(walk_horizon(&ps[..1], &usage, margin, NOW + 40), None);
        assert_eq!(walk_horizon(&[], &HashMap::new(), margin, NOW), None);
    }

    mod horizon_property {
        use super::*;
        use proptest::prelude::*;

        /// Instants near NOW, so that thresholds collide with `now` and with each other.
        fn near() -> impl Strategy<Value = i64> {
            prop_oneof![8 => (-40i64..40).prop_map(|d| NOW + d), 1 => Just(5i64)]
        }

        fn profile(i: usize) -> impl Strategy<Value = StoredProfile> {
            let id = format!("p:{i}");
            prop_oneof![
                Just(key(&id)),
                proptest::option::of(near()).prop_map({
                    let id = id.clone();
                    move |e| token(&id, e)
                }),
                (near(), any::<bool>()).prop_map(move |(e, url)| oauth(
                    &id,
                    e,
                    url.then_some("https://t")
                )),
            ]
        }

        fn window() -> impl Strategy<Value = Window> {
            (
                near(),
                proptest::option::of(prop_oneof![Just("m1"), Just("m2")]),
            )
                .prop_map(|(until, model)| Window {
                    until,
                    reason: "rate_limit".into(),
                    model: model.map(str::to_string),
                })
        }

        fn usage() -> impl Strategy<Value = Usage> {
            (
                proptest::option::of(near()),
                proptest::collection::vec(window(), 0..3),
                proptest::option::of(window()),
                any::<bool>(),
            )
                .prop_map(|(last_used, cooldowns, disabled, needs_reauth)| Usage {
                    last_used,
                    cooldowns,
                    disabled,
                    needs_reauth: needs_reauth && last_used.is_some_and(|t| t % 7 == 0),
                    ..Default::default()
                })
        }

        fn state() -> impl Strategy<Value = (Vec<StoredProfile>, HashMap<String, Usage>)> {
            (1usize..6).prop_flat_map(|n| {
                (
                    (0..n).map(profile).collect::<Vec<_>>(),
                    proptest::collection::vec(proptest::option::of(usage()), n),
                )
                    .prop_map(|(ps, us)| {
                        let usage = ps
                            .iter()
                            .zip(us)
                            .filter_map(|(p, u)| Some((p.profile.id.clone(), u?)))
                            .collect();
                        (ps, usage)
                    })
            })
        }

        fn walk_at(
            ps: &[StoredProfile],
            usage: &HashMap<String, Usage>,
            order: Option<&[String]>,
            model: Option<&str>,
            pinned: Option<&str>,
            margin: i64,
            now: i64,
        ) -> Vec<Step> {
            walk(&WalkInput {
                profiles: ps,
                order,
                usage,
                now,
                model,
                pinned,
                refresh_margin_ms: margin,
                can_refresh: &has_url,
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

            /// A walk done at `now` is the walk at every instant before the horizon, for
            /// every model, pin and order; and the horizon is an instant some input names.
            #[test]
            fn a_walk_holds_until_its_horizon(
                (ps, usage) in state(),
                now in (-45i64..45).prop_map(|d| NOW + d),
                margin in prop_oneof![Just(0i64), Just(10), Just(300_000)],
                model in proptest::option::of(prop_oneof![Just("m1"), Just("m2")]),
                order_len in 0usize..4,
                pin in proptest::option::of(0usize..6),
                later in 0i64..100,
            ) {
                let order: Vec<String> = (0..order_len).map(|i| format!("p:{}", (i * 2) % 5)).collect();
                let order = (order_len > 0).then_some(order.as_slice());
                let pinned = pin.map(|i| format!("p:{i}"));
                let h = walk_horizon(&ps, &usage, margin, now);
                let at_now = walk_at(&ps, &usage, order, model, pinned.as_deref(), margin, now);
                let end = h.unwrap_or(now + 100).min(now + 100);
                for t in [now + 1, end - 1, now + later % (end - now)] {
                    if t < now || t >= end {
                        continue;
                    }
                    prop_assert_eq!(
                        &walk_at(&ps, &usage, order, model, pinned.as_deref(), margin, t),
                        &at_now,
                        "walk at {} differs from the walk at {} (horizon {:?})", t, now, h
                    );
                }
                if let Some(h) = h {
                    prop_assert!(h > now);
                }
            }
        }
    }
}
