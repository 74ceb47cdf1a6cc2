#!/usr/bin/env python3
"""PyTorch reference of medgan-train's medGAN, to time against it and to check its numbers.

medGAN (Choi et al. 2017) ported to PyTorch the way a competent user would write it: the
training records as one dense float32 tensor, `nn.Linear` layers, `torch.optim.Adam` with
`weight_decay` for medGAN's L2 term. It mirrors our trainer (trainer/src/model, trainer/src/train)
step for step: the same layers, losses, batch counts, validation passes and hyperparameters.

Modes:
  time      train K autoencoder and K GAN epochs on a run folder's split and print one JSON
            line with the per-epoch times and the peak resident memory;
  check     replay the steps of a trace file dumped by the Rust trainer in float32 and compare
            every loss and the final tensors against the Rust values;
  selftest  write a trace with an independent float64 implementation (TensorFlow's Adam
            written out by hand) and check it, to test the check itself and size its tolerances.

Not part of the build or of CI; trainer/bench/README.md says how to install torch for it.
"""

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

# Added inside every logarithm, as medGAN does.
LOG_EPS = 1e-12
AUTOENCODER_BATCH = 100
GAN_BATCH = 1000
# Held-out rows per forward pass of the autoencoder's validation loss (ours: VALIDATION_CHUNK).
VALIDATION_CHUNK = 1024
MATRIX_FORMAT = "medgan-patient-matrix"


@dataclass
class Hyper:
    """Optimiser and batch-norm settings; the defaults are trainer/src/config.rs's."""

    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    l2_scale: float = 1e-3
    batch_norm_eps: float = 1e-3
    batch_norm_decay: float = 0.99
    discriminator_steps: int = 2

    @classmethod
    def from_json(cls, text):
        """The settings of a trace's `config` metadata; every field must be present."""
        values = json.loads(text)
        missing = [f.name for f in fields(cls) if f.name not in values]
        if missing:
            raise ValueError(f"trace config lacks {', '.join(missing)}")
        return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass
class Architecture:
    """Layer widths and data type; the defaults are our trainer's for binary data."""

    n_features: int
    binary: bool = True
    embedding_dims: tuple = (128,)
    generator_dims: tuple = (128, 128, 128)
    discriminator_dims: tuple = (256, 128)

    @classmethod
    def from_tensors(cls, tensors, binary):
        """The widths that a trace's `init.*` tensor shapes imply."""

        def widths(prefix, suffix):
            """Output widths of `init.{prefix}.0.{suffix}`, `init.{prefix}.1.{suffix}`, ..."""
            found, i = [], 0
            while f"init.{prefix}.{i}.{suffix}" in tensors:
                found.append(tensors[f"init.{prefix}.{i}.{suffix}"].shape[0])
                i += 1
            return tuple(found)

        discriminator = widths("discriminator.layers", "weight")
        return cls(
            n_features=tensors["init.encoder.layers.0.weight"].shape[1],
            binary=binary,
            embedding_dims=widths("encoder.layers", "weight"),
            generator_dims=widths("generator.blocks", "linear.weight"),
            discriminator_dims=discriminator[:-1],
        )


class Stack(nn.Module):
    """Dense layers under `layers.{i}`, the names our weight files use."""

    def __init__(self, widths):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))


class TfBatchNorm(nn.Module):
    """TensorFlow's `batch_norm(scale=True)`: biased batch variance, `running = decay * running +
    (1 - decay) * batch` (torch's BatchNorm1d moves the running variance by the unbiased one)."""

    def __init__(self, width, eps, decay):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("running_mean", torch.zeros(width))
        self.register_buffer("running_var", torch.ones(width))
        self.eps = eps
        self.decay = decay

    def forward(self, x, train):
        """Batch statistics (moving the running ones) when `train`, else the running ones."""
        if not train:
            scale = self.weight / torch.sqrt(self.running_var + self.eps)
            return (x - self.running_mean) * scale + self.bias
        mean = x.mean(0)
        centred = x - mean
        var = (centred * centred).mean(0)
        with torch.no_grad():
            self.running_mean.mul_(self.decay).add_(mean, alpha=1 - self.decay)
            self.running_var.mul_(self.decay).add_(var, alpha=1 - self.decay)
        return centred / torch.sqrt(var + self.eps) * self.weight + self.bias


class ResidualBlock(nn.Module):
    """`x + act(bn(x W^T))`, a linear layer without bias."""

    def __init__(self, width, activation, hyper):
        super().__init__()
        self.linear = nn.Linear(width, width, bias=False)
        self.bn = TfBatchNorm(width, hyper.batch_norm_eps, hyper.batch_norm_decay)
        self.activation = activation

    def forward(self, x, train):
        """`train` as for TfBatchNorm."""
        return self.activation(self.bn(self.linear(x), train)) + x


class Generator(nn.Module):
    """ReLU residual blocks, the last one tanh for binary data."""

    def __init__(self, arch, hyper):
        super().__init__()
        last = len(arch.generator_dims) - 1
        self.blocks = nn.ModuleList(
            ResidualBlock(width, torch.tanh if i == last and arch.binary else torch.relu, hyper)
            for i, width in enumerate(arch.generator_dims)
        )

    def forward(self, noise, train):
        """Noise `[batch, noise_dim]` to embeddings; `train` as for TfBatchNorm."""
        x = noise
        for block in self.blocks:
            x = block(x, train)
        return x


class Discriminator(nn.Module):
    """ReLU layers on `[x, batch mean of x]`, then one sigmoid unit (minibatch averaging)."""

    def __init__(self, arch):
        super().__init__()
        widths = (2 * arch.n_features, *arch.discriminator_dims, 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))

    def forward(self, records):
        """The probability `[batch]` that each record is real."""
        x = torch.cat([records, records.mean(0, keepdim=True).expand_as(records)], 1)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return torch.sigmoid(self.layers[-1](x)).squeeze(1)


class Medgan(nn.Module):
    """Autoencoder, generator and discriminator; `state_dict()` names equal our weight names."""

    def __init__(self, arch, hyper):
        super().__init__()
        embedding = arch.embedding_dims
        self.encoder = Stack((arch.n_features, *embedding))
        self.decoder = Stack((embedding[-1], *reversed(embedding[:-1]), arch.n_features))
        self.generator = Generator(arch, hyper)
        self.discriminator = Discriminator(arch)
        self.binary = arch.binary
        self.hidden = torch.tanh if arch.binary else torch.relu
        self.output = torch.sigmoid if arch.binary else torch.relu

    def encode(self, records):
        """Records to embeddings, every encoder layer activated."""
        x = records
        for layer in self.encoder.layers:
            x = self.hidden(layer(x))
        return x

    def decode(self, embedding):
        """Embeddings to probabilities (binary) or non-negative counts."""
        x = embedding
        for layer in self.decoder.layers[:-1]:
            x = self.hidden(layer(x))
        return self.output(self.decoder.layers[-1](x))

    def sample(self, noise):
        """Noise to records with the generator's batch norm in inference mode."""
        return self.decode(self.generator(noise, train=False))

    def reconstruction_loss_per_row(self, records):
        """Binary cross-entropy summed over codes, or the mean squared error for counts."""
        out = self.decode(self.encode(records))
        if not self.binary:
            return ((records - out) ** 2).mean(1)
        log_p = torch.log(out + LOG_EPS)
        log_not_p = torch.log(1 - out + LOG_EPS)
        return -(records * log_p + (1 - records) * log_not_p).sum(1)

    def glorot_init_(self):
        """Glorot-uniform weights and biases (medGAN's `tf.get_variable` default), as ours."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    out, inp = module.weight.shape
                    module.weight.uniform_(-1, 1).mul_(math.sqrt(6 / (inp + out)))
                    if module.bias is not None:
                        module.bias.uniform_(-1, 1).mul_(math.sqrt(6 / (2 * out)))


class TfAdam:
    """`torch.optim.Adam` made to take TensorFlow's Adam steps, which ours takes.

    TensorFlow: `w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps_tf)`.
    torch:      `w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
    Multiplying torch's denominator by `sqrt(1 - b2^t)` shows they are algebraically identical
    when `eps = eps_tf / sqrt(1 - b2^t)`, so the group's eps is set to that before step t.
    `weight_decay` adds `l2_scale * w` to each gradient before the moments, which is the gradient
    of medGAN's `l2_scale * sum(w^2) / 2` term, as ours adds it.
    """

    def __init__(self, params, hyper):
        self.hyper = hyper
        self.steps = 0
        self.adam = torch.optim.Adam(
            params,
            lr=hyper.learning_rate,
            betas=(hyper.beta1, hyper.beta2),
            eps=hyper.epsilon,
            weight_decay=hyper.l2_scale,
        )

    def zero_grad(self):
        """Forgets the gradients of the last step."""
        self.adam.zero_grad(set_to_none=True)

    def step(self):
        """One TensorFlow Adam update from the current gradients."""
        self.steps += 1
        eps = self.hyper.epsilon / math.sqrt(1 - self.hyper.beta2**self.steps)
        for group in self.adam.param_groups:
            group["eps"] = eps
        self.adam.step()


class FormulaAdam:
    """TensorFlow's Adam with the L2 gradient, written out as trainer/src/train/optim.rs does;
    selftest's independent reference for TfAdam."""

    def __init__(self, params, hyper):
        self.hyper = hyper
        self.params = list(params)
        self.first = [torch.zeros_like(p) for p in self.params]
        self.second = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self):
        """Forgets the gradients of the last step."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        """One update; a tensor without a gradient still feels the L2 pull, as in ours."""
        h = self.hyper
        self.steps += 1
        lr_t = h.learning_rate * math.sqrt(1 - h.beta2**self.steps) / (1 - h.beta1**self.steps)
        for p, m, v in zip(self.params, self.first, self.second):
            grad = h.l2_scale * p if p.grad is None else p.grad + h.l2_scale * p
            m.mul_(h.beta1).add_(grad * (1 - h.beta1))
            v.mul_(h.beta2).add_(grad * grad * (1 - h.beta2))
            p.sub_(lr_t * m / (torch.sqrt(v) + h.epsilon))


def optimisers(model, hyper, kind):
    """The three optimisers of medGAN, each with its own state: autoencoder (encoder, decoder),
    discriminator, generator (its weights and batch-norm scale/shift, and the decoder)."""
    decoder = list(model.decoder.parameters())
    return {
        "ae": kind([*model.encoder.parameters(), *decoder], hyper),
        "d": kind(model.discriminator.parameters(), hyper),
        "g": kind([*model.generator.parameters(), *decoder], hyper),
    }


def discriminator_loss(real_scores, fake_scores):
    """medGAN's `loss_d`: `-mean(log(real + eps)) - mean(log(1 - fake + eps))`."""
    return -(torch.log(real_scores + LOG_EPS).mean() + torch.log(1 - fake_scores + LOG_EPS).mean())


def generator_loss(fake_scores):
    """medGAN's non-saturating `loss_g`: `-mean(log(fake + eps))`."""
    return -torch.log(fake_scores + LOG_EPS).mean()


def autoencoder_step(model, optimiser, records):
    """One update on the mean reconstruction loss of a batch; returns the loss before it."""
    loss = model.reconstruction_loss_per_row(records).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item()


def discriminator_step(model, optimiser, real, noise):
    """One update of the discriminator against detached fakes from the inference-mode
    generator; returns the loss before it."""
    with torch.no_grad():
        fake = model.sample(noise)
    loss = discriminator_loss(model.discriminator(real), model.discriminator(fake))
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item()


def generator_step(model, optimiser, noise):
    """One update of generator and decoder, batch norm in training mode; the discriminator's
    weights are frozen so no gradient is computed for them. Returns the loss before it."""
    model.discriminator.requires_grad_(False)
    fake = model.decode(model.generator(noise, train=True))
    loss = generator_loss(model.discriminator(fake))
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    model.discriminator.requires_grad_(True)
    return loss.item()


# --- time ---------------------------------------------------------------------------------


def load_matrix(path):
    """A prepared patient matrix (trainer/src/data/matrix.rs save(): CSR `indptr` u64,
    `indices` and `values` u32, vocabulary in the metadata) as a dense float32 tensor."""
    with safe_open(path, "np") as f:
        meta = f.metadata() or {}
        if meta.get("format") != MATRIX_FORMAT:
            raise ValueError(f"{path}: not a prepared patient matrix")
        indptr, indices, values = (f.get_tensor(k) for k in ("indptr", "indices", "values"))
    n_rows, n_codes = len(indptr) - 1, len(json.loads(meta["codes"]))
    dense = np.zeros((n_rows, n_codes), dtype=np.float32)
    row_lengths = np.diff(indptr.astype(np.int64))
    dense[np.repeat(np.arange(n_rows), row_lengths), indices] = values
    return torch.from_numpy(dense), meta["data_type"] == "binary"


def autoencoder_epoch(model, optimiser, train, holdout):
    """One shuffled pass in batches of 100 (the last one smaller), then the held-out loss;
    returns (mean batch loss, validation loss)."""
    order = torch.randperm(len(train))
    losses = [
        autoencoder_step(model, optimiser, train[order[start : start + AUTOENCODER_BATCH]])
        for start in range(0, len(train), AUTOENCODER_BATCH)
    ]
    with torch.no_grad():
        total = sum(
            model.reconstruction_loss_per_row(holdout[start : start + VALIDATION_CHUNK]).sum()
            for start in range(0, len(holdout), VALIDATION_CHUNK)
        )
    return float(np.mean(losses)), float(total) / len(holdout)


def holdout_batches(n_rows, size):
    """Consecutive `(start, end)` batches, a trailing batch of one joining the previous one."""
    bounds = [(s, min(s + size, n_rows)) for s in range(0, n_rows, size)]
    if len(bounds) >= 2 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n_rows)]
    return bounds


def roc_auc(real, fake):
    """Chance that a real record scores above a generated one, ties counting one half."""
    scores = np.concatenate([real, fake])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2
    rank_sum = mean_rank[inverse[: len(real)]].sum()
    return float((rank_sum - len(real) * (len(real) + 1) / 2) / (len(real) * len(fake)))


def gan_epoch(model, opts, train, holdout, hyper):
    """`ceil(n / 1000)` steps of `discriminator_steps` discriminator updates, each on 1000 rows
    drawn without replacement, and one generator update; then every held-out record is scored
    beside as many generated ones. Returns (mean D loss, mean G loss, validation accuracy and
    AUC)."""
    noise_dim = model.generator.blocks[0].linear.in_features
    d_losses, g_losses = [], []
    for _ in range(math.ceil(len(train) / GAN_BATCH)):
        for _ in range(hyper.discriminator_steps):
            real = train[torch.randperm(len(train))[:GAN_BATCH]]
            noise = torch.randn(GAN_BATCH, noise_dim)
            d_losses.append(discriminator_step(model, opts["d"], real, noise))
        g_losses.append(generator_step(model, opts["g"], torch.randn(GAN_BATCH, noise_dim)))
    real_scores, fake_scores = [], []
    with torch.no_grad():
        for start, end in holdout_batches(len(holdout), GAN_BATCH):
            real_scores.append(model.discriminator(holdout[start:end]))
            fake = model.sample(torch.randn(end - start, noise_dim))
            fake_scores.append(model.discriminator(fake))
    real, fake = torch.cat(real_scores).numpy(), torch.cat(fake_scores).numpy()
    accuracy = float(((real > 0.5).sum() + (fake < 0.5).sum()) / (len(real) + len(fake)))
    return float(np.mean(d_losses)), float(np.mean(g_losses)), accuracy, roc_auc(real, fake)


def run_time(args):
    """Times the epochs and prints one JSON line."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    train, binary = load_matrix(args.data)
    holdout, _ = load_matrix(args.holdout)
    load_s = time.perf_counter() - started
    hyper = Hyper()
    model = Medgan(Architecture(n_features=train.shape[1], binary=binary), hyper)
    model.glorot_init_()
    opts = optimisers(model, hyper, TfAdam)
    result = {"implementation": "torch", "torch_version": torch.__version__}
    result.update(threads=torch.get_num_threads(), n_train=len(train), n_holdout=len(holdout))
    result.update(n_features=train.shape[1], load_s=round(load_s, 3))
    ae_times, ae_losses, ae_validation = [], [], []
    for _ in range(args.ae_epochs):
        started = time.perf_counter()
        loss, validation = autoencoder_epoch(model, opts["ae"], train, holdout)
        ae_times.append(time.perf_counter() - started)
        ae_losses.append(loss)
        ae_validation.append(validation)
    gan_times, d_losses, g_losses, accuracies, aucs = [], [], [], [], []
    for _ in range(args.gan_epochs):
        started = time.perf_counter()
        d_loss, g_loss, accuracy, auc = gan_epoch(model, opts, train, holdout, hyper)
        gan_times.append(time.perf_counter() - started)
        d_losses.append(d_loss)
        g_losses.append(g_loss)
        accuracies.append(accuracy)
        aucs.append(auc)
    result.update(autoencoder_epoch_s=ae_times, gan_epoch_s=gan_times)
    # Linux reports ru_maxrss in KiB.
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(autoencoder_loss=ae_losses, autoencoder_validation_loss=ae_validation)
    result.update(discriminator_loss=d_losses, generator_loss=g_losses)
    result.update(validation_accuracy=accuracies, validation_auc=aucs)
    print(json.dumps(result))


# --- check --------------------------------------------------------------------------------


def count_steps(tensors, pattern):
    """How many consecutive `pattern.format(k)` keys, k = 0, 1, ..., the trace holds."""
    k = 0
    while pattern.format(k) in tensors:
        k += 1
    return k


def model_from_init(tensors, arch, hyper, dtype):
    """A model holding the trace's `init.*` tensors, all of which it must use."""
    model = Medgan(arch, hyper)
    init = {k[len("init.") :]: v for k, v in tensors.items() if k.startswith("init.")}
    expected = set(model.state_dict())
    if set(init) != expected:
        raise ValueError(
            f"trace init tensors differ from the model's: missing {sorted(expected - set(init))}, "
            f"unexpected {sorted(set(init) - expected)}"
        )
    model.load_state_dict(init)
    return model.to(dtype)


def replay(tensors, arch, hyper, dtype, kind):
    """The trace's autoencoder steps, then its GAN steps from the initial weights again with
    fresh optimisers, in `dtype` with optimiser `kind`. Returns (losses by trace key, tensors
    by trace key after each phase)."""
    losses, after = {}, {}
    model = model_from_init(tensors, arch, hyper, dtype)
    opt = optimisers(model, hyper, kind)["ae"]
    for k in range(count_steps(tensors, "ae.batch.{}")):
        losses[f"ae.loss.{k}"] = autoencoder_step(model, opt, tensors[f"ae.batch.{k}"].to(dtype))
    for name, value in model.state_dict().items():
        if name.startswith(("encoder.", "decoder.")):
            after[f"ae.after.{name}"] = value.clone()
    model = model_from_init(tensors, arch, hyper, dtype)
    opts = optimisers(model, hyper, kind)
    for s in range(count_steps(tensors, "gan.noise.{}.g")):
        for d in range(hyper.discriminator_steps):
            real = tensors[f"gan.real.{s}.{d}"].to(dtype)
            noise = tensors[f"gan.noise.{s}.d{d}"].to(dtype)
            losses[f"gan.loss.{s}.d{d}"] = discriminator_step(model, opts["d"], real, noise)
        noise = tensors[f"gan.noise.{s}.g"].to(dtype)
        losses[f"gan.loss.{s}.g"] = generator_step(model, opts["g"], noise)
    for name, value in model.state_dict().items():
        after[f"gan.after.{name}"] = value.clone()
    return losses, after


def read_trace(path):
    """The trace's tensors (float32), hyperparameters and data type."""
    tensors = {k: v.float() for k, v in load_file(path).items()}
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: no `config` metadata")
    binary = json.loads(meta["config"]).get("data_type", "binary") == "binary"
    return tensors, Hyper.from_json(meta["config"]), binary


# A difference counts against a value of at least this size, so zeros do not divide.
TINY = 1e-30


def loss_row(key, got, want, rtol):
    """(kind, key, |diff|, |diff| / |want|, passed) for one loss."""
    diff = abs(got - want)
    return "loss", key, diff, diff / max(abs(want), TINY), diff <= rtol * max(1.0, abs(want))


def tensor_row(key, got, want, atol, rtol):
    """(kind, key, max |diff|, ||diff|| / ||want||, passed) for one tensor: within `atol`
    everywhere, or within `rtol` in norm where Adam amplified rounding in a few entries."""
    if tuple(got.shape) != tuple(want.shape):
        shapes = f"{tuple(want.shape)} in the trace, {tuple(got.shape)} here"
        raise ValueError(f"`{key}`: shape {shapes}")
    delta = got.double() - want.double()
    diff = delta.abs().max().item()
    rel = delta.norm().item() / max(want.double().norm().item(), TINY)
    return "tensor", key, diff, rel, diff <= atol or rel <= rtol


def compare(tensors, losses, after, args):
    """Prints the difference of each loss and each final tensor from the trace's, worst first
    within each kind; returns the keys of those out of tolerance."""
    missing = sorted(set(losses) - set(tensors) | set(after) - set(tensors))
    if missing:
        raise ValueError(f"trace lacks {', '.join(missing)}")
    rows = [loss_row(k, v, tensors[k].item(), args.loss_rtol) for k, v in losses.items()]
    rows += [
        tensor_row(k, v, tensors[k], args.weight_atol, args.weight_rtol) for k, v in after.items()
    ]
    rows.sort(key=lambda row: (row[0], -row[3]))
    print(f"{'kind':<7} {'name':<50} {'max abs diff':>12} {'relative':>10}")
    for kind, key, diff, rel, passed in rows:
        print(f"{kind:<7} {key:<50} {diff:>12.3e} {rel:>10.2e}{'' if passed else '  EXCEEDS'}")
    failed = {row[1] for row in rows if not row[4]}
    n_losses = len(losses)
    print(
        f"{n_losses} losses (tolerance {args.loss_rtol:.0e} x max(1, |loss|)), {len(after)} "
        f"tensors (max abs {args.weight_atol:.0e} or relative {args.weight_rtol:.0e}): "
        f"{'FAILED' if failed else 'within tolerance'}"
    )
    return failed


def run_check(args):
    """Replays a trace in float32 with torch's Adam; returns the keys out of tolerance."""
    tensors, hyper, binary = read_trace(args.trace)
    arch = Architecture.from_tensors(tensors, binary)
    torch.set_num_threads(args.threads)
    losses, after = replay(tensors, arch, hyper, torch.float32, TfAdam)
    if not losses:
        raise ValueError(f"{args.trace}: no steps to replay")
    return compare(tensors, losses, after, args)


# --- selftest -----------------------------------------------------------------------------


def write_reference_trace(path, data, arch, hyper, ae_steps, gan_steps, seed):
    """A trace as the Rust dumper writes it, with expected values from a float64 replay using
    FormulaAdam: independent of torch's Adam, and exact far beyond float32's resolution."""
    generator = torch.Generator().manual_seed(seed)
    model = Medgan(arch, hyper)
    torch.manual_seed(seed)
    model.glorot_init_()
    tensors = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}

    def rows(count):
        """`count` distinct records, as a D step draws them."""
        return data[torch.randperm(len(data), generator=generator)[:count]].clone()

    for k in range(ae_steps):
        tensors[f"ae.batch.{k}"] = rows(AUTOENCODER_BATCH)
    noise_dim = arch.generator_dims[0]
    for s in range(gan_steps):
        for d in range(hyper.discriminator_steps):
            tensors[f"gan.real.{s}.{d}"] = rows(GAN_BATCH)
            tensors[f"gan.noise.{s}.d{d}"] = torch.randn(GAN_BATCH, noise_dim, generator=generator)
        tensors[f"gan.noise.{s}.g"] = torch.randn(GAN_BATCH, noise_dim, generator=generator)
    losses, after = replay(tensors, arch, hyper, torch.float64, FormulaAdam)
    tensors.update({k: torch.tensor([v], dtype=torch.float32) for k, v in losses.items()})
    tensors.update({k: v.float().contiguous() for k, v in after.items()})
    config = {f.name: getattr(hyper, f.name) for f in fields(hyper)}
    save_file(tensors, path, metadata={"config": json.dumps(config)})


def synthetic_records(n_rows, n_features, seed):
    """Binary records with a few codes each, common codes more frequent, like the real data."""
    generator = torch.Generator().manual_seed(seed)
    prevalence = 0.02 / torch.arange(1, n_features + 1, dtype=torch.float32).sqrt()
    return (torch.rand(n_rows, n_features, generator=generator) < prevalence).float()


def run_selftest(args):
    """Checks a float64 reference trace (all must pass) and the same trace with one loss and
    one running statistic nudged (exactly those two must fail); returns whether both held."""
    torch.set_num_threads(args.threads)
    if args.data:
        data, binary = load_matrix(args.data)
    else:
        data, binary = synthetic_records(3000, 915, args.seed), True
    arch, hyper = Architecture(n_features=data.shape[1], binary=binary), Hyper()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.trace_out or str(Path(scratch) / "trace.safetensors")
        write_reference_trace(path, data, arch, hyper, args.ae_steps, args.gan_steps, args.seed)
        print(f"== reference trace {path}: must be within tolerance")
        args.trace = path
        clean = not run_check(args)
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            meta = f.metadata()
        # Off by three tolerances: a loss, and a running variance as a wrong decay would be.
        nudged_keys = {"ae.loss.0", "gan.after.generator.blocks.0.bn.running_var"}
        tensors["ae.loss.0"] *= 1 + 3 * args.loss_rtol
        tensors["gan.after.generator.blocks.0.bn.running_var"] *= 1 + 3 * args.weight_rtol
        nudged = str(Path(scratch) / "nudged.safetensors")
        save_file(tensors, nudged, metadata=meta)
        print(f"== nudged trace: must fail on {' and '.join(sorted(nudged_keys))} only")
        args.trace = nudged
        caught = run_check(args) == nudged_keys
    ok = clean and caught
    print(f"selftest {'passed' if ok else 'FAILED'}")
    return ok


def main():
    """Parses the command line and runs one mode; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    timing = modes.add_parser("time", help="time epochs on a run folder's split")
    timing.add_argument("--data", required=True, help="RUN_DIR/train.medgan.safetensors")
    timing.add_argument("--holdout", required=True, help="RUN_DIR/holdout.medgan.safetensors")
    timing.add_argument("--ae-epochs", type=int, default=2)
    timing.add_argument("--gan-epochs", type=int, default=2)
    timing.add_argument("--seed", type=int, default=1234)
    for mode, help_text in (("check", "replay a Rust trace"), ("selftest", "test the check")):
        sub = modes.add_parser(mode, help=help_text)
        # Sized by float32-against-float64 replays (README.md): over 20 AE and 4 GAN steps,
        # losses within 7e-6 relative, tensors within 3e-6 absolute except the generator's
        # linear weights, where rounding flips Adam steps on gradients near zero (up to 1.5e-3
        # absolute, 4e-4 in norm); 10 GAN steps reach 4e-5 on losses, 9e-4 in norm. Rust
        # against torch adds a second float32 error, hence twice that in norm.
        sub.add_argument("--loss-rtol", type=float, default=1e-4,
                         help="a loss may differ by this times max(1, |loss|)")
        sub.add_argument("--weight-atol", type=float, default=1e-5,
                         help="a tensor passes if no entry differs by more")
        sub.add_argument("--weight-rtol", type=float, default=2e-3,
                         help="or if ||ours - trace|| / ||trace|| is at most this")
    modes.choices["check"].add_argument("--trace", required=True)
    selftest = modes.choices["selftest"]
    selftest.add_argument("--data", help="a prepared matrix to draw batches from (default: "
                          "synthetic binary records of 915 codes)")
    selftest.add_argument("--ae-steps", type=int, default=20)
    selftest.add_argument("--gan-steps", type=int, default=4)
    selftest.add_argument("--seed", type=int, default=1234)
    selftest.add_argument("--trace-out", help="keep the reference trace here")
    for sub in modes.choices.values():
        sub.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    try:
        if args.mode == "time":
            run_time(args)
            return 0
        ok = not run_check(args) if args.mode == "check" else run_selftest(args)
    except (OSError, ValueError, KeyError) as error:
        print(f"torch_reference.py: {error}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
