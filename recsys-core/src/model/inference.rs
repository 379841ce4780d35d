//! Two-tower inference on plain `f32` slices: no tensor library at serving time, one user
//! embedding in tens of microseconds on one core.

use super::{ITEM_NUMERIC, ItemSide, TwoTowerConfig, USER_NUMERIC, UserInputs, Vocab};
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
        for ((&item, &ws), &wl) in u.items.iter().zip(&u.weights).zip(&u.long_weights) {
            if item as usize >= self.vocab.items {
                return Err(Error::NotFound {
                    kind: "item",
                    id: item.to_string(),
                });
            }
            let id = row(&self.id_table, c.id_dim, item);
            add(&mut short, ws, id);
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
        let shapes: Vec<(String, usize)> = tensors.iter().map(|(n, t)| (n.to_string(), t.len())).collect();
        let layers: Vec<[usize; 2]> = [&self.item_in, &self.item_out, &self.user_in, &self.user_out]
            .iter()
            .map(|d| [d.input, d.output])
            .collect();
        let header = serde_json::json!({
            "config": self.config, "vocab": self.vocab, "item_side": self.item_side,
            "tensors": shapes, "layers": layers,
        });
        let header = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
        let io = |e: std::io::Error| Error::Internal(format!("writing model: {e}"));
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
        if t.len() != 14 || layers.len() != 4 {
            return Err(bad("unexpected tensor count"));
        }
        let mut it = t.into_iter();
        let mut next = || it.next().expect("14 tensors");
        let (id_table, category, brand, price, age, region) = (next(), next(), next(), next(), next(), next());
        let mut dense = |k: usize| Dense {
            w: next(),
            b: next(),
            input: layers[k][0],
            output: layers[k][1],
        };
        let (item_in, item_out, user_in, user_out) = (dense(0), dense(1), dense(2), dense(3));
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
        };
        m.check_shapes()?;
        Ok(m)
    }

    fn tensors(&self) -> Vec<(&'static str, &[f32])> {
        vec![
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
        ]
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
            (
                "item_in",
                self.item_in.w.len(),
                super::net::item_input_dim(c) * c.hidden_dim,
            ),
            ("item_out", self.item_out.w.len(), c.hidden_dim * c.embedding_dim),
            (
                "user_in",
                self.user_in.w.len(),
                super::net::user_input_dim(c) * c.hidden_dim,
            ),
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
        Ok(())
    }
}

const MAGIC: &[u8; 8] = b"TTWR0001";
