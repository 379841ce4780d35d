//! Training loop of the two-tower model, generic over the burn backend.
//!
//! Examples are next interactions: every event of a user at or above
//! [`TwoTowerConfig::min_target_event`] is a target, and the user tower sees that user's history
//! strictly before it. The loss is in-batch sampled softmax with logQ correction (Yi et al. 2019)
//! and a temperature, optionally with extra uniform negatives; on burn's CPU backend the loss and
//! its gradients are computed on the host in one fused pass (`softmax.rs`, [`LossPlacement`]),
//! on GPU backends through the backend's tensor operations. The dense layers take burn's Adam;
//! the item-id table is gathered into a leaf tensor per batch, and only the touched rows receive
//! a lazy-Adam update ([`SparseTable`]).

use super::batch::{Batch, Plan, fill_batch, floats, plan_batch};
use super::inference::{BlockWeights, Dense, Norm, SequenceWeights, TwoTowerModel};
use super::net::{SequenceEncoder, TwoTowerNet};
use super::softmax::sampled_softmax;
use super::sparse::SparseTable;
use super::{TrainingData, TwoTowerConfig};
use crate::{Error, Result};
use burn::module::AutodiffModule;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::Instant;

/// What a training run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// Training examples per epoch.
    pub examples: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Mean loss per epoch.
    pub loss_per_epoch: Vec<f32>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Seconds of the first 20 steps (kernel compilation and autotuning on GPU backends).
    pub warmup_seconds: f64,
    /// Examples per second after the first 20 steps (validation excluded).
    pub samples_per_second: f64,
    /// Early stopping: the validation score after each epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_per_epoch: Vec<f64>,
    /// Early stopping: the epoch (from 1) with the best validation score, whose weights the
    /// model holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// Early stopping: seconds spent validating (not counted in `samples_per_second`).
    #[serde(default)]
    pub validation_seconds: f64,
    /// Where the steps after the first 20 spent their time.
    #[serde(default)]
    pub phases: StepPhases,
}

/// Seconds spent in each phase of a training step, summed over the steps after the first 20 (the
/// steps `samples_per_second` counts). A GPU backend runs queued work asynchronously: its
/// forward and backward passes show up mostly in `read_back`, where the host waits for them, and
/// `forward`, `backward` and `optimizer` are then the host's cost of queuing them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepPhases {
    /// Completing the batch on the host (the id rows' gather and history pooling) and uploading
    /// it, plus any wait for the next batch's plan, made on another thread during the step.
    pub batch: f64,
    /// The forward pass up to the loss (on [`LossPlacement::Host`], the host's fused loss too).
    pub forward: f64,
    /// The backward pass.
    pub backward: f64,
    /// Reading the id rows' gradients (and the backend's loss) back to the host.
    pub read_back: f64,
    /// Waiting for the id table's update (the gradients scattered into its rows and their lazy
    /// Adam step), which runs on another thread during the optimizer step.
    pub id_table: f64,
    /// burn's Adam step on the dense parameters.
    pub optimizer: f64,
}

impl StepPhases {
    /// The sum of the phases.
    pub fn total(&self) -> f64 {
        self.batch + self.forward + self.backward + self.read_back + self.id_table + self.optimizer
    }
}

/// A stopwatch that adds the time since its last lap to a phase, once `on`.
struct Laps {
    last: Instant,
    on: bool,
}

impl Laps {
    fn lap(&mut self, phase: &mut f64) {
        let now = Instant::now();
        if self.on {
            *phase += (now - self.last).as_secs_f64();
        }
        self.last = now;
    }
}

/// Scores the model on held-out data after each epoch, for early stopping
/// ([`TwoTowerConfig::early_stopping_patience`]); higher is better.
pub trait Validator {
    /// The validation score of `model`, the network as trained so far.
    fn score(&mut self, model: &TwoTowerModel) -> Result<f64>;

    /// Asked after each [`Validator::score`]: whether training should stop now, before the
    /// patience runs out (a tuner pruning an unpromising trial, or out of time). The best
    /// epoch so far is returned as usual. The default never stops.
    fn stop(&self) -> bool {
        false
    }
}

/// The training examples `(user, position in history)` of a data set.
pub fn examples(data: &TrainingData, cfg: &TwoTowerConfig) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for (u, h) in data.histories.iter().enumerate() {
        for (p, e) in h.iter().enumerate() {
            if e.event_type >= cfg.min_target_event {
                out.push((u as u32, p as u32));
            }
        }
    }
    out
}

/// Where the sampled-softmax loss and its gradient with respect to the logits are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossPlacement {
    /// On the host, fused, in `model/softmax.rs` (the default on burn's `ndarray`
    /// CPU backend, where burn's element-wise passes over the `b × cols` logits dominate a step).
    Host,
    /// Through the backend's own tensor operations (the default on GPU backends, where the logits
    /// stay on the device).
    Backend,
}

impl LossPlacement {
    /// The default for backend `B`: [`LossPlacement::Host`] for burn's `ndarray` backend (whose
    /// tensors live in host memory anyway), [`LossPlacement::Backend`] for every other.
    pub fn default_for<B: AutodiffBackend>() -> Self {
        if std::any::TypeId::of::<B::InnerBackend>() == std::any::TypeId::of::<burn::backend::NdArray>() {
            LossPlacement::Host
        } else {
            LossPlacement::Backend
        }
    }
}

/// Trains a two-tower model on `data` with the backend `B` on `device`. `on_step(step, total,
/// loss)` is called after every step (progress reporting). With a `validator` and a positive
/// [`TwoTowerConfig::early_stopping_patience`], the model is scored after every epoch, training
/// stops once `patience` epochs in a row brought no better score, and the best epoch's weights
/// are returned ([`TrainReport::best_epoch`]).
pub fn train<B: AutodiffBackend>(
    data: &TrainingData,
    cfg: &TwoTowerConfig,
    device: &B::Device,
    on_step: &mut dyn FnMut(usize, usize, f32),
    validator: Option<&mut dyn Validator>,
) -> Result<(TwoTowerModel, TrainReport)> {
    train_with::<B>(data, cfg, device, LossPlacement::default_for::<B>(), on_step, validator)
}

/// The burn backend that trains a model, chosen at run time ([`train_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainBackend {
    /// burn's ndarray backend on the CPU (always built).
    #[default]
    Cpu,
    /// burn's CUDA backend on the first NVIDIA GPU (needs the `cuda` cargo feature).
    Cuda,
}

/// [`train`] on `backend`'s default device. This is the one place that names a concrete training
/// backend, so the CPU instantiation is compiled once, here, and `cargo check -p recsys-core
/// --features cuda` covers every line the `cuda` feature adds. Without that feature, `Cuda` is an
/// [`Error::InvalidInput`] for the field `backend`.
pub fn train_on(
    backend: TrainBackend,
    data: &TrainingData,
    cfg: &TwoTowerConfig,
    on_step: &mut dyn FnMut(usize, usize, f32),
    validator: Option<&mut dyn Validator>,
) -> Result<(TwoTowerModel, TrainReport)> {
    match backend {
        TrainBackend::Cpu => {
            type B = burn::backend::Autodiff<burn::backend::NdArray>;
            train::<B>(data, cfg, &Default::default(), on_step, validator)
        }
        #[cfg(feature = "cuda")]
        TrainBackend::Cuda => {
            type B = burn::backend::Autodiff<burn::backend::Cuda>;
            train::<B>(data, cfg, &Default::default(), on_step, validator)
        }
        #[cfg(not(feature = "cuda"))]
        TrainBackend::Cuda => Err(Error::invalid(
            "backend",
            "cuda",
            "this binary was built without the `cuda` feature",
        )),
    }
}

/// [`train`] with the loss computed where `placement` says (both give the same model up to
/// floating-point rounding).
pub fn train_with<B: AutodiffBackend>(
    data: &TrainingData,
    cfg: &TwoTowerConfig,
    device: &B::Device,
    placement: LossPlacement,
    on_step: &mut dyn FnMut(usize, usize, f32),
    validator: Option<&mut dyn Validator>,
) -> Result<(TwoTowerModel, TrainReport)> {
    train_impl::<B>(data, cfg, device, placement, true, on_step, validator)
}

/// [`train_with`], planning each batch on another thread during the step before it
/// (`pipelined`) or on the training thread when its turn comes; both give the same model.
fn train_impl<B: AutodiffBackend>(
    data: &TrainingData,
    cfg: &TwoTowerConfig,
    device: &B::Device,
    placement: LossPlacement,
    pipelined: bool,
    on_step: &mut dyn FnMut(usize, usize, f32),
    validator: Option<&mut dyn Validator>,
) -> Result<(TwoTowerModel, TrainReport)> {
    cfg.validate()?;
    data.items.validate(&data.vocab)?;
    if data.histories.len() != data.users.len() {
        return Err(Error::invalid(
            "users",
            data.users.len(),
            "one profile per history is required",
        ));
    }
    B::seed(device, cfg.seed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
    let all = examples(data, cfg);
    if all.is_empty() {
        return Err(Error::invalid(
            "training data",
            0,
            "no training examples (no targets at or above min_target_event)",
        ));
    }
    // logQ: log of each item's frequency as a target.
    let mut counts = vec![0f32; data.vocab.items];
    for &(u, p) in &all {
        counts[data.histories[u as usize][p as usize].item as usize] += 1.0;
    }
    let total = all.len() as f32;
    let log_q: Vec<f32> = counts.iter().map(|&c| ((c + 0.1) / total).ln()).collect();

    let mut table = SparseTable::new(data.vocab.items, cfg.id_dim, 0.05, &mut rng);
    let mut net = TwoTowerNet::<B>::init(cfg, &data.vocab, device);
    let mut optim = AdamConfig::new().init::<B, TwoTowerNet<B>>();
    let per_epoch = if cfg.max_examples_per_epoch > 0 {
        all.len().min(cfg.max_examples_per_epoch)
    } else {
        all.len()
    };
    let steps_per_epoch = per_epoch.div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut local_of = vec![u32::MAX; data.vocab.items];
    let mut report = TrainReport {
        examples: per_epoch,
        ..Default::default()
    };
    let start = Instant::now();
    let mut warm_at: Option<(Instant, usize)> = None;
    let mut order = all.clone();
    let mut logits_scratch = Vec::new();
    let mut validator = validator.filter(|_| cfg.early_stopping_patience > 0);
    // (score, epoch, weights) of the best epoch so far.
    let mut best: Option<(f64, usize, TwoTowerModel)> = None;
    let mut validation_after_warm = 0f64;
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0f64;
        let mut loss_n = 0usize;
        let chunks: Vec<&[(u32, u32)]> = order[..per_epoch]
            .chunks(cfg.batch_size)
            .filter(|c| c.len() >= 2)
            .collect();
        // The batch planned during the previous step, if any.
        let mut planned: Option<Plan> = None;
        for (k, &chunk) in chunks.iter().enumerate() {
            let mut laps = Laps {
                last: Instant::now(),
                on: warm_at.is_some(),
            };
            let plan = match planned.take() {
                Some(plan) => plan,
                None => plan_batch(chunk, data, cfg, &log_q, &mut local_of, &mut rng),
            };
            let batch = fill_batch::<B>(plan, &table, cfg, device);
            laps.lap(&mut report.phases.batch);
            // The next batch is planned on another thread while this step runs (in the same
            // order as without: the same negatives from `rng`, the same model).
            let next = chunks.get(k + 1).copied().filter(|_| pipelined);
            let (scratch, draws, q) = (&mut local_of, &mut rng, &log_q[..]);
            let setup = StepSetup {
                cfg,
                placement,
                device,
                step_no: report.steps,
            };
            let phases = &mut report.phases;
            let (outcome, next_plan) = std::thread::scope(|s| {
                let planner = next.map(|c| s.spawn(move || plan_batch(c, data, cfg, q, scratch, draws)));
                let outcome = step(
                    net,
                    &mut optim,
                    batch,
                    &mut table,
                    &setup,
                    &mut logits_scratch,
                    &mut laps,
                    phases,
                );
                (outcome, planner.map(|h| h.join()))
            });
            planned = next_plan
                .transpose()
                .map_err(|_| Error::Internal("planning a training batch panicked".into()))?;
            laps.lap(&mut report.phases.batch);
            let (stepped, loss_value) = outcome?;
            net = stepped;
            report.steps += 1;
            loss_sum += f64::from(loss_value);
            loss_n += 1;
            if report.steps == 20 {
                B::sync(device).ok();
                warm_at = Some((Instant::now(), report.steps));
                report.warmup_seconds = start.elapsed().as_secs_f64();
            }
            on_step(report.steps, total_steps, loss_value);
        }
        report.loss_per_epoch.push((loss_sum / loss_n.max(1) as f64) as f32);
        if let Some(v) = validator.as_mut() {
            let began = Instant::now();
            let model = export(&net.valid(), table.clone(), cfg, data)?;
            let score = v.score(&model)?;
            if !score.is_finite() {
                return Err(Error::Internal(format!("validation score {score} after epoch {epoch}")));
            }
            report.validation_per_epoch.push(score);
            let took = began.elapsed().as_secs_f64();
            report.validation_seconds += took;
            if warm_at.is_some() {
                validation_after_warm += took;
            }
            match &best {
                Some((s, _, _)) if score <= *s => {}
                _ => best = Some((score, epoch, model)),
            }
            if v.stop()
                || best
                    .as_ref()
                    .is_some_and(|(_, e, _)| epoch - e >= cfg.early_stopping_patience)
            {
                break;
            }
        }
    }
    B::sync(device).ok();
    report.seconds = start.elapsed().as_secs_f64();
    let (t0, s0) = warm_at.unwrap_or((start, 0));
    let steady_steps = report.steps - s0;
    let steady = (t0.elapsed().as_secs_f64() - validation_after_warm).max(1e-9);
    report.samples_per_second = if steady_steps > 0 && steady > 0.0 {
        (steady_steps * cfg.batch_size).min(per_epoch * cfg.epochs) as f64 / steady
    } else {
        (per_epoch * cfg.epochs) as f64 / report.seconds.max(1e-9)
    };
    let model = match best {
        Some((_, epoch, model)) => {
            report.best_epoch = Some(epoch);
            model
        }
        None => export(&net.valid(), table, cfg, data)?,
    };
    Ok((model, report))
}

/// What a step takes besides its batch and the state it updates.
struct StepSetup<'a, B: Backend> {
    cfg: &'a TwoTowerConfig,
    placement: LossPlacement,
    device: &'a B::Device,
    /// Steps taken before this one (for the error of a diverged loss).
    step_no: usize,
}

/// One training step on `batch`: forward pass and sampled-softmax loss, backward pass, the id
/// rows' gradients scattered into `table` with its lazy Adam, and burn's Adam on the dense
/// network. Returns the updated network and the step's loss.
#[allow(clippy::too_many_arguments)]
fn step<B: AutodiffBackend, O: Optimizer<TwoTowerNet<B>, B>>(
    net: TwoTowerNet<B>,
    optim: &mut O,
    batch: Batch<B>,
    table: &mut SparseTable,
    setup: &StepSetup<B>,
    logits_scratch: &mut Vec<f32>,
    laps: &mut Laps,
    phases: &mut StepPhases,
) -> Result<(TwoTowerNet<B>, f32)> {
    let StepSetup {
        cfg,
        placement,
        device,
        step_no,
    } = *setup;
    let users = user_tower(&net, &batch);
    let items = net.items(
        batch.leaf.clone(),
        batch.target_cat,
        batch.target_brand,
        batch.target_price,
        batch.target_numeric,
    );
    let [b, l, d] = [batch.b, cfg.history_len, cfg.id_dim];
    // Sampled softmax, −mean_i log softmax(S)_ii with S = U Iᵀ / τ + offset.
    let users = users.mul_scalar(1.0 / cfg.temperature);
    let cols = batch.rows.target_local.len();
    // The loss value when the host computed it; `None`: read back from the backend below.
    let (loss, host_loss) = match placement {
        LossPlacement::Host => {
            // Loss and dL/dS on the host in one fused pass (`model/softmax.rs`), handed
            // back to autodiff as a surrogate whose gradients are dL/dU and dL/dI.
            let dim = items.dims()[1];
            // (`+ 0` gives the copies their own buffers: burn-ndarray copies a tensor whose
            // buffer is shared, as the graph shares these, element by element through a
            // dynamic-rank iterator, an order of magnitude slower than this copy; benches/README.md,
            // "Build time" section, has the figures.)
            let host = sampled_softmax(
                &values(users.clone().detach().add_scalar(0.0))?,
                &values(items.clone().detach().add_scalar(0.0))?,
                &batch.offset,
                dim,
                logits_scratch,
            )?;
            let d_users = floats::<B, 2>(host.d_users, [b, dim], device);
            let d_items = floats::<B, 2>(host.d_items, [cols, dim], device);
            ((users * d_users).sum() + (items * d_items).sum(), Some(host.loss))
        }
        LossPlacement::Backend => {
            // Written so that only five element-wise passes touch the b × cols logits:
            // the temperature scales U, the diagonal comes from U and I directly, and the
            // log-sum-exp is shifted by each row's (detached) maximum.
            let offset = floats::<B, 2>(batch.offset, [b, cols], device);
            let target_correction = floats::<B, 2>(batch.target_correction, [b, 1], device);
            let targets = items.clone().narrow(0, 0, b);
            let logits = users.clone().matmul(items.transpose()) + offset;
            let row_max = logits.clone().detach().max_dim(1);
            let log_sum_exp = (logits - row_max.clone()).exp().sum_dim(1).log() + row_max;
            let positive = (users * targets).sum_dim(1) - target_correction;
            // Read back with the gradients below: reading it here would wait for the
            // forward pass before the backward pass is even queued.
            let loss = (log_sum_exp - positive).mean();
            (loss, None)
        }
    };
    laps.lap(&mut phases.forward);
    let mut grads = loss.backward();
    laps.lap(&mut phases.backward);
    // The host's share of the backward pass: the gradients of the id rows (the leaf) and of
    // the pooled histories, fetched in one transfer (with the backend's loss), one wait.
    let seq_grad = batch
        .sequence
        .as_ref()
        .and_then(|seq| seq.rows.grad_remove(&mut grads))
        .map(|g| g.reshape([b * l, d]));
    let seq_len = if batch.sequence.is_some() { b * l * d } else { 0 };
    let host_grads = [
        batch.leaf.grad_remove(&mut grads),
        batch.short_pooled.grad_remove(&mut grads),
        batch.long_pooled.grad_remove(&mut grads),
        seq_grad,
    ];
    let lens = [batch.rows.target_local.len() * d, b * d, b * d, seq_len];
    let (fetched, backend_loss) = fetch_host_grads(host_grads, &lens, host_loss.is_none().then(|| loss.inner()))?;
    laps.lap(&mut phases.read_back);
    let loss_value = host_loss
        .or(backend_loss)
        .ok_or_else(|| Error::Internal("the loss was neither computed on the host nor read back".into()))?;
    if !loss_value.is_finite() {
        return Err(Error::Internal(format!(
            "training diverged: loss {loss_value} at step {}",
            step_no
        )));
    }
    // The id table's update (on the host) runs on another thread while burn's Adam step on the
    // dense network is queued.
    let (net, updated) = std::thread::scope(|s| {
        let updater = s.spawn(|| batch.rows.update(table, &fetched, l, cfg.sparse_learning_rate));
        let gp = GradientsParams::from_grads(grads, &net);
        let net = optim.step(cfg.learning_rate, net, gp);
        laps.lap(&mut phases.optimizer);
        (net, updater.join())
    });
    updated.map_err(|_| Error::Internal("the id table's update panicked".into()))?;
    laps.lap(&mut phases.id_table);
    Ok((net, loss_value))
}

/// The user tower on a batch: the pooled history or, with the self-attention encoder, its
/// encoding of the history's id rows as the short-term part, `[b, embedding_dim]`.
fn user_tower<B: Backend>(net: &TwoTowerNet<B>, batch: &Batch<B>) -> Tensor<B, 2> {
    let short = match (&net.sequence, &batch.sequence) {
        (Some(encoder), Some(seq)) => encoder.forward(
            seq.rows.clone(),
            seq.event.clone(),
            seq.gap.clone(),
            seq.mask.clone(),
            seq.present.clone(),
        ),
        _ => batch.short_pooled.clone(),
    };
    net.users_pooled(
        short,
        batch.long_pooled.clone(),
        batch.hist_cat.clone(),
        batch.hist_price.clone(),
        batch.age.clone(),
        batch.region.clone(),
        batch.user_numeric.clone(),
    )
}

/// Gradients the host needs (`None`: the parameter took no part, all zeros of `lens[i]`) and,
/// when the loss was computed on the backend, the loss. With the loss they come back in one
/// transfer: on a GPU each read-back waits for every queued kernel, a round trip each. Without it
/// (the host computed the loss: a CPU backend) each is read on its own, sparing the copy.
fn fetch_host_grads<B: Backend, const N: usize>(
    grads: [Option<Tensor<B, 2>>; N],
    lens: &[usize; N],
    loss: Option<Tensor<B, 1>>,
) -> Result<([Vec<f32>; N], Option<f32>)> {
    let Some(loss) = loss else {
        let mut out: [Vec<f32>; N] = std::array::from_fn(|_| Vec::new());
        for ((slot, g), &len) in out.iter_mut().zip(grads).zip(lens) {
            *slot = match g {
                Some(g) => values(g)?,
                None => vec![0.0; len],
            };
        }
        return Ok((out, None));
    };
    let present = grads.each_ref().map(Option::is_some);
    let mut parts: Vec<Tensor<B, 1>> = grads.into_iter().flatten().map(|g| g.flatten(0, 1)).collect();
    parts.push(loss);
    let all = values(Tensor::cat(parts, 0))?;
    let mut at = 0;
    let mut out: [Vec<f32>; N] = std::array::from_fn(|_| Vec::new());
    for ((slot, &here), &len) in out.iter_mut().zip(&present).zip(lens) {
        *slot = if here {
            let part = all.get(at..at + len).ok_or_else(|| {
                Error::Internal(format!(
                    "read-back of {} values, expected {} more at {at}",
                    all.len(),
                    len
                ))
            })?;
            at += len;
            part.to_vec()
        } else {
            vec![0.0; len]
        };
    }
    let loss = *all
        .get(at)
        .ok_or_else(|| Error::Internal(format!("read-back of {} values has no loss at {at}", all.len())))?;
    Ok((out, Some(loss)))
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| Error::Internal(format!("{e:?}")))
}

fn embedding<B: Backend>(e: &Embedding<B>) -> Result<Vec<f32>> {
    values(e.weight.val())
}

fn dense<B: Backend>(l: &Linear<B>) -> Result<Dense> {
    let [input, output] = l.weight.val().dims();
    let b = match &l.bias {
        Some(b) => values(b.val())?,
        None => vec![0.0; output],
    };
    Ok(Dense {
        w: values(l.weight.val())?,
        b,
        input,
        output,
    })
}

fn norm<B: Backend>(n: &LayerNorm<B>) -> Result<Norm> {
    let gamma = values(n.gamma.val())?;
    let beta = match &n.beta {
        Some(b) => values(b.val())?,
        None => vec![0.0; gamma.len()],
    };
    Ok(Norm { gamma, beta })
}

fn sequence<B: Backend>(s: &SequenceEncoder<B>) -> Result<SequenceWeights> {
    let blocks = s
        .blocks
        .iter()
        .map(|b| {
            Ok(BlockWeights {
                query: dense(&b.query)?,
                key: dense(&b.key)?,
                value: dense(&b.value)?,
                norm1: norm(&b.norm1)?,
                ff_in: dense(&b.ff_in)?,
                ff_out: dense(&b.ff_out)?,
                norm2: norm(&b.norm2)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SequenceWeights {
        position: embedding(&s.position)?,
        event: embedding(&s.event)?,
        gap: embedding(&s.gap)?,
        blocks,
    })
}

/// Converts a trained network and id table into the plain inference model.
pub fn export<B: Backend>(
    net: &TwoTowerNet<B>,
    table: SparseTable,
    cfg: &TwoTowerConfig,
    data: &TrainingData,
) -> Result<TwoTowerModel> {
    let m = TwoTowerModel {
        config: cfg.clone(),
        vocab: data.vocab,
        item_side: data.items.clone(),
        id_table: crate::memory::LargeTable::from_slice(&table.values),
        category: embedding(&net.category)?,
        brand: embedding(&net.brand)?,
        price: embedding(&net.price)?,
        age: embedding(&net.age)?,
        region: embedding(&net.region)?,
        item_in: dense(&net.item_in)?,
        item_out: dense(&net.item_out)?,
        user_in: dense(&net.user_in)?,
        user_out: dense(&net.user_out)?,
        sequence: net.sequence.as_ref().map(sequence).transpose()?,
    };
    m.check_shapes()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::net::CodeMix;
    use crate::model::{HistoryEvent, ItemSide, UserContext, UserInputs, UserProfile, Vocab};
    use crate::schema::EventType;
    use burn::backend::{Autodiff, NdArray};
    use rand::Rng;

    fn toy(users: usize, seed: u64) -> TrainingData {
        // 40 items in 4 categories; each user lives in one category.
        let n_items = 40;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let items = ItemSide {
            category: (0..n_items).map(|i| 1 + (i % 4) as u32).collect(),
            brand: vec![0; n_items],
            price_bucket: vec![0; n_items],
            numeric: vec![[0.0, 0.0]; n_items],
        };
        let histories = (0..users)
            .map(|u| {
                let c = u % 4;
                (0..12)
                    .map(|k| HistoryEvent {
                        item: (c + 4 * rng.random_range(0..10)) as u32,
                        event_type: if k % 3 == 0 {
                            EventType::Purchase
                        } else {
                            EventType::Click
                        },
                        ts: 1_000 * k as i64,
                    })
                    .collect()
            })
            .collect();
        TrainingData {
            vocab: Vocab {
                items: n_items,
                categories: 5,
                brands: 1,
                price_buckets: 1,
                ages: 1,
                regions: 1,
            },
            items,
            users: vec![UserProfile::default(); users],
            histories,
        }
    }

    fn small() -> TwoTowerConfig {
        TwoTowerConfig::new()
            .with_embedding_dim(16)
            .with_id_dim(8)
            .with_side_dim(4)
            .with_hidden_dim(16)
            .with_batch_size(64)
            .with_epochs(15)
            .with_learning_rate(0.01)
            .with_sparse_learning_rate(0.05)
            .with_temperature(0.1)
    }

    /// burn's `ndarray` backend draws initial weights from one process-wide generator that
    /// `train` seeds: tests that train or initialise a net hold this lock, so that a parallel
    /// test cannot draw from it between the seed and the initialisation.
    static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn train_on_cpu_is_train_on_the_ndarray_backend() {
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy(16, 5);
        let cfg = small().with_epochs(1);
        let (a, ra) = train_on(TrainBackend::Cpu, &data, &cfg, &mut |_, _, _| {}, None).unwrap();
        let (b, rb) = train::<Autodiff<NdArray>>(&data, &cfg, &Default::default(), &mut |_, _, _| {}, None).unwrap();
        assert_eq!(ra.loss_per_epoch, rb.loss_per_epoch);
        assert_eq!(a.item_embeddings(), b.item_embeddings());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn train_on_cuda_without_the_feature_is_a_user_error() {
        let data = toy(4, 1);
        let err = train_on(TrainBackend::Cuda, &data, &small(), &mut |_, _, _| {}, None).unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(
            matches!(&err, Error::InvalidInput { field, value, .. } if field == "backend" && value == "cuda"),
            "{err}"
        );
    }

    #[test]
    fn burn_forward_and_plain_inference_agree() {
        type B = NdArray;
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy(8, 1);
        let cfg = small();
        let dev = Default::default();
        let net = TwoTowerNet::<B>::init(&cfg, &data.vocab, &dev);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let table = SparseTable::new(data.vocab.items, cfg.id_dim, 0.5, &mut rng);
        let model = export(&net, table.clone(), &cfg, &data).unwrap();
        // Items.
        let items: Vec<u32> = (0..data.vocab.items as u32).collect();
        let ids = floats::<B, 2>(table.gather(&items, 0), [items.len(), cfg.id_dim], &dev);
        let code = |v: &[u32], vocab: usize| CodeMix::<B>::lookup(v, vocab, &dev);
        let numeric: Vec<f32> = data.items.numeric.iter().flatten().copied().collect();
        let burn_items = net.items(
            ids,
            code(&data.items.category, data.vocab.categories),
            code(&data.items.brand, data.vocab.brands),
            code(&data.items.price_bucket, data.vocab.price_buckets),
            floats(numeric, [items.len(), 2], &dev),
        );
        let burn_items = values(burn_items).unwrap();
        let plain = model.item_embeddings();
        for (a, b) in burn_items.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // One user.
        let h = &data.histories[2];
        let inputs = UserInputs::build(
            &UserContext {
                history: h,
                as_of: 9_000,
                age: 0,
                region: 0,
            },
            &cfg,
        );
        let l = cfg.history_len;
        let mut idx = vec![0u32; l];
        let mut w = vec![0f32; l];
        let mut wl = vec![0f32; l];
        let mut cat = vec![0u32; l];
        let mut price = vec![0u32; l];
        for (j, &it) in inputs.items.iter().enumerate() {
            idx[j] = it;
            w[j] = inputs.weights[j];
            wl[j] = inputs.long_weights[j];
            cat[j] = data.items.category[it as usize];
            price[j] = data.items.price_bucket[it as usize];
        }
        let hist = floats::<B, 3>(table.gather(&idx, 0), [1, l, cfg.id_dim], &dev);
        let v = &data.vocab;
        let u = net.users(
            hist,
            floats(w, [1, l, 1], &dev),
            floats(wl.clone(), [1, l, 1], &dev),
            CodeMix::pool(&cat, &wl, l, v.categories, &dev),
            CodeMix::pool(&price, &wl, l, v.price_buckets, &dev),
            CodeMix::lookup(&[0], v.ages, &dev),
            CodeMix::lookup(&[0], v.regions, &dev),
            floats(inputs.numeric.to_vec(), [1, 4], &dev),
        );
        let u = values(u).unwrap();
        let mut plain_u = vec![0.0; cfg.embedding_dim];
        model.user_embedding(&inputs, &mut plain_u).unwrap();
        for (a, b) in u.iter().zip(&plain_u) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// The toy data with events two hours apart (so that their time-gap buckets differ) and
    /// every event type.
    fn toy_with_gaps(users: usize, seed: u64) -> TrainingData {
        let mut data = toy(users, seed);
        for h in &mut data.histories {
            for (k, e) in h.iter_mut().enumerate() {
                e.ts = 7_200_000 * k as i64 * k as i64;
                e.event_type = EventType::ALL[k % 4];
            }
        }
        data
    }

    #[test]
    fn attention_encoder_in_burn_and_plain_inference_agree() {
        type B = NdArray;
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy_with_gaps(8, 2);
        let dev = Default::default();
        for layers in [1, 2] {
            let cfg = small()
                .with_history_len(6)
                .with_user_encoder(crate::model::UserEncoder::Attention)
                .with_attention_layers(layers)
                // Dropout acts while training only, and this net runs on an autodiff backend.
                .with_attention_dropout(0.0);
            B::seed(&dev, 11);
            let net = TwoTowerNet::<Autodiff<B>>::init(&cfg, &data.vocab, &dev);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
            let table = SparseTable::new(data.vocab.items, cfg.id_dim, 0.5, &mut rng);
            let model = export(&net, table.clone(), &cfg, &data).unwrap();
            assert_eq!(model.sequence.as_ref().map(|s| s.blocks.len()), Some(layers));
            // The trainer's own batch: histories of 0 (empty), 1, 3, 6 and 6 of 11 events.
            let chunk = [(0, 0), (1, 1), (2, 3), (3, 6), (4, 11)];
            let log_q = vec![-1.0; data.vocab.items];
            let mut local_of = vec![u32::MAX; data.vocab.items];
            let plan = plan_batch(&chunk, &data, &cfg, &log_q, &mut local_of, &mut rng);
            let batch = fill_batch::<Autodiff<B>>(plan, &table, &cfg, &dev);
            let burn_users = values(user_tower(&net, &batch)).unwrap();
            let d = cfg.embedding_dim;
            for (k, &(u, p)) in chunk.iter().enumerate() {
                let h = &data.histories[u as usize];
                let inputs = UserInputs::build(
                    &UserContext {
                        history: &h[..p as usize],
                        as_of: h[p as usize].ts,
                        age: 0,
                        region: 0,
                    },
                    &cfg,
                );
                let mut plain = vec![0.0; d];
                model.user_embedding(&inputs, &mut plain).unwrap();
                let diff = burn_users[k * d..(k + 1) * d]
                    .iter()
                    .zip(&plain)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-5, "{layers} layer(s), example {k}: differs by {diff}");
            }
            // The history's order matters to the encoder: the same events shuffled embed elsewhere.
            let h = &data.histories[4];
            let ctx = |hist: &[HistoryEvent]| {
                let ctx = UserContext {
                    history: hist,
                    as_of: 1 << 40,
                    age: 0,
                    region: 0,
                };
                let mut e = vec![0.0; d];
                model.user_embedding(&UserInputs::build(&ctx, &cfg), &mut e).unwrap();
                e
            };
            let mut swapped = h[6..].to_vec();
            let (a, b) = (swapped[0].item, swapped[5].item);
            swapped[0].item = b;
            swapped[5].item = a;
            assert_ne!(ctx(&h[6..]), ctx(&swapped));
        }
    }

    #[test]
    fn attention_model_file_round_trips_and_training_learns() {
        let cfg = small()
            .with_user_encoder(crate::model::UserEncoder::Attention)
            .with_attention_layers(2);
        let model = untrained(&cfg);
        let mut buf = Vec::new();
        model.save(&mut buf).unwrap();
        assert_eq!(TwoTowerModel::load(&mut buf.as_slice()).unwrap(), model);
        // A pooled model's file under an attention config lacks the encoder: refused, named.
        let mut pooled = untrained(&small());
        pooled.config = cfg.clone();
        let mut buf = Vec::new();
        pooled.save(&mut buf).unwrap();
        let err = TwoTowerModel::load(&mut buf.as_slice()).unwrap_err().to_string();
        assert!(err.contains("tensor count") || err.contains("sequence"), "{err}");

        type B = Autodiff<NdArray>;
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy_with_gaps(200, 7);
        let cfg = small()
            .with_user_encoder(crate::model::UserEncoder::Attention)
            .with_attention_dropout(0.1);
        let (model, report) = train::<B>(&data, &cfg, &Default::default(), &mut |_, _, _| {}, None).unwrap();
        // Dropout draws from the seeded backend: the same seed trains the same model.
        let (again, _) = train::<B>(&data, &cfg, &Default::default(), &mut |_, _, _| {}, None).unwrap();
        assert_eq!(again, model);
        assert!(
            report.loss_per_epoch[14] < report.loss_per_epoch[0],
            "{:?}",
            report.loss_per_epoch
        );
        let share = share_in_category(&model, &data, data.histories.len());
        assert!(share > 0.8, "{share} of the users' top 5 in their category");
    }

    /// The share of the top 5 items of the first `users` users of the toy data (their whole
    /// histories) that lie in the user's category (`u % 4`, which chance would hit 25% of the time).
    fn share_in_category(model: &TwoTowerModel, data: &TrainingData, users: usize) -> f64 {
        let emb = model.item_embeddings();
        let d = model.dim();
        let mut in_cat = 0;
        for (u, h) in data.histories.iter().enumerate().take(users) {
            let inputs = UserInputs::build(
                &UserContext {
                    history: h,
                    as_of: i64::MAX,
                    age: 0,
                    region: 0,
                },
                &model.config,
            );
            let mut e = vec![0.0; d];
            model.user_embedding(&inputs, &mut e).unwrap();
            let mut scores: Vec<(f32, usize)> = emb
                .chunks(d)
                .enumerate()
                .map(|(i, v)| (v.iter().zip(&e).map(|(a, b)| a * b).sum(), i))
                .collect();
            scores.sort_by(|a, b| b.0.total_cmp(&a.0));
            in_cat += scores[..5].iter().filter(|(_, i)| i % 4 == u % 4).count();
        }
        in_cat as f64 / (5 * users) as f64
    }

    #[test]
    fn host_gradients_come_back_in_place_with_or_without_the_loss() {
        type B = NdArray;
        let dev = Default::default();
        let t = |v: Vec<f32>, rows: usize| floats::<B, 2>(v, [rows, 2], &dev);
        let grads = || [Some(t(vec![1., 2., 3., 4.], 2)), None, Some(t(vec![5., 6.], 1))];
        let lens = [4, 2, 2];
        let want = [vec![1., 2., 3., 4.], vec![0., 0.], vec![5., 6.]];
        // One read-back with the loss at its end (a GPU backend's placement) ...
        let loss = floats::<B, 1>(vec![0.25], [1], &dev);
        let (got, l) = fetch_host_grads(grads(), &lens, Some(loss)).unwrap();
        assert_eq!((got, l), (want.clone(), Some(0.25)));
        // ... and one per gradient without it.
        let (got, l) = fetch_host_grads(grads(), &lens, None).unwrap();
        assert_eq!((got, l), (want, None));
        // A gradient shorter than its stated length is an internal error, not a panic.
        let err = fetch_host_grads(
            [Some(t(vec![1., 2.], 1)), None, None],
            &[4, 2, 2],
            Some(floats::<B, 1>(vec![1.], [1], &dev)),
        );
        assert!(matches!(err, Err(Error::Internal(_))), "{err:?}");
    }

    /// Trains on the ndarray backend (no validator), recording the loss of every step.
    fn train_recording_losses(
        data: &TrainingData,
        cfg: &TwoTowerConfig,
        placement: LossPlacement,
        pipelined: bool,
    ) -> (TwoTowerModel, TrainReport, Vec<f32>) {
        let mut losses = Vec::new();
        let (model, report) = train_impl::<Autodiff<NdArray>>(
            data,
            cfg,
            &Default::default(),
            placement,
            pipelined,
            &mut |_, _, l| losses.push(l),
            None,
        )
        .unwrap();
        (model, report, losses)
    }

    #[test]
    fn host_and_backend_loss_train_the_same_model() {
        type B = Autodiff<NdArray>;
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(LossPlacement::default_for::<B>(), LossPlacement::Host);
        let data = toy(120, 5);
        // Uniform negatives over 40 items: extra columns and many accidental hits.
        let cfg = small().with_epochs(2).with_uniform_negatives(16);
        let (host_model, host, host_losses) = train_recording_losses(&data, &cfg, LossPlacement::Host, true);
        let (backend_model, backend, backend_losses) =
            train_recording_losses(&data, &cfg, LossPlacement::Backend, true);
        assert_eq!(host.steps, backend.steps);
        assert!(host.steps >= 4);
        // The same loss at every step: to 1e-4 at the first step (the same weights, only the loss
        // computed differently) and 2e-3 for the next four; from then on within 3 % at each step
        // and 1 % on average. Adam divides by the gradients' running size, so rounding differences
        // (another matrix product, a polynomial exp) in near-zero gradients grow into visible ones,
        // and burn-ndarray's parallel reductions make the backend run itself vary from one run to
        // the next. Measured on a 2-vCPU AMD EPYC (AVX2): steps 1-4 up to 1.2e-3, later steps up to
        // 1.0 % and 0.28 % on average, the backend's own step-15 loss varying by 0.3 % between runs
        // (a Xeon with AVX-512 stayed within 1e-4 for the first five steps). A wrong gradient
        // (sign, a missing term) moves the losses apart from the second step on, by far more.
        let relative: Vec<f32> = host_losses
            .iter()
            .zip(&backend_losses)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .collect();
        for (step, r) in relative.iter().enumerate() {
            let tolerance = match step {
                0 => 1e-4,
                1..5 => 2e-3,
                _ => 3e-2,
            };
            assert!(
                *r < tolerance,
                "step {step}: host {}, backend {}",
                host_losses[step],
                backend_losses[step]
            );
        }
        let later = &relative[5..];
        let mean = later.iter().sum::<f32>() / later.len() as f32;
        assert!(mean < 1e-2, "the losses after step 5 differ by {mean} on average");
        // The weights themselves drift apart for the same reason (mean |difference| 1.3 % of the
        // mean |value| on the Xeon, 14 to 19 % on the EPYC), so the models are compared on what
        // they are for: the same share of each user's top 5 in the user's category.
        let users = data.histories.len();
        let (host_share, backend_share) = (
            share_in_category(&host_model, &data, users),
            share_in_category(&backend_model, &data, users),
        );
        assert!(
            (host_share - backend_share).abs() < 0.1,
            "top-5 in category: host {host_share}, backend {backend_share}"
        );
    }

    #[test]
    fn batches_planned_ahead_on_another_thread_train_the_same_model() {
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy(120, 9);
        // Uniform negatives: a batch planned out of turn would draw other ones from the seeded rng.
        let cfg = small().with_epochs(3).with_uniform_negatives(16);
        let run = |pipelined| {
            let (model, report, losses) = train_recording_losses(&data, &cfg, LossPlacement::Host, pipelined);
            (model.item_embeddings(), report.steps, losses)
        };
        let (ahead, ahead_steps, ahead_losses) = run(true);
        let (inline, inline_steps, inline_losses) = run(false);
        assert_eq!(ahead_steps, inline_steps);
        assert!(ahead_steps >= 6, "{ahead_steps} steps");
        for (step, (a, b)) in ahead_losses.iter().zip(&inline_losses).enumerate() {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "step {step}: {a} vs {b}");
        }
        let diff = ahead
            .iter()
            .zip(&inline)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "item embeddings differ by up to {diff}");
    }

    #[test]
    fn training_learns_planted_categories() {
        type B = Autodiff<NdArray>;
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy(200, 7);
        let (model, report) = train::<B>(&data, &small(), &Default::default(), &mut |_, _, _| {}, None).unwrap();
        assert_eq!(report.loss_per_epoch.len(), 15);
        assert!(report.best_epoch.is_none() && report.validation_per_epoch.is_empty());
        // Every phase of the steps after the 20th took some time, and together no more than the run.
        let p = report.phases;
        assert!(report.steps > 20, "{} steps", report.steps);
        for (name, s) in [
            ("batch", p.batch),
            ("forward", p.forward),
            ("backward", p.backward),
            ("read_back", p.read_back),
            ("id_table", p.id_table),
            ("optimizer", p.optimizer),
        ] {
            assert!(s > 0.0, "phase {name}: {s} s in {p:?}");
        }
        assert!(p.total() <= report.seconds, "{p:?} vs {} s", report.seconds);
        assert!(
            report.loss_per_epoch[14] < report.loss_per_epoch[0],
            "{:?}",
            report.loss_per_epoch
        );
        // Chance would put 25% of the top 5 in the user's category.
        let share = share_in_category(&model, &data, 40);
        assert!(share > 0.8, "{share} of the first 40 users' top 5 in their category");
    }

    /// A freshly initialised (untrained) model of the toy data with `cfg`.
    fn untrained(cfg: &TwoTowerConfig) -> TwoTowerModel {
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy(4, 1);
        let net = TwoTowerNet::<NdArray>::init(cfg, &data.vocab, &Default::default());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let table = SparseTable::new(data.vocab.items, cfg.id_dim, 0.5, &mut rng);
        export(&net, table, cfg, &data).unwrap()
    }

    /// A full disk while saving is the environment's error (an I/O error naming the model file),
    /// not an internal one.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_while_saving_a_model_is_an_io_error() {
        let model = untrained(&small());
        let mut full = std::fs::File::options().write(true).open("/dev/full").unwrap();
        match model.save(&mut full) {
            Err(Error::Io { path, kind, .. }) => {
                assert_eq!((path.as_str(), kind), ("model.bin", std::io::ErrorKind::StorageFull));
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn model_file_round_trips_and_rejects_corruption() {
        let model = untrained(&small());
        let mut buf = Vec::new();
        model.save(&mut buf).unwrap();
        let back = TwoTowerModel::load(&mut buf.as_slice()).unwrap();
        assert_eq!(back, model);
        assert!(
            TwoTowerModel::load(&mut &buf[..buf.len() - 3])
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(TwoTowerModel::load(&mut bad.as_slice()).is_err());
    }

    /// Returns scripted scores and keeps the item embeddings of every model it scores.
    struct Scripted {
        scores: Vec<f64>,
        seen: Vec<Vec<f32>>,
    }

    impl Validator for Scripted {
        fn score(&mut self, model: &TwoTowerModel) -> Result<f64> {
            self.seen.push(model.item_embeddings());
            Ok(self.scores[self.seen.len() - 1])
        }
    }

    #[test]
    fn early_stopping_stops_after_patience_and_keeps_the_best_epoch() {
        type B = Autodiff<NdArray>;
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy(60, 3);
        let cfg = small().with_epochs(10).with_early_stopping_patience(2);
        let mut v = Scripted {
            scores: vec![0.1, 0.3, 0.2, 0.3, 0.5, 0.4],
            seen: Vec::new(),
        };
        let (model, report) = train::<B>(&data, &cfg, &Default::default(), &mut |_, _, _| {}, Some(&mut v)).unwrap();
        // Epoch 2 is best; epochs 3 and 4 are not better (a tie does not count), so it stops.
        assert_eq!(report.validation_per_epoch, [0.1, 0.3, 0.2, 0.3]);
        assert_eq!(report.loss_per_epoch.len(), 4);
        assert_eq!(report.best_epoch, Some(2));
        assert!(report.validation_seconds > 0.0);
        assert_eq!(model.item_embeddings(), v.seen[1], "the model holds epoch 2's weights");
        assert_ne!(v.seen[1], v.seen[3], "training went on after epoch 2");

        // Patience 0 trains every epoch and never validates.
        let mut idle = Scripted {
            scores: vec![],
            seen: Vec::new(),
        };
        let cfg = small().with_epochs(3);
        let (_, report) = train::<B>(&data, &cfg, &Default::default(), &mut |_, _, _| {}, Some(&mut idle)).unwrap();
        assert_eq!((report.loss_per_epoch.len(), idle.seen.len()), (3, 0));
        assert_eq!(report.best_epoch, None);

        // A score that keeps improving runs every epoch and keeps the last.
        let mut rising = Scripted {
            scores: vec![0.1, 0.2, 0.3],
            seen: Vec::new(),
        };
        let cfg = small().with_epochs(3).with_early_stopping_patience(1);
        let (model, report) =
            train::<B>(&data, &cfg, &Default::default(), &mut |_, _, _| {}, Some(&mut rising)).unwrap();
        assert_eq!(report.best_epoch, Some(3));
        assert_eq!(model.item_embeddings(), rising.seen[2]);

        // A validator that returns NaN is a bug, reported as such.
        let mut nan = Scripted {
            scores: vec![f64::NAN],
            seen: Vec::new(),
        };
        let err = train::<B>(&data, &cfg, &Default::default(), &mut |_, _, _| {}, Some(&mut nan)).unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
    }

    /// [`Scripted`] that asks to stop once it has scored `after` epochs.
    struct Stopping {
        inner: Scripted,
        after: usize,
    }

    impl Validator for Stopping {
        fn score(&mut self, model: &TwoTowerModel) -> Result<f64> {
            self.inner.score(model)
        }

        fn stop(&self) -> bool {
            self.inner.seen.len() >= self.after
        }
    }

    #[test]
    fn a_validator_can_stop_training_before_the_patience_runs_out() {
        type B = Autodiff<NdArray>;
        let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let data = toy(60, 3);
        let cfg = small().with_epochs(6).with_early_stopping_patience(5);
        let mut v = Stopping {
            inner: Scripted {
                scores: vec![0.1, 0.3, 0.2, 0.9],
                seen: Vec::new(),
            },
            after: 3,
        };
        let (model, report) = train::<B>(&data, &cfg, &Default::default(), &mut |_, _, _| {}, Some(&mut v)).unwrap();
        assert_eq!(report.validation_per_epoch, [0.1, 0.3, 0.2]);
        assert_eq!(report.loss_per_epoch.len(), 3);
        assert_eq!(report.best_epoch, Some(2));
        assert_eq!(
            model.item_embeddings(),
            v.inner.seen[1],
            "the best epoch so far is kept"
        );
    }

    #[test]
    fn models_saved_before_the_early_stopping_fields_still_load() {
        let cfg = small().with_early_stopping_patience(3);
        let model = untrained(&cfg);
        let mut buf = Vec::new();
        model.save(&mut buf).unwrap();
        // Rewrite the header without the fields added later, as an older version wrote it.
        let len = u64::from_le_bytes(buf[8..16].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&buf[16..16 + len]).unwrap();
        let config = header["config"].as_object_mut().unwrap();
        for k in ["early_stopping_patience", "validation_metric", "validation_users"] {
            assert!(config.remove(k).is_some(), "{k}");
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut old = buf[..8].to_vec();
        old.extend_from_slice(&(header.len() as u64).to_le_bytes());
        old.extend_from_slice(&header);
        old.extend_from_slice(&buf[16 + len..]);
        let back = TwoTowerModel::load(&mut old.as_slice()).unwrap();
        assert_eq!(back.config, cfg.clone().with_early_stopping_patience(0));
        assert_eq!(back.item_embeddings(), model.item_embeddings());
    }
}
