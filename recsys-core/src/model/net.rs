//! The dense part of the two towers as a burn [`Module`]; the id table lives outside it
//! ([`super::sparse::SparseTable`]) and enters as an already-gathered tensor.

use super::{GAP_BUCKETS, TwoTowerConfig, UserEncoder, Vocab};
pub use super::{LAYER_NORM_EPSILON, item_input_dim, user_input_dim};
use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use std::collections::HashMap;

/// Side embeddings and the two MLPs.
#[derive(Module, Debug)]
pub struct TwoTowerNet<B: Backend> {
    /// Category embedding (shared by the item tower and the user's history pooling).
    pub category: Embedding<B>,
    /// Brand embedding.
    pub brand: Embedding<B>,
    /// Price-bucket embedding.
    pub price: Embedding<B>,
    /// Age-bucket embedding.
    pub age: Embedding<B>,
    /// Region embedding.
    pub region: Embedding<B>,
    /// Item tower, first layer.
    pub item_in: Linear<B>,
    /// Item tower, output layer.
    pub item_out: Linear<B>,
    /// User tower, first layer.
    pub user_in: Linear<B>,
    /// User tower, output layer.
    pub user_out: Linear<B>,
    /// The self-attention encoder of the history ([`UserEncoder::Attention`]); `None` for the
    /// pooled encoder.
    pub sequence: Option<SequenceEncoder<B>>,
}

/// Causal self-attention over a user's history (newest event first), read at the newest event.
/// Each event's input is its id row plus learned embeddings of its position (recency rank), its
/// event type and its time-gap bucket.
#[derive(Module, Debug)]
pub struct SequenceEncoder<B: Backend> {
    /// Position embedding, `history_len × id_dim` (row 0: the newest event).
    pub position: Embedding<B>,
    /// Event-type embedding, `4 × id_dim`.
    pub event: Embedding<B>,
    /// Time-gap embedding, `GAP_BUCKETS × id_dim`.
    pub gap: Embedding<B>,
    /// The attention blocks, first to last.
    pub blocks: Vec<AttentionBlock<B>>,
    /// Dropout of the inputs and of each block's attention and feed-forward outputs while
    /// training ([`TwoTowerConfig::attention_dropout`]; burn applies it on autodiff backends only).
    pub dropout: Dropout,
}

/// One block: single-head attention with a residual connection and layer norm, then a
/// position-wise feed-forward layer with a residual connection and layer norm (post-norm).
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    /// Query projection.
    pub query: Linear<B>,
    /// Key projection.
    pub key: Linear<B>,
    /// Value projection.
    pub value: Linear<B>,
    /// Norm after attention.
    pub norm1: LayerNorm<B>,
    /// Feed-forward, first layer (ReLU).
    pub ff_in: Linear<B>,
    /// Feed-forward, second layer.
    pub ff_out: Linear<B>,
    /// Norm after the feed-forward layer.
    pub norm2: LayerNorm<B>,
}

/// Standard deviation of the initial position, event-type and time-gap embeddings: small
/// against the id rows (initialised at 0.05), so that at first the ids dominate the inputs.
const SEQUENCE_INIT_STD: f64 = 0.02;

impl<B: Backend> SequenceEncoder<B> {
    /// A freshly initialised encoder for `cfg`.
    pub fn init(cfg: &TwoTowerConfig, device: &B::Device) -> Self {
        let d = cfg.id_dim;
        let small = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: SEQUENCE_INIT_STD,
                })
                .init(device)
        };
        let linear = || LinearConfig::new(d, d).init(device);
        let norm = || LayerNormConfig::new(d).with_epsilon(LAYER_NORM_EPSILON).init(device);
        SequenceEncoder {
            position: small(cfg.history_len),
            event: small(4),
            gap: small(GAP_BUCKETS),
            blocks: (0..cfg.attention_layers)
                .map(|_| AttentionBlock {
                    query: linear(),
                    key: linear(),
                    value: linear(),
                    norm1: norm(),
                    ff_in: linear(),
                    ff_out: linear(),
                    norm2: norm(),
                })
                .collect(),
            dropout: DropoutConfig::new(f64::from(cfg.attention_dropout)).init(),
        }
    }

    /// The encoding `[b, id_dim]` of `b` histories of `L` slots: their id rows `[b, L, id_dim]`
    /// (newest first, zero rows for padding), the slots' event types and gap buckets as one-hot
    /// [`CodeMix::lookup`]s of `b × L` rows, an additive key mask `[b, L]` (0 for events,
    /// −1e9 for padding) and `present` `[b, 1]` (1 where the history has an event, else 0:
    /// an empty history encodes to zeros).
    pub fn forward(
        &self,
        rows: Tensor<B, 3>,
        event: CodeMix<B>,
        gap: CodeMix<B>,
        mask: Tensor<B, 2>,
        present: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let [b, l, d] = rows.dims();
        let position = self.position.weight.val().narrow(0, 0, l).unsqueeze_dim::<3>(0);
        let event = TwoTowerNet::mix(&self.event, event).reshape([b, l, d]);
        let gap = TwoTowerNet::mix(&self.gap, gap).reshape([b, l, d]);
        let mut x = self.dropout.forward(rows + position + event + gap);
        let key_mask = mask.unsqueeze_dim::<3>(1);
        let last = self.blocks.len().saturating_sub(1);
        for (k, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, key_mask.clone(), k == last, &self.dropout);
        }
        let [_, lq, _] = x.dims();
        x.narrow(1, 0, lq.min(1)).reshape([b, d]) * present
    }
}

impl<B: Backend> AttentionBlock<B> {
    /// The block on `x` `[b, L, d]` with the key mask `[b, 1, L]`: at every slot (each attends to
    /// itself and older slots) or, when `newest_only`, at slot 0 alone (`[b, 1, d]`).
    fn forward(&self, x: Tensor<B, 3>, key_mask: Tensor<B, 3>, newest_only: bool, dropout: &Dropout) -> Tensor<B, 3> {
        let [b, l, d] = x.dims();
        let scale = 1.0 / (d as f64).sqrt();
        if newest_only {
            // One query per history: the key and value projections are folded into it (as the
            // plain inference does, `BlockWeights::at`), O(b L d) instead of O(b L d²):
            // q · (x_i K + k_b) = x_i · (q Kᵀ) + const, and Σ a_i (x_i V + v_b) = (Σ a_i x_i) V + v_b.
            let newest = x.clone().narrow(1, 0, 1);
            let q = self.query.forward(newest.clone().reshape([b, d]));
            let qk = q.matmul(self.key.weight.val().transpose()).reshape([b, d, 1]);
            let scores = x.clone().matmul(qk).reshape([b, 1, l]).mul_scalar(scale) + key_mask;
            let mixed = softmax(scores, 2).matmul(x).reshape([b, d]);
            let attended = self.value.forward(mixed).reshape([b, 1, d]);
            return self.finish(newest, attended, dropout);
        }
        let q = self.query.forward(x.clone());
        let k = self.key.forward(x.clone());
        let v = self.value.forward(x.clone());
        let scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(scale) + key_mask;
        // Newest first: slot j may read slots i >= j (itself and older ones).
        let causal: Vec<f32> = (0..l * l).map(|s| if s % l >= s / l { 0.0 } else { -1e9 }).collect();
        let causal = Tensor::<B, 2>::from_data(TensorData::new(causal, [l, l]), &scores.device());
        let scores = scores + causal.unsqueeze_dim::<3>(0);
        let attended = softmax(scores, 2).matmul(v);
        self.finish(x, attended, dropout)
    }

    /// The residual connections, norms and feed-forward layer after attention.
    fn finish(&self, queries: Tensor<B, 3>, attended: Tensor<B, 3>, dropout: &Dropout) -> Tensor<B, 3> {
        let y = self.norm1.forward(queries + dropout.forward(attended));
        let ff = self.ff_out.forward(relu(self.ff_in.forward(y.clone())));
        self.norm2.forward(y + dropout.forward(ff))
    }
}

impl<B: Backend> TwoTowerNet<B> {
    /// A freshly initialised network.
    pub fn init(cfg: &TwoTowerConfig, vocab: &Vocab, device: &B::Device) -> Self {
        let emb = |n: usize| EmbeddingConfig::new(n.max(1), cfg.side_dim).init(device);
        TwoTowerNet {
            category: emb(vocab.categories),
            brand: emb(vocab.brands),
            price: emb(vocab.price_buckets),
            age: emb(vocab.ages),
            region: emb(vocab.regions),
            item_in: LinearConfig::new(item_input_dim(cfg), cfg.hidden_dim).init(device),
            item_out: LinearConfig::new(cfg.hidden_dim, cfg.embedding_dim).init(device),
            user_in: LinearConfig::new(user_input_dim(cfg), cfg.hidden_dim).init(device),
            user_out: LinearConfig::new(cfg.hidden_dim, cfg.embedding_dim).init(device),
            sequence: (cfg.user_encoder == UserEncoder::Attention).then(|| SequenceEncoder::init(cfg, device)),
        }
    }

    /// `m.weights × table[m.rows]`: the embedding lookups and pooled lookups of the towers.
    fn mix(e: &Embedding<B>, m: CodeMix<B>) -> Tensor<B, 2> {
        let table = e.weight.val();
        let table = match m.rows {
            Some(rows) => table.select(0, rows),
            None => table,
        };
        m.weights.matmul(table)
    }

    /// Item embeddings `[n, embedding_dim]` (L2-normalised) from gathered id rows `[n, id_dim]`,
    /// the items' codes (one-hot [`CodeMix::lookup`]s) and numeric features `[n, ITEM_NUMERIC]`.
    pub fn items(
        &self,
        ids: Tensor<B, 2>,
        category: CodeMix<B>,
        brand: CodeMix<B>,
        price: CodeMix<B>,
        numeric: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let x = Tensor::cat(
            vec![
                ids,
                Self::mix(&self.category, category),
                Self::mix(&self.brand, brand),
                Self::mix(&self.price, price),
                numeric,
            ],
            1,
        );
        l2_normalize(self.item_out.forward(relu(self.item_in.forward(x))))
    }

    /// User embeddings `[b, embedding_dim]` (L2-normalised) from gathered history id rows
    /// `[b, L, id_dim]`, short- and long-term pooling weights `[b, L, 1]` (zero for padding), the
    /// history's categories and price buckets pooled with the long-term weights
    /// ([`CodeMix::pool`]), demographics ([`CodeMix::lookup`]) and numeric features
    /// `[b, USER_NUMERIC]`.
    #[allow(clippy::too_many_arguments)]
    pub fn users(
        &self,
        history_ids: Tensor<B, 3>,
        short: Tensor<B, 3>,
        long: Tensor<B, 3>,
        history_category: CodeMix<B>,
        history_price: CodeMix<B>,
        age: CodeMix<B>,
        region: CodeMix<B>,
        numeric: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let [b, _, d] = history_ids.dims();
        let short_pooled = (history_ids.clone() * short).sum_dim(1).reshape([b, d]);
        let long_pooled = (history_ids * long).sum_dim(1).reshape([b, d]);
        self.users_pooled(
            short_pooled,
            long_pooled,
            history_category,
            history_price,
            age,
            region,
            numeric,
        )
    }

    /// [`TwoTowerNet::users`] from already pooled id embeddings `[b, id_dim]` (short and long
    /// term): the trainer pools the id table itself and back-propagates into its rows by hand,
    /// which is far cheaper than a gather of `b × L` rows through autodiff.
    #[allow(clippy::too_many_arguments)]
    pub fn users_pooled(
        &self,
        short_pooled: Tensor<B, 2>,
        long_pooled: Tensor<B, 2>,
        history_category: CodeMix<B>,
        history_price: CodeMix<B>,
        age: CodeMix<B>,
        region: CodeMix<B>,
        numeric: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let x = Tensor::cat(
            vec![
                short_pooled,
                long_pooled,
                Self::mix(&self.category, history_category),
                Self::mix(&self.price, history_price),
                Self::mix(&self.age, age),
                Self::mix(&self.region, region),
                numeric,
            ],
            1,
        );
        l2_normalize(self.user_out.forward(relu(self.user_in.forward(x))))
    }
}

/// Vocabularies up to this size are mixed with `[n, vocab]` weights over the whole table; larger
/// ones with weights over the distinct codes of the batch and a gather of those rows.
pub const DENSE_CODES_MAX: usize = 1024;

/// Weighted sums of rows of a side-embedding table, computed as the matrix product
/// `weights [n, k] × table[rows]`, where `rows` are `k` rows of the table (the whole table when
/// `None`). A one-hot row looks a code up; a weighted histogram pools a history's codes.
///
/// The towers take codes in this form rather than through burn's `Embedding` because the
/// backward pass of a lookup (`select_add`) runs one thread per embedding column, each looping
/// over every index: on a GPU the `b × L` history codes of one batch made a training step many
/// times slower (benches/README.md). The product's gradient is one more small matrix product on
/// every backend, and on the CPU it also skips the `[b, L, side_dim]` intermediate.
#[derive(Debug, Clone)]
pub struct CodeMix<B: Backend> {
    /// `[n, k]` weights.
    pub weights: Tensor<B, 2>,
    /// The `k` table rows the weights refer to; `None` for the whole table (`k = vocab`).
    pub rows: Option<Tensor<B, 1, Int>>,
}

impl<B: Backend> CodeMix<B> {
    /// One-hot rows: row `i` looks up `codes[i]`. Codes beyond the vocabulary use its last row.
    pub fn lookup(codes: &[u32], vocab: usize, device: &B::Device) -> Self {
        MixData::lookup(codes, vocab).upload(device)
    }

    /// Row `i` is the sum of `weights[j] × row(codes[j])` over `j` in
    /// `i * per_row .. (i + 1) * per_row` (a weight of zero marks padding). Codes beyond the
    /// vocabulary use its last row.
    pub fn pool(codes: &[u32], weights: &[f32], per_row: usize, vocab: usize, device: &B::Device) -> Self {
        MixData::pool(codes, weights, per_row, vocab).upload(device)
    }
}

/// A [`CodeMix`] still in host memory: built without a device (the trainer plans the next batch
/// on another thread while the current step runs), uploaded by [`MixData::upload`].
#[derive(Debug, Clone, PartialEq)]
pub struct MixData {
    /// `[n, k]` weights, row-major.
    weights: Vec<f32>,
    n: usize,
    k: usize,
    /// The `k` table rows the weights refer to; `None` for the whole table.
    rows: Option<Vec<i64>>,
}

impl MixData {
    /// [`CodeMix::lookup`] on the host.
    pub fn lookup(codes: &[u32], vocab: usize) -> Self {
        Self::pool(codes, &vec![1.0; codes.len()], 1, vocab)
    }

    /// [`CodeMix::pool`] on the host.
    pub fn pool(codes: &[u32], weights: &[f32], per_row: usize, vocab: usize) -> Self {
        Self::pool_as(codes, weights, per_row, vocab, vocab <= DENSE_CODES_MAX)
    }

    /// [`MixData::pool`] with weights over the whole table (`dense`) or over the distinct codes.
    fn pool_as(codes: &[u32], weights: &[f32], per_row: usize, vocab: usize, dense: bool) -> Self {
        let per_row = per_row.max(1);
        let n = codes.len().div_ceil(per_row);
        let last = vocab.max(1) as u32 - 1;
        let pairs = codes.iter().zip(weights).map(|(&c, &w)| (c.min(last), w));
        if dense {
            let k = vocab.max(1);
            let mut m = vec![0f32; n * k];
            for (j, (c, w)) in pairs.enumerate() {
                m[(j / per_row) * k + c as usize] += w;
            }
            return MixData {
                weights: m,
                n,
                k,
                rows: None,
            };
        }
        let mut local: HashMap<u32, usize> = HashMap::new();
        let mut distinct: Vec<i64> = Vec::new();
        let slots: Vec<(usize, f32)> = pairs
            .map(|(c, w)| {
                let slot = *local.entry(c).or_insert_with(|| {
                    distinct.push(i64::from(c));
                    distinct.len() - 1
                });
                (slot, w)
            })
            .collect();
        let k = distinct.len().max(1);
        if distinct.is_empty() {
            distinct.push(0);
        }
        let mut m = vec![0f32; n * k];
        for (j, (slot, w)) in slots.into_iter().enumerate() {
            m[(j / per_row) * k + slot] += w;
        }
        MixData {
            weights: m,
            n,
            k,
            rows: Some(distinct),
        }
    }

    /// The tensors on `device`.
    pub fn upload<B: Backend>(self, device: &B::Device) -> CodeMix<B> {
        let k = self.k;
        CodeMix {
            weights: Tensor::from_data(TensorData::new(self.weights, [self.n, k]), device),
            rows: self.rows.map(|r| Tensor::from_data(TensorData::new(r, [k]), device)),
        }
    }
}

/// Row-wise L2 normalisation (rows of norm zero stay zero).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::nn::EmbeddingConfig;

    type B = Autodiff<NdArray>;

    fn values(t: Tensor<B, 2>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn code_mix_matches_explicit_lookups_and_pools_on_both_paths() {
        let dev = Default::default();
        let vocab = 7;
        let e: Embedding<B> = EmbeddingConfig::new(vocab, 3).init(&dev);
        let table = values(e.weight.val());
        let row = |c: u32| &table[c as usize * 3..c as usize * 3 + 3];
        // Two rows of four slots; the last slot of row 1 is padding (weight 0), code 9 is out of
        // the vocabulary (clamped to the last row), code 2 repeats within row 0.
        let codes = [2, 5, 2, 0, 1, 6, 9, 3];
        let weights = [0.5, 0.25, 0.125, 0.125, 1.0, 0.5, 0.25, 0.0];
        let mut want = vec![0f32; 6];
        for (j, (&c, &w)) in codes.iter().zip(&weights).enumerate() {
            for (t, &x) in want[(j / 4) * 3..(j / 4) * 3 + 3].iter_mut().zip(row(c.min(6))) {
                *t += w * x;
            }
        }
        let mut grads = Vec::new();
        for dense in [true, false] {
            let m: CodeMix<B> = MixData::pool_as(&codes, &weights, 4, vocab, dense).upload(&dev);
            assert_eq!(m.rows.is_none(), dense);
            let out = TwoTowerNet::<B>::mix(&e, m);
            for (a, b) in values(out.clone()).iter().zip(&want) {
                assert!((a - b).abs() < 1e-6, "dense {dense}: {a} vs {b}");
            }
            // d sum(out) / d table: row c gets the total weight of code c.
            let g = out.sum().backward();
            grads.push(e.weight.val().grad(&g).unwrap().into_data().to_vec::<f32>().unwrap());
        }
        assert_eq!(grads[0], grads[1]);
        assert!((grads[0][2 * 3] - 0.625).abs() < 1e-6, "{:?}", grads[0]);
        assert_eq!(grads[0][4 * 3], 0.0, "code 4 never occurs");
        // Lookups are one-hot pools.
        let one = TwoTowerNet::<B>::mix(&e, CodeMix::lookup(&[4, 0], vocab, &dev));
        assert_eq!(values(one), [row(4), row(0)].concat());
    }
}
