//! Integration tests of `recsys_train::evaluate`: metric helpers against hand-computed values,
//! both split protocols (cut-off, leakage, leave-one-out choice, sampling) and the evaluation loop
//! (context exclusion, ties, diversity metrics).

mod common;

use common::*;
use recsys_core::schema::{DAY_MS, EventType};
use recsys_train::dataset::Dataset;
use recsys_train::evaluate::*;
use std::collections::{BTreeSet, HashMap, HashSet};

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: got {a}, expected {b}");
}

fn ev(user: u32, item: u32, ts: i64, event_type: EventType) -> Interaction {
    Interaction {
        user,
        item,
        ts,
        event_type,
    }
}

fn click(user: u32, item: u32, ts: i64) -> Interaction {
    ev(user, item, ts, EventType::Click)
}

fn log2(x: f64) -> f64 {
    x.log2()
}

// ---------------------------------------------------------------------------------------------
// Metric helpers.

#[test]
fn recall_hit_ndcg_by_hand() {
    let targets = [3, 7];
    let ranking = [7, 1, 3, 5, 9];
    close(recall_at_k(&ranking, &targets, 1), 0.5, "recall@1");
    close(recall_at_k(&ranking, &targets, 2), 0.5, "recall@2");
    close(recall_at_k(&ranking, &targets, 3), 1.0, "recall@3");
    close(recall_at_k(&ranking, &targets, 50), 1.0, "recall@50 (k past the list)");
    close(hit_at_k(&ranking, &targets, 1), 1.0, "hr@1");
    close(hit_at_k(&ranking[1..], &targets, 1), 0.0, "hr@1 of [1, 3, ..]");
    close(hit_at_k(&ranking[1..], &targets, 2), 1.0, "hr@2 of [1, 3, ..]");
    // Hits at ranks 1 and 3; the ideal list has both at ranks 1 and 2.
    close(
        ndcg_at_k(&ranking, &targets, 3),
        (1.0 + 1.0 / 2.0) / (1.0 + 1.0 / log2(3.0)),
        "ndcg@3",
    );
    // IDCG over min(|targets|, k) = 1 position.
    close(ndcg_at_k(&ranking, &targets, 1), 1.0, "ndcg@1");
    close(
        ndcg_at_k(&ranking, &targets, 2),
        1.0 / (1.0 + 1.0 / log2(3.0)),
        "ndcg@2",
    );
    // A single target at rank 4.
    close(
        ndcg_at_k(&ranking, &[5], 10),
        1.0 / log2(5.0),
        "ndcg@10 of one target at rank 4",
    );
    close(ndcg_at_k(&ranking, &[5], 3), 0.0, "ndcg@3 before the hit");
    for f in [recall_at_k, hit_at_k, ndcg_at_k] {
        assert_eq!(f(&ranking, &[42], 5), 0.0, "no hit");
        assert_eq!(f(&ranking, &[], 5), 0.0, "no targets");
        assert_eq!(f(&[], &targets, 5), 0.0, "empty ranking");
        assert_eq!(f(&ranking, &targets, 0), 0.0, "k = 0");
    }
}

#[test]
fn auc_counts_ties_as_half() {
    close(auc_pairs(&[0.5], &[0.1, 0.5, 0.9]).unwrap(), 1.5 / 3.0, "one positive");
    // (1 > .2) + (1 > 0) + (.2 == .2)/2 + (.2 > 0) = 3.5 of 4 pairs.
    close(auc_pairs(&[1.0, 0.2], &[0.2, 0.0]).unwrap(), 0.875, "two positives");
    close(auc_pairs(&[1.0], &[1.0, 1.0]).unwrap(), 0.5, "all ties");
    close(
        auc_pairs(&[f32::NEG_INFINITY], &[f32::NEG_INFINITY, 0.0]).unwrap(),
        0.25,
        "-inf ties with -inf",
    );
    assert_eq!(auc_pairs(&[], &[1.0]), None);
    assert_eq!(auc_pairs(&[1.0], &[]), None);
}

#[test]
fn entropy_in_bits() {
    close(entropy_bits(&[4; 8]), 3.0, "uniform over 8");
    close(entropy_bits(&[1; 1024]), 10.0, "uniform over 1024");
    close(entropy_bits(&[5, 5, 0, 0]), 1.0, "zeros are ignored");
    close(entropy_bits(&[7]), 0.0, "a point mass");
    close(entropy_bits(&[]), 0.0, "nothing");
    close(entropy_bits(&[0, 0]), 0.0, "all zero");
    close(entropy_bits(&[3, 1]), -(0.75 * log2(0.75) + 0.25 * log2(0.25)), "3:1");
}

#[test]
fn popularity_ranks_by_count_then_index() {
    let xs = [
        click(0, 4, 0),
        click(1, 4, 1),
        click(0, 2, 2),
        click(2, 1, 3),
        click(2, 2, 4),
    ];
    // Counts: 4 → 2, 2 → 2, 1 → 1; ties by lower index: 2, 4, 1; unseen 0, 3, 5 → 4.
    assert_eq!(popularity_ranks(&xs, 6), [4, 3, 1, 4, 2, 4]);
}

#[test]
fn top_k_breaks_ties_by_index_and_excludes() {
    let scores = [1.0, 3.0, 3.0, 2.0, f32::NAN, 3.0];
    assert_eq!(top_k(&scores, 10, &[]), [1, 2, 5, 3, 0, 4]);
    assert_eq!(top_k(&scores, 3, &[]), [1, 2, 5]);
    assert_eq!(top_k(&scores, 3, &[2]), [1, 5, 3]);
    assert_eq!(top_k(&scores, 0, &[]), Vec::<u32>::new());
}

// ---------------------------------------------------------------------------------------------
// The evaluation loop on a hand-made split.

/// Scores item `i` as `i`: higher indices first.
struct ByIndex;
impl Scorer for ByIndex {
    fn score(&self, _case: &TestCase, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = i as f32;
        }
    }
}

fn hand_split() -> Split {
    // Popularity among train: 29 ×3, 10 ×2, 8 ×1 (user 5 is not evaluated).
    let mut train = Vec::new();
    for (t, item) in [29, 29, 29, 10, 10, 8].into_iter().enumerate() {
        train.push(click(5, item, t as i64));
    }
    let mut context = train.clone();
    context.push(click(0, 29, 10));
    context.push(click(0, 28, 11));
    Split {
        protocol: Protocol::TimeSplit,
        num_users: 6,
        num_items: 30,
        cutoff_ms: Some(100),
        train,
        context,
        validation: vec![],
        test: vec![
            TestCase {
                user: 0,
                targets: vec![27, 5],
                as_of: 100,
            },
            TestCase {
                user: 1,
                targets: vec![29],
                as_of: 100,
            },
        ],
    }
}

#[test]
fn evaluate_by_hand() {
    let split = hand_split();
    let opts = EvalOptions {
        ks: vec![1, 20, 25],
        auc_negatives: 0,
        seed: 1,
    };
    let m = evaluate(&split, &ByIndex, &opts);
    // User 0 (context 28, 29): ranking 27, 26, ..., 0: target 27 at rank 1, target 5 at rank 23.
    // User 1 (no context): ranking 29, 28, ...: target 29 at rank 1.
    let idcg2 = 1.0 + 1.0 / log2(3.0);
    let want = [
        ("recall@1", (0.5 + 1.0) / 2.0),
        ("recall@20", (0.5 + 1.0) / 2.0),
        ("recall@25", 1.0),
        ("hr@1", 1.0),
        ("hr@25", 1.0),
        ("ndcg@1", 1.0),
        ("ndcg@20", (1.0 / idcg2 + 1.0) / 2.0),
        ("ndcg@25", ((1.0 + 1.0 / log2(24.0)) / idcg2 + 1.0) / 2.0),
        ("users", 2.0),
        // Top-20 lists: 27..=8 and 29..=10: 22 distinct items of 30.
        ("coverage@20", 22.0 / 30.0),
        // 10..=27 twice (18 items), 8, 9, 28, 29 once: 40 slots.
        (
            "entropy@20",
            18.0 * (2.0 / 40.0) * log2(40.0 / 2.0) + 4.0 * (1.0 / 40.0) * log2(40.0),
        ),
        // Popularity ranks: 29 → 1, 10 → 2, 8 → 3, every other item → 4.
        // User 0: 10 and 8 plus 18 others = 2 + 3 + 72; user 1: 29 and 10 plus 18 others = 1 + 2 + 72.
        ("novelty@20", (77.0 + 75.0) / 40.0),
    ];
    for (name, value) in want {
        close(m[name], value, name);
    }
    assert!(!m.contains_key("auc"), "auc_negatives = 0 gives no auc");
    assert_eq!(m.len(), 3 * 3 + 4, "{m:?}");
}

#[test]
fn sampled_auc_draws_only_non_targets_outside_the_context() {
    // 10 items; context {0}; targets 1..=8; the one item left to draw is 9, scored lowest.
    let split = Split {
        protocol: Protocol::LeaveOneOut,
        num_users: 1,
        num_items: 10,
        cutoff_ms: None,
        train: vec![],
        context: vec![click(0, 0, 0)],
        validation: vec![],
        test: vec![TestCase {
            user: 0,
            targets: (1..=8).collect(),
            as_of: 1,
        }],
    };
    struct NineLowest;
    impl Scorer for NineLowest {
        fn score(&self, _case: &TestCase, out: &mut [f32]) {
            for (i, o) in out.iter_mut().enumerate() {
                *o = if i == 9 { -1.0 } else { i as f32 };
            }
        }
    }
    let opts = EvalOptions {
        ks: vec![10],
        auc_negatives: 50,
        seed: 3,
    };
    // Drawing a target (tie) or the context item (-inf) would move the AUC away from 1.
    close(evaluate(&split, &NineLowest, &opts)["auc"], 1.0, "auc");
    // A target in the context scores -inf: it loses to every negative.
    let mut s2 = split.clone();
    s2.test[0].targets = vec![0, 1];
    // Negatives come from 2..=9: target 1 (score 1) beats 9 (-1) only; target 0 loses all.
    let m = evaluate(
        &s2,
        &NineLowest,
        &EvalOptions {
            auc_negatives: 20_000,
            ..opts.clone()
        },
    );
    assert!((m["auc"] - 0.5 * (1.0 / 8.0)).abs() < 0.01, "{}", m["auc"]);
    // The sampled AUC of a fair scorer is close to the exact one: ByIndex with targets {7, 2},
    // context {0}: 7 beats 5 of the 7 negatives {1, 3, 4, 5, 6, 8, 9}... here computed exactly.
    let mut s3 = split.clone();
    s3.test[0].targets = vec![7, 2];
    let negs = [1.0f32, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0];
    let exact = auc_pairs(&[7.0, 2.0], &negs).unwrap();
    let m = evaluate(
        &s3,
        &ByIndex,
        &EvalOptions {
            auc_negatives: 20_000,
            ..opts.clone()
        },
    );
    assert!((m["auc"] - exact).abs() < 0.01, "{} vs {exact}", m["auc"]);
    // Deterministic for a seed.
    let again = evaluate(
        &s3,
        &ByIndex,
        &EvalOptions {
            auc_negatives: 20_000,
            ..opts
        },
    );
    assert_eq!(m["auc"], again["auc"]);
}

/// Puts the user's context items first (score 100), then their targets (50), the rest below.
struct ContextFirst {
    context: HashMap<u32, HashSet<u32>>,
}
impl Scorer for ContextFirst {
    fn score(&self, case: &TestCase, out: &mut [f32]) {
        let empty = HashSet::new();
        let ctx = self.context.get(&case.user).unwrap_or(&empty);
        for (i, o) in out.iter_mut().enumerate() {
            let i = i as u32;
            *o = if ctx.contains(&i) {
                100.0
            } else if case.targets.contains(&i) {
                50.0
            } else {
                -(i as f32)
            };
        }
    }
}

#[test]
fn context_items_are_excluded_from_the_ranking() {
    // User 0 touched items 0..5 before the cut-off and clicks item 7 after it.
    let day0 = 0;
    let mut xs: Vec<Interaction> = (0..5).map(|i| click(0, i, day0 + i64::from(i))).collect();
    xs.push(click(1, 3, day0 + 10));
    xs.push(click(0, 7, 3 * DAY_MS));
    let opts = SplitOptions {
        test_days: Some(1),
        ..Default::default()
    };
    let split = split(&xs, 2, 10, &opts).unwrap();
    assert_eq!(split.test.len(), 1);
    let mut context: HashMap<u32, HashSet<u32>> = HashMap::new();
    for x in &split.context {
        context.entry(x.user).or_default().insert(x.item);
    }
    assert_eq!(context[&0], (0..5).collect());
    let m = evaluate(
        &split,
        &ContextFirst { context },
        &EvalOptions {
            ks: vec![1, 5],
            auc_negatives: 10,
            seed: 1,
        },
    );
    // Without the exclusion the five context items would fill the top 5 and recall@5 would be 0.
    close(m["recall@1"], 1.0, "recall@1");
    close(m["ndcg@5"], 1.0, "ndcg@5");
    close(m["auc"], 1.0, "auc");
    // And a scorer that ranks the target behind 5 other non-context items misses it.
    let m = evaluate(
        &split,
        &ContextFirst {
            context: HashMap::new(),
        },
        &EvalOptions {
            ks: vec![1, 5],
            auc_negatives: 0,
            seed: 1,
        },
    );
    close(
        m["recall@5"],
        1.0,
        "recall@5, target still first among non-context items",
    );
    struct TargetLast;
    impl Scorer for TargetLast {
        fn score(&self, case: &TestCase, out: &mut [f32]) {
            for (i, o) in out.iter_mut().enumerate() {
                *o = if case.targets.contains(&(i as u32)) {
                    -1e9
                } else {
                    i as f32
                };
            }
        }
    }
    let m = evaluate(
        &split,
        &TargetLast,
        &EvalOptions {
            ks: vec![1, 4],
            auc_negatives: 0,
            seed: 1,
        },
    );
    // Non-context items: 5, 6, 7, 8, 9; the target 7 is last.
    close(m["recall@4"], 0.0, "recall@4");
}

#[test]
fn evaluation_of_no_cases_is_all_zero_and_finite() {
    let mut split = hand_split();
    split.test.clear();
    let m = evaluate(&split, &ByIndex, &EvalOptions::default());
    assert_eq!(m["users"], 0.0);
    assert!(m.values().all(|v| v.is_finite() && *v == 0.0), "{m:?}");
    assert!(m.contains_key("recall@500") && m.contains_key("auc"));
}

// ---------------------------------------------------------------------------------------------
// Splits.

#[test]
fn time_split_cuts_exactly_at_t() {
    // Span 3 days → default test_days = clamp(3 / 7, 1, 14) = 1.
    let start = 20_000 * DAY_MS;
    let max_ts = start + 3 * DAY_MS - 1;
    let t = max_ts + 1 - DAY_MS;
    let xs = vec![
        click(0, 0, start),
        click(1, 0, start + 5),
        click(0, 1, t - 1),                    // train
        click(0, 2, t),                        // test target
        ev(0, 3, t + 1, EventType::View),      // view: below min_target_event
        ev(0, 4, t + 2, EventType::Purchase),  // target
        click(0, 2, t + 3),                    // duplicate target
        click(0, 0, t + 4),                    // already in train: not a target
        ev(1, 9, t + 5, EventType::AddToCart), // user 1 target
        click(2, 5, t + 6),                    // user 2 has no train data: no case
        ev(0, 6, max_ts, EventType::Purchase), // last event, target
    ];
    let s = split(&xs, 3, 10, &SplitOptions::default()).unwrap();
    assert_eq!(s.protocol, Protocol::TimeSplit);
    assert_eq!(s.cutoff_ms, Some(t));
    assert_eq!(s.train, xs[..3].to_vec());
    assert_eq!(s.context, s.train);
    assert!(s.validation.is_empty());
    assert_eq!(
        s.test,
        [
            TestCase {
                user: 0,
                targets: vec![2, 4, 6],
                as_of: t
            },
            TestCase {
                user: 1,
                targets: vec![9],
                as_of: t
            },
        ]
    );
    // min_target_event = view makes the view a target too; test_days = 2 moves T back a day.
    let s = split(
        &xs,
        3,
        10,
        &SplitOptions {
            min_target_event: EventType::View,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.test[0].targets, [2, 3, 4, 6]);
    let s = split(
        &xs,
        3,
        10,
        &SplitOptions {
            test_days: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.cutoff_ms, Some(t - DAY_MS));
    assert_eq!(s.train, xs[..2].to_vec());
    assert_eq!(s.test[0].targets, [1, 2, 4, 6]);
    // Purchases only.
    let s = split(
        &xs,
        3,
        10,
        &SplitOptions {
            min_target_event: EventType::Purchase,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.test.len(), 1);
    assert_eq!(s.test[0].targets, [4, 6]);
}

#[test]
fn default_test_window_is_a_seventh_of_the_span_within_1_to_14_days() {
    for (span_days, want) in [(1i64, 1i64), (13, 1), (14, 2), (21, 3), (98, 14), (400, 14)] {
        let xs = vec![click(0, 0, 0), click(0, 1, span_days * DAY_MS - 1)];
        let s = split(&xs, 1, 2, &SplitOptions::default()).unwrap();
        assert_eq!(
            s.cutoff_ms,
            Some(span_days * DAY_MS - want * DAY_MS),
            "span {span_days} days"
        );
    }
}

/// A pseudo-random log: `users` users, `items` items, each event a distinct (user, item, ts).
fn random_log(users: u32, items: u32, events: usize, seed: u64) -> Vec<Interaction> {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut xs: Vec<Interaction> = (0..events)
        .map(|k| {
            let t = EventType::ALL[(next() % 4) as usize];
            ev(
                (next() % u64::from(users)) as u32,
                (next() % u64::from(items)) as u32,
                // Coarse times so there are many ties.
                (next() % 500) as i64 * (DAY_MS / 20) + k as i64 % 3,
                t,
            )
        })
        .collect();
    xs.sort_by_key(|x| x.ts);
    xs
}

#[test]
fn no_test_interaction_leaks_into_train_or_context() {
    let xs = random_log(60, 40, 3000, 5);

    // Time split: nothing at or after T anywhere but in the targets; every target is new to its user.
    let s = split(&xs, 60, 40, &SplitOptions::default()).unwrap();
    let t = s.cutoff_ms.unwrap();
    assert!(s.train.iter().chain(&s.context).all(|x| x.ts < t));
    assert_eq!(s.train.len(), xs.iter().filter(|x| x.ts < t).count());
    assert!(!s.test.is_empty());
    for c in &s.test {
        let seen: HashSet<u32> = s.context.iter().filter(|x| x.user == c.user).map(|x| x.item).collect();
        assert!(!seen.is_empty());
        assert!(c.targets.iter().all(|i| !seen.contains(i)), "user {}", c.user);
        let uniq: HashSet<&u32> = c.targets.iter().collect();
        assert_eq!(uniq.len(), c.targets.len(), "duplicate targets");
    }

    // Leave-one-out: train + validation + test = everything; the test event is in neither.
    let s = split(
        &xs,
        60,
        40,
        &SplitOptions {
            protocol: Protocol::LeaveOneOut,
            max_users: None,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.cutoff_ms, None);
    let mut per_user: HashMap<u32, Vec<Interaction>> = HashMap::new();
    for x in &xs {
        per_user.entry(x.user).or_default().push(*x);
    }
    assert_eq!(s.train.len() + s.validation.len() + s.test.len(), xs.len());
    assert_eq!(s.context.len() + s.test.len(), xs.len());
    assert!(!s.test.is_empty());
    for c in &s.test {
        let history = &per_user[&c.user];
        let n = history.len();
        let last = history[n - 1];
        assert_eq!((c.targets.clone(), c.as_of), (vec![last.item], last.ts));
        // The user's context is exactly their history minus the test event, their train data that
        // minus the validation event too.
        let of = |v: &[Interaction]| v.iter().filter(|x| x.user == c.user).copied().collect::<Vec<_>>();
        assert_eq!(of(&s.context), history[..n - 1].to_vec());
        assert_eq!(of(&s.train), history[..n - 2].to_vec());
        assert!(s.validation.contains(&(c.user, history[n - 2].item)));
    }
    // Users without a case keep everything.
    for (u, history) in &per_user {
        if history.len() < 3 {
            assert!(s.test.iter().all(|c| c.user != *u));
            let of = |v: &[Interaction]| v.iter().filter(|x| x.user == *u).copied().collect::<Vec<_>>();
            assert_eq!(&of(&s.train), history);
            assert_eq!(&of(&s.context), history);
        }
    }
    assert!(s.context.windows(2).all(|w| w[0].ts <= w[1].ts));
    assert!(s.train.windows(2).all(|w| w[0].ts <= w[1].ts));
}

#[test]
fn leave_one_out_takes_the_last_two_by_time() {
    // Out of time order on input; the ties at ts 3 keep input order (item 12 before item 13).
    let xs = vec![
        click(0, 10, 5),
        click(0, 11, 1),
        click(0, 12, 3),
        click(0, 13, 3),
        click(1, 20, 2),
        ev(1, 21, 1, EventType::View),
        click(2, 30, 4),
        click(2, 30, 7),
        ev(2, 31, 9, EventType::View),
    ];
    let s = split(
        &xs,
        3,
        40,
        &SplitOptions {
            protocol: Protocol::LeaveOneOut,
            min_target_event: EventType::Purchase, // ignored
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.test,
        [
            TestCase {
                user: 0,
                targets: vec![10],
                as_of: 5
            },
            TestCase {
                user: 2,
                targets: vec![31],
                as_of: 9
            },
        ]
    );
    assert_eq!(s.validation, [(0, 13), (2, 30)]);
    let items = |v: &[Interaction]| v.iter().map(|x| (x.user, x.item, x.ts)).collect::<Vec<_>>();
    // Sorted by time; user 1 (two interactions) keeps both in train and context.
    assert_eq!(
        items(&s.train),
        [(0, 11, 1), (1, 21, 1), (1, 20, 2), (0, 12, 3), (2, 30, 4)]
    );
    assert_eq!(
        items(&s.context),
        [
            (0, 11, 1),
            (1, 21, 1),
            (1, 20, 2),
            (0, 12, 3),
            (0, 13, 3),
            (2, 30, 4),
            (2, 30, 7)
        ]
    );
}

#[test]
fn re_consumed_test_item_stays_a_case_that_cannot_be_hit() {
    let xs = vec![click(0, 1, 1), click(0, 2, 2), click(0, 3, 3), click(0, 1, 4)];
    let s = split(
        &xs,
        1,
        5,
        &SplitOptions {
            protocol: Protocol::LeaveOneOut,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.test.len(), 1);
    assert_eq!(s.test[0].targets, [1]);
    let m = evaluate(&s, &ByIndex, &EvalOptions::default());
    assert_eq!(m["hr@500"], 0.0);
}

#[test]
fn user_sampling_is_deterministic_and_seeded() {
    let xs = random_log(300, 50, 6000, 9);
    let loo = |max_users, seed| {
        split(
            &xs,
            300,
            50,
            &SplitOptions {
                protocol: Protocol::LeaveOneOut,
                max_users,
                seed,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let all = loo(None, 1);
    assert!(all.test.len() > 250, "{}", all.test.len());
    let users = |s: &Split| s.test.iter().map(|c| c.user).collect::<Vec<_>>();
    let a = loo(Some(40), 1);
    assert_eq!(a.test.len(), 40);
    assert!(a.test.windows(2).all(|w| w[0].user < w[1].user), "sorted by user");
    assert_eq!(users(&a), users(&loo(Some(40), 1)), "same seed, same users");
    assert_ne!(users(&a), users(&loo(Some(40), 2)), "another seed, other users");
    let full: BTreeSet<u32> = users(&all).into_iter().collect();
    assert!(users(&a).iter().all(|u| full.contains(u)));
    // A kept case is unchanged, and sampling never changes the training data.
    for c in &a.test {
        assert!(all.test.contains(c));
    }
    assert_eq!(a.train, all.train);
    assert_eq!(a.context, all.context);
    // Not simply the first users.
    assert!(users(&a).last().unwrap() > &200);
    // Enough room: nothing dropped.
    assert_eq!(loo(Some(all.test.len()), 1).test, all.test);
}

#[test]
fn split_refuses_bad_input() {
    let xs = vec![click(0, 0, 0), click(0, 1, 1)];
    assert!(split(&[], 1, 1, &SplitOptions::default()).is_err());
    let e = split(&xs, 1, 1, &SplitOptions::default()).unwrap_err();
    assert!(e.is_user_error() && e.to_string().contains("item 1"), "{e}");
    assert!(
        split(
            &xs,
            1,
            2,
            &SplitOptions {
                test_days: Some(0),
                ..Default::default()
            }
        )
        .is_err()
    );
    assert!(
        split(
            &xs,
            1,
            2,
            &SplitOptions {
                max_users: Some(0),
                ..Default::default()
            }
        )
        .is_err()
    );
}

#[test]
fn protocol_spellings() {
    use clap::ValueEnum;
    assert_eq!(Protocol::from_str("time-split", false).unwrap(), Protocol::TimeSplit);
    assert_eq!(
        Protocol::from_str("leave-one-out", false).unwrap(),
        Protocol::LeaveOneOut
    );
    assert_eq!(
        serde_json::to_string(&Protocol::LeaveOneOut).unwrap(),
        "\"leave-one-out\""
    );
    let o = SplitOptions::default();
    assert_eq!(
        (o.protocol, o.test_days, o.min_target_event, o.max_users, o.seed),
        (Protocol::TimeSplit, None, EventType::Click, Some(20_000), 42)
    );
    let e = EvalOptions::default();
    assert_eq!((e.ks, e.auc_negatives, e.seed), (vec![10, 20, 100, 500], 100, 7));
}

// ---------------------------------------------------------------------------------------------
// Loading from a dataset.

#[test]
fn load_interactions_in_time_order_with_types() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = write_file(
        tmp.path(),
        "events.csv",
        "user,item,ts,event_type\n\
         u1,a,2025-01-02T10:00:00Z,purchase\n\
         u2,b,2025-01-01T09:00:00Z,view\n\
         u1,b,2025-01-01T09:00:00Z,add_to_cart\n\
         u2,a,2025-01-01T08:00:00Z,click\n",
    );
    let out = tmp.path().join("data");
    import_csv(&out, &csv);
    let ds = Dataset::open(&out).unwrap();
    let xs = load_interactions(&ds).unwrap();
    let u = |id: &str| ds.users.ids.get(id).unwrap();
    let i = |id: &str| ds.items.ids.get(id).unwrap();
    assert_eq!(
        xs,
        [
            ev(u("u2"), i("a"), ms("2025-01-01T08:00:00Z"), EventType::Click),
            ev(u("u2"), i("b"), ms("2025-01-01T09:00:00Z"), EventType::View),
            ev(u("u1"), i("b"), ms("2025-01-01T09:00:00Z"), EventType::AddToCart),
            ev(u("u1"), i("a"), ms("2025-01-02T10:00:00Z"), EventType::Purchase),
        ]
    );
}

#[test]
fn validation_split_sees_nothing_of_the_test() {
    let xs = random_log(60, 40, 3000, 9);

    // Time split: validation is the same rule applied to the training period, entirely before T.
    let opts = SplitOptions {
        test_days: Some(2),
        max_users: None,
        ..Default::default()
    };
    let s = split(&xs, 60, 40, &opts).unwrap();
    let t = s.cutoff_ms.unwrap();
    let v = validation_split(&s, &opts, 1000).unwrap();
    let tv = v.cutoff_ms.unwrap();
    assert_eq!(
        t - tv,
        2 * DAY_MS,
        "the validation window is as long as the test window"
    );
    assert!(v.train.iter().chain(&v.context).all(|x| x.ts < tv));
    assert_eq!(v.train.len(), xs.iter().filter(|x| x.ts < tv).count());
    assert!(!v.test.is_empty());
    for c in &v.test {
        assert_eq!(c.as_of, tv);
        let window: HashSet<u32> = xs
            .iter()
            .filter(|x| x.user == c.user && (tv..t).contains(&x.ts))
            .map(|x| x.item)
            .collect();
        assert!(c.targets.iter().all(|i| window.contains(i)), "user {}", c.user);
    }

    // Leave-one-out: the cases are the second-to-last interactions, predicted from the train part
    // (which holds neither them nor the test ones).
    let opts = SplitOptions {
        protocol: Protocol::LeaveOneOut,
        max_users: None,
        ..Default::default()
    };
    let s = split(&xs, 60, 40, &opts).unwrap();
    let v = validation_split(&s, &opts, 1000).unwrap();
    assert_eq!(v.train, s.train);
    assert_eq!(v.context, s.train);
    assert_eq!(v.test.len(), s.validation.len());
    let mut per_user: HashMap<u32, Vec<Interaction>> = HashMap::new();
    for x in &xs {
        per_user.entry(x.user).or_default().push(*x);
    }
    for c in &v.test {
        let h = &per_user[&c.user];
        let second_last = h[h.len() - 2];
        assert_eq!((c.targets.clone(), c.as_of), (vec![second_last.item], second_last.ts));
        let test = s.test.iter().find(|t| t.user == c.user).unwrap();
        assert!(c.as_of <= test.as_of);
    }

    // A seeded sample of at most `max_users` cases, the same every time; 0 is refused.
    let a = validation_split(&s, &opts, 10).unwrap();
    assert_eq!(a.test.len(), 10);
    assert_eq!(a.test, validation_split(&s, &opts, 10).unwrap().test);
    let e = validation_split(&s, &opts, 0).unwrap_err().to_string();
    assert!(e.contains("validation_users"), "{e}");
}
