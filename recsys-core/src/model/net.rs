//! The dense part of the two towers as a burn [`Module`]; the id table lives outside it
//! ([`super::sparse::SparseTable`]) and enters as an already-gathered tensor.

use super::{ITEM_NUMERIC, TwoTowerConfig, USER_NUMERIC, Vocab};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

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
}

/// Width of the item tower's input.
pub fn item_input_dim(cfg: &TwoTowerConfig) -> usize {
    cfg.id_dim + 3 * cfg.side_dim + ITEM_NUMERIC
}

/// Width of the user tower's input.
pub fn user_input_dim(cfg: &TwoTowerConfig) -> usize {
    2 * cfg.id_dim + 4 * cfg.side_dim + USER_NUMERIC
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
        }
    }

    fn embed_1d(e: &Embedding<B>, idx: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let n = idx.dims()[0];
        let out = e.forward(idx.reshape([n, 1]));
        let d = out.dims()[2];
        out.reshape([n, d])
    }

    /// Item embeddings `[n, embedding_dim]` (L2-normalised) from gathered id rows `[n, id_dim]`,
    /// codes `[n]` and numeric features `[n, ITEM_NUMERIC]`.
    pub fn items(
        &self,
        ids: Tensor<B, 2>,
        category: Tensor<B, 1, Int>,
        brand: Tensor<B, 1, Int>,
        price: Tensor<B, 1, Int>,
        numeric: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let x = Tensor::cat(
            vec![
                ids,
                Self::embed_1d(&self.category, category),
                Self::embed_1d(&self.brand, brand),
                Self::embed_1d(&self.price, price),
                numeric,
            ],
            1,
        );
        l2_normalize(self.item_out.forward(relu(self.item_in.forward(x))))
    }

    /// User embeddings `[b, embedding_dim]` (L2-normalised) from gathered history id rows
    /// `[b, L, id_dim]`, history categories and price buckets `[b, L]`, short- and long-term
    /// pooling weights `[b, L, 1]` (zero for padding), demographics `[b]` and numeric features
    /// `[b, USER_NUMERIC]`.
    #[allow(clippy::too_many_arguments)]
    pub fn users(
        &self,
        history_ids: Tensor<B, 3>,
        history_category: Tensor<B, 2, Int>,
        history_price: Tensor<B, 2, Int>,
        short: Tensor<B, 3>,
        long: Tensor<B, 3>,
        age: Tensor<B, 1, Int>,
        region: Tensor<B, 1, Int>,
        numeric: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let [b, _, d] = history_ids.dims();
        let short_pooled = (history_ids.clone() * short).sum_dim(1).reshape([b, d]);
        let long_pooled = (history_ids * long.clone()).sum_dim(1).reshape([b, d]);
        self.users_pooled(
            short_pooled,
            long_pooled,
            history_category,
            history_price,
            long,
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
        history_category: Tensor<B, 2, Int>,
        history_price: Tensor<B, 2, Int>,
        long: Tensor<B, 3>,
        age: Tensor<B, 1, Int>,
        region: Tensor<B, 1, Int>,
        numeric: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let pool = |x: Tensor<B, 3>, w: Tensor<B, 3>| {
            let [b, _, d] = x.dims();
            (x * w).sum_dim(1).reshape([b, d])
        };
        let x = Tensor::cat(
            vec![
                short_pooled,
                long_pooled,
                pool(self.category.forward(history_category), long.clone()),
                pool(self.price.forward(history_price), long),
                Self::embed_1d(&self.age, age),
                Self::embed_1d(&self.region, region),
                numeric,
            ],
            1,
        );
        l2_normalize(self.user_out.forward(relu(self.user_in.forward(x))))
    }
}

/// Row-wise L2 normalisation (rows of norm zero stay zero).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
