//! A training batch, in two halves. [`plan_batch`] builds what does not depend on the id table's
//! values (user-tower inputs, columns and negatives, side codes, the loss's offsets), so the
//! trainer can plan the next batch on another thread while the current step runs;
//! [`fill_batch`] gathers and pools the id rows from the table as that step left it and uploads
//! the batch. [`IdRows::update`] takes the rows' gradients back into the table after the step.

use super::net::{CodeMix, MixData};
use super::sparse::SparseTable;
use super::{GAP_BUCKETS, TrainingData, TwoTowerConfig, UserContext, UserEncoder, UserInputs};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rayon::prelude::*;

/// The host's part of a batch: everything that does not depend on the id table's values, so
/// that the trainer can plan the next batch on another thread while the current step runs
/// ([`fill_batch`] then gathers and pools the id rows from the table as that step left it).
pub(super) struct Plan {
    rows: IdRows,
    target_cat: MixData,
    target_brand: MixData,
    target_price: MixData,
    /// `[cols, ITEM_NUMERIC]` row-major.
    target_numeric: Vec<f32>,
    /// History categories and price buckets pooled with the long-term weights.
    hist_cat: MixData,
    hist_price: MixData,
    age: MixData,
    region: MixData,
    /// `[b, USER_NUMERIC]` row-major.
    user_numeric: Vec<f32>,
    /// What is added to the scaled logits, `b × cols` row-major: minus the logQ correction of
    /// each column, and −1e9 where a column holds the row's own target item again (an accidental
    /// hit).
    offset: Vec<f32>,
    /// The logQ correction of each row's own target (the diagonal of `−offset`).
    target_correction: Vec<f32>,
    /// The self-attention encoder's inputs ([`UserEncoder::Attention`] only).
    sequence: Option<SequencePlan>,
    b: usize,
}

/// The inputs of the self-attention encoder besides the id rows, `b × L` slots.
struct SequencePlan {
    /// Event type of each slot (one-hot).
    event: MixData,
    /// Time-gap bucket of each slot (one-hot).
    gap: MixData,
    /// 0 for an event, −1e9 for padding, `[b, L]`.
    mask: Vec<f32>,
    /// 1 where the example has any history, `[b, 1]`.
    present: Vec<f32>,
}

/// The id-table rows a batch touches and where they enter it: what the host keeps of a batch
/// to update those rows after the step.
pub(super) struct IdRows {
    /// Distinct items of the batch (columns and history).
    pub(super) unique: Vec<u32>,
    /// Position in `unique` of each column's item (`unique.len()` where id dropout dropped it).
    pub(super) target_local: Vec<u32>,
    /// Position in `unique` of each history slot (`unique.len()` for padding and dropped ids),
    /// `b × L`.
    pub(super) hist_rows: Vec<u32>,
    /// Short- and long-term pooling weights of the id rows, `b × L` (0 for dropped ids).
    pub(super) short_w: Vec<f32>,
    pub(super) long_w: Vec<f32>,
}

impl IdRows {
    /// Adds the gradients of the columns' rows (`g_leaf`, one row per column) and of the pooled
    /// histories (`g_short`, `g_long`, one row per example; `L` slots each) into one gradient per
    /// distinct row, and applies `table`'s lazy Adam step to those rows.
    /// With the self-attention encoder, `g_seq` holds the gradient of every history slot's id
    /// row (`b × L` rows; empty otherwise), added to its row with weight 1.
    pub(super) fn update(
        &self,
        table: &mut SparseTable,
        [g_leaf, g_short, g_long, g_seq]: &[Vec<f32>; 4],
        l: usize,
        lr: f32,
    ) {
        let d = table.dim();
        let u = self.unique.len();
        let mut g_rows = vec![0f32; u * d];
        // Columns whose id row was dropped (`u`, as padding) get no gradient.
        for (g, &t) in g_leaf
            .chunks_exact(d)
            .zip(&self.target_local)
            .filter(|(_, t)| (**t as usize) < u)
        {
            for (a, &x) in g_rows[t as usize * d..(t as usize + 1) * d].iter_mut().zip(g) {
                *a += x;
            }
        }
        // d pooled / d row = the row's pooling weight: scatter the pooled gradients back, one
        // row per task, adding its history slots in slot order (the sequential sum's order).
        let (offsets, slots) = slots_by_row(&self.hist_rows, u);
        g_rows.par_chunks_mut(d).enumerate().for_each(|(r, out)| {
            for &s in &slots[offsets[r] as usize..offsets[r + 1] as usize] {
                let (s, k) = (s as usize, s as usize / l);
                let (ws, wl) = (self.short_w[s], self.long_w[s]);
                let (gsk, glk) = (&g_short[k * d..(k + 1) * d], &g_long[k * d..(k + 1) * d]);
                for (t, (&a, &c)) in out.iter_mut().zip(gsk.iter().zip(glk)) {
                    *t += ws * a + wl * c;
                }
                if let Some(gs) = g_seq.get(s * d..(s + 1) * d) {
                    out.iter_mut().zip(gs).for_each(|(t, &g)| *t += g);
                }
            }
        });
        table.adam_step(&self.unique, &g_rows, lr);
    }
}

/// A batch on the device, ready for a step.
pub(super) struct Batch<B: Backend> {
    /// Id-table rows of the target (and negative) items, one per column of the logits (a leaf:
    /// its gradient is added into the rows of `rows.unique` by hand).
    pub(super) leaf: Tensor<B, 2>,
    pub(super) rows: IdRows,
    pub(super) target_cat: CodeMix<B>,
    pub(super) target_brand: CodeMix<B>,
    pub(super) target_price: CodeMix<B>,
    pub(super) target_numeric: Tensor<B, 2>,
    /// Pooled id embeddings (leaves), `[b, id_dim]`.
    pub(super) short_pooled: Tensor<B, 2>,
    pub(super) long_pooled: Tensor<B, 2>,
    pub(super) hist_cat: CodeMix<B>,
    pub(super) hist_price: CodeMix<B>,
    pub(super) age: CodeMix<B>,
    pub(super) region: CodeMix<B>,
    pub(super) user_numeric: Tensor<B, 2>,
    /// See [`Plan::offset`].
    pub(super) offset: Vec<f32>,
    pub(super) target_correction: Vec<f32>,
    /// The self-attention encoder's inputs ([`UserEncoder::Attention`] only).
    pub(super) sequence: Option<SequenceBatch<B>>,
    pub(super) b: usize,
}

/// The self-attention encoder's inputs on the device (see `SequenceEncoder::forward`).
pub(super) struct SequenceBatch<B: Backend> {
    /// The history slots' id rows `[b, L, id_dim]` (a leaf: zeros for padding and dropped
    /// ids; its gradient goes into the rows by hand).
    pub(super) rows: Tensor<B, 3>,
    pub(super) event: CodeMix<B>,
    pub(super) gap: CodeMix<B>,
    pub(super) mask: Tensor<B, 2>,
    pub(super) present: Tensor<B, 2>,
}

/// A float tensor of `shape` on `dev` from row-major values.
pub(super) fn floats<B: Backend, const D: usize>(v: Vec<f32>, shape: [usize; D], dev: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// Plans the batch of the examples `chunk`: the user-tower inputs, the columns (targets, then
/// `uniform_negatives` drawn from `rng`), the distinct items, the side codes and the loss's
/// offsets. `local_of` (one entry per item, all `u32::MAX`) is scratch, left as it was found.
pub(super) fn plan_batch(
    chunk: &[(u32, u32)],
    data: &TrainingData,
    cfg: &TwoTowerConfig,
    log_q: &[f32],
    local_of: &mut [u32],
    rng: &mut impl Rng,
) -> Plan {
    let b = chunk.len();
    let l = cfg.history_len;
    let n_items = data.vocab.items;
    let mut unique: Vec<u32> = Vec::new();
    let mut local = |item: u32, unique: &mut Vec<u32>| -> u32 {
        let slot = &mut local_of[item as usize];
        if *slot == u32::MAX {
            *slot = unique.len() as u32;
            unique.push(item);
        }
        *slot
    };
    // Targets followed by uniform negatives form the item side.
    let mut col_items: Vec<u32> = chunk
        .iter()
        .map(|&(u, p)| data.histories[u as usize][p as usize].item)
        .collect();
    for _ in 0..cfg.uniform_negatives {
        col_items.push(rng.random_range(0..n_items as u32));
    }
    // Id dropout: a dropped column sees no id row (zeros, no gradient), only its side features.
    // Nothing is drawn without it, so such runs keep their random sequence.
    let p_drop = cfg.id_dropout;
    let dropped = |rng: &mut dyn rand::RngCore| p_drop > 0.0 && rng.random::<f32>() < p_drop;
    let col_dropped: Vec<bool> = col_items.iter().map(|_| dropped(rng)).collect();
    let target_local: Vec<Option<u32>> = col_items
        .iter()
        .zip(&col_dropped)
        .map(|(&i, &d)| (!d).then(|| local(i, &mut unique)))
        .collect();
    let mut hist_items = vec![u32::MAX; b * l];
    let mut weights = vec![0f32; b * l];
    let mut long_weights = vec![0f32; b * l];
    let mut hist_cat = vec![0u32; b * l];
    let mut hist_price = vec![0u32; b * l];
    let mut age = Vec::with_capacity(b);
    let mut region = Vec::with_capacity(b);
    let mut user_numeric = Vec::with_capacity(b * super::USER_NUMERIC);
    // The user-tower inputs of every example, in parallel (recency weights of up to L events each).
    let all_inputs: Vec<UserInputs> = chunk
        .par_iter()
        .map(|&(u, p)| {
            let h = &data.histories[u as usize];
            let profile = data.users.get(u as usize).copied().unwrap_or_default();
            let (past, target) = (&h[..p as usize], h[p as usize].item);
            let without_target: Vec<super::HistoryEvent>;
            let history = if cfg.history_without_target && past.iter().any(|e| e.item == target) {
                without_target = past.iter().filter(|e| e.item != target).copied().collect();
                &without_target[..]
            } else {
                past
            };
            let ctx = UserContext {
                history,
                as_of: h[p as usize].ts,
                age: profile.age,
                region: profile.region,
            };
            UserInputs::build(&ctx, cfg)
        })
        .collect();
    for (k, inputs) in all_inputs.iter().enumerate() {
        for (j, &it) in inputs.items.iter().enumerate() {
            hist_items[k * l + j] = it;
            weights[k * l + j] = inputs.weights[j];
            long_weights[k * l + j] = inputs.long_weights[j];
            hist_cat[k * l + j] = data.items.category[it as usize];
            hist_price[k * l + j] = data.items.price_bucket[it as usize];
        }
        age.push(inputs.age);
        region.push(inputs.region);
        user_numeric.extend_from_slice(&inputs.numeric);
    }
    // Id dropout in the history: a dropped slot's id row leaves both poolings (its category and
    // price bucket stay), the others are scaled by 1 / (1 - p) to keep the expected sum.
    let (mut id_short_w, mut id_long_w) = (weights, long_weights.clone());
    let mut hist_dropped = vec![false; b * l];
    if p_drop > 0.0 {
        let scale = 1.0 / (1.0 - p_drop);
        for s in (0..b * l).filter(|&s| hist_items[s] != u32::MAX) {
            hist_dropped[s] = dropped(rng);
            let w = if hist_dropped[s] { 0.0 } else { scale };
            id_short_w[s] *= w;
            id_long_w[s] *= w;
        }
    }
    let hist_local: Vec<Option<u32>> = hist_items
        .iter()
        .zip(&hist_dropped)
        .map(|(&i, &d)| (i != u32::MAX && !d).then(|| local(i, &mut unique)))
        .collect();
    let pad = unique.len() as u32;
    let hist_rows: Vec<u32> = hist_local.into_iter().map(|x| x.unwrap_or(pad)).collect();
    let target_local: Vec<u32> = target_local.into_iter().map(|x| x.unwrap_or(pad)).collect();
    for &i in &unique {
        local_of[i as usize] = u32::MAX;
    }
    let side = |f: &dyn Fn(usize) -> u32| -> Vec<u32> { col_items.iter().map(|&i| f(i as usize)).collect() };
    let v = &data.vocab;
    let target_numeric: Vec<f32> = col_items.iter().flat_map(|&i| data.items.numeric[i as usize]).collect();
    let cols = col_items.len();
    let mut correction = vec![0f32; cols];
    if cfg.logq_correction {
        for (j, &i) in col_items.iter().enumerate() {
            correction[j] = if j < b {
                (b as f32).ln() + log_q[i as usize]
            } else {
                (cfg.uniform_negatives as f32 / n_items as f32).ln()
            };
        }
    }
    // One dense offset per logit, built in one pass (the loss then adds it in one operation).
    let neg_correction: Vec<f32> = correction.iter().map(|c| -c).collect();
    let mut offset = vec![0f32; b * cols];
    offset
        .par_chunks_mut(cols)
        .for_each(|row| row.copy_from_slice(&neg_correction));
    // Accidental hits: columns with the same item as row i's target, found through a sort of the
    // columns by item instead of comparing all b × cols pairs.
    let mut by_item: Vec<(u32, u32)> = col_items.iter().enumerate().map(|(j, &i)| (i, j as u32)).collect();
    by_item.sort_unstable();
    for group in by_item.chunk_by(|a, c| a.0 == c.0).filter(|g| g.len() > 1) {
        for &(_, i) in group.iter().filter(|&&(_, i)| (i as usize) < b) {
            for &(_, j) in group.iter().filter(|&&(_, j)| j != i) {
                offset[i as usize * cols + j as usize] = -1e9;
            }
        }
    }
    let target_correction = correction[..b].to_vec();
    let sequence = (cfg.user_encoder == UserEncoder::Attention).then(|| {
        let mut event = vec![0u32; b * l];
        let mut gap = vec![0u32; b * l];
        let mut mask = vec![-1e9f32; b * l];
        let mut present = vec![0f32; b];
        for (k, inputs) in all_inputs.iter().enumerate() {
            for j in 0..inputs.items.len() {
                event[k * l + j] = inputs.event_types[j];
                gap[k * l + j] = inputs.gaps[j];
                mask[k * l + j] = 0.0;
            }
            present[k] = if inputs.items.is_empty() { 0.0 } else { 1.0 };
        }
        SequencePlan {
            event: MixData::lookup(&event, 4),
            gap: MixData::lookup(&gap, GAP_BUCKETS),
            mask,
            present,
        }
    });
    let hist_cat = MixData::pool(&hist_cat, &long_weights, l, v.categories);
    let hist_price = MixData::pool(&hist_price, &long_weights, l, v.price_buckets);
    Plan {
        rows: IdRows {
            unique,
            target_local,
            hist_rows,
            short_w: id_short_w,
            long_w: id_long_w,
        },
        target_cat: MixData::lookup(&side(&|i| data.items.category[i]), v.categories),
        target_brand: MixData::lookup(&side(&|i| data.items.brand[i]), v.brands),
        target_price: MixData::lookup(&side(&|i| data.items.price_bucket[i]), v.price_buckets),
        target_numeric,
        hist_cat,
        hist_price,
        age: MixData::lookup(&age, v.ages),
        region: MixData::lookup(&region, v.regions),
        user_numeric,
        offset,
        target_correction,
        sequence,
        b,
    }
}

/// Completes `plan` with the id rows as `table` holds them now (the columns' rows as a leaf, the
/// histories pooled here, back-propagated into by hand after the step) and uploads it all.
pub(super) fn fill_batch<B: AutodiffBackend>(
    plan: Plan,
    table: &SparseTable,
    cfg: &TwoTowerConfig,
    dev: &B::Device,
) -> Batch<B> {
    let (b, l, d) = (plan.b, cfg.history_len, cfg.id_dim);
    let ids = &plan.rows;
    let pad = ids.unique.len();
    let rows = table.gather(&ids.unique, 0);
    // With the self-attention encoder the short-term pooling is not used (the encoder takes its
    // place, `trainer::user_tower`): it stays zero and is not computed.
    let pool_short = plan.sequence.is_none();
    let mut short_pooled = vec![0f32; b * d];
    let mut long_pooled = vec![0f32; b * d];
    short_pooled
        .par_chunks_mut(d)
        .zip(long_pooled.par_chunks_mut(d))
        .enumerate()
        .for_each(|(k, (short, long))| {
            for j in 0..l {
                let r = ids.hist_rows[k * l + j] as usize;
                if r == pad {
                    continue;
                }
                let (ws, wl) = (ids.short_w[k * l + j], ids.long_w[k * l + j]);
                let src = &rows[r * d..(r + 1) * d];
                if pool_short {
                    for (t, &v) in short.iter_mut().zip(src) {
                        *t += ws * v;
                    }
                }
                for (t, &v) in long.iter_mut().zip(src) {
                    *t += wl * v;
                }
            }
        });
    let cols = ids.target_local.len();
    let mut leaf_rows = vec![0f32; cols * d];
    for (dst, &t) in leaf_rows.chunks_exact_mut(d).zip(&ids.target_local) {
        // A dropped id row (position `pad`) stays zero.
        if (t as usize) < pad {
            dst.copy_from_slice(&rows[t as usize * d..(t as usize + 1) * d]);
        }
    }
    let sequence = plan.sequence.map(|seq| {
        let mut slot_rows = vec![0f32; b * l * d];
        slot_rows.par_chunks_mut(d).enumerate().for_each(|(s, dst)| {
            // Padding and dropped ids (position `pad`) stay zero.
            let r = ids.hist_rows[s] as usize;
            if r < pad {
                dst.copy_from_slice(&rows[r * d..(r + 1) * d]);
            }
        });
        SequenceBatch {
            rows: floats::<B, 3>(slot_rows, [b, l, d], dev).require_grad(),
            event: seq.event.upload(dev),
            gap: seq.gap.upload(dev),
            mask: floats(seq.mask, [b, l], dev),
            present: floats(seq.present, [b, 1], dev),
        }
    });
    Batch {
        leaf: floats::<B, 2>(leaf_rows, [cols, d], dev).require_grad(),
        rows: plan.rows,
        target_cat: plan.target_cat.upload(dev),
        target_brand: plan.target_brand.upload(dev),
        target_price: plan.target_price.upload(dev),
        target_numeric: floats(plan.target_numeric, [cols, super::ITEM_NUMERIC], dev),
        short_pooled: floats::<B, 2>(short_pooled, [b, d], dev).require_grad(),
        long_pooled: floats::<B, 2>(long_pooled, [b, d], dev).require_grad(),
        hist_cat: plan.hist_cat.upload(dev),
        hist_price: plan.hist_price.upload(dev),
        age: plan.age.upload(dev),
        region: plan.region.upload(dev),
        user_numeric: floats(plan.user_numeric, [b, super::USER_NUMERIC], dev),
        offset: plan.offset,
        target_correction: plan.target_correction,
        sequence,
        b,
    }
}

/// The positions of `rows` grouped by row (rows `>= n` are padding and left out), as offsets
/// (`n + 1`) into the positions, ascending within each row.
fn slots_by_row(rows: &[u32], n: usize) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; n + 1];
    for &r in rows {
        if (r as usize) < n {
            start[r as usize + 1] += 1;
        }
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut slots = vec![0u32; start[n] as usize];
    for (s, &r) in rows.iter().enumerate() {
        if (r as usize) < n {
            slots[next[r as usize] as usize] = s as u32;
            next[r as usize] += 1;
        }
    }
    (start, slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserProfile;
    use crate::model::{HistoryEvent, ItemSide, Vocab};
    use crate::schema::EventType;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn a_plan_maps_columns_and_history_to_distinct_rows_and_marks_accidental_hits() {
        // 6 items; user u saw items u, u+1, u+2 (mod 6) and its target is the next one.
        let n_items = 6;
        let histories: Vec<Vec<HistoryEvent>> = (0..4u32)
            .map(|u| {
                (0..4)
                    .map(|k| HistoryEvent {
                        item: (u + k) % n_items,
                        event_type: EventType::Click,
                        ts: 1_000 * i64::from(k),
                    })
                    .collect()
            })
            .collect();
        let data = TrainingData {
            vocab: Vocab {
                items: n_items as usize,
                categories: 3,
                brands: 2,
                price_buckets: 2,
                ages: 1,
                regions: 1,
            },
            items: ItemSide {
                category: (0..n_items).map(|i| 1 + i % 2).collect(),
                brand: vec![1; n_items as usize],
                price_bucket: vec![1; n_items as usize],
                numeric: vec![[0.0, 0.0]; n_items as usize],
            },
            users: vec![UserProfile::default(); 4],
            histories,
        };
        let cfg = TwoTowerConfig::new().with_history_len(5).with_uniform_negatives(3);
        // Targets 3, 4, 5, 0 and 3 again: rows 0 and 4 are each other's accidental hits.
        let chunk = [(0, 3), (1, 3), (2, 3), (3, 3), (1, 2)];
        let log_q = vec![-1.0; n_items as usize];
        let mut local_of = vec![u32::MAX; n_items as usize];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let plan = plan_batch(&chunk, &data, &cfg, &log_q, &mut local_of, &mut rng);
        assert!(local_of.iter().all(|&x| x == u32::MAX), "the scratch is left as found");
        let rows = &plan.rows;
        let mut distinct = rows.unique.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            rows.unique.len(),
            "rows are distinct: {:?}",
            rows.unique
        );
        let (b, cols, l) = (chunk.len(), chunk.len() + 3, cfg.history_len);
        assert_eq!((plan.b, rows.target_local.len()), (b, cols));
        let targets: Vec<u32> = chunk
            .iter()
            .map(|&(u, p)| data.histories[u as usize][p as usize].item)
            .collect();
        for (j, &t) in targets.iter().enumerate() {
            assert_eq!(rows.unique[rows.target_local[j] as usize], t, "column {j}");
        }
        // History slots: the events before the target, padding (weight 0) past them.
        let pad = rows.unique.len() as u32;
        for (k, &(u, p)) in chunk.iter().enumerate() {
            let mut want: Vec<u32> = data.histories[u as usize][..p as usize]
                .iter()
                .map(|e| e.item)
                .collect();
            let mut seen: Vec<u32> = rows.hist_rows[k * l..(k + 1) * l]
                .iter()
                .filter(|&&r| r != pad)
                .map(|&r| rows.unique[r as usize])
                .collect();
            seen.sort_unstable();
            want.sort_unstable();
            assert_eq!(seen, want, "example {k}");
            let padded = rows.hist_rows[k * l..(k + 1) * l]
                .iter()
                .zip(&rows.short_w[k * l..(k + 1) * l]);
            assert!(padded.filter(|(r, _)| **r == pad).all(|(_, w)| *w == 0.0));
        }
        assert_eq!(targets, [3, 4, 5, 0, 3]);
        // Row i's own column carries its correction; other columns holding row i's target item
        // (the other target 3, and any negative that drew a target) are -1e9.
        assert_eq!((plan.offset[4], plan.offset[4 * cols]), (-1e9, -1e9));
        let col_item = |j: usize| rows.unique[rows.target_local[j] as usize];
        for (i, &target) in targets.iter().enumerate() {
            for j in 0..cols {
                let o = plan.offset[i * cols + j];
                if j != i && col_item(j) == target {
                    assert_eq!(o, -1e9, "row {i}, column {j}");
                } else {
                    assert!(o > -1e8, "row {i}, column {j}: {o}");
                }
            }
            assert_eq!(plan.offset[i * cols + i], -plan.target_correction[i]);
        }
    }

    #[test]
    fn id_dropout_leaves_id_rows_out_and_rescales_the_history() {
        let n_items = 40u32;
        let histories: Vec<Vec<HistoryEvent>> = (0..30u32)
            .map(|u| {
                (0..12)
                    .map(|k| HistoryEvent {
                        item: (u * 7 + k * 3) % n_items,
                        event_type: EventType::Click,
                        ts: 1_000 * i64::from(k),
                    })
                    .collect()
            })
            .collect();
        let data = TrainingData {
            vocab: Vocab {
                items: n_items as usize,
                categories: 2,
                brands: 2,
                price_buckets: 2,
                ages: 1,
                regions: 1,
            },
            items: ItemSide {
                category: vec![1; n_items as usize],
                brand: vec![1; n_items as usize],
                price_bucket: vec![1; n_items as usize],
                numeric: vec![[0.0, 0.0]; n_items as usize],
            },
            users: vec![UserProfile::default(); 30],
            histories,
        };
        let chunk: Vec<(u32, u32)> = (0..30).map(|u| (u, 11)).collect();
        let log_q = vec![-1.0; n_items as usize];
        let plan_with = |p: f32| {
            let cfg = TwoTowerConfig::new()
                .with_history_len(10)
                .with_uniform_negatives(8)
                .with_id_dropout(p);
            let mut local_of = vec![u32::MAX; n_items as usize];
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
            let plan = plan_batch(&chunk, &data, &cfg, &log_q, &mut local_of, &mut rng);
            assert!(local_of.iter().all(|&x| x == u32::MAX));
            (plan, rng.random::<u64>())
        };
        let (full, after_full) = plan_with(0.0);
        let (none, after_none) = plan_with(0.0);
        assert_eq!((none.rows.unique, after_none), (full.rows.unique.clone(), after_full));
        let (part, after_part) = plan_with(0.5);
        assert_ne!(after_part, after_full, "dropout draws from the generator");
        let (a, c) = (&full.rows, &part.rows);
        let (pad_a, pad_c) = (a.unique.len() as u32, c.unique.len() as u32);
        // Columns: the same items, some left without an id row.
        let dropped_cols = c.target_local.iter().filter(|&&t| t == pad_c).count();
        assert!((5..33).contains(&dropped_cols), "{dropped_cols} of 38 columns dropped");
        for (&ta, &tc) in a.target_local.iter().zip(&c.target_local) {
            assert!(tc == pad_c || c.unique[tc as usize] == a.unique[ta as usize]);
        }
        // History: the surviving slots keep their items at twice the weight; dropped ones are
        // padding with weight 0; the side features are pooled as without dropout.
        let (mut kept, mut gone) = (0, 0);
        for s in 0..a.hist_rows.len() {
            if a.hist_rows[s] == pad_a {
                assert_eq!(c.hist_rows[s], pad_c);
                continue;
            }
            if c.hist_rows[s] == pad_c {
                gone += 1;
                assert_eq!((c.short_w[s], c.long_w[s]), (0.0, 0.0));
            } else {
                kept += 1;
                assert_eq!(c.unique[c.hist_rows[s] as usize], a.unique[a.hist_rows[s] as usize]);
                assert!((c.short_w[s] - 2.0 * a.short_w[s]).abs() < 1e-6);
                assert!((c.long_w[s] - 2.0 * a.long_w[s]).abs() < 1e-6);
            }
        }
        assert!(kept > 60 && gone > 60, "kept {kept}, dropped {gone} of 300 slots");
        assert_eq!(part.user_numeric, full.user_numeric);
        assert_eq!(part.offset, full.offset);
    }

    #[test]
    fn history_without_target_leaves_the_targets_earlier_events_out() {
        // One user: item 2, then items 0, 1, 2 again, 3 (all clicks); targets 2 (a repeat) and 3.
        let ev = |item: u32, k: i64| HistoryEvent {
            item,
            event_type: EventType::Click,
            ts: 1_000 * k,
        };
        let data = TrainingData {
            vocab: Vocab {
                items: 4,
                categories: 2,
                brands: 1,
                price_buckets: 1,
                ages: 1,
                regions: 1,
            },
            items: ItemSide {
                category: vec![1; 4],
                brand: vec![0; 4],
                price_bucket: vec![0; 4],
                numeric: vec![[0.0, 0.0]; 4],
            },
            users: vec![UserProfile::default()],
            histories: vec![vec![ev(2, 0), ev(0, 1), ev(1, 2), ev(2, 3), ev(3, 4)]],
        };
        let chunk = [(0, 3), (0, 4)];
        let history_of = |without: bool| {
            let cfg = TwoTowerConfig::new()
                .with_history_len(8)
                .with_history_without_target(without);
            let mut local_of = vec![u32::MAX; 4];
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
            let plan = plan_batch(&chunk, &data, &cfg, &[-1.0; 4], &mut local_of, &mut rng);
            let (rows, pad) = (&plan.rows, plan.rows.unique.len() as u32);
            (0..chunk.len())
                .map(|k| {
                    let mut items: Vec<u32> = rows.hist_rows[k * 8..(k + 1) * 8]
                        .iter()
                        .filter(|&&r| r != pad)
                        .map(|&r| rows.unique[r as usize])
                        .collect();
                    items.sort_unstable();
                    items
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(history_of(false), [vec![0, 1, 2], vec![0, 1, 2, 2]]);
        // Target 2 no longer sees its earlier event; target 3, new to the user, sees everything.
        assert_eq!(history_of(true), [vec![0, 1], vec![0, 1, 2, 2]]);
    }

    #[test]
    fn slots_by_row_groups_positions_in_order_and_drops_padding() {
        // Rows of 6 history slots over 3 distinct rows; 3 is padding.
        let (offsets, slots) = slots_by_row(&[2, 0, 3, 2, 1, 2], 3);
        assert_eq!(offsets, [0, 1, 2, 5]);
        assert_eq!(slots, [1, 4, 0, 3, 5]);
        let (offsets, slots) = slots_by_row(&[], 2);
        assert_eq!((offsets, slots), (vec![0, 0, 0], vec![]));
    }
}
