//! Item retrieval: exact top-k against a brute-force sort, HNSW recall against exact, and the
//! index file's save / open contract.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use recsys_core::Error;
use recsys_core::retrieval::{
    AnyIndex, EXACT_MAX_ITEMS, ExactIndex, Filter, HnswConfig, HnswIndex, ItemIndex, Quantization, checksum_path,
    recall,
};
use recsys_core::store::Scored;

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn normalize(v: &mut [f32], dim: usize) {
    for row in v.chunks_exact_mut(dim) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= n);
    }
}

fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n * dim).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// `n` unit vectors around `clusters` random centres (like trained embeddings: clumped by category).
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    let mut centres = random(clusters, dim, seed ^ 0x5eed);
    normalize(&mut centres, dim);
    let mut v = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = r.random_range(0..clusters);
        v.extend(
            centres[c * dim..][..dim]
                .iter()
                .map(|x| x + 0.25 * r.random_range(-1.0f32..1.0)),
        );
    }
    normalize(&mut v, dim);
    v
}

/// The reference: score everything, keep what passes, sort by (score desc, item asc).
fn brute_force(items: &[f32], dim: usize, q: &[f32], k: usize, f: &Filter<'_>) -> Vec<Scored> {
    let mut all: Vec<Scored> = items
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| f.allows(*i as u32))
        .map(|(i, v)| Scored {
            item: i as u32,
            score: v.iter().zip(q).map(|(a, b)| a * b).sum(),
        })
        .collect();
    all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    all.truncate(k);
    all
}

fn ids(v: &[Scored]) -> Vec<u32> {
    v.iter().map(|s| s.item).collect()
}

/// Same ranking up to float rounding: scores agree position by position, and the two lists hold
/// the same items except near-ties (within 1e-4) that the summation order may swap.
fn assert_same(got: &[Scored], want: &[Scored]) {
    assert_eq!(got.len(), want.len(), "got {:?}\nwant {:?}", ids(got), ids(want));
    for (g, w) in got.iter().zip(want) {
        // Differing items at one position are fine only as a near-tie swap.
        assert!((g.score - w.score).abs() < 1e-4, "{} vs {}", g.score, w.score);
    }
    let (mut a, mut b) = (ids(got), ids(want));
    a.sort_unstable();
    b.sort_unstable();
    if a != b {
        let cut = want.last().map_or(0.0, |s| s.score);
        for s in got.iter().chain(want) {
            if a.binary_search(&s.item).is_err() || b.binary_search(&s.item).is_err() {
                assert!(
                    (s.score - cut).abs() < 1e-4,
                    "item {} differs away from the cut",
                    s.item
                );
            }
        }
    }
    assert!(got.windows(2).all(|w| w[0].score >= w[1].score), "not sorted");
}

#[test]
fn exact_top_k_equals_a_brute_force_sort() {
    let (n, dim) = (3000, 24);
    let items = random(n, dim, 1);
    let index = ExactIndex::new(items.clone(), dim).unwrap();
    assert_eq!((index.len(), index.dim()), (n, dim));
    let queries = random(70, dim, 2);
    let none = Filter::default();
    for k in [1, 10, 500] {
        let batch = index.search_batch(&queries, k, &[]).unwrap();
        assert_eq!(batch.len(), 70);
        for (q, got) in queries.chunks_exact(dim).zip(&batch) {
            let want = brute_force(&items, dim, q, k, &none);
            assert_same(got, &want);
            assert_same(&index.search(q, k, &none).unwrap(), &want);
        }
    }
}

/// The batch scan multiplies item blocks of 8,192 and keeps a running top-k per query: a
/// catalogue spanning several blocks (the last one partial), with per-query exclusions on both
/// sides of the block boundaries and ties across them, answers like the brute-force sort.
#[test]
fn exact_batch_across_item_blocks_equals_a_brute_force_sort() {
    let (n, dim) = (20_000, 8);
    let mut items = random(n, dim, 11);
    normalize(&mut items, dim);
    // Item 3 duplicated at 8,195 and 16,390 (other blocks): exact ties the lower index must win.
    let three = items[3 * dim..4 * dim].to_vec();
    items[8195 * dim..8196 * dim].copy_from_slice(&three);
    items[16_390 * dim..16_391 * dim].copy_from_slice(&three);
    let index = ExactIndex::new(items.clone(), dim).unwrap();
    let mut queries = random(9, dim, 12);
    queries[..dim].copy_from_slice(&three);
    let excludes: Vec<Vec<u32>> = (0..9u32)
        .map(|q| {
            let mut e: Vec<u32> = (0..40).map(|j| (q * 977 + j * 523) % n as u32).collect();
            e.extend([8191, 8192, 16_383, 16_384]);
            e.sort_unstable();
            e.dedup();
            e
        })
        .collect();
    let filters: Vec<Filter> = excludes
        .iter()
        .map(|e| Filter {
            exclude: e,
            ..Filter::default()
        })
        .collect();
    for k in [1, 3, 100, 2000] {
        let batch = index.search_batch(&queries, k, &filters).unwrap();
        for (i, (q, got)) in queries.chunks_exact(dim).zip(&batch).enumerate() {
            let want = brute_force(&items, dim, q, k, &filters[i]);
            assert_same(got, &want);
            assert!(got.iter().all(|s| filters[i].allows(s.item)));
        }
    }
    // The query equal to item 3 finds item 3 and its two copies first, lower index first.
    let first = &index.search_batch(&queries[..dim], 3, &[]).unwrap()[0];
    assert_eq!(ids(first), vec![3, 8195, 16_390]);
}

#[test]
fn exact_ties_go_to_the_lower_item_and_edge_k() {
    let dim = 4;
    // Items 0..20 with only 3 distinct vectors: lots of exact ties.
    let pattern = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]];
    let items: Vec<f32> = (0..20).flat_map(|i| pattern[i % 3]).collect();
    let index = ExactIndex::new(items.clone(), dim).unwrap();
    let q = [1.0, 0.0, 0.0, 0.0];
    let got = index.search(&q, 5, &Filter::default()).unwrap();
    assert_eq!(ids(&got), vec![0, 3, 6, 9, 12]);
    for k in [1, 7, 8, 13, 20] {
        assert_same(
            &index.search(&q, k, &Filter::default()).unwrap(),
            &brute_force(&items, dim, &q, k, &Filter::default()),
        );
        let batch = index.search_batch(&q, k, &[]).unwrap();
        assert_same(&batch[0], &brute_force(&items, dim, &q, k, &Filter::default()));
    }
    // k > len: everything; k = 0: nothing.
    assert_eq!(index.search(&q, 1000, &Filter::default()).unwrap().len(), 20);
    assert!(index.search(&q, 0, &Filter::default()).unwrap().is_empty());
    assert_eq!(
        index.search_batch(&[q, q].concat(), 0, &[]).unwrap(),
        vec![vec![], vec![]]
    );
    // No queries: no answers.
    assert!(index.search_batch(&[], 5, &[]).unwrap().is_empty());
    // An empty catalogue answers nothing.
    let empty = ExactIndex::new(Vec::new(), dim).unwrap();
    assert!(empty.is_empty());
    assert!(empty.search(&q, 5, &Filter::default()).unwrap().is_empty());
}

#[test]
fn filters_exclude_category_and_stock_and_still_return_k() {
    let (n, dim) = (2000, 16);
    let items = clustered(n, dim, 10, 3);
    let categories: Vec<u32> = (0..n as u32)
        .map(|i| if i % 50 == 0 { u32::MAX } else { i % 7 })
        .collect();
    let stock: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
    let exact = ExactIndex::new(items.clone(), dim).unwrap();
    let hnsw = HnswIndex::build(&items, dim, &HnswConfig::default()).unwrap();
    let queries = clustered(20, dim, 10, 4);
    // Exclude the unfiltered top 30 of the first query: the next 30 come back instead.
    let top = exact.search(&queries[..dim], 30, &Filter::default()).unwrap();
    let mut exclude = ids(&top);
    exclude.sort_unstable();
    let filters = [
        Filter {
            exclude: &exclude,
            ..Filter::default()
        },
        Filter {
            category: Some(3),
            categories: Some(&categories),
            ..Filter::default()
        },
        Filter {
            in_stock: Some(&stock),
            ..Filter::default()
        },
        Filter {
            exclude: &exclude,
            category: Some(5),
            categories: Some(&categories),
            in_stock: Some(&stock),
        },
    ];
    for f in &filters {
        let batch = exact.search_batch(&queries, 30, std::slice::from_ref(f)).unwrap();
        let ann = hnsw.search_batch(&queries, 30, std::slice::from_ref(f)).unwrap();
        for ((q, got), approx) in queries.chunks_exact(dim).zip(&batch).zip(&ann) {
            let want = brute_force(&items, dim, q, 30, f);
            assert_eq!(want.len(), 30);
            assert_same(got, &want);
            assert_same(&exact.search(q, 30, f).unwrap(), &want);
            assert_eq!(approx.len(), 30, "HNSW must fill k when enough items pass");
            assert!(approx.iter().all(|s| f.allows(s.item)));
            assert!(recall(approx, &want) >= 0.9);
        }
    }
    // One filter per query.
    let per_query: Vec<Filter> = (0..20).map(|i| filters[i % 4]).collect();
    let batch = exact.search_batch(&queries, 10, &per_query).unwrap();
    for (i, (q, got)) in queries.chunks_exact(dim).zip(&batch).enumerate() {
        assert_same(got, &brute_force(&items, dim, q, 10, &per_query[i]));
    }
    // Fewer items pass than k: all of them, from both indexes.
    let few: Vec<bool> = (0..n).map(|i| i < 7).collect();
    let f = Filter {
        in_stock: Some(&few),
        ..Filter::default()
    };
    assert_eq!(ids(&exact.search(&queries[..dim], 100, &f).unwrap()).len(), 7);
    let mut got = ids(&hnsw.search(&queries[..dim], 100, &f).unwrap());
    got.sort_unstable();
    assert_eq!(got, (0..7).collect::<Vec<_>>());
}

fn assert_invalid(err: Error, want_field: &str) {
    match &err {
        Error::InvalidInput { field, .. } => assert_eq!(field, want_field, "{err}"),
        other => panic!("expected InvalidInput for {want_field}, got {other:?}"),
    }
    assert!(err.to_string().contains(want_field));
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let dim = 8;
    let items = random(100, dim, 5);
    let exact = ExactIndex::new(items.clone(), dim).unwrap();
    let hnsw = HnswIndex::build(&items, dim, &HnswConfig::default()).unwrap();
    let none = Filter::default();
    let indexes: [&dyn ItemIndex; 2] = [&exact, &hnsw];
    for index in indexes {
        assert_invalid(index.search(&[0.0; 7], 5, &none).unwrap_err(), "query");
        assert_invalid(index.search(&[f32::NAN; 8], 5, &none).unwrap_err(), "query");
        let unsorted = Filter {
            exclude: &[5, 2],
            ..Filter::default()
        };
        assert_invalid(index.search(&[0.1; 8], 5, &unsorted).unwrap_err(), "filter.exclude");
        let no_codes = Filter {
            category: Some(1),
            ..Filter::default()
        };
        assert_invalid(index.search(&[0.1; 8], 5, &no_codes).unwrap_err(), "filter.categories");
        let short = [true; 10];
        let short_stock = Filter {
            in_stock: Some(&short),
            ..Filter::default()
        };
        assert_invalid(index.search(&[0.1; 8], 5, &short_stock).unwrap_err(), "filter.in_stock");
    }
    assert_invalid(exact.search_batch(&[0.0; 12], 5, &[]).unwrap_err(), "queries");
    assert_invalid(hnsw.search_batch(&[0.0; 12], 5, &[]).unwrap_err(), "queries");
    assert_invalid(exact.search_batch(&[0.0; 24], 5, &[none, none]).unwrap_err(), "filters");
    assert_invalid(ExactIndex::new(vec![0.0; 10], 3).unwrap_err(), "vectors");
    assert_invalid(ExactIndex::new(vec![0.0; 10], 0).unwrap_err(), "vectors");
    assert_invalid(
        HnswIndex::build(&[1.0, f32::INFINITY], 2, &HnswConfig::default()).unwrap_err(),
        "vectors",
    );
}

#[test]
fn hnsw_recall_at_100_is_at_least_0_95_on_clustered_data() {
    // A quality test, not a timing: 5,000 clustered 32-d items, top-100.
    let (n, dim, k) = (5000, 32, 100);
    let items = clustered(n, dim, 50, 6);
    let queries = clustered(200, dim, 50, 7);
    let exact = ExactIndex::new(items.clone(), dim).unwrap();
    let truth = exact.search_batch(&queries, k, &[]).unwrap();
    for quantization in [Quantization::F32, Quantization::F16] {
        let cfg = HnswConfig {
            quantization,
            ..HnswConfig::default()
        };
        let hnsw = HnswIndex::build(&items, dim, &cfg).unwrap();
        let found = hnsw.search_batch(&queries, k, &[]).unwrap();
        let r = found.iter().zip(&truth).map(|(f, t)| recall(f, t)).sum::<f64>() / truth.len() as f64;
        assert!(r >= 0.95, "{quantization:?}: recall@{k} {r:.4}");
        assert!(found.iter().all(|f| f.len() == k));
        // The expansion never drops below k, even when configured lower.
        let mut low = hnsw;
        low.set_expansion_search(8).unwrap();
        let found = low.search_batch(&queries, k, &[]).unwrap();
        let r = found.iter().zip(&truth).map(|(f, t)| recall(f, t)).sum::<f64>() / truth.len() as f64;
        assert!(r >= 0.9, "{quantization:?} at expansion 8: recall@{k} {r:.4}");
    }
}

#[test]
fn save_then_open_memory_mapped_gives_the_same_answers() {
    let (n, dim) = (3000, 16);
    let items = clustered(n, dim, 20, 8);
    let queries = clustered(50, dim, 20, 9);
    let cfg = HnswConfig::default();
    let built = HnswIndex::build(&items, dim, &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.hnsw");
    built.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        vec![
            std::ffi::OsString::from("items.hnsw"),
            std::ffi::OsString::from("items.hnsw.crc32")
        ],
        "the index and its checksum, no temporary file left"
    );
    let want = built.search_batch(&queries, 50, &[]).unwrap();
    for opened in [
        HnswIndex::open(&path, &cfg).unwrap(),
        HnswIndex::load(&path, &cfg).unwrap(),
    ] {
        assert_eq!((opened.len(), opened.dim()), (n, dim));
        assert_eq!(opened.expansion_search(), cfg.expansion_search);
        assert_eq!(opened.search_batch(&queries, 50, &[]).unwrap(), want);
        assert_eq!(opened.search(&queries[..dim], 50, &Filter::default()).unwrap(), want[0]);
    }
    // Saving over an existing file replaces it.
    let smaller = HnswIndex::build(&items[..100 * dim], dim, &cfg).unwrap();
    smaller.save(&path).unwrap();
    assert_eq!(HnswIndex::open(&path, &cfg).unwrap().len(), 100);
}

#[test]
fn missing_truncated_and_garbage_files_are_refused_naming_the_path() {
    let dim = 16;
    let items = clustered(1000, dim, 10, 10);
    let cfg = HnswConfig::default();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.hnsw");
    HnswIndex::build(&items, dim, &cfg).unwrap().save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let missing = dir.path().join("missing.hnsw");
    let err = HnswIndex::open(&missing, &cfg).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.hnsw"));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        (
            "garbage",
            b"this is not an index, just some text long enough to fill a header".repeat(20),
        ),
        ("truncated-half", bytes[..bytes.len() / 2].to_vec()),
        ("truncated-tail", bytes[..bytes.len() - 16].to_vec()),
        ("truncated-head", bytes[..40].to_vec()),
    ];
    for (name, content) in cases {
        let p = dir.path().join(format!("{name}.hnsw"));
        std::fs::write(&p, content).unwrap();
        // Without a checksum file (refused before usearch reads it), with the good file's checksum
        // file (a mismatch), and trusted (usearch's own header checks and ours).
        for with_sum in [false, true] {
            if with_sum {
                std::fs::copy(checksum_path(&good), checksum_path(&p)).unwrap();
            }
            for result in [HnswIndex::open(&p, &cfg), HnswIndex::load(&p, &cfg)] {
                let err = result.unwrap_err();
                assert!(matches!(err, Error::Corrupt { .. }), "{name}: {err}");
                assert!(err.to_string().contains(&format!("{name}.hnsw")), "{name}: {err}");
                let why = if with_sum {
                    "checksum mismatch"
                } else {
                    "no checksum file"
                };
                assert!(err.to_string().contains(why), "{name}: {err}");
            }
        }
        let err = HnswIndex::open_verified_elsewhere(&p, &cfg).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{name}: {err}");
    }
    // The good file still opens.
    assert_eq!(HnswIndex::open(&good, &cfg).unwrap().len(), 1000);
}

/// Found by fuzzing (`fuzz/run.sh`, target `hnsw_file`): 8 bytes of 0xff written into a saved
/// graph crashed the process inside usearch's reader (a neighbour list read out of bounds). The
/// checksum file `save` writes makes it an error naming the file before usearch reads a byte.
#[test]
fn a_graph_corrupted_in_place_is_refused_before_usearch_reads_it() {
    let dim = 16;
    let cfg = HnswConfig::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.hnsw");
    HnswIndex::build(&clustered(500, dim, 10, 3), dim, &cfg)
        .unwrap()
        .save(&path)
        .unwrap();
    let good = std::fs::read(&path).unwrap();
    for at in [64, good.len() / 3, good.len() / 2, good.len() - 8] {
        let mut bytes = good.clone();
        bytes[at..at + 8].fill(0xff);
        std::fs::write(&path, &bytes).unwrap();
        for result in [HnswIndex::open(&path, &cfg), HnswIndex::load(&path, &cfg)] {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "offset {at}: {err}");
            assert!(err.to_string().contains("items.hnsw") && err.to_string().contains("checksum mismatch"));
        }
    }
    // Without its checksum file the index is refused too, naming the checksum file.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(HnswIndex::open(&path, &cfg).unwrap().len(), 500);
    std::fs::remove_file(checksum_path(&path)).unwrap();
    let err = HnswIndex::open(&path, &cfg).unwrap_err();
    assert!(err.to_string().contains("items.hnsw.crc32"), "{err}");
    // A caller that verified the file itself (the registry) may still open it.
    assert_eq!(HnswIndex::open_verified_elsewhere(&path, &cfg).unwrap().len(), 500);
}

#[test]
fn any_index_picks_exact_for_small_catalogues() {
    let dim = 8;
    let small = AnyIndex::build(random(500, dim, 11), dim, &HnswConfig::default()).unwrap();
    assert!(matches!(small, AnyIndex::Exact(_)));
    let large = AnyIndex::build(random(EXACT_MAX_ITEMS, dim, 12), dim, &HnswConfig::default()).unwrap();
    assert!(matches!(large, AnyIndex::Hnsw(_)));
    for index in [&small, &large] {
        let q = random(3, dim, 13);
        let batch = index.search_batch(&q, 10, &[]).unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(index.search(&q[..dim], 10, &Filter::default()).unwrap().len(), 10);
    }
}
