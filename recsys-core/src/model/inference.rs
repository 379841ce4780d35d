//! Two-tower inference on plain `f32` slices: no tensor library at serving time, one user
//! embedding in tens of microseconds on one core.

use super::{GAP_BUCKETS, ITEM_NUMERIC, ItemSide, TwoTowerConfig, USER_NUMERIC, UserEncoder, UserInputs, Vocab};
use crate::memory::LargeTable;
use crate::{Error, Result};
use rayon::prelude::*;
use std::io::{Read, Write};

/// A dense layer `y = x W + b` with `W` row-major `[input, output]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Weights, `input × output`, row-major.
    pub w: Vec<f32>,
    /// Bias, `output`.
    pub b: Vec<f32>,
    /// Input width.
    pub input: usize,
    /// Output width.
    pub output: usize,
}

impl Dense {
    /// `out = x W + b` (optionally followed by ReLU).
    pub fn forward(&self, x: &[f32], out: &mut [f32], relu: bool) {
        out.copy_from_slice(&self.b);
        for (i, &xi) in x.iter().enumerate() {
            if xi == 0.0 {
                continue;
            }
            crate::simd::axpy(out, xi, &self.w[i * self.output..(i + 1) * self.output]);
        }
        if relu {
            out.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }

    /// `out = W y` (no bias): the vector whose dot product with an input `x` is `(x W) · y`.
    pub fn transposed(&self, y: &[f32], out: &mut [f32]) {
        for (o, w) in out.iter_mut().zip(self.w.chunks_exact(self.output)) {
            *o = crate::simd::dot(w, y);
        }
    }
}

/// A layer norm's scale and shift (`y = (x − mean) / sqrt(var + ε) · gamma + beta`).
#[derive(Debug, Clone, PartialEq)]
pub struct Norm {
    /// Scale.
    pub gamma: Vec<f32>,
    /// Shift.
    pub beta: Vec<f32>,
}

impl Norm {
    /// Normalises `x` in place (biased variance, ε = [`super::LAYER_NORM_EPSILON`]).
    pub fn apply(&self, x: &mut [f32]) {
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + super::LAYER_NORM_EPSILON as f32).sqrt();
        for ((v, g), b) in x.iter_mut().zip(&self.gamma).zip(&self.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// One self-attention block of [`SequenceWeights`].
#[derive(Debug, Clone, PartialEq)]
pub struct BlockWeights {
    /// Query projection.
    pub query: Dense,
    /// Key projection.
    pub key: Dense,
    /// Value projection.
    pub value: Dense,
    /// Norm after attention.
    pub norm1: Norm,
    /// Feed-forward, first layer.
    pub ff_in: Dense,
    /// Feed-forward, second layer.
    pub ff_out: Dense,
    /// Norm after the feed-forward layer.
    pub norm2: Norm,
}

/// The self-attention encoder of the history ([`UserEncoder::Attention`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceWeights {
    /// Position table, `history_len × id_dim`.
    pub position: Vec<f32>,
    /// Event-type table, `4 × id_dim`.
    pub event: Vec<f32>,
    /// Time-gap table, `GAP_BUCKETS × id_dim`.
    pub gap: Vec<f32>,
    /// The blocks, first to last.
    pub blocks: Vec<BlockWeights>,
}

impl BlockWeights {
    /// The block's output at slot `j` of `x` (`n × d`, newest first), attending to slots `j..n`,
    /// into `out` (`d`).
    ///
    /// The key and value projections are never applied to every slot: with `q` the query,
    /// `q · (x_i K + k_b) = x_i · (K q) + q · k_b`, whose last term is the same for every slot and
    /// cancels in the softmax; and with weights `a` summing to 1, `Σ a_i (x_i V + v_b) =
    /// (Σ a_i x_i) V + v_b`. So a query costs two `d × d` products and `O(n d)`, whatever `n`.
    fn at(&self, x: &[f32], d: usize, j: usize, scratch: &mut Scratch, out: &mut [f32]) {
        let Scratch {
            q,
            qk,
            scores,
            mixed,
            y,
            h,
        } = scratch;
        let xj = &x[j * d..(j + 1) * d];
        self.query.forward(xj, q, false);
        self.key.transposed(q, qk);
        let scale = 1.0 / (d as f32).sqrt();
        scores.clear();
        scores.extend(x[j * d..].chunks_exact(d).map(|xi| crate::simd::dot(xi, qk) * scale));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        mixed.iter_mut().for_each(|m| *m = 0.0);
        for (xi, &s) in x[j * d..].chunks_exact(d).zip(scores.iter()) {
            crate::simd::axpy(mixed, s / total, xi);
        }
        self.value.forward(mixed, y, false);
        crate::simd::axpy(y, 1.0, xj);
        self.norm1.apply(y);
        self.ff_in.forward(y, h, true);
        self.ff_out.forward(h, out, false);
        crate::simd::axpy(out, 1.0, y);
        self.norm2.apply(out);
    }
}

/// Buffers of [`BlockWeights::at`].
struct Scratch {
    q: Vec<f32>,
    qk: Vec<f32>,
    scores: Vec<f32>,
    mixed: Vec<f32>,
    y: Vec<f32>,
    h: Vec<f32>,
}

impl SequenceWeights {
    /// The encoder from its tensors in the order [`SequenceWeights::tensors`] lists them (missing
    /// ones come out empty, which [`TwoTowerModel::check_shapes`] then refuses).
    fn from_tensors(t: &mut impl Iterator<Item = Vec<f32>>, d: usize, blocks: usize) -> Self {
        let mut next = || t.next().unwrap_or_default();
        let (position, event, gap) = (next(), next(), next());
        let square = |next: &mut dyn FnMut() -> Vec<f32>| Dense {
            w: next(),
            b: next(),
            input: d,
            output: d,
        };
        let blocks = (0..blocks)
            .map(|_| {
                let (query, key, value) = (square(&mut next), square(&mut next), square(&mut next));
                let norm1 = Norm {
                    gamma: next(),
                    beta: next(),
                };
                let (ff_in, ff_out) = (square(&mut next), square(&mut next));
                let norm2 = Norm {
                    gamma: next(),
                    beta: next(),
                };
                BlockWeights {
                    query,
                    key,
                    value,
                    norm1,
                    ff_in,
                    ff_out,
                    norm2,
                }
            })
            .collect();
        SequenceWeights {
            position,
            event,
            gap,
            blocks,
        }
    }

    /// The named tensors, in the model file's order.
    fn tensors(&self) -> Vec<(String, &[f32])> {
        let mut out: Vec<(String, &[f32])> = vec![
            ("sequence.position".into(), &self.position),
            ("sequence.event".into(), &self.event),
            ("sequence.gap".into(), &self.gap),
        ];
        for (k, b) in self.blocks.iter().enumerate() {
            let name = |part: &str| format!("sequence.block{k}.{part}");
            out.extend([
                (name("query.w"), &b.query.w[..]),
                (name("query.b"), &b.query.b[..]),
                (name("key.w"), &b.key.w[..]),
                (name("key.b"), &b.key.b[..]),
                (name("value.w"), &b.value.w[..]),
                (name("value.b"), &b.value.b[..]),
                (name("norm1.gamma"), &b.norm1.gamma[..]),
                (name("norm1.beta"), &b.norm1.beta[..]),
                (name("ff_in.w"), &b.ff_in.w[..]),
                (name("ff_in.b"), &b.ff_in.b[..]),
                (name("ff_out.w"), &b.ff_out.w[..]),
                (name("ff_out.b"), &b.ff_out.b[..]),
                (name("norm2.gamma"), &b.norm2.gamma[..]),
                (name("norm2.beta"), &b.norm2.beta[..]),
            ]);
        }
        out
    }

    /// Checks every tensor's size for `cfg`, naming the first wrong one.
    fn check_shapes(&self, cfg: &TwoTowerConfig) -> Result<()> {
        let d = cfg.id_dim;
        if self.blocks.len() != cfg.attention_layers {
            return Err(Error::invalid(
                "model",
                "sequence.blocks",
                format!("{} blocks, expected {}", self.blocks.len(), cfg.attention_layers),
            ));
        }
        for (name, t) in self.tensors() {
            let want = match name.rsplit('.').next().unwrap_or_default() {
                "position" => cfg.history_len * d,
                "event" => 4 * d,
                "gap" => GAP_BUCKETS * d,
                "w" => d * d,
                _ => d,
            };
            if t.len() != want {
                return Err(Error::invalid(
                    "model",
                    name,
                    format!("tensor has {} values, expected {want}", t.len()),
                ));
            }
        }
        Ok(())
    }

    /// The encoding (`id_dim`) of a history into `out`, read at its newest event; zeros when it
    /// is empty. `id_table` holds the items' id rows.
    fn encode(&self, u: &UserInputs, d: usize, id_table: &[f32], out: &mut [f32]) {
        let n = u.items.len().min(self.position.len() / d);
        if n == 0 {
            out.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        let mut x = vec![0.0f32; n * d];
        for (j, slot) in x.chunks_exact_mut(d).enumerate() {
            let event = u.event_types.get(j).copied().unwrap_or(0).min(3);
            let gap = u.gaps.get(j).copied().unwrap_or(0).min(GAP_BUCKETS as u32 - 1);
            slot.copy_from_slice(row(id_table, d, u.items[j]));
            crate::simd::axpy(slot, 1.0, row(&self.position, d, j as u32));
            crate::simd::axpy(slot, 1.0, row(&self.event, d, event));
            crate::simd::axpy(slot, 1.0, row(&self.gap, d, gap));
        }
        let mut scratch = Scratch {
            q: vec![0.0; d],
            qk: vec![0.0; d],
            scores: Vec::with_capacity(n),
            mixed: vec![0.0; d],
            y: vec![0.0; d],
            h: vec![0.0; d],
        };
        let last = self.blocks.len().saturating_sub(1);
        let mut next = vec![0.0f32; if last > 0 { n * d } else { 0 }];
        for (k, block) in self.blocks.iter().enumerate() {
            if k == last {
                block.at(&x, d, 0, &mut scratch, out);
                return;
            }
            for (j, o) in next.chunks_exact_mut(d).enumerate() {
                block.at(&x, d, j, &mut scratch, o);
            }
            std::mem::swap(&mut x, &mut next);
        }
    }
}

/// A trained two-tower model, ready to embed items and users.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoTowerModel {
    /// Hyper-parameters it was trained with.
    pub config: TwoTowerConfig,
    /// Vocabulary sizes.
    pub vocab: Vocab,
    /// Static item inputs.
    pub item_side: ItemSide,
    /// Item-id table, `items × id_dim` (25 MB for 100k items: each request reads its history's
    /// rows scattered over it, hence huge pages, see [`crate::memory`]).
    pub id_table: LargeTable<f32>,
    /// Category table, `categories × side_dim`.
    pub category: Vec<f32>,
    /// Brand table.
    pub brand: Vec<f32>,
    /// Price-bucket table.
    pub price: Vec<f32>,
    /// Age table.
    pub age: Vec<f32>,
    /// Region table.
    pub region: Vec<f32>,
    /// Item tower layers.
    pub item_in: Dense,
    /// Item tower output layer.
    pub item_out: Dense,
    /// User tower layers.
    pub user_in: Dense,
    /// User tower output layer.
    pub user_out: Dense,
    /// The self-attention encoder ([`UserEncoder::Attention`]; `None` for the pooled one).
    pub sequence: Option<SequenceWeights>,
}

fn row(table: &[f32], dim: usize, r: u32) -> &[f32] {
    let s = r as usize * dim;
    table.get(s..s + dim).unwrap_or(&[])
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 1e-12 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

impl TwoTowerModel {
    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.config.embedding_dim
    }

    /// Number of items.
    pub fn num_items(&self) -> usize {
        self.vocab.items
    }

    /// The item tower for one item into `out` (`embedding_dim`, L2-normalised).
    pub fn item_embedding(&self, item: u32, out: &mut [f32]) -> Result<()> {
        if item as usize >= self.vocab.items {
            return Err(Error::NotFound {
                kind: "item",
                id: item.to_string(),
            });
        }
        let (c, i) = (&self.config, item as usize);
        let mut x = Vec::with_capacity(self.item_in.input);
        x.extend_from_slice(row(&self.id_table, c.id_dim, item));
        x.extend_from_slice(row(&self.category, c.side_dim, self.item_side.category[i]));
        x.extend_from_slice(row(&self.brand, c.side_dim, self.item_side.brand[i]));
        x.extend_from_slice(row(&self.price, c.side_dim, self.item_side.price_bucket[i]));
        x.extend_from_slice(&self.item_side.numeric[i][..ITEM_NUMERIC]);
        let mut h = vec![0.0; self.item_in.output];
        self.item_in.forward(&x, &mut h, true);
        self.item_out.forward(&h, out, false);
        normalize(out);
        Ok(())
    }

    /// All item embeddings, row-major `items × embedding_dim`, computed in parallel.
    pub fn item_embeddings(&self) -> Vec<f32> {
        let d = self.dim();
        let mut out = vec![0.0; self.vocab.items * d];
        out.par_chunks_mut(d).enumerate().for_each(|(i, o)| {
            self.item_embedding(i as u32, o).expect("index in range");
        });
        out
    }

    /// The user tower into `out` (`embedding_dim`, L2-normalised). History items outside the
    /// catalogue are refused.
    pub fn user_embedding(&self, u: &UserInputs, out: &mut [f32]) -> Result<()> {
        let c = &self.config;
        let mut short = vec![0.0f32; c.id_dim];
        let mut long = vec![0.0f32; c.id_dim];
        let mut cat = vec![0.0f32; c.side_dim];
        let mut price = vec![0.0f32; c.side_dim];
        let add = |acc: &mut [f32], w: f32, v: &[f32]| acc.iter_mut().zip(v).for_each(|(a, x)| *a += w * x);
        if let Some(&item) = u.items.iter().find(|&&i| i as usize >= self.vocab.items) {
            return Err(Error::NotFound {
                kind: "item",
                id: item.to_string(),
            });
        }
        let attention = self
            .sequence
            .as_ref()
            .filter(|_| c.user_encoder == UserEncoder::Attention);
        if let Some(seq) = attention {
            seq.encode(u, c.id_dim, &self.id_table, &mut short);
        }
        for ((&item, &ws), &wl) in u.items.iter().zip(&u.weights).zip(&u.long_weights) {
            let id = row(&self.id_table, c.id_dim, item);
            if attention.is_none() {
                add(&mut short, ws, id);
            }
            add(&mut long, wl, id);
            let i = item as usize;
            add(
                &mut cat,
                wl,
                row(&self.category, c.side_dim, self.item_side.category[i]),
            );
            add(
                &mut price,
                wl,
                row(&self.price, c.side_dim, self.item_side.price_bucket[i]),
            );
        }
        let clamp = |code: u32, size: usize| if (code as usize) < size { code } else { 0 };
        let mut x = short;
        x.extend_from_slice(&long);
        x.extend_from_slice(&cat);
        x.extend_from_slice(&price);
        x.extend_from_slice(row(&self.age, c.side_dim, clamp(u.age, self.vocab.ages)));
        x.extend_from_slice(row(&self.region, c.side_dim, clamp(u.region, self.vocab.regions)));
        x.extend_from_slice(&u.numeric[..USER_NUMERIC]);
        let mut h = vec![0.0; self.user_in.output];
        self.user_in.forward(&x, &mut h, true);
        self.user_out.forward(&h, out, false);
        normalize(out);
        Ok(())
    }

    /// Writes the model: magic, a JSON header (config, vocabulary, item inputs, tensor shapes)
    /// and the tensors as little-endian `f32`.
    pub fn save(&self, w: &mut impl Write) -> Result<()> {
        let tensors = self.tensors();
        let shapes: Vec<(String, usize)> = tensors.iter().map(|(n, t)| (n.clone(), t.len())).collect();
        let layers: Vec<[usize; 2]> = [&self.item_in, &self.item_out, &self.user_in, &self.user_out]
            .iter()
            .map(|d| [d.input, d.output])
            .collect();
        let header = serde_json::json!({
            "config": self.config, "vocab": self.vocab, "item_side": self.item_side,
            "tensors": shapes, "layers": layers,
        });
        let header = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
        // A failed write (a full disk) is the environment's, naming the file; callers that know the
        // full path put it in.
        let io = |e: std::io::Error| Error::io(crate::registry::files::MODEL)(e);
        w.write_all(MAGIC).map_err(io)?;
        w.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
        w.write_all(&header).map_err(io)?;
        for (_, t) in tensors {
            let mut buf = Vec::with_capacity(t.len() * 4);
            for v in t {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf).map_err(io)?;
        }
        Ok(())
    }

    /// Reads a model written by [`TwoTowerModel::save`], checking every size.
    pub fn load(r: &mut impl Read) -> Result<Self> {
        let bad = |m: &str| Error::invalid("model", "model.bin", m.to_string());
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(|_| bad("truncated file"))?;
        if &magic != MAGIC {
            return Err(bad("not a techshop-recs two-tower model"));
        }
        let mut len = [0u8; 8];
        r.read_exact(&mut len).map_err(|_| bad("truncated header"))?;
        let len = u64::from_le_bytes(len) as usize;
        if len > 1 << 31 {
            return Err(bad("header too large"));
        }
        let mut header = vec![0u8; len];
        r.read_exact(&mut header).map_err(|_| bad("truncated header"))?;
        let h: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(&format!("bad header: {e}")))?;
        let field = |k: &str| h.get(k).cloned().ok_or_else(|| bad(&format!("header lacks `{k}`")));
        let config = TwoTowerConfig::from_json(&field("config")?).map_err(|e| bad(&e.to_string()))?;
        let vocab: Vocab = serde_json::from_value(field("vocab")?).map_err(|e| bad(&e.to_string()))?;
        let item_side: ItemSide = serde_json::from_value(field("item_side")?).map_err(|e| bad(&e.to_string()))?;
        let shapes: Vec<(String, usize)> =
            serde_json::from_value(field("tensors")?).map_err(|e| bad(&e.to_string()))?;
        let layers: Vec<[usize; 2]> = serde_json::from_value(field("layers")?).map_err(|e| bad(&e.to_string()))?;
        item_side.validate(&vocab)?;
        let mut read = |n: usize| -> Result<Vec<f32>> {
            let mut buf = vec![0u8; n * 4];
            r.read_exact(&mut buf).map_err(|_| bad("truncated tensor data"))?;
            Ok(buf
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let mut t: Vec<Vec<f32>> = Vec::with_capacity(shapes.len());
        for (_, n) in &shapes {
            t.push(read(*n)?);
        }
        let blocks = match config.user_encoder {
            UserEncoder::Pooled => 0,
            UserEncoder::Attention => config.attention_layers,
        };
        let sequence_tensors = if blocks > 0 { 3 + 14 * blocks } else { 0 };
        if t.len() != 14 + sequence_tensors || layers.len() != 4 {
            return Err(bad("unexpected tensor count"));
        }
        let mut it = t.into_iter();
        let mut next = || it.next().unwrap_or_default();
        let (id_table, category, brand, price, age, region) = (next(), next(), next(), next(), next(), next());
        let mut dense = |k: usize| Dense {
            w: next(),
            b: next(),
            input: layers[k][0],
            output: layers[k][1],
        };
        let (item_in, item_out, user_in, user_out) = (dense(0), dense(1), dense(2), dense(3));
        let sequence = (blocks > 0).then(|| SequenceWeights::from_tensors(&mut it, config.id_dim, blocks));
        let m = TwoTowerModel {
            config,
            vocab,
            item_side,
            id_table: LargeTable::from_slice(&id_table),
            category,
            brand,
            price,
            age,
            region,
            item_in,
            item_out,
            user_in,
            user_out,
            sequence,
        };
        m.check_shapes()?;
        Ok(m)
    }

    fn tensors(&self) -> Vec<(String, &[f32])> {
        let base: Vec<(&str, &[f32])> = vec![
            ("id_table", &self.id_table[..]),
            ("category", &self.category),
            ("brand", &self.brand),
            ("price", &self.price),
            ("age", &self.age),
            ("region", &self.region),
            ("item_in.w", &self.item_in.w),
            ("item_in.b", &self.item_in.b),
            ("item_out.w", &self.item_out.w),
            ("item_out.b", &self.item_out.b),
            ("user_in.w", &self.user_in.w),
            ("user_in.b", &self.user_in.b),
            ("user_out.w", &self.user_out.w),
            ("user_out.b", &self.user_out.b),
        ];
        let mut named: Vec<(String, &[f32])> = base.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        if let Some(seq) = &self.sequence {
            named.extend(seq.tensors());
        }
        named
    }

    /// Verifies that every tensor has the size the configuration and vocabulary imply.
    pub fn check_shapes(&self) -> Result<()> {
        let c = &self.config;
        let v = &self.vocab;
        let expect = [
            ("id_table", self.id_table.len(), v.items * c.id_dim),
            ("category", self.category.len(), v.categories.max(1) * c.side_dim),
            ("brand", self.brand.len(), v.brands.max(1) * c.side_dim),
            ("price", self.price.len(), v.price_buckets.max(1) * c.side_dim),
            ("age", self.age.len(), v.ages.max(1) * c.side_dim),
            ("region", self.region.len(), v.regions.max(1) * c.side_dim),
            ("item_in", self.item_in.w.len(), super::item_input_dim(c) * c.hidden_dim),
            ("item_out", self.item_out.w.len(), c.hidden_dim * c.embedding_dim),
            ("user_in", self.user_in.w.len(), super::user_input_dim(c) * c.hidden_dim),
            ("user_out", self.user_out.w.len(), c.hidden_dim * c.embedding_dim),
        ];
        for (name, got, want) in expect {
            if got != want {
                return Err(Error::invalid(
                    "model",
                    name,
                    format!("tensor has {got} values, expected {want}"),
                ));
            }
        }
        for d in [&self.item_in, &self.item_out, &self.user_in, &self.user_out] {
            if d.b.len() != d.output || d.w.len() != d.input * d.output {
                return Err(Error::invalid("model", "layer", "bias/weight sizes disagree"));
            }
        }
        match (&self.sequence, c.user_encoder) {
            (Some(seq), UserEncoder::Attention) => seq.check_shapes(c),
            (None, UserEncoder::Pooled) => Ok(()),
            (_, encoder) => Err(Error::invalid(
                "model",
                "sequence",
                format!("the attention weights do not match user_encoder `{}`", encoder.as_str()),
            )),
        }
    }
}

const MAGIC: &[u8; 8] = b"TTWR0001";
